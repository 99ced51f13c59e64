#!/usr/bin/env bash
# Measures cord's all_reduce wrapper against raw MPI_Allreduce (2 ranks, 4 MiB and 64 MiB)
# and writes bench/results/allreduce_2ranks.json with machine, commit and command.
# Usage: bench/run_allreduce.sh [BUILD_DIR]   (default: build; run ./setup.sh first)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
raw=$(mktemp --suffix=.json)
trap 'rm -f "$raw"' EXIT
command="mpiexec -n 2 $build/bench/cord_allreduce_bench"
$command --benchmark_out="$raw" --benchmark_out_format=json
mkdir -p bench/results
python3 bench/summarize_allreduce.py "$raw" --command "bench/run_allreduce.sh $build ($command)" \
  --out bench/results/allreduce_2ranks.json
