# shellcheck shell=bash
# The steps of the transfer protocol (sourced by bench/run_protocol.sh and
# slurm/protocol_array.sbatch; not a script itself). Every caller runs the same cord
# command lines through its own launcher (mpiexec here, srun under Slurm).
#
# protocol_setup BASE RUNS        sets PROTOCOL_BASE, PROTOCOL_RUNS, PROTOCOL_CONFIG (default
#                                 jobs/protocol.toml, or CORD_PROTOCOL_CONFIG), PROTOCOL_ARCHIVE
#                                 (CORD_PROTOCOL_ARCHIVE, default RESULTS/NAME_cells: the cells'
#                                 records, committed with the summary) and checks the base
# protocol_plan                   the cells, one per line (bench/protocol.py plan; its knobs)
# protocol_base_eval_args         CORD_ARGS = the base's eval with the protocol's [eval]
# protocol_train_args CELL SETS   CORD_ARGS = the cell's distill stage (--resume auto)
# protocol_eval_args CELL         CORD_ARGS = the cell's eval, with the text branch's KL from the base
# protocol_trained CELL           true when the cell's distill stage finished (model.h5 is
#                                 written once, at the end)
# protocol_done CELL              true when the cell's record is in the archive
# protocol_archive [CELL]         records the base's eval (or checks it against the archived
#                                 one) and the cell (default: every finished cell)
# protocol_record_wall CELL T0 T1 appends one training segment to RUNS/CELL/wall.tsv
# protocol_summarize COMMAND      RESULTS/NAME.{json,md,png} from the archive (RESULTS =
#                                 CORD_RESULTS_DIR or bench/results, NAME = CORD_PROTOCOL_NAME or protocol)

protocol_python() {
  "${CORD_PYTHON:-${CORD_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/cord/venv}/bin/python}" "$@"
}

protocol_setup() {
  PROTOCOL_BASE=$1
  PROTOCOL_RUNS=$2
  PROTOCOL_CONFIG=${CORD_PROTOCOL_CONFIG:-jobs/protocol.toml}
  PROTOCOL_ARCHIVE=${CORD_PROTOCOL_ARCHIVE:-${CORD_RESULTS_DIR:-bench/results}/${CORD_PROTOCOL_NAME:-protocol}_cells}
  local f
  for f in "$PROTOCOL_BASE/corpus.h5" "$PROTOCOL_BASE/align/model.h5" "$PROTOCOL_CONFIG"; do
    [ -f "$f" ] || { echo "protocol: $f is missing (bench/run_base.sh builds the base)" >&2; return 2; }
  done
  mkdir -p "$PROTOCOL_RUNS"
}

protocol_plan() { protocol_python bench/protocol.py plan; }

protocol_common_sets() {
  CORD_ARGS+=(--config "$PROTOCOL_CONFIG" --set "train.corpus=$PROTOCOL_BASE/corpus.h5")
}

protocol_base_eval_args() {
  CORD_ARGS=(eval)
  protocol_common_sets
  CORD_ARGS+=(--ckpt "$PROTOCOL_BASE/align/model.h5" --out "$PROTOCOL_RUNS/base/eval")
}

protocol_train_args() {
  local cell=$1 extra
  CORD_ARGS=(train)
  protocol_common_sets
  CORD_ARGS+=(--set train.stage=distill --set "train.init=$PROTOCOL_BASE/align/model.h5"
              --set "train.run_dir=$PROTOCOL_RUNS/$cell" --resume auto)
  for extra in $2; do
    CORD_ARGS+=(--set "${extra//@RUNS@/$PROTOCOL_RUNS}")  # @RUNS@: a warm start's cell (bench/protocol.py)
  done
}

protocol_eval_args() {
  CORD_ARGS=(eval)
  protocol_common_sets
  CORD_ARGS+=(--ckpt "$PROTOCOL_RUNS/$1/distill/model.h5" --out "$PROTOCOL_RUNS/$1/eval"
              --reference "$PROTOCOL_BASE/align/model.h5")
}

protocol_trained() { [ -s "$PROTOCOL_RUNS/$1/distill/model.h5" ]; }

protocol_done() { [ -s "$PROTOCOL_ARCHIVE/$1.json" ]; }

protocol_archive() {
  protocol_python bench/protocol.py archive --base-run "$PROTOCOL_BASE" --runs "$PROTOCOL_RUNS" \
    --archive "$PROTOCOL_ARCHIVE" ${1:+--cell "$1"}
}

protocol_record_wall() {
  mkdir -p "$PROTOCOL_RUNS/$1"
  echo "$2 $3" >> "$PROTOCOL_RUNS/$1/wall.tsv"
}

protocol_summarize() {
  local results=${CORD_RESULTS_DIR:-bench/results}
  mkdir -p "$results"
  protocol_python bench/protocol.py summarize --archive "$PROTOCOL_ARCHIVE" \
    --out "$results/${CORD_PROTOCOL_NAME:-protocol}" --command "$1"
}
