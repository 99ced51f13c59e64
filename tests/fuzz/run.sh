#!/usr/bin/env bash
# The fuzzing campaigns: builds tests/fuzz with clang (ASan + UBSan + libFuzzer) in
# build-fuzz/, runs every target until it has executed RUNS inputs or for MAX_SECONDS,
# whichever comes first, two targets at a time, and writes bench/results/fuzz.json and .md.
#
#   tests/fuzz/run.sh [TARGET...]      (default: every target)
# Environment: CORD_FUZZ_RUNS (default 1000000), CORD_FUZZ_MAX_SECONDS (default 1800),
# CORD_FUZZ_PARALLEL (default 2), CORD_FUZZ_OUT (default bench/results/fuzz).
# A target's campaign fails on any crash, leak, timeout or sanitizer report: the input is
# kept as build-fuzz/crash-TARGET-* and the script exits 1 after writing the results.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${CORD_FUZZ_RUNS:-1000000}
MAX_SECONDS=${CORD_FUZZ_MAX_SECONDS:-1800}
PARALLEL=${CORD_FUZZ_PARALLEL:-2}
OUT=${CORD_FUZZ_OUT:-bench/results/fuzz}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(config overrides manifest safetensors tokenizer corpus)

command -v clang++-14 > /dev/null || { echo "tests/fuzz/run.sh: clang++-14 is missing (./setup.sh installs it)" >&2; exit 2; }
cmake -S tests/fuzz -B build-fuzz -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 > /dev/null
cmake --build build-fuzz -j2 > /dev/null

campaign() {  # TARGET: one campaign, its log in build-fuzz/campaign-TARGET.log
  local target=$1 corpus=build-fuzz/campaign-corpus-$1
  mkdir -p "$corpus"
  local start=$SECONDS rc=0
  ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=tests/fuzz/lsan.supp "build-fuzz/fuzz_$target" -runs="$RUNS" -max_total_time="$MAX_SECONDS" \
    -print_final_stats=1 -artifact_prefix="build-fuzz/crash-$target-" "$corpus" "tests/fuzz/seeds/$target" \
    > "build-fuzz/campaign-$target.log" 2>&1 || rc=$?
  echo "$target $rc $((SECONDS - start))" > "build-fuzz/campaign-$target.result"
}

for target in "${TARGETS[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$PARALLEL" ]; do sleep 1; done
  echo "fuzz: $target (up to $RUNS runs or $MAX_SECONDS s)" >&2
  campaign "$target" &
done
wait

python3 - "$OUT" "$RUNS" "$MAX_SECONDS" "${TARGETS[@]}" <<'PY'
import json, os, re, subprocess, sys
out, runs, max_seconds, targets = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
rows, failed = [], False
for t in targets:
    name, rc, seconds = open(f"build-fuzz/campaign-{t}.result").read().split()
    log = open(f"build-fuzz/campaign-{t}.log", errors="replace").read()
    stat = lambda key: int(m.group(1)) if (m := re.search(rf"stat::{key}:\s+(\d+)", log)) else None
    findings = re.findall(r"(ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|deadly signal|ALARM|"
                          r"uncaught exception|out-of-memory)", log)
    rows.append({"target": t, "exit_code": int(rc), "seconds": int(seconds), "executions": stat("number_of_executed_units"),
                 "executions_per_s": stat("average_exec_per_sec"), "new_units": stat("new_units_added"),
                 "peak_rss_mb": stat("peak_rss_mb"), "findings": sorted(set(findings))})
    failed |= int(rc) != 0 or bool(findings)
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
        f.write(f"| `fuzz_{r['target']}` | {r['executions']:,} | {r['executions_per_s']} | {r['seconds']} | "
                f"{r['new_units']} | {r['peak_rss_mb']} | {r['exit_code']} | {', '.join(r['findings']) or 'none'} |\n")
print(open(out + ".md").read())
sys.exit(1 if failed else 0)
PY
