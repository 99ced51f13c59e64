#!/usr/bin/env bash
# What training-time augmentation ([train.augment], docs/training.md#augmentation) does for a
# voice the model never trained on. From a finished main-job run BASE (bench/run_main.sh:
# corpus.h5, text/model.h5, align/model.h5, eval/), the align stage is trained again from
# the same text stage with augmentation on, into OUT; both align models are then scored on
# the test split as espeak-ng speaks it and on the same questions spoken by festival
# (bench/run_heldout_voice.sh, 70 a family). Results: bench/results/heldout_voice_main_base,
# heldout_voice_NAME_augmented and augment_NAME.{json,md} (bench/summarize_augment.py).
# Usage: bench/run_augment.sh [BASE] [OUT]    (defaults runs/main_seeds/seed-1, runs/augment)
# Environment: CORD_AUGMENT_SETS (default: speed 0.1, white noise on half the items at
#   10-30 dB, 2 time masks of <= 20 frames, 2 frequency masks of <= 10 bins),
#   CORD_AUGMENT_NAME (default main: the results' name), CORD_RANKS (2), CORD_BUILD_DIR (build).
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-runs/main_seeds/seed-1}
out=${2:-runs/augment}
name=${CORD_AUGMENT_NAME:-main}
build=${CORD_BUILD_DIR:-build}
ranks=${CORD_RANKS:-2}
sets=${CORD_AUGMENT_SETS:-"train.augment.speed=0.1 train.augment.noise_fraction=0.5 train.augment.time_masks=2 train.augment.freq_masks=2"}
for f in "$base/corpus.h5" "$base/text/model.h5" "$base/align/model.h5" "$base/eval/predictions.jsonl"; do
  [ -f "$f" ] || { echo "run_augment: $f is missing (run bench/run_main.sh first)" >&2; exit 2; }
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
augment=()
for s in $sets; do augment+=(--set "$s"); done
# The base's seed (bench/run_main.sh: seed S sets train.seed = S); the align stage is the
# only one that differs from the base's.
seed=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["train"]["seed"])' "$base/align/config.toml")
common=(--set "train.corpus=$base/corpus.h5" --set "train.run_dir=$out" --set "train.seed=$seed")
mkdir -p "$out"
start=$(date +%s.%N)
mpiexec -n "$ranks" "$build/cord" train "${common[@]}" --set train.stage=align --set "train.init=$base/text/model.h5" \
  "${augment[@]}" --resume auto < /dev/null 2>&1 | tee "$out/align.log"
end=$(date +%s.%N)
mpiexec -n "$ranks" "$build/cord" eval "${common[@]}" --ckpt "$out/align/model.h5" --out "$out/eval" < /dev/null
export CORD_HELDOUT_CONFIG="" CORD_HELDOUT_DIR=${CORD_HELDOUT_DIR:-runs/heldout_voice_main}
CORD_HELDOUT_NAME=main_base bench/run_heldout_voice.sh "$base/align/model.h5" "$base/corpus.h5" "$base/eval"
CORD_HELDOUT_NAME="${name}_augmented" bench/run_heldout_voice.sh "$out/align/model.h5" "$base/corpus.h5" "$out/eval"
python3 bench/summarize_augment.py --base bench/results/heldout_voice_main_base.json \
  --augmented "bench/results/heldout_voice_${name}_augmented.json" --base-eval "$base/eval/eval.json" \
  --augmented-eval "$out/eval/eval.json" --sets "$sets" --align-seconds "$(awk -v s="$start" -v e="$end" 'BEGIN { print e - s }')" \
  --command "CORD_AUGMENT_NAME=$name CORD_AUGMENT_SETS=\"$sets\" bench/run_augment.sh $base $out" \
  --out "bench/results/augment_${name}"
