# shellcheck shell=bash
# The steps of our Table 1 (sourced by bench/run_table1.sh and slurm/table1_*.sbatch; not a
# script itself): the cord command lines of each step, and the summary. Every caller runs
# the same commands, through its own launcher (mpiexec here, srun under Slurm).
#
# table1_setup CONFIG BASE RUN   sets TABLE1_CONFIG, TABLE1_BASE, TABLE1_RUN, TABLE1_NAME and
#                                checks the base's corpus and align weights
# Environment: CORD_TABLE1_SETS  extra `KEY=VALUE` overrides (space-separated) for every
#                                method's distill stage, e.g. "train.seed=2"; the results are
#                                then named NAME-KEY_VALUE... (dots, '=' and spaces as '_') and
#                                their command records the overrides
#              CORD_SETS         `--set KEY=VALUE` words for every command (the base's eval, each
#                                distill stage and eval) that do not name the results: a model
#                                directory that a job file cannot name portably, e.g.
#                                CORD_SETS="--set model.source=hf:DIR" (jobs/distill_real_parts.toml)
# table1_base_eval_args          CORD_ARGS = the base model's eval (with CONFIG's [eval])
# table1_train_args METHOD       CORD_ARGS = METHOD's distill stage from the base (--resume
#                                ${CORD_RESUME:-none})
# table1_eval_args METHOD        CORD_ARGS = the eval of METHOD's distilled weights
# table1_record_wall METHOD T0 T1  appends METHOD's wall seconds to RUN/timings.tsv
# table1_summarize START END COMMAND METHODS...  ${CORD_RESULTS_DIR:-bench/results}/NAME.{json,md,png}

table1_setup() {
  TABLE1_CONFIG=$1
  TABLE1_BASE=$2
  TABLE1_NAME=$(basename "$TABLE1_CONFIG" .toml)
  if [ -n "${CORD_TABLE1_SETS:-}" ]; then
    TABLE1_NAME=$TABLE1_NAME-$(echo "$CORD_TABLE1_SETS" | tr ' .=' '___')
  fi
  TABLE1_RUN=${3:-runs/$TABLE1_NAME}
  local f
  for f in "$TABLE1_BASE/corpus.h5" "$TABLE1_BASE/align/model.h5"; do
    [ -f "$f" ] || { echo "table1: $f is missing (run bench/run_base.sh first)" >&2; return 2; }
  done
  mkdir -p "$TABLE1_RUN"
}

# Appends CORD_SETS's words to CORD_ARGS.
table1_add_common_sets() {
  # shellcheck disable=SC2206  # CORD_SETS is a list of words, split on purpose
  if [ -n "${CORD_SETS:-}" ]; then CORD_ARGS+=(${CORD_SETS}); fi
}

table1_base_eval_args() {
  CORD_ARGS=(eval --config "$TABLE1_CONFIG" --set "train.corpus=$TABLE1_BASE/corpus.h5"
             --ckpt "$TABLE1_BASE/align/model.h5" --out "$TABLE1_RUN/base/eval")
  table1_add_common_sets
}

table1_train_args() {
  CORD_ARGS=(train --config "$TABLE1_CONFIG" --set "train.corpus=$TABLE1_BASE/corpus.h5" --set train.stage=distill
             --set "cord.method=$1" --set "train.init=$TABLE1_BASE/align/model.h5"
             --set "train.run_dir=$TABLE1_RUN/$1" --resume "${CORD_RESUME:-none}")
  table1_add_common_sets
  local extra
  for extra in ${CORD_TABLE1_SETS:-}; do
    CORD_ARGS+=(--set "$extra")
  done
}

table1_eval_args() {
  CORD_ARGS=(eval --config "$TABLE1_CONFIG" --set "train.corpus=$TABLE1_BASE/corpus.h5"
             --ckpt "$TABLE1_RUN/$1/distill/model.h5" --out "$TABLE1_RUN/$1/eval")
  table1_add_common_sets
}

table1_record_wall() {
  awk -v m="$1" -v s="$2" -v e="$3" 'BEGIN { printf "%s\t%.1f\n", m, e - s }' >> "$TABLE1_RUN/timings.tsv"
}

table1_summarize() {
  local start=$1 end=$2
  local command=${CORD_SETS:+CORD_SETS=\"$CORD_SETS\" }${CORD_METHODS:+CORD_METHODS=\"$CORD_METHODS\" }
  command+=${CORD_TABLE1_SETS:+CORD_TABLE1_SETS=\"$CORD_TABLE1_SETS\" }$3
  shift 3
  local results=${CORD_RESULTS_DIR:-bench/results}
  mkdir -p "$results"
  "${CORD_PYTHON:-${CORD_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/cord/venv}/bin/python}" bench/summarize_table1.py \
    --base "$TABLE1_BASE" --runs "$TABLE1_RUN" --methods "$@" --config "$TABLE1_CONFIG" --start "$start" --end "$end" \
    --command "$command" --out "$results/$TABLE1_NAME"
}
