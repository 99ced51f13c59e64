#!/usr/bin/env bash
# A voice no model here trained on: the first 70 test questions of each family spoken by
# festival (bench/heldout_voice.py prepare), imported with `cord corpus import`, evaluated
# with the model; then its audio accuracy and WER there against the same questions from
# espeak-ng (the corpus's own audio, from an eval of the whole corpus). Writes
# bench/results/heldout_voice_NAME.{json,md} (NAME: CORD_HELDOUT_NAME, default base_small).
# Usage: bench/run_heldout_voice.sh [MODEL] [CORPUS] [ESPEAK_EVAL]
#   defaults: runs/base_small/align/model.h5, runs/base_small/corpus.h5, and runs/protocol/base/eval
#   (the transfer protocol's eval of that base, with predictions.jsonl)
# Environment: CORD_HELDOUT_DIR (default runs/heldout_voice), CORD_RANKS (2), CORD_BUILD_DIR (build),
#   CORD_HELDOUT_CONFIG: the job file of the import and the eval, the model's architecture and
#   features (default jobs/protocol.toml, base_small's; empty = the embedded configuration, the
#   main job's model), CORD_SETS: --set words for both, e.g. the real-parts base's
#   "--set model.source=hf:DIR" (its tokenizer and Whisper features; see jobs/base_real_parts.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-runs/base_small/align/model.h5}
corpus=${2:-runs/base_small/corpus.h5}
espeak_eval=${3:-runs/protocol/base/eval}
dir=${CORD_HELDOUT_DIR:-runs/heldout_voice}
build=${CORD_BUILD_DIR:-build}
python=${CORD_PYTHON:-${CORD_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/cord/venv}/bin/python}
for f in "$model" "$corpus" "$espeak_eval/predictions.jsonl"; do
  [ -f "$f" ] || { echo "run_heldout_voice: $f is missing" >&2; exit 2; }
done
command -v text2wave > /dev/null || { echo "run_heldout_voice: festival's text2wave is not installed (./setup.sh installs it)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
# festival takes ~4 s a question on these 2 cores: a finished manifest is reused (delete
# DIR to speak the questions again; text2wave is deterministic).
if [ ! -s "$dir/manifest.tsv" ]; then
  "$python" bench/heldout_voice.py prepare --corpus "$corpus" --out "$dir.partial"
  rm -rf "$dir"
  mv "$dir.partial" "$dir"
fi
config=${CORD_HELDOUT_CONFIG-jobs/protocol.toml}
config_args=()
if [ -n "$config" ]; then config_args=(--config "$config"); fi
# shellcheck disable=SC2206  # CORD_SETS is a list of words by design
config_args+=(${CORD_SETS:-})
rm -f "$dir/heldout.h5"
"$build/cord" corpus import "${config_args[@]}" --manifest "$dir/manifest.tsv" --out "$dir/heldout.h5"
mpiexec -n "${CORD_RANKS:-2}" "$build/cord" eval "${config_args[@]}" --set "train.corpus=$dir/heldout.h5" \
  --ckpt "$model" --out "$dir/eval" < /dev/null
"$python" bench/heldout_voice.py summarize --dir "$dir" --espeak-eval "$espeak_eval" --festival-eval "$dir/eval" \
  --out "bench/results/heldout_voice_${CORD_HELDOUT_NAME:-base_small}" \
  --command "${CORD_SETS:+CORD_SETS=\"$CORD_SETS\" }${CORD_HELDOUT_CONFIG+CORD_HELDOUT_CONFIG=$config }${CORD_HELDOUT_DIR:+CORD_HELDOUT_DIR=$dir }${CORD_HELDOUT_NAME:+CORD_HELDOUT_NAME=$CORD_HELDOUT_NAME }bench/run_heldout_voice.sh $model $corpus $espeak_eval"
