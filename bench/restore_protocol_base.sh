#!/usr/bin/env bash
# Rebuilds the transfer protocol's base run from what is committed, instead of training it
# again (bench/run_base.sh, ~45 minutes on 2 cores): the corpus is synthesised again from
# jobs/base_small.toml (deterministic, ~3 minutes) and the base weights are copied from
# bench/results/protocol_base.h5, checked against the SHA-256 that the archived cells
# started from. bench/run_protocol.sh then evaluates this base and refuses to go on unless
# its predictions are the archived ones (so the regenerated corpus is proven the same).
# Usage: bench/restore_protocol_base.sh [RUN_DIR]   (default runs/base_small)
# Environment: CORD_RANKS (default 2), CORD_BUILD_DIR (default build),
#   CORD_PROTOCOL_ARCHIVE (default bench/results/protocol_cells: its base.json has the SHA-256).
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-runs/base_small}
weights=bench/results/protocol_base.h5
record=${CORD_PROTOCOL_ARCHIVE:-bench/results/protocol_cells}/base.json
build=${CORD_BUILD_DIR:-build}
for f in "$weights" "$record" "$build/cord"; do
  [ -f "$f" ] || { echo "restore_protocol_base: $f is missing" >&2; exit 2; }
done
want=$(sed -n 's/.*"model_sha256": "\([0-9a-f]*\)".*/\1/p' "$record" | head -1)
have=$(sha256sum "$weights" | cut -d' ' -f1)
[ "$want" = "$have" ] || {
  echo "restore_protocol_base: $weights has sha256 $have, $record wants $want" >&2
  exit 2
}
mkdir -p "$run/align"
if [ -f "$run/corpus.h5" ]; then
  echo "[restore] corpus: keeping $run/corpus.h5 (the base's eval checks it)" >&2
else
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
  mpiexec -n "${CORD_RANKS:-2}" "$build/cord" corpus synth --config jobs/base_small.toml \
    --set "train.run_dir=$run" --set "train.corpus=$run/corpus.h5" --out "$run/corpus.h5.tmp" < /dev/null
  mv "$run/corpus.h5.tmp" "$run/corpus.h5"
fi
cp "$weights" "$run/align/model.h5.tmp"
mv "$run/align/model.h5.tmp" "$run/align/model.h5"
echo "[restore] $run: corpus.h5 and align/model.h5 (sha256 ${have:0:12}) ready for bench/run_protocol.sh" >&2
