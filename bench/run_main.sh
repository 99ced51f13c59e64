#!/usr/bin/env bash
# The README's main job, measured over seeds: for each seed S, jobs/pipeline.sh on the
# configuration embedded in cord (no job file; what `./setup.sh run` runs after the build)
# with train.seed = S (data order, task draws, rollouts) and model.init_seed = 1233 + S
# (the initial weights), so seed 1 is the embedded default, from a fresh corpus, every
# stage from step 0, into RUN_DIR/seed-S. Results in bench/results/main_job.{json,md}: per seed the base's and
# CORD's accuracy, the gap reduction, the text change and the wall time; mean and spread
# over seeds; seed 1's tables per family (bench/summarize_base.py --mode main).
#
# A seed whose last step's result, RUN_DIR/seed-S/cord_eval/eval.json, exists is finished and
# kept, so the seeds can be split across sittings; an unfinished one starts again from
# scratch. Delete RUN_DIR/seed-S to re-run it. A seed's wall time is the sum of its steps' times
# (timings.tsv).
#
# Usage: bench/run_main.sh [RUN_DIR]            (default runs/main_seeds)
# Environment: CORD_MAIN_SEEDS (default "1 2 3"),
#   CORD_MAIN_CURRENT_TEACHER=1: after seed 1, the same CORD step from its base with
#   cord.teacher = current (outside the job's wall time), shown next to the frozen teacher,
#   CORD_MAIN_FROM=distill: finished seeds run CORD and its eval again on their own base
#   (jobs/pipeline.sh's CORD_FROM), after a change that moves only the distill stage; their
#   wall time then adds the new steps' times to the base's from the first run.
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-runs/main_seeds}
seeds=${CORD_MAIN_SEEDS:-1 2 3}
build=${CORD_BUILD_DIR:-build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
mkdir -p "$run" bench/results

seed_runs=()
for seed in $seeds; do
  dir="$run/seed-$seed"
  seed_runs+=("$dir")
  finished=$dir/cord_eval/eval.json
  if [ -f "$finished" ] && [ -n "${CORD_MAIN_FROM:-}" ]; then
    echo "[run_main] seed $seed: from $CORD_MAIN_FROM on its base ($dir)" >&2
    CORD_FROM=$CORD_MAIN_FROM CORD_RESUME=none CORD_SETS="--set train.seed=$seed --set model.init_seed=$((1233 + seed))" \
      jobs/pipeline.sh "" "$dir" 2>&1 | tee "$dir/pipeline_from_$CORD_MAIN_FROM.log"
    continue
  fi
  if [ -f "$finished" ]; then
    echo "[run_main] seed $seed: finished earlier, kept ($dir)" >&2
    continue
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  CORD_RESUME=none CORD_SETS="--set train.seed=$seed --set model.init_seed=$((1233 + seed))" jobs/pipeline.sh "" "$dir" 2>&1 | tee "$dir/pipeline.log"
done

first="$run/seed-${seeds%% *}"
if [ "${CORD_MAIN_CURRENT_TEACHER:-0}" = 1 ] && [ ! -f "$first/current_teacher/eval/eval.json" ]; then
  variant=(--set "train.corpus=$first/corpus.h5" --set "train.run_dir=$first/current_teacher"
           --set "train.seed=${seeds%% *}" --set "model.init_seed=$((1233 + ${seeds%% *}))")
  mpiexec -n 2 "$build/cord" train "${variant[@]}" --set train.stage=distill --set "train.init=$first/align/model.h5" \
    --set cord.teacher=current --resume none 2>&1 | tee "$first/current_teacher.log"
  mpiexec -n 2 "$build/cord" eval "${variant[@]}" --ckpt "$first/current_teacher/distill/model.h5" \
    --baseline "$first/eval" --out "$first/current_teacher/eval" 2>&1 | tee -a "$first/current_teacher.log"
fi
python3 bench/summarize_base.py --mode main --runs "${seed_runs[@]}" --config "(embedded defaults)" \
  --command "bench/run_main.sh $run (CORD_MAIN_SEEDS=\"$seeds\")" --out bench/results/main_job
