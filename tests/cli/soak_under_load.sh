#!/usr/bin/env bash
# The checkpoint soak (ctest -L soak) while a 2-rank training job loads the same cores, as
# docs/reliability.md reports it. Run from the repository root after ./setup.sh test (it
# needs build/ and the tiny pipeline's corpus in build/tests/test-runs/pipeline).
#   tests/cli/soak_under_load.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
       OMPI_MCA_mpi_yield_when_idle=1
load_dir=$(mktemp -d)
setsid mpiexec -n 2 build/cord train --config jobs/pipeline_tiny.toml \
  --set train.corpus=build/tests/test-runs/pipeline/corpus.h5 --set train.run_dir="$load_dir" \
  --set train.stage=text --set train.text.steps=1000000 --set train.val_items=0 --set train.log_every=1000 \
  > "$load_dir/load.log" 2>&1 &
load=$!
trap 'kill -- -$load 2>/dev/null || true; sleep 1; rm -rf "$load_dir"' EXIT
sleep 3
rc=0
(cd build && ctest -L soak --output-on-failure) || rc=$?
echo "load job while the soak ran (ms per step, every 1000 steps):"
grep -o '[0-9]* ms/step' "$load_dir/load.log" || true
exit "$rc"
