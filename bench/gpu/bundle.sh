#!/usr/bin/env bash
# Packs what bench/gpu/run.sh needs to run on a GPU machine that cannot build cord (no
# Debian packages, no network: the lent device machines): the binaries of BUILD_DIR, the
# shared libraries they load that are not glibc, libstdc++, CUDA, NCCL or libtorch (the
# GPU machine's torch wheel provides those), the job files and a tiny corpus for the GPU
# pipeline run (the machine has no espeak-ng). Open MPI's libraries go to DEST/mpi-lib:
# run.sh uses them only where the machine has no libmpi.so.40 of its own.
# Usage: bench/gpu/bundle.sh [BUILD_DIR] [DEST]   (default: build .gpu-bundle)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
dest=${2:-.gpu-bundle}
rm -rf "$dest"
mkdir -p "$dest/bin" "$dest/lib" "$dest/mpi-lib"
binaries=("$build/cord" "$build/cord-tts-worker" "$build/tests/cord_gpu_tests" "$build/bench/cord_gpu_bench")
for b in "${binaries[@]}"; do
  [ -x "$b" ] || { echo "bundle: $b missing (build it first: cmake --build $build --target $(basename "$b"))" >&2; exit 1; }
  cp "$b" "$dest/bin/"
done
# Libraries by resolved path; skip the platform's own and the GPU stack.
ldd "${binaries[@]}" | awk '/=> \// { print $3 }' | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libpthread.so*|librt.so*|libdl.so*|libutil.so*|libresolv.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) continue ;;
    libcuda*|libcudart*|libnccl*|libcublas*|libcudnn*|libnv*|libcufft*|libcurand*|libcusparse*|libcusolver*) continue ;;
    libtorch*|libc10*|libshm*|libgomp-*) continue ;;
    libmpi*|libopen-rte*|libopen-pal*|libhwloc*|libevent*) cp -L "$lib" "$dest/mpi-lib/" ;;
    *) cp -L "$lib" "$dest/lib/" ;;
  esac
done
cp -r jobs "$dest/jobs"
# A tiny corpus made here (espeak-ng runs here, not there).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
"$build/cord" corpus synth --config jobs/pipeline_tiny.toml --out "$dest/corpus_tiny.h5" 2>/dev/null
du -sh "$dest"
