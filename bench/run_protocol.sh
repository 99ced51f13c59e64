#!/usr/bin/env bash
# The transfer protocol (docs/experiments.md#the-transfer-protocol): from one base model,
# every distill method on the arithmetic family alone (transfer) and on every family
# (in_domain) at 1,000 steps, transfer also at 3,000, cord/sft/fkl with 3 seeds at 1,000;
# each evaluated on the whole test split with the text branch's KL from the base; then the
# summary with paired bootstrap intervals in bench/results/protocol.{json,md,png}.
# Usage: bench/run_protocol.sh [BASE_RUN] [RUNS]
#   BASE_RUN  a base run with corpus.h5 and align/model.h5 (default runs/base_small, from
#             bench/run_base.sh)
#   RUNS      the protocol's folder, one subfolder per cell (default runs/protocol)
# Resumable: run it again after an interruption and it continues (a cell whose record is in
# the archive is done, an unfinished one resumes from its newest checkpoint). The archive
# (CORD_PROTOCOL_ARCHIVE, default bench/results/protocol_cells) is committed with the
# summary, so a later sitting continues even when RUNS is gone; bench/restore_protocol_base.sh
# rebuilds BASE_RUN from the committed base weights. The cells and their order come
# from bench/protocol.py plan (CORD_REGIMES, CORD_BUDGETS, CORD_LONG_REGIMES, CORD_METHODS,
# CORD_SEEDS, CORD_VARIANTS...); CORD_MAX_CELLS=N stops after N cells trained by this call (to split
# the protocol across sittings). Also CORD_RANKS (default 2), CORD_BUILD_DIR (default build).
# The same cells run as a Slurm job array: slurm/submit_protocol.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/protocol_lib.sh
protocol_setup "${1:-runs/base_small}" "${2:-runs/protocol}"
ranks=${CORD_RANKS:-2}
build=${CORD_BUILD_DIR:-build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
# stdin from /dev/null: mpiexec would otherwise read the rest of the plan the loop reads.
cord_run() { mpiexec -n "$ranks" "$build/cord" "${CORD_ARGS[@]}" < /dev/null; }
if [ ! -s "$PROTOCOL_RUNS/base/eval/eval.json" ]; then
  echo "[protocol] base" >&2
  protocol_base_eval_args
  mkdir -p "$PROTOCOL_RUNS/base"
  cord_run > "$PROTOCOL_RUNS/base/eval.log" 2>&1 || { tail -20 "$PROTOCOL_RUNS/base/eval.log" >&2; exit 1; }
fi
protocol_archive  # the base's eval (checked against an archived one) and any finished cell not yet recorded
plan=$(protocol_plan)
total=$(printf '%s\n' "$plan" | grep -c .)
trained=0 index=0
while IFS=$'\t' read -r cell regime steps label _ seed sets; do
  index=$((index + 1))
  if protocol_done "$cell"; then
    echo "[protocol] $index/$total $cell: done" >&2
    continue
  fi
  if [ -n "${CORD_MAX_CELLS:-}" ] && [ "$trained" -ge "$CORD_MAX_CELLS" ]; then
    echo "[protocol] stopping after $trained cell(s) (CORD_MAX_CELLS); run again to continue" >&2
    break
  fi
  echo "[protocol] $index/$total $cell: $regime, $steps steps, $label, seed $seed" >&2
  mkdir -p "$PROTOCOL_RUNS/$cell"
  log=$PROTOCOL_RUNS/$cell/cell.log
  if ! protocol_trained "$cell"; then
    t0=$(date +%s.%N)
    protocol_train_args "$cell" "$sets"
    cord_run >> "$log" 2>&1 || { echo "[protocol] $cell: training failed, see $log" >&2; tail -20 "$log" >&2; exit 1; }
    protocol_record_wall "$cell" "$t0" "$(date +%s.%N)"
  fi
  protocol_eval_args "$cell"
  cord_run >> "$log" 2>&1 || { echo "[protocol] $cell: eval failed, see $log" >&2; tail -20 "$log" >&2; exit 1; }
  protocol_archive "$cell"
  trained=$((trained + 1))
done <<< "$plan"
protocol_summarize "bench/run_protocol.sh ${1:-runs/base_small} ${2:-runs/protocol}"
