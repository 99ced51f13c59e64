#!/usr/bin/env bash
# The README's main job, measured: jobs/pipeline.sh on the configuration embedded in cord
# (no job file; what `./setup.sh run` runs after the build), from a fresh corpus, every
# stage from step 0, into RUN_DIR (default runs/main). Then, for comparison, the same CORD
# step from the same base with the current weights as teacher (cord.teacher = current, the
# default it replaced) into RUN_DIR/current_teacher. Results in bench/results/main_job.{json,md}:
# the base's and CORD's accuracy per family, the gap reduction and text change of both
# teachers, wall time per step, machine, commit and command (bench/summarize_base.py --mode main).
# Usage: bench/run_main.sh [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-runs/main}
mkdir -p "$run" bench/results
rm -f "$run/corpus.h5"
export CORD_RESUME=none
start=$(date +%s.%N)
jobs/pipeline.sh "" "$run" 2>&1 | tee "$run/pipeline.log"
end=$(date +%s.%N)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
build=${CORD_BUILD_DIR:-build}
variant=(--set "train.corpus=$run/corpus.h5" --set "train.run_dir=$run/current_teacher")
mpiexec -n 2 "$build/cord" train "${variant[@]}" --set train.stage=distill --set "train.init=$run/align/model.h5" \
  --set cord.teacher=current --resume none 2>&1 | tee "$run/current_teacher.log"
mpiexec -n 2 "$build/cord" eval "${variant[@]}" --ckpt "$run/current_teacher/distill/model.h5" \
  --baseline "$run/eval" --out "$run/current_teacher/eval" 2>&1 | tee -a "$run/current_teacher.log"
python3 bench/summarize_base.py --mode main --run "$run" --config "(embedded defaults)" --start "$start" \
  --end "$end" --command "bench/run_main.sh $run" --out bench/results/main_job
