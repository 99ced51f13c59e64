#!/usr/bin/env python3
"""Turns Google Benchmark JSON from cord_allreduce_bench into the results file:
median time per variant and size over the rounds, the ratio raw/cord (>= 0.95 is the
goal: cord's wrapper within 5% of raw MPI), plus machine, commit and command."""
import argparse
import statistics
from collections import defaultdict

import benchlib


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("raw_json")
    parser.add_argument("--command", required=True)
    parser.add_argument("--out", required=True, help="results JSON to write")
    args = parser.parse_args()
    raw = benchlib.load(args.raw_json)
    times = defaultdict(list)  # (variant, size) -> [ms per round]
    for b in raw["benchmarks"]:
        variant, size = b["name"].split("/")[:2]  # name/size/round:k/iterations:n/manual_time
        assert b["time_unit"] == "ms", b
        times[(variant, size)].append(b["real_time"])
    summary = []
    for size in sorted({s for _, s in times}, key=lambda s: int(s.rstrip("MiB"))):
        raw_ms = statistics.median(times[("raw_mpi_allreduce", size)])
        cord_ms = statistics.median(times[("cord_all_reduce", size)])
        summary.append({
            "size": size,
            "rounds": len(times[("cord_all_reduce", size)]),
            "raw_mpi_ms": raw_ms,
            "cord_ms": cord_ms,
            "raw_over_cord": raw_ms / cord_ms,
        })
    benchlib.write_results(
        args.out,
        "all_reduce sum float32, cord wrapper vs raw MPI_Allreduce, same buffer, 2 ranks; "
        "median over rounds of the slowest rank's time per call",
        args.command, summary, raw)
    for r in summary:
        print(f"{r['size']}: raw MPI {r['raw_mpi_ms']:.3f} ms, cord {r['cord_ms']:.3f} ms, "
              f"raw/cord = {r['raw_over_cord']:.3f}")


if __name__ == "__main__":
    main()
