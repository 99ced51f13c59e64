#!/usr/bin/env bash
# The fuzzing campaigns: builds tests/fuzz with clang (ASan + UBSan + libFuzzer) in
# build-fuzz/, runs every target until it has executed RUNS inputs or for MAX_SECONDS,
# whichever comes first, two targets at a time, and writes bench/results/fuzz.json and .md.
#
#   tests/fuzz/run.sh [TARGET...]      (default: every target)
# Environment: CORD_FUZZ_RUNS (default 1000000), CORD_FUZZ_MAX_SECONDS (default 1800),
# CORD_FUZZ_PARALLEL (default 2), CORD_FUZZ_OUT (default bench/results/fuzz),
# CORD_FUZZ_REPORT_ONLY=1 (only rewrite the results from the campaigns' logs in build-fuzz/;
# CORD_FUZZ_COMMIT then names the commit the campaigns were built from),
# CORD_FUZZ_FORK_TARGETS (default "corpus checkpoint weights": the HDF5 readers): targets run
# in libFuzzer's fork mode, which goes on past crashes, timeouts (5 s) and OOMs; each such
# input is replayed afterwards and counted as cord's when the innermost frame of its stack
# is cord code (or libtorch's, called by cord), as the HDF5 library's when it is inside
# libhdf5 (these readers hand HDF5 the damaged file).
# The checkpoint and weights targets need libtorch: the venv of ./setup.sh (CORD_VENV) is
# passed to CMake; without it they are not built and not in the default list.
# A target fails on any finding in cord: a crash, leak, timeout or sanitizer report. Its
# input is kept as build-fuzz/crash-TARGET-* and the script exits 1 after writing results.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${CORD_FUZZ_RUNS:-1000000}
MAX_SECONDS=${CORD_FUZZ_MAX_SECONDS:-1800}
PARALLEL=${CORD_FUZZ_PARALLEL:-2}
OUT=${CORD_FUZZ_OUT:-bench/results/fuzz}
FORK_TARGETS=" ${CORD_FUZZ_FORK_TARGETS-corpus checkpoint weights} "
VENV=${CORD_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/cord/venv}
TARGETS=("$@")

if [ "${CORD_FUZZ_REPORT_ONLY:-0}" != 1 ]; then
command -v clang++-14 > /dev/null || { echo "tests/fuzz/run.sh: clang++-14 is missing (./setup.sh installs it)" >&2; exit 2; }
torch_prefix=()
if [ -x "$VENV/bin/python" ]; then
  torch_prefix=(-DCMAKE_PREFIX_PATH="$("$VENV/bin/python" -c 'import torch; print(torch.utils.cmake_prefix_path)')")
fi
cmake -S tests/fuzz -B build-fuzz -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 "${torch_prefix[@]}" > /dev/null
cmake --build build-fuzz -j2 > /dev/null
fi
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(config overrides manifest safetensors tokenizer corpus)
  [ -x build-fuzz/fuzz_checkpoint ] && TARGETS+=(checkpoint weights)
fi

if [ "${CORD_FUZZ_REPORT_ONLY:-0}" != 1 ]; then

campaign() {  # TARGET: one campaign, its log in build-fuzz/campaign-TARGET.log
  local target=$1 corpus=build-fuzz/units-$1
  mkdir -p "$corpus"
  local start=$SECONDS rc=0 mode=()
  case "$FORK_TARGETS" in *" $target "*) mode=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 -timeout=5) ;; esac
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 LSAN_OPTIONS=suppressions=tests/fuzz/lsan.supp \
    "build-fuzz/fuzz_$target" -runs="$RUNS" \
    -max_total_time="$MAX_SECONDS" "${mode[@]}" -print_final_stats=1 -artifact_prefix="build-fuzz/crash-$target-" \
    "$corpus" "tests/fuzz/seeds/$target" > "build-fuzz/campaign-$target.log" 2>&1 || rc=$?
  echo "$target $rc $((SECONDS - start))" > "build-fuzz/campaign-$target.result"
}

for target in "${TARGETS[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$PARALLEL" ]; do sleep 1; done
  echo "fuzz: $target (up to $RUNS runs or $MAX_SECONDS s)" >&2
  campaign "$target" &
done
wait
for target in checkpoint weights; do  # the input files of crashed fork-mode children
  python3 tests/fuzz/classify.py --clean "build-fuzz/fuzz_$target"
done
fi

python3 - "$OUT" "$RUNS" "$MAX_SECONDS" "$FORK_TARGETS" "${TARGETS[@]}" <<'PY'
import concurrent.futures, glob, json, os, re, subprocess, sys
out, runs, max_seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fork_targets, targets = sys.argv[4].split(), sys.argv[5:]


