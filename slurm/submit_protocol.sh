#!/usr/bin/env bash
# Submits the transfer protocol to Slurm: the plan (bench/protocol.py plan, with its
# CORD_REGIMES, CORD_BUDGETS, CORD_METHODS, CORD_SEEDS... knobs) is frozen in RUNS/plan.tsv,
# a job array runs one cell per task, and a job after the whole array (afterany) writes the
# summary. Resubmitting with the same RUNS reruns only the cells that are not done.
#
#   slurm/submit_protocol.sh [BASE_RUN] [RUNS]
#     BASE_RUN  base run with corpus.h5 and align/model.h5 (default runs/base_small)
#     RUNS      the protocol's folder (default runs/protocol)
# Environment: CORD_PROTOCOL_CONFIG (default jobs/protocol.toml), CORD_SBATCH_ARGS (extra sbatch
#   options for both jobs, e.g. "--partition=cpu --time=1:00:00"), CORD_ARRAY_LIMIT (at most this
#   many tasks at once, sbatch's %N; default none), CORD_RESULTS_DIR, and those of slurm/common.sh.
# The array's tasks run in any order, so a warm-started variant (CORD_VARIANTS=sft-then-cord)
# needs CORD_ARRAY_LIMIT=1 (the plan lists the warm start first) or bench/run_protocol.sh.
# Prints the two job ids.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/protocol_lib.sh
protocol_setup "${1:-runs/base_small}" "${2:-runs/protocol}"
protocol_plan > "$PROTOCOL_RUNS/plan.tsv.tmp"
mv "$PROTOCOL_RUNS/plan.tsv.tmp" "$PROTOCOL_RUNS/plan.tsv"
count=$(grep -c . "$PROTOCOL_RUNS/plan.tsv")
export CORD_HOME=$PWD CORD_PROTOCOL_BASE=$PROTOCOL_BASE CORD_PROTOCOL_RUNS=$PROTOCOL_RUNS CORD_PROTOCOL_CONFIG=$PROTOCOL_CONFIG
read -r -a extra <<< "${CORD_SBATCH_ARGS:-}"
array=$(sbatch --parsable "${extra[@]}" --array="0-$((count - 1))${CORD_ARRAY_LIMIT:+%$CORD_ARRAY_LIMIT}" \
  slurm/protocol_array.sbatch)
array=${array%%;*}
export CORD_PROTOCOL_ARRAY=$array  # recorded in the summary's command line
assemble=$(sbatch --parsable "${extra[@]}" --dependency="afterany:$array" slurm/protocol_assemble.sbatch)
assemble=${assemble%%;*}
echo "protocol: array job $array ($count cells, plan $PROTOCOL_RUNS/plan.tsv), assembly job $assemble after it"
echo "$array $assemble"
