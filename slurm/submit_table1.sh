#!/usr/bin/env bash
# Submits our Table 1 to Slurm: a job array with one distill method per task (all from the
# same base checkpoint, same config, budget and seed), then a job that depends on the
# whole array (afterok) and assembles bench/results/NAME.{json,md,png}.
#
#   slurm/submit_table1.sh [CONFIG] [BASE_RUN] [RUN_DIR]
#     CONFIG    distill job (default jobs/table1_small.toml)
#     BASE_RUN  base pipeline run with corpus.h5 and align/model.h5 (default runs/base_small)
#     RUN_DIR   where each method's run goes (default runs/NAME)
# Environment: CORD_METHODS (default: cord cord-unweighted opd grpo sft fkl),
#   CORD_SBATCH_ARGS (extra sbatch options for both jobs, e.g. "--partition=cpu --time=2:00:00"),
#   CORD_RESULTS_DIR (default bench/results), and those of slurm/common.sh.
# Prints the two job ids.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/table1_lib.sh
config=${1:-jobs/table1_small.toml}
table1_setup "$config" "${2:-runs/base_small}" "${3:-}"
methods=${CORD_METHODS:-cord cord-unweighted opd grpo sft fkl}
count=$(wc -w <<< "$methods")
: > "$TABLE1_RUN/timings.tsv"
rm -f "$TABLE1_RUN"/*.start
export CORD_HOME=$PWD CORD_METHODS=$methods CORD_TABLE1_CONFIG=$TABLE1_CONFIG CORD_TABLE1_BASE=$TABLE1_BASE \
  CORD_TABLE1_RUN=$TABLE1_RUN
read -r -a extra <<< "${CORD_SBATCH_ARGS:-}"
array=$(sbatch --parsable "${extra[@]}" --array="0-$((count - 1))" slurm/table1_array.sbatch)
array=${array%%;*}
export CORD_TABLE1_ARRAY=$array  # recorded in the table's command line
assemble=$(sbatch --parsable "${extra[@]}" --dependency="afterok:$array" slurm/table1_assemble.sbatch)
assemble=${assemble%%;*}
echo "table1: array job $array ($count methods: $methods), assembly job $assemble after it"
echo "$array $assemble"
