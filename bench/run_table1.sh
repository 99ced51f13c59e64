#!/usr/bin/env bash
# Our Table 1: from one base model, every distill method (cord.method) with the same
# config, budget and seed, each evaluated on the test split, summarised with the base in
# bench/results/NAME.{json,md,png} (NAME = the config's file name): audio and text accuracy
# per family, gap to the base's text accuracy, gap reduction, text-accuracy change, wall
# times, and audio accuracy over steps for every method.
# Usage: bench/run_table1.sh [CONFIG] [BASE_RUN] [RUN_DIR]
#   CONFIG    distill job (default jobs/table1_small.toml; its [model] must be the base's)
#   BASE_RUN  a base pipeline run with corpus.h5 and align/model.h5 (default runs/base_small,
#             from bench/run_base.sh); the base is evaluated again with CONFIG's [eval] so
#             that every row of the table scores the same items
#   RUN_DIR   where each method's run goes, RUN_DIR/METHOD (default runs/NAME)
# Environment: CORD_METHODS (default: cord cord-unweighted opd grpo sft fkl),
#              CORD_TABLE1_SETS (extra distill overrides, e.g. "train.seed=2"; see table1_lib.sh),
#              CORD_SETS (--set words for every command, e.g. "--set model.source=hf:DIR"),
#              CORD_RANKS (default 2), CORD_BUILD_DIR (default build),
#              CORD_RESUME (default none: every method trains from step 0; auto continues
#              an interrupted experiment from each method's newest committed checkpoint).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/table1_lib.sh
config=${1:-jobs/table1_small.toml}
base=${2:-runs/base_small}
table1_setup "$config" "$base" "${3:-}"
run=$TABLE1_RUN
read -r -a methods <<< "${CORD_METHODS:-cord cord-unweighted opd grpo sft fkl}"
ranks=${CORD_RANKS:-2}
build=${CORD_BUILD_DIR:-build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
: > "$run/timings.tsv"
start=$(date +%s.%N)
echo "[table1] base" >&2
table1_base_eval_args
mpiexec -n "$ranks" "$build/cord" "${CORD_ARGS[@]}" 2>&1 | tee "$run/base.log"
for method in "${methods[@]}"; do
  echo "[table1] $method" >&2
  t0=$(date +%s.%N)
  table1_train_args "$method"
  mpiexec -n "$ranks" "$build/cord" "${CORD_ARGS[@]}" 2>&1 | tee "$run/$method.log"
  table1_eval_args "$method"
  mpiexec -n "$ranks" "$build/cord" "${CORD_ARGS[@]}" 2>&1 | tee -a "$run/$method.log"
  table1_record_wall "$method" "$t0" "$(date +%s.%N)"
done
table1_summarize "$start" "$(date +%s.%N)" "bench/run_table1.sh $config $base $run" "${methods[@]}"
