# shellcheck shell=bash
# The steps of the strong-scaling study (sourced by bench/run_scaling.sh and
# slurm/scaling.sbatch; not a script itself), so that both run the same commands.
#
# SCALING_CONFIG, SCALING_LAYOUTS   the fixed problem and the layouts ("ranks tp" each)
# scaling_corpus_args DIR           CORD_ARGS = the corpus synthesis into DIR/corpus.h5
# scaling_train_args DIR ROUND RANKS TP
#                                   CORD_ARGS = one measured run; SCALING_RUN = its folder
#                                   (DIR/roundROUND/npRANKS_dpDP_tpTP, what the summary reads)
# scaling_summarize DIR START END COMMAND   ${CORD_SCALING_OUT:-bench/results/scaling}.*

SCALING_CONFIG=jobs/scaling_small.toml
# shellcheck disable=SC2034  # read by the scripts that source this file
SCALING_LAYOUTS=("1 1" "2 1" "2 2" "4 1" "4 4" "4 2")   # ranks tp (dp = ranks / tp)

scaling_corpus_args() {
  CORD_ARGS=(corpus synth --config "$SCALING_CONFIG" --out "$1/corpus.h5")
}

scaling_train_args() {
  local dir=$1 round=$2 ranks=$3 tp=$4
  SCALING_RUN="$dir/round$round/np${ranks}_dp$((ranks / tp))_tp$tp"
  mkdir -p "$dir/round$round"
  CORD_ARGS=(train --config "$SCALING_CONFIG" --set "train.corpus=$dir/corpus.h5" --set "train.run_dir=$SCALING_RUN"
             --set "parallel.tp=$tp" --resume none)
  [ -z "${CORD_SCALING_STEPS:-}" ] || CORD_ARGS+=(--set "train.text.steps=$CORD_SCALING_STEPS")
}

scaling_summarize() {
  local dir=$1 start=$2 end=$3 command=$4 out=${CORD_SCALING_OUT:-bench/results/scaling}
  mkdir -p "$(dirname "$out")"
  # shellcheck disable=SC2086  # CORD_SCALING_MODEL_ARGS is a list of options
  "${CORD_PYTHON:-${CORD_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/cord/venv}/bin/python}" bench/summarize_scaling.py \
    --dir "$dir" --config "$SCALING_CONFIG" --start "$start" --end "$end" --command "$command" --out "$out" \
    ${CORD_SCALING_MODEL_ARGS:-}
}
