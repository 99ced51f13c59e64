#!/usr/bin/env bash
# The base-model experiment: builds the base LALM from scratch on this machine (corpus,
# text stage, align stage, eval on the test split) with jobs/pipeline.sh and records the
# result in bench/results/NAME.{json,md}: accuracy per family with text and audio input,
# the gap, transcript WER, wall time per step, machine, commit and command.
# Usage: bench/run_base.sh [CONFIG] [RUN_DIR]
#   (default: jobs/base_small.toml runs/base_small; NAME = the config's file name)
# The corpus is regenerated and both stages train from step 0 (a from-scratch build) unless
# CORD_REUSE_CORPUS=1; CORD_RESUME=auto continues an interrupted run from its checkpoints.
# CORD_SETS passes --set words to every command (jobs/pipeline.sh) and is recorded with the
# command line.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-jobs/base_small.toml}
run=${2:-runs/base_small}
name=$(basename "$config" .toml)
mkdir -p "$run" bench/results
[ "${CORD_REUSE_CORPUS:-0}" = 1 ] || rm -f "$run/corpus.h5"
export CORD_RESUME=${CORD_RESUME:-none}
start=$(date +%s.%N)
CORD_DISTILL=0 jobs/pipeline.sh "$config" "$run" 2>&1 | tee "$run/pipeline.log"
end=$(date +%s.%N)
python3 bench/summarize_base.py --run "$run" --config "$config" --start "$start" --end "$end" \
  --command "${CORD_SETS:+CORD_SETS=\"$CORD_SETS\" }bench/run_base.sh $config $run" --out "bench/results/$name"
