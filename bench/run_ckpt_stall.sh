#!/usr/bin/env bash
# The training stall per checkpoint, synchronous vs asynchronous (ckpt.async), end to end:
# `cord train` (text stage) on the checkpoint benchmark's large config (d_model 512, 8
# layers: a 315 MB checkpoint) for 42 steps with a save every 4 steps (10 saves), and the
# same run without saves, in two settings: "busy" = 2 ranks (dp 2) whose training uses both
# cores, as cord runs on a CPU node; "spare" = 1 rank with 1 torch thread, leaving a core
# to the writer thread, as on a GPU node, whose CPU cores do not train. Stall per save = (stage time with saves - without)
# / saves, every mode run REPEATS times interleaved (median, and the spread). Also records each
# save's self-reported wait (stall_seconds), its whole time and the host memory it holds.
# Writes bench/results/ckpt_async.{json,md}.
# Usage: bench/run_ckpt_stall.sh [BUILD_DIR]   (default: build; REPEATS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
repeats=${REPEATS:-3}
dir=runs/ckpt_stall
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
rm -rf "$dir"
mkdir -p "$dir" bench/results
"$build/cord" corpus synth --config jobs/pipeline_tiny.toml --out "$dir/corpus.h5"
large=(--config jobs/pipeline_tiny.toml --set "train.corpus=$dir/corpus.h5" --set train.stage=text
       --set train.val_items=0 --set train.log_every=6 --set train.text.steps=42 --set train.text.global_batch=8
       --set model.d_model=512 --set model.n_layers=8 --set model.n_heads=8 --set model.audio.d_model=256
       --set model.vocab_size=232 --set ckpt.at_end=false --set ckpt.keep_last=1)
for repeat in $(seq 1 "$repeats"); do
  for setting in busy spare; do
    case $setting in
      busy) launch=(mpiexec -n 2 "$build/cord" train) threads=0 ;;
      spare) launch=("$build/cord" train) threads=1 ;;
    esac
    for mode in none sync async; do
      case $mode in
        none) sets=(--set ckpt.every_steps=0) ;;
        sync) sets=(--set ckpt.every_steps=4) ;;
        async) sets=(--set ckpt.every_steps=4 --set ckpt.async=true) ;;
      esac
      echo "[stall] repeat $repeat: $setting $mode"
      run="$dir/$setting-$mode-$repeat"
      "${launch[@]}" "${large[@]}" "${sets[@]}" --set "runtime.threads=$threads" --set "train.run_dir=$run" 2>"$run.log"
    done
  done
done
python3 bench/summarize_ckpt_stall.py --dir "$dir" --repeats "$repeats" --command "bench/run_ckpt_stall.sh $build" \
  --out bench/results/ckpt_async
