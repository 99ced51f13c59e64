#!/usr/bin/env python3
"""Training stall per checkpoint, synchronous vs asynchronous (bench/run_ckpt_stall.sh):
from each run's metrics.jsonl, the stage time (end record), the saves (checkpoint records:
whole save time, the time the training itself waited, the host memory the copies hold)."""
import argparse
import json
import os
import statistics

import benchlib


def records(run_dir):
    with open(os.path.join(run_dir, "text", "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def run_summary(run_dir):
    rs = records(run_dir)
    end = [r for r in rs if r["type"] == "end"][-1]
    saves = [r for r in rs if r["type"] == "checkpoint"]
    return {"stage_seconds": end["seconds"], "saves": len(saves),
            "save_seconds": [s["seconds"] for s in saves], "waited_seconds": [s["stall_seconds"] for s in saves],
            "host_bytes": max([s["host_bytes"] for s in saves], default=0),
            "file_bytes": max([s["bytes"] for s in saves], default=0)}


SETTINGS = {"busy": "2 ranks, dp 2, the training on both cores",
            "spare": "1 rank, 1 torch thread: a core left to the writer thread, as on a GPU node"}


def setting_summary(folder, setting, repeats):
    runs = {mode: [run_summary(os.path.join(folder, f"{setting}-{mode}-{r}")) for r in range(1, repeats + 1)]
            for mode in ("none", "sync", "async")}
    summary = {"runs": runs, "modes": {}}
    for mode in ("sync", "async"):
        # Stall per save in repeat r: against the run without saves of the same repeat (interleaved).
        stalls = [(run["stage_seconds"] - runs["none"][i]["stage_seconds"]) / run["saves"]
                  for i, run in enumerate(runs[mode])]
        waited = [w for run in runs[mode] for w in run["waited_seconds"]]
        saving = [s for run in runs[mode] for s in run["save_seconds"]]
        summary["modes"][mode] = {
            "stall_per_save_s": {"median": statistics.median(stalls), "min": min(stalls), "max": max(stalls)},
            "waited_per_save_s": {"median": statistics.median(waited), "max": max(waited)},
            "save_s": {"median": statistics.median(saving)},
            "host_MB": runs[mode][0]["host_bytes"] / 1e6, "file_MB": runs[mode][0]["file_bytes"] / 1e6}
    sync, asyn = summary["modes"]["sync"], summary["modes"]["async"]
    summary["async_over_sync_stall"] = asyn["stall_per_save_s"]["median"] / sync["stall_per_save_s"]["median"]
    summary["async_waited_over_sync_save"] = asyn["waited_per_save_s"]["median"] / sync["save_s"]["median"]
    none = [r["stage_seconds"] for r in runs["none"]]
    summary["stage_seconds_without_saves"] = {"median": statistics.median(none), "min": min(none), "max": max(none)}
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--repeats", type=int, required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    result = {"machine": benchlib.this_machine(), "commit": benchlib.commit(), "command": args.command,
              "config": "text stage, d_model 512, 8 layers, 42 steps of 8 items, a save every 4 steps (10 saves)",
              "settings": {}}
    lines = [f"# Checkpoint stall: synchronous vs asynchronous ({result['machine']['cpu']}, "
             f"{result['machine']['cores']} cores, commit {result['commit'][:12]})", "",
             f"`{args.command}`; {result['config']}; {args.repeats} repeats, every run interleaved.", "",
             "| setting | mode | file MB | host MB | save s (median) | training waited per save s (median / max) | "
             "stall per save s (median; min - max over repeats) |",
             "|---|---|---|---|---|---|---|"]
    goals = {}
    for setting, label in SETTINGS.items():
        summary = setting_summary(args.dir, setting, args.repeats)
        result["settings"][setting] = summary
        for mode in ("sync", "async"):
            m = summary["modes"][mode]
            lines.append(f"| {setting} | {mode} | {m['file_MB']:.1f} | {m['host_MB']:.1f} | {m['save_s']['median']:.3f} | "
                         f"{m['waited_per_save_s']['median']:.4f} / {m['waited_per_save_s']['max']:.4f} | "
                         f"{m['stall_per_save_s']['median']:.3f} ({m['stall_per_save_s']['min']:.3f} - "
                         f"{m['stall_per_save_s']['max']:.3f}) |")
        goals[f"{setting}: training waits <= 10% of the synchronous save"] = summary["async_waited_over_sync_save"] <= 0.10
        goals[f"{setting}: end-to-end stall <= 10% of synchronous"] = summary["async_over_sync_stall"] <= 0.10
    lines.append("")
    for setting, label in SETTINGS.items():
        summary = result["settings"][setting]
        none = summary["stage_seconds_without_saves"]
        lines.append(f"- {setting} ({label}): stage time without saves {none['median']:.2f} s (median; "
                     f"{none['min']:.2f} - {none['max']:.2f}); async / sync: training waited "
                     f"{summary['async_waited_over_sync_save']:.4f}, end-to-end stall "
                     f"{summary['async_over_sync_stall']:.3f}.")
    lines += ["",
              "Training waited: the time the training thread is blocked per save (sync: the whole save; async: "
              "its start and the next optimizer step waiting for the host copy). Stall per save: (stage time with "
              "saves - the same repeat's stage time without) / saves, so it also counts the writer thread's work "
              "slowing the steps it overlaps.",
              benchlib.targets_line("Goal", goals), ""]
    benchlib.write_experiment(args.out, result, lines)


if __name__ == "__main__":
    main()
