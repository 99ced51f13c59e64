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


def dd_mb_per_s(folder, size_bytes, source=None):
    """dd with conv=fsync into folder; MB/s as dd reports it. Without source: size_bytes of
    zeros (rounded up to MiB); with source: a copy of that file, read from the page cache
    (the same incompressible bytes a checkpoint holds; zeros are written faster here)."""
    path = os.path.join(folder, "dd.bin")
    if source is None:
        count = max(1, -(-size_bytes // (1 << 20)))
        command = ["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={count}", "conv=fsync"]
    else:
        with open(source, "rb") as f:  # into the page cache, as the checkpoint's tensors are in memory
            while f.read(1 << 24):
                pass
        command = ["dd", f"if={source}", f"of={path}", "bs=1M", "conv=fsync"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stderr
    os.remove(path)
    copied = re.search(r"(\d+) bytes .* copied, ([0-9.]+) s", out)
    return int(copied.group(1)) / float(copied.group(2)) / 1e6


def latest_checkpoint(folder):
    """The newest step-*.h5 the benchmark left in folder (it keeps the last one)."""
    names = sorted(n for n in os.listdir(folder) if n.startswith("step-") and n.endswith(".h5"))
    return os.path.join(folder, names[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    raw = {f"np{n}": benchlib.load(os.path.join(args.dir, f"bench_np{n}.json")) for n in (1, 2)}
    rows, asyncs, fixed = [], [], {}
    dd_cache = {}
    for ranks_key, bench in raw.items():
        runs = {}
        for b in bench["benchmarks"]:
            if b.get("run_type") != "iteration":
                continue
            op, config = b["name"].split("/")[:2]
            runs.setdefault((op, config), []).append(b)
        for (op, config), items in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            if op == "fixed":  # the size-independent cost of a save (no dd comparison)
                fixed[int(ranks_key[2:])] = {"ms": statistics.median(b["real_time"] for b in items),
                                             "datasets": int(items[0]["datasets"])}
                continue
            if op == "async":  # the training's wait for an asynchronous save of this config
                asyncs.append({"ranks": int(ranks_key[2:]), "config": config,
                               "wait_ms": statistics.median(b["real_time"] for b in items),
                               "copy_ms": statistics.median(b["copy_ms"] for b in items),
                               "save_ms": statistics.median(b["save_ms"] for b in items),
                               "host_mb": items[0]["host_MB"]})
                continue
            size = int(items[0]["file_bytes"])
            mb_per_s = statistics.median(b["bytes_per_second"] for b in items) / 1e6
            if size not in dd_cache:
                copy_of = latest_checkpoint(os.path.join(args.dir, ranks_key, config))
                dd_cache[size] = (statistics.median(dd_mb_per_s(args.dir, size) for _ in range(3)),
                                  statistics.median(dd_mb_per_s(args.dir, size, copy_of) for _ in range(3)))
            dd_zeros, dd_copy = dd_cache[size]
            rows.append({"ranks": int(ranks_key[2:]), "config": config, "op": op, "file_mb": size / 1e6,
                         "ms": statistics.median(b["real_time"] for b in items), "mb_per_s": mb_per_s,
                         "dd_write_mb_per_s": dd_zeros, "over_dd": mb_per_s / dd_zeros,
                         "dd_copy_mb_per_s": dd_copy, "over_dd_copy": mb_per_s / dd_copy})
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
    # A save's time as its size-independent part plus its bytes: what the bytes alone get.
    for r in saves:
        if r["config"] == "small" and r["ranks"] in fixed:
            bytes_ms = r["ms"] - fixed[r["ranks"]]["ms"]
            r["fixed_ms"] = fixed[r["ranks"]]["ms"]
            r["bytes_over_dd"] = r["file_mb"] / (bytes_ms / 1000) / r["dd_write_mb_per_s"] if bytes_ms > 0 else None
    goal_met = all(r["over_dd"] >= 0.5 for r in saves)
    goal_met_copy = all(r["over_dd_copy"] >= 0.5 for r in saves)
    result = {"what": "checkpoint save/load throughput (params + AdamW m, v; tp = ranks, parallel HDF5) vs dd "
                      "with fsync on the same folder; time from process start to the first resumed step",
              "machine": benchlib.this_machine(), "commit": benchlib.commit(), "command": args.command,
              "folder": os.path.abspath(args.dir), "rows": rows, "resume": resume, "fixed": fixed, "async": asyncs,
              "goal": "save >= 50% of dd (zeros)", "goal_met": goal_met, "goal_met_vs_dd_copy": goal_met_copy,
              "google_benchmark": raw}
    lines = [f"# Checkpoint I/O ({result['machine']['cpu']}, {result['machine']['cores']} cores, commit "
             f"{result['commit'][:12]})", "", f"`{args.command}`; folder {result['folder']}", "",
             "| ranks | config | op | file MB | ms | of which write / fsync+commit ms | MB/s | dd zeros MB/s | / dd "
             "zeros | dd copy MB/s | / dd copy |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        phases = f"{r['write_ms']:.1f} / {r['commit_ms']:.1f}" if r["op"] == "save" else "-"
        lines.append(f"| {r['ranks']} | {r['config']} | {r['op']} | {r['file_mb']:.1f} | {r['ms']:.1f} | {phases} | "
                     f"{r['mb_per_s']:.0f} | {r['dd_write_mb_per_s']:.0f} | {r['over_dd']:.2f} | "
                     f"{r['dd_copy_mb_per_s']:.0f} | {r['over_dd_copy']:.2f} |")
    lines += ["", "| ranks | config | async: training waits ms (start + host copy, no overlap) | copy ms | "
              "writer's save ms | host MB |", "|---|---|---|---|---|---|"]
    for a in asyncs:
        lines.append(f"| {a['ranks']} | {a['config']} | {a['wait_ms']:.1f} | {a['copy_ms']:.1f} | {a['save_ms']:.1f} | "
                     f"{a['host_mb']:.1f} |")
    for ranks, f in sorted(fixed.items()):
        small = next(r for r in saves if r["config"] == "small" and r["ranks"] == ranks)
        lines.append("")
        lines.append(f"Size-independent cost, {ranks} rank(s): the small config's {f['datasets']} datasets with one "
                     f"element each save in {f['ms']:.1f} ms, {f['ms'] / small['ms']:.0%} of the small save "
                     f"({small['ms']:.1f} ms); its bytes alone take the rest, "
                     + (f"{small['bytes_over_dd']:.2f}× dd zeros." if small.get("bytes_over_dd") else "nothing."))
    lines += ["", "Loads read a file just written (page cache): an upper bound for a cold read. A save's write "
              "phase is the HDF5 write through close, while a helper thread has the disk write the file's "
              "pages as they come (sync_file_range), so the fsync in the commit phase waits only for the tail "
              "(MPI-IO's close syncs, so on 2 ranks the fsync falls in the write phase); the replaced "
              "checkpoint is deleted in the background, outside the time. dd zeros: `dd if=/dev/zero bs=1M "
              "conv=fsync` of the same size; dd copy: `dd bs=1M conv=fsync` of the benchmark's last "
              "checkpoint file, read from the page cache (the same bytes; this disk writes zeros faster).",
              f"Start to first resumed step (tiny text stage, 2 ranks): {resume['seconds_to_resume']:.2f} s to "
              f"load (process start included) + {resume['first_step_seconds']:.2f} s for the step = "
              f"{resume['start_to_first_resumed_step_s']:.2f} s.",
              benchlib.targets_line("Goal", {"save >= 50% of dd zeros": goal_met,
                                             "save >= 50% of dd copy": goal_met_copy}), ""]
    benchlib.write_experiment(args.out, result, lines)


if __name__ == "__main__":
    main()
