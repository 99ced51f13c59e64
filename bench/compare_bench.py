#!/usr/bin/env python3
"""Side-by-side A/B of two builds of one Google Benchmark program on this machine.

Runs BEFORE and AFTER alternately (ROUNDS times each, under `mpiexec --bind-to none -n 1`),
with the same --benchmark_filter, and prints per benchmark the median per-run time of
each and the ratio after / before. Alternating the two within one invocation keeps a
shared, noisy machine's drift out of the ratio. Writes the raw runs and the medians to
--out (JSON) with machine, both binaries and the command.

Example (before = a copy of the binary built from the parent commit):
  bench/compare_bench.py /tmp/old/cord_model_bench build/bench/cord_model_bench \\
      --filter 'adamw_step|train_step/' --rounds 5 --out /tmp/ab.json
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict

import benchlib


def run_once(binary, bench_filter):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        proc = subprocess.run(["mpiexec", "--bind-to", "none", "-n", "1", binary, f"--benchmark_filter={bench_filter}",
                               f"--benchmark_out={out.name}", "--benchmark_out_format=json"],
                              env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{binary} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return benchlib.load(out.name)


def per_run_times(raw):
    """benchmark run name -> list of real times (aggregates skipped), in the run's unit."""
    times = defaultdict(list)
    for b in raw["benchmarks"]:
        if b.get("run_type") != "aggregate":
            times[b.get("run_name", b["name"])].append((b["real_time"], b["time_unit"]))
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--filter", required=True, help="--benchmark_filter for both binaries")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    samples = {"before": defaultdict(list), "after": defaultdict(list)}
    context = None
    for round_index in range(args.rounds):
        for side in ("before", "after"):
            raw = run_once(getattr(args, side), args.filter)
            context = context or raw["context"]
            for name, values in per_run_times(raw).items():
                samples[side][name].extend(values)
        print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr)
    rows = {}
    for name in samples["before"]:
        if name not in samples["after"]:
            continue
        units = {u for _, u in samples["before"][name] + samples["after"][name]}
        assert len(units) == 1, f"{name}: mixed time units {units}"
        before = statistics.median(t for t, _ in samples["before"][name])
        after = statistics.median(t for t, _ in samples["after"][name])
        rows[name] = {"before": before, "after": after, "unit": units.pop(), "ratio_after_over_before": after / before,
                      "samples_each": len(samples["after"][name])}
        print(f"{name:60s} {before:10.3f} -> {after:10.3f} {rows[name]['unit']}  x{after / before:.3f}")
    command = " ".join(["bench/compare_bench.py"] + sys.argv[1:])
    benchlib.write_results(args.out, "A/B of two builds of one benchmark program (bench/compare_bench.py)", command,
                           {"before": args.before, "after": args.after, "medians": rows},
                           {k: {n: v for n, v in s.items()} for k, s in samples.items()}, context=context)


if __name__ == "__main__":
    main()
