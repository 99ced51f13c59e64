#!/usr/bin/env bash
# Our Table 1: from one base model, every distill method (cord.method) with the same
# config, budget and seed, each evaluated on the test split, summarised with the base in
# bench/results/NAME.{json,md,png} (NAME = the config's file name): audio and text accuracy
# per family, gap to the base's text accuracy, gap reduction, text-accuracy change, wall
# times, and audio accuracy over steps for every method.
# Usage: bench/run_table1.sh [CONFIG] [BASE_RUN] [RUN_DIR]
#   CONFIG    distill job (default jobs/table1_small.toml; its [model] must be the base's)
#   BASE_RUN  a base pipeline run with corpus.h5 and align/model.h5 (default runs/base_small,
#             from bench/run_base.sh); the base is evaluated again with CONFIG's [eval] so
#             that every row of the table scores the same items
#   RUN_DIR   where each method's run goes, RUN_DIR/METHOD (default runs/NAME)
# Environment: CORD_METHODS (default: cord cord-unweighted opd grpo sft fkl),
#              CORD_RANKS (default 2), CORD_BUILD_DIR (default build),
#              CORD_RESUME (default none: every method trains from step 0; auto continues
#              an interrupted experiment from each method's newest committed checkpoint).
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-jobs/table1_small.toml}
base=${2:-runs/base_small}
name=$(basename "$config" .toml)
run=${3:-runs/$name}
methods=${CORD_METHODS:-cord cord-unweighted opd grpo sft fkl}
ranks=${CORD_RANKS:-2}
build=${CORD_BUILD_DIR:-build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
for f in "$base/corpus.h5" "$base/align/model.h5"; do
  [ -f "$f" ] || { echo "run_table1: $f is missing (run bench/run_base.sh first)" >&2; exit 2; }
done
mkdir -p "$run" bench/results
: > "$run/timings.tsv"
data=(--set "train.corpus=$base/corpus.h5")
start=$(date +%s.%N)
echo "[table1] base" >&2
mpiexec -n "$ranks" "$build/cord" eval --config "$config" "${data[@]}" --ckpt "$base/align/model.h5" \
  --out "$run/base/eval" 2>&1 | tee "$run/base.log"
for method in $methods; do
  echo "[table1] $method" >&2
  t0=$(date +%s.%N)
  mpiexec -n "$ranks" "$build/cord" train --config "$config" "${data[@]}" --set train.stage=distill \
    --set "cord.method=$method" --set "train.init=$base/align/model.h5" --set "train.run_dir=$run/$method" \
    --resume "${CORD_RESUME:-none}" \
    2>&1 | tee "$run/$method.log"
  mpiexec -n "$ranks" "$build/cord" eval --config "$config" "${data[@]}" --ckpt "$run/$method/distill/model.h5" \
    --out "$run/$method/eval" 2>&1 | tee -a "$run/$method.log"
  t1=$(date +%s.%N)
  awk -v m="$method" -v s="$t0" -v e="$t1" 'BEGIN { printf "%s\t%.1f\n", m, e - s }' >> "$run/timings.tsv"
done
end=$(date +%s.%N)
"${CORD_PYTHON:-${CORD_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/cord/venv}/bin/python}" bench/summarize_table1.py \
  --base "$base" --runs "$run" --methods $methods --config "$config" --start "$start" --end "$end" \
  --command "bench/run_table1.sh $config $base $run" --out "bench/results/$name"