sys.path.insert(0, "tests/fuzz")
from classify import innermost_frame, kind_of  # noqa: E402  (the replay, shared with the ctest smokes)
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
replayed = commit + ("-dirty" if dirty else "")
if os.environ.get("CORD_FUZZ_COMMIT"):  # a report rewritten later: the commit the campaigns' build came from
    commit, dirty = os.environ["CORD_FUZZ_COMMIT"], ""
rows, failed = [], False
for t in targets:
    name, rc, seconds = open(f"build-fuzz/campaign-{t}.result").read().split()
    log = open(f"build-fuzz/campaign-{t}.log", errors="replace").read()
    stat = lambda key: int(m.group(1)) if (m := re.search(rf"stat::{key}:\s+(\d+)", log)) else None
    findings = sorted(set(re.findall(r"(ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|deadly signal|"
                                     r"ALARM|uncaught exception|out-of-memory)", log)))
    executions = stat("number_of_executed_units")
    if t in fork_targets:  # fork mode: totals from its last status line; classify the saved inputs
        if (m := re.findall(r"#(\d+): cov: \d+ ft: \d+ corp: \d+ exec/s:? (\d+)", log)):
            executions = int(m[-1][0])
        hdf5, cord, gone, unattributed = [], [], [], []
        artifacts = sorted(glob.glob(f"build-fuzz/crash-{t}-*"))
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:  # timeouts take 5 s each
            frames = list(pool.map(lambda a: innermost_frame(f"build-fuzz/fuzz_{t}", a), artifacts))
        lists = {"gone": gone, "unattributed": unattributed, "libhdf5": hdf5, "cord": cord}
        for artifact, frame in zip(artifacts, frames):
            lists[kind_of(frame)].append({"input": os.path.basename(artifact), "frame": frame})
        findings = [f"{len(cord)} in cord", f"{len(hdf5)} inside libhdf5"] + \
                   ([f"{len(gone)} not reproduced by the current build"] if gone else []) + \
                   ([f"{len(unattributed)} out-of-memory not attributed"] if unattributed else [])
        rc_ok = not cord
    else:
        hdf5, cord, unattributed, rc_ok = [], [], [], int(rc) == 0 and not findings
    rows.append({"target": t, "exit_code": int(rc), "seconds": int(seconds), "executions": executions,
                 "executions_per_s": stat("average_exec_per_sec") or (executions // max(1, int(seconds))),
                 "new_units": stat("new_units_added"), "peak_rss_mb": stat("peak_rss_mb"), "findings": findings,
                 "fork_mode": t in fork_targets, "cord_inputs": cord, "hdf5_inputs": hdf5,
                 "unattributed_inputs": [u["input"] for u in unattributed]})
    failed |= not rc_ok
result = {"command": "tests/fuzz/run.sh " + " ".join(targets), "commit": commit + ("-dirty" if dirty else ""),
          "sanitizers": "address, undefined (abort on report), leak detection on", "compiler": "clang 14, libFuzzer",
          "rows": rows}
os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
json.dump(result, open(out + ".json", "w"), indent=2)
with open(out + ".md", "w") as f:
    f.write(f"# Fuzzing campaigns\n\n`{result['command']}` at commit `{result['commit']}`; {result['compiler']}, "
            f"{result['sanitizers']}. Each target runs until {runs:,} executions or {max_seconds} s, "
            "from the seeds in tests/fuzz/seeds/.\n\n"
            "| target | executions | exec/s | seconds | new corpus units | peak RSS MB | exit | findings |\n"
            "|---|---|---|---|---|---|---|---|\n")
    for r in rows:
        f.write(f"| `fuzz_{r['target']}`{' (fork mode)' if r['fork_mode'] else ''} | {r['executions'] or 0:,} | "
                f"{r['executions_per_s']} | {r['seconds']} | {r['new_units']} | {r['peak_rss_mb']} | {r['exit_code']} | "
                f"{', '.join(r['findings']) or 'none'} |\n")
    f.write(f"\nSaved inputs of fork-mode targets replayed by the build of commit `{replayed}`.\n")
    for r in rows:
        for kind in ("cord_inputs", "hdf5_inputs"):
            if r[kind]:
                f.write(f"\n`fuzz_{r['target']}`, saved inputs ({'cord' if kind == 'cord_inputs' else 'libhdf5'}), "
                        "innermost frame of each:\n\n")
                for item in r[kind][:20]:
                    f.write(f"- `{item['input']}`: `{item['frame'][:200]}`\n")
print(open(out + ".md").read())
sys.exit(1 if failed else 0)
PY
