#!/usr/bin/env python3
"""Turns bench/run_corpus.sh's measurements into bench/results/corpus_synth.json:
items/s of `cord corpus synth` with 1 and 2 ranks (whole-command wall time), the real-time
factor (seconds of audio made per wall second), per-stage costs and loader batches/s from
cord_corpus_bench, and the projected time for the paper's 80k items on 2 ranks
(goal: <= 15 minutes), plus machine, commit and command."""
import argparse
import json
import os
import subprocess

import benchlib

PAPER_ITEMS = 80000
GOAL_SECONDS = 15 * 60


def inspect(build, corpus):
    out = subprocess.run([f"{build}/cord", "corpus", "inspect", corpus, "--json"], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timings", required=True)
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--stages", required=True)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--build", required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    report = inspect(args.build, args.corpus)
    audio_seconds = report["duration_s"]["total"]
    synth = []
    with open(args.timings) as f:
        for line in f:
            ranks, start, end, command = line.split(" ", 3)
            wall = float(end) - float(start)
            synth.append({"ranks": int(ranks), "items": args.items, "wall_s": wall,
                          "items_per_s": args.items / wall, "real_time_factor": audio_seconds / wall,
                          "command": command.strip()})
    two = next(s for s in synth if s["ranks"] == 2)
    # Start-up (MPI, worker, write) does not grow with items; projecting at the measured
    # rate is therefore slightly pessimistic.
    projected = PAPER_ITEMS / two["items_per_s"]

    raw = benchlib.load(args.stages)
    stages = {}
    for b in raw["benchmarks"]:
        name = b["name"].split("/iterations")[0].replace("/real_time", "")
        stages[name] = {k: b[k] for k in ("real_time", "time_unit", "items_per_second", "rtf", "batches_per_s",
                                          "audio_s") if k in b}

    summary = {
        "corpus": {"items": args.items, "audio_hours": audio_seconds / 3600,
                   "mean_item_s": report["duration_s"]["mean"],
                   "bytes_per_item": os.path.getsize(args.corpus) / args.items},
        "synth": synth,
        "projection_80k": {"items": PAPER_ITEMS, "ranks": 2, "seconds": projected, "minutes": projected / 60,
                           "goal_minutes": GOAL_SECONDS / 60, "meets_goal": projected <= GOAL_SECONDS},
        "stages_one_rank": stages,
    }
    benchlib.write_results(
        args.out,
        "cord corpus synth throughput (TTS + resample + log-mel + parallel HDF5 write, whole command) "
        "with 1 and 2 ranks, per-stage costs on one rank, loader batches/s, projection to 80k items",
        args.command, summary, raw)
    print(f"1 rank {synth[0]['items_per_s']:.1f} items/s, 2 ranks {two['items_per_s']:.1f} items/s "
          f"(real-time factor {two['real_time_factor']:.0f}); 80k items projected {projected / 60:.1f} min "
          f"on 2 ranks (goal 15); wrote {args.out}")


if __name__ == "__main__":
    main()
