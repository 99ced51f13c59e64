#!/usr/bin/env bash
# Corpus synthesis throughput: `cord corpus synth` of N items (default 2000) with 1 and with
# 2 ranks (wall time of the whole command, start-up and the verified write included), the
# per-stage costs and loader batches/s (cord_corpus_bench), and the projection to the
# paper's 80k items. Writes bench/results/corpus_synth.json with machine, commit, command.
# Usage: bench/run_corpus.sh [BUILD_DIR] [ITEMS]   (default: build, 2000; run ./setup.sh first)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
items=${2:-2000}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
timings="$work/timings.txt"
for ranks in 1 2; do
  command="mpiexec -n $ranks $build/cord corpus synth --set corpus.items=$items --out $work/np$ranks.h5"
  start=$(date +%s.%N)
  $command 2> "$work/np$ranks.log"
  end=$(date +%s.%N)
  echo "$ranks $start $end $command" >> "$timings"
  grep "corpus synth: wrote" "$work/np$ranks.log" >&2
done
bench_command="$build/bench/cord_corpus_bench"
CORD_BENCH_CORPUS="$work/np2.h5" $bench_command --benchmark_out="$work/stages.json" --benchmark_out_format=json >&2
mkdir -p bench/results
python3 bench/summarize_corpus.py --timings "$timings" --items "$items" --stages "$work/stages.json" \
  --corpus "$work/np2.h5" --build "$build" \
  --command "bench/run_corpus.sh $build $items" --out bench/results/corpus_synth.json
