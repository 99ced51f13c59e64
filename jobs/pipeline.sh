#!/usr/bin/env bash
# The base-model pipeline: corpus -> text stage -> align stage -> eval, each a `cord`
# command under mpiexec, with progress in the terminal and the eval table at the end.
#
#   jobs/pipeline.sh [CONFIG] [RUN_DIR]
#
# CONFIG   a job file (default: none, the configuration embedded in cord)
# RUN_DIR  where everything goes (default: runs/main): corpus.h5, text/, align/, eval/,
#          and timings.tsv (seconds per step, with its command)
# Environment: CORD_RANKS (MPI ranks, default 2), CORD_BUILD_DIR (default build),
#   CORD_RESUME (the training stages' --resume: default auto, so that a rerun after a
#   preemption or a crash continues each stage from its newest committed checkpoint, and a
#   finished stage only re-validates and rewrites its weights; none = from scratch),
#   CORD_SETS (extra `--set KEY=VALUE` words for every command, e.g. a model directory that
#   a job file cannot name portably: CORD_SETS="--set model.source=hf:DIR"),
#   CORD_FROM (the first step to run: corpus (default), text, align, eval, distill or
#   cord_eval; the steps before it are taken from RUN_DIR as they are, with their rows of
#   timings.tsv: CORD_FROM=distill runs CORD again on the run's base).
# The corpus is reused when RUN_DIR/corpus.h5 exists; delete it to regenerate.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-}
run=${2:-runs/main}
ranks=${CORD_RANKS:-2}
build=${CORD_BUILD_DIR:-build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1

common=(--set "train.run_dir=$run" --set "train.corpus=$run/corpus.h5")
# shellcheck disable=SC2206  # CORD_SETS is a list of words, split on purpose
if [ -n "${CORD_SETS:-}" ]; then common+=(${CORD_SETS}); fi
if [ -n "$config" ]; then common=(--config "$config" "${common[@]}"); fi
mkdir -p "$run"
steps=(corpus text align eval distill cord_eval)
from=${CORD_FROM:-corpus}
reused=()
for name in "${steps[@]}"; do
  [ "$name" = "$from" ] && break
  reused+=("$name")
done
if [ ${#reused[@]} -eq ${#steps[@]} ]; then
  echo "[pipeline] CORD_FROM=$from is not one of ${steps[*]}" >&2
  exit 2
fi
if [ ${#reused[@]} -eq 0 ]; then
  : > "$run/timings.tsv"
else  # keep the reused steps' times; the ones that run again are appended
  [ -f "$run/timings.tsv" ] || { echo "[pipeline] CORD_FROM=$from: $run/timings.tsv is missing" >&2; exit 2; }
  awk -F'\t' -v keep=" ${reused[*]} " 'index(keep, " " $1 " ")' "$run/timings.tsv" > "$run/timings.tsv.kept"
  mv "$run/timings.tsv.kept" "$run/timings.tsv"
fi

step() {  # step NAME cord ARGS...: runs and times one command, unless CORD_FROM reuses it
  local name=$1
  shift
  if [[ " ${reused[*]} " == *" $name "* ]]; then
    echo "[pipeline] $name: reused from $run (CORD_FROM=$from)" >&2
    return
  fi
  local command=(mpiexec -n "$ranks" "$build/cord" "$@")
  echo "[pipeline] $name: ${command[*]}" >&2
  local start end
  start=$(date +%s.%N)
  "${command[@]}"
  end=$(date +%s.%N)
  awk -v name="$name" -v s="$start" -v e="$end" -v c="${command[*]}" \
    'BEGIN { printf "%s\t%.1f\t%s\n", name, e - s, c }' >> "$run/timings.tsv"
}

if [ -f "$run/corpus.h5" ]; then
  echo "[pipeline] corpus: reusing $run/corpus.h5" >&2
else
  step corpus corpus synth "${common[@]}" --out "$run/corpus.h5"
fi
resume=${CORD_RESUME:-auto}
step text train "${common[@]}" --set train.stage=text --resume "$resume"
step align train "${common[@]}" --set train.stage=align --resume "$resume"
step eval eval "${common[@]}" --out "$run/eval"
if [ "${CORD_DISTILL:-1}" = 0 ]; then
  echo "[pipeline] done: $run/eval/eval.md; seconds per step in $run/timings.tsv" >&2
  exit 0
fi
step distill train "${common[@]}" --set train.stage=distill --resume "$resume"
step cord_eval eval "${common[@]}" --ckpt "$run/distill/model.h5" --baseline "$run/eval/eval.json" \
  --out "$run/cord_eval"
echo "[pipeline] done: the base in $run/eval/eval.md, CORD against it in $run/cord_eval/eval.md;" \
  "seconds per step in $run/timings.tsv" >&2
