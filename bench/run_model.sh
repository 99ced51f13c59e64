#!/usr/bin/env bash
# Model benchmarks (bench/model_bench.cpp): GEMM peak, training tokens/s and MFU on 1 and
# 2 threads, KV-cache decode speed-up, tp=2 vs tp=1 on 2 ranks. About 2 minutes.
# Writes bench/results/model_small.json with machine, commit and command.
# Usage: bench/run_model.sh [BUILD_DIR]   (default: build; run ./setup.sh build first)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
single=$(mktemp --suffix=.json)
pair=$(mktemp --suffix=.json)
trap 'rm -f "$single" "$pair"' EXIT
# --bind-to none: Open MPI binds a lone rank to one core, which would hide the 2nd thread.
mpiexec --bind-to none -n 1 "$build/bench/cord_model_bench" --benchmark_out="$single" --benchmark_out_format=json
mpiexec -n 2 "$build/bench/cord_model_bench" --benchmark_out="$pair" --benchmark_out_format=json
mkdir -p bench/results
python3 bench/summarize_model.py "$single" "$pair" --out bench/results/model_small.json \
  --command "bench/run_model.sh $build (mpiexec --bind-to none -n 1, then mpiexec -n 2, $build/bench/cord_model_bench)"
