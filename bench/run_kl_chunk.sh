#!/usr/bin/env bash
# Full-vocabulary KL at V = 151,936, chunked vs materialised logits (bench/kl_chunk_bench.cpp):
# time and peak memory of CORD's weighted reverse KL forward + backward, one rank. Writes
# bench/results/kl_chunk.{json,md} with machine, commit and command. Needs ~10 GB of free
# memory for the logits path at the default 16 x 100 positions (CORD_KL_BENCH_ROWS,
# CORD_KL_BENCH_LENGTH); run it alone (it times the machine's two cores).
# Usage: bench/run_kl_chunk.sh [BUILD_DIR]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
"$build/bench/cord_kl_chunk_bench" --benchmark_out="$out/kl_chunk.json" --benchmark_out_format=json
python3 bench/summarize_kl_chunk.py --raw "$out/kl_chunk.json" --command "bench/run_kl_chunk.sh $build" \
  --out bench/results/kl_chunk
