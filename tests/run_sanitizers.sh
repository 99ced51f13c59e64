#!/usr/bin/env bash
# cord's tests under a sanitizer build (docs/reliability.md#sanitizers).
#
#   tests/run_sanitizers.sh address   ASan + UBSan (a UBSan report aborts): builds the whole
#                                     project in build-asan/ and runs the default ctest suite
#                                     there (ctest -LE soak), as ./setup.sh test does
#   tests/run_sanitizers.sh thread    TSan: builds the test programs of the threaded parts in
#                                     build-tsan/ and runs them as ctest does: the hang watchdog
#                                     and the collectives (cord_collectives_tests, 2 and 4 ranks),
#                                     the checkpoint writer's threads (cord_ckpt_tests, 1, 2 and 4
#                                     ranks: background
#                                     writeback, checksum thread, retention deletes, asynchronous
#                                     saves); any ThreadSanitizer report fails the run
# Needs ./setup.sh build first (the Debian packages and the Python environment with libtorch).
# Environment: CORD_VENV (as setup.sh), CORD_JOBS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-}
VENV=${CORD_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/cord/venv}
JOBS=${CORD_JOBS:-2}
case "$kind" in  # the address build has the benchmarks too: the Slurm scaling test runs one
  address) build=build-asan sanitize=address,undefined bench=ON ;;
  thread) build=build-tsan sanitize=thread bench=OFF ;;
  *) echo "usage: tests/run_sanitizers.sh address|thread" >&2; exit 2 ;;
esac
[ -x "$VENV/bin/python" ] || { echo "tests/run_sanitizers.sh: no Python environment at $VENV (run ./setup.sh build)" >&2; exit 2; }
torch_prefix=$("$VENV/bin/python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
mkdir -p "$build"
cmake -S . -B "$build" -DCMAKE_PREFIX_PATH="$torch_prefix" -DCORD_SANITIZE="$sanitize" \
      -DCORD_BUILD_BENCH=$bench -DCORD_WITH_CUDA=OFF > "$build/configure.log"
export PATH="$VENV/bin:$PATH"
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi

if [ "$kind" = address ]; then
  cmake --build "$build" -j"$JOBS"
  # Open MPI never frees what MPI_Init allocates: no leak checking (the fuzz targets check
  # leaks per input instead).
  export ASAN_OPTIONS=detect_leaks=0
  cd "$build" && exec ctest --output-on-failure --timeout 1200 -LE soak
fi

cmake --build "$build" -j"$JOBS" --target cord_collectives_tests cord_ckpt_tests
export TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp second_deadlock_stack=1 exitcode=66"
failed=0
for run in cord_collectives_tests:2 cord_collectives_tests:4 cord_ckpt_tests:1 cord_ckpt_tests:2 cord_ckpt_tests:4; do
  program=${run%:*} ranks=${run#*:}
  log=$build/tsan-$program-np$ranks.log
  start=$SECONDS
  rc=0
  mpiexec -n "$ranks" "$build/tests/$program" > "$log" 2>&1 || rc=$?
  reports=$(grep -c "WARNING: ThreadSanitizer" "$log" || true)
  summary=$(grep -aoE "[0-9]+ FAILED TESTS?" "$log" | head -1 || true)
  [ -n "$summary" ] || summary=$(grep -aoE "\[  PASSED  \].*" "$log" | head -1 | sed 's/\x1b\[[0-9;]*m//g' || true)
  echo "$program, $ranks rank(s): exit $rc, $reports TSan report(s), ${summary:-no gtest summary}, $((SECONDS - start)) s ($log)"
  [ "$rc" = 0 ] && [ "$reports" = 0 ] || failed=1
done
exit $failed
