#!/usr/bin/env bash
# Submits the strong-scaling study to Slurm as three chained jobs (slurm/scaling.sbatch):
# prepare (corpus), then a job array with one rank layout per task (afterok), then the
# assembly (all-reduce constants, summary; afterok on the whole array).
#
#   slurm/submit_scaling.sh
# Environment: CORD_SBATCH_ARGS (extra sbatch options for the three jobs, e.g.
#   "--partition=cpu"), and those of slurm/scaling.sbatch and slurm/common.sh.
# Prints the three job ids.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/scaling_lib.sh
export CORD_HOME=$PWD
read -r -a extra <<< "${CORD_SBATCH_ARGS:-}"
prepare=$(sbatch --parsable --output=cord-scaling-prepare-%j.out --ntasks=1 "${extra[@]}" slurm/scaling.sbatch prepare)
prepare=${prepare%%;*}
array=$(sbatch --parsable "${extra[@]}" --array="0-$((${#SCALING_LAYOUTS[@]} - 1))" \
  --dependency="afterok:$prepare" slurm/scaling.sbatch layout)
array=${array%%;*}
export CORD_SCALING_JOBS="prepare $prepare, array $array"  # recorded in the results' command line
assemble=$(sbatch --parsable --output=cord-scaling-assemble-%j.out "${extra[@]}" --dependency="afterok:$array" \
  slurm/scaling.sbatch assemble)
assemble=${assemble%%;*}
echo "scaling: prepare job $prepare, layout array $array (${#SCALING_LAYOUTS[@]} layouts), assembly job $assemble"
echo "$prepare $array $assemble"
