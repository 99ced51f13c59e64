#!/usr/bin/env python3
"""Checkpoint I/O results (bench/run_ckpt.sh): save and load throughput per config and rank
count from cord_ckpt_bench (median over repetitions), `dd` of the same bytes with fsync to
the same folder (median of 3, run here, right after the benchmarks), save / dd (goal >= 0.5),
and the time from process start to the first resumed step."""
import argparse
import json
import os
import re
import statistics
import subprocess

import benchlib


def dd_mb_per_s(folder, size_bytes):
    """dd of size_bytes (rounded up to MiB) with conv=fsync; MB/s as dd reports it."""
    count = max(1, -(-size_bytes // (1 << 20)))
    path = os.path.join(folder, "dd.bin")
    out = subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={count}", "conv=fsync"],
                         capture_output=True, text=True, check=True).stderr
    os.remove(path)
    copied = re.search(r"(\d+) bytes .* copied, ([0-9.]+) s", out)
    return int(copied.group(1)) / float(copied.group(2)) / 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    raw = {f"np{n}": benchlib.load(os.path.join(args.dir, f"bench_np{n}.json")) for n in (1, 2)}
    rows = []
    dd_cache = {}
    for ranks_key, bench in raw.items():
        runs = {}
        for b in bench["benchmarks"]:
            if b.get("run_type") != "iteration":
                continue
            op, config = b["name"].split("/")[:2]
            runs.setdefault((op, config), []).append(b)
        for (op, config), items in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            size = int(items[0]["file_bytes"])
            mb_per_s = statistics.median(b["bytes_per_second"] for b in items) / 1e6
            if size not in dd_cache:
                dd_cache[size] = statistics.median(dd_mb_per_s(args.dir, size) for _ in range(3))
            rows.append({"ranks": int(ranks_key[2:]), "config": config, "op": op, "file_mb": size / 1e6,
                         "ms": statistics.median(b["real_time"] for b in items), "mb_per_s": mb_per_s,
                         "dd_write_mb_per_s": dd_cache[size], "over_dd": mb_per_s / dd_cache[size]})
            if op == "save":  # phase times (rank 0's clock), as save_checkpoint reports them
                for phase in ("write_ms", "commit_ms", "cleanup_ms"):
                    rows[-1][phase] = statistics.median(b[phase] for b in items)
    resume_records = [json.loads(line) for line in open(os.path.join(args.dir, "resume", "text", "metrics.jsonl"))]
    header = [r for r in resume_records if r["type"] == "header" and "resumed_step" in r][-1]
    first = [r for r in resume_records if r["type"] == "step" and r["step"] == header["resumed_step"] + 1][-1]
    resume = {"resumed_step": header["resumed_step"], "seconds_to_resume": header["seconds_to_resume"],
              "first_step_seconds": first["elapsed_s"],
              "start_to_first_resumed_step_s": header["seconds_to_resume"] + first["elapsed_s"]}
    saves = [r for r in rows if r["op"] == "save"]
    goal_met = all(r["over_dd"] >= 0.5 for r in saves)
    result = {"what": "checkpoint save/load throughput (params + AdamW m, v; tp = ranks, parallel HDF5) vs dd "
                      "with fsync on the same folder; time from process start to the first resumed step",
              "machine": benchlib.this_machine(), "commit": benchlib.commit(), "command": args.command,
              "folder": os.path.abspath(args.dir), "rows": rows, "resume": resume,
              "goal": "save >= 50% of dd", "goal_met": goal_met, "google_benchmark": raw}
    lines = [f"# Checkpoint I/O ({result['machine']['cpu']}, {result['machine']['cores']} cores, commit "
             f"{result['commit'][:12]})", "", f"`{args.command}`; folder {result['folder']}", "",
             "| ranks | config | op | file MB | ms | of which write / fsync+commit ms | MB/s | dd MB/s | / dd |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        phases = f"{r['write_ms']:.1f} / {r['commit_ms']:.1f}" if r["op"] == "save" else "-"
        lines.append(f"| {r['ranks']} | {r['config']} | {r['op']} | {r['file_mb']:.1f} | {r['ms']:.1f} | {phases} | "
                     f"{r['mb_per_s']:.0f} | {r['dd_write_mb_per_s']:.0f} | {r['over_dd']:.2f} |")
    lines += ["", "Loads read a file just written (page cache): an upper bound for a cold read. A save's write "
              "phase is the collective HDF5 write through close (MPI-IO's close syncs, so on 2 ranks the "
              "fsync falls there); the replaced checkpoint is deleted in the background, outside the time.",
              f"Start to first resumed step (tiny text stage, 2 ranks): {resume['seconds_to_resume']:.2f} s to "
              f"load (process start included) + {resume['first_step_seconds']:.2f} s for the step = "
              f"{resume['start_to_first_resumed_step_s']:.2f} s.",
              benchlib.targets_line("Goal", {"save >= 50% of dd": goal_met}), ""]
    benchlib.write_experiment(args.out, result, lines)


if __name__ == "__main__":
    main()
