#!/usr/bin/env bash
# Checkpoint I/O on this machine: cord_ckpt_bench (save and load of the small and the large
# config, 1 and 2 ranks; tp = ranks, so 2 ranks write one file in parallel), `dd` writing
# the same number of bytes with fsync to the same folder in the same run, and the time from
# process start to the first resumed step of a tiny text stage. Writes
# bench/results/ckpt_io.{json,md} with machine, commit and command.
# Usage: bench/run_ckpt.sh [BUILD_DIR]   (default: build; run ./setup.sh first)
#   CORD_CKPT_BENCH_DIR: the folder written (default runs/ckpt_bench, the run directories' disk)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
dir=${CORD_CKPT_BENCH_DIR:-runs/ckpt_bench}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
rm -rf "$dir"
mkdir -p "$dir/resume" bench/results
for ranks in 1 2; do
  CORD_CKPT_BENCH_DIR="$dir/np$ranks" mpiexec -n "$ranks" "$build/bench/cord_ckpt_bench" \
    --benchmark_out="$dir/bench_np$ranks.json" --benchmark_out_format=json
done
# Resume: a 4-step text stage checkpoints at steps 2 and 4; the 6-step rerun resumes at 4.
tiny=(--config jobs/pipeline_tiny.toml --set "train.corpus=$dir/resume/corpus.h5" --set "train.run_dir=$dir/resume"
      --set train.stage=text --set train.val_items=0 --set train.log_every=1 --set ckpt.every_steps=2)
"$build/cord" corpus synth --config jobs/pipeline_tiny.toml --out "$dir/resume/corpus.h5"
mpiexec -n 2 "$build/cord" train "${tiny[@]}" --set train.text.steps=4
mpiexec -n 2 "$build/cord" train "${tiny[@]}" --set train.text.steps=6 --resume auto
python3 bench/summarize_ckpt.py --dir "$dir" --command "bench/run_ckpt.sh $build" --out bench/results/ckpt_io
rm -rf "$dir/np1" "$dir/np2" "$dir/dd.bin"
