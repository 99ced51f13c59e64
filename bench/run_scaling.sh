#!/usr/bin/env bash
# Strong scaling of the text stage on this machine: one fixed global problem
# (jobs/scaling_small.toml: the base_small model, global batch 32, one torch thread per rank)
# under 1 rank, 2 ranks (dp 2, tp 2) and 4 ranks (dp 4, tp 4, dp 2 x tp 2), each layout run
# CORD_SCALING_ROUNDS times, the layouts interleaved within a round; then the all-reduce
# constants of the performance model: cord_allreduce_bench at 4 MiB (2 ranks; bandwidth)
# and cord_allreduce_bench --sweep (4 B .. 4 MiB on 2 and 4 ranks; latency).
# bench/summarize_scaling.py writes bench/results/scaling.{json,md,png} and
# scaling_model.png: time/step, speedup, efficiency and communication share per layout,
# the model against the measurement, and the model's projection of jobs/model_gpu.toml to
# 8..1024 GPUs. On a 2-core machine 4 ranks are oversubscribed (2 per core).
# Usage: bench/run_scaling.sh [BUILD_DIR]   (default: build; about 2.5 minutes on the 2-core VM)
#   CORD_SCALING_DIR     run folder (default runs/scaling; removed first)
#   CORD_SCALING_STEPS   text steps per run (default: the config's 12; the first 2 are warm-up)
#   CORD_SCALING_ROUNDS  runs per layout (default 5)
#   CORD_SCALING_OUT     results prefix (default bench/results/scaling)
#   CORD_SCALING_MODEL_ARGS  extra summarizer options, e.g. "--inter-gbps 50 --gpu-global-tokens 1048576"
#                        (bench/summarize_scaling.py --help; rerun the summarizer alone on
#                        the run folder to try other NCCL bandwidths)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/scaling_lib.sh
build=${1:-build}
dir=${CORD_SCALING_DIR:-runs/scaling}
rounds=${CORD_SCALING_ROUNDS:-5}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
rm -rf "$dir"
mkdir -p "$dir"
start=$(date +%s.%N)
scaling_corpus_args "$dir"
"$build/cord" "${CORD_ARGS[@]}" 2>&1 | tail -n 1
"$build/cord" info --json --config "$SCALING_CONFIG" > "$dir/info.json" 2>/dev/null  # parameter counts
for round in $(seq 1 "$rounds"); do
  for layout in "${SCALING_LAYOUTS[@]}"; do
    read -r ranks tp <<< "$layout"
    echo "[scaling] round $round/$rounds: $ranks rank(s), dp $((ranks / tp)) x tp $tp" >&2
    scaling_train_args "$dir" "$round" "$ranks" "$tp"
    mpiexec -n "$ranks" "$build/cord" "${CORD_ARGS[@]}" > "$SCALING_RUN.log" 2>&1 ||
      { tail -n 20 "$SCALING_RUN.log" >&2; exit 1; }
    rm -f "$SCALING_RUN/text/model.h5"
  done
done
echo "[scaling] all-reduce constants" >&2
mpiexec -n 2 "$build/bench/cord_allreduce_bench" --benchmark_filter='^(raw_mpi_allreduce|cord_all_reduce)/4MiB/' \
  --benchmark_out="$dir/allreduce_bench_np2.json" --benchmark_out_format=json > /dev/null
for ranks in 2 4; do
  mpiexec -n "$ranks" "$build/bench/cord_allreduce_bench" --sweep \
    --benchmark_out="$dir/allreduce_sweep_np$ranks.json" --benchmark_out_format=json > /dev/null
done
scaling_summarize "$dir" "$start" "$(date +%s.%N)" \
  "bench/run_scaling.sh $build (rounds $rounds${CORD_SCALING_STEPS:+, steps $CORD_SCALING_STEPS})"
