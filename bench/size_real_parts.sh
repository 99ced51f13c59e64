#!/usr/bin/env bash
# Sizes jobs/base_real_parts.toml on this machine before committing to its budgets: the
# corpus synthesis once (kept for the real run), then 6 steps of the text stage and of the
# align stage with the projector alone and with the encoder learning too, each under
# /usr/bin/time -v (wall time, peak memory of a process). Prints the step lines.
# Usage: bench/size_real_parts.sh [RUN_DIR]   (default runs/base_real_parts; needs
#   ./setup.sh qwen2audio; CORD_MODELS, CORD_RANKS (default 2), CORD_BUILD_DIR (default build))
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-runs/base_real_parts}
model=${CORD_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/cord/models}/qwen2-audio-whisper-tiny-smollm2
[ -f "$model/config.json" ] || { echo "size_real_parts: $model/config.json is missing: run ./setup.sh qwen2audio" >&2; exit 2; }
ranks=${CORD_RANKS:-2}
build=${CORD_BUILD_DIR:-build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
common=(--config jobs/base_real_parts.toml --set "model.source=hf:$model" --set "train.corpus=$run/corpus.h5")
timed() { /usr/bin/time -v mpiexec -n "$ranks" "$build/cord" "$@" 2>&1 |
            grep -E "wrote|parameters trained|\| (text|align) \||Maximum resident|Elapsed|rror"; }
mkdir -p "$run"
[ -f "$run/corpus.h5" ] || timed corpus synth "${common[@]}" --out "$run/corpus.h5"
trial=$run/sizing
rm -rf "$trial"
trial_sets=(--set train.log_every=1 --set train.val_items=0)
timed train "${common[@]}" "${trial_sets[@]}" --set train.stage=text --set train.text.steps=6 --set "train.run_dir=$trial"
for parts in projector encoder,projector; do
  timed train "${common[@]}" "${trial_sets[@]}" --set train.stage=align --set train.align.steps=6 \
    --set "train.run_dir=$trial-$parts" --set "train.init=$trial/text/model.h5" --set "train.align_trainable=$parts"
done
rm -rf "$trial" "$trial"-*
