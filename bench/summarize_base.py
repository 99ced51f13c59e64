"""Summarises one base-model pipeline run (bench/run_base.sh) into NAME.json and NAME.md:
the eval scores, the targets (text accuracy >= 85% averaged over families, audio at least
15 points below text and well above chance: at least 20 points above the average chance
level), wall time per step, the last training and validation records of each stage,
machine, the commit the binary was built from (metrics headers) and command."""
import argparse
import datetime
import json
import os

import benchlib


def records(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def stage_summary(path):
    recs = records(path)
    steps = [r for r in recs if r["type"] == "step"]
    vals = [r for r in recs if r["type"] == "validation"]
    end = next((r for r in recs if r["type"] == "end"), {})
    header = recs[0]
    return {"params_trained": header.get("trainable_params"), "params": header.get("params"),
            "layout": {"world": header.get("world"), "dp": header.get("dp"), "tp": header.get("tp")},
            "steps": end.get("steps"), "skipped": end.get("skipped"), "seconds": end.get("seconds"),
            "first_loss": steps[0]["loss"] if steps else None, "last_loss": end.get("last_loss"),
            "tokens_per_s_median": sorted(s["tokens_per_s"] for s in steps)[len(steps) // 2] if steps else None,
            "mfu_median": sorted(s["mfu"] for s in steps)[len(steps) // 2] if steps else None,
            "validation": [{"step": v["step"], "loss": v["loss"], "accuracy": v["accuracy"]} for v in vals]}


# Accuracy of guessing, per family: arithmetic answers are open numbers (~0), multiple
# choice has 4 options, ordering asks for one of 3 or 4 people (equally likely).
CHANCE = {"arithmetic": 0.0, "multiple_choice": 25.0, "ordering": 100.0 * (1 / 3 + 1 / 4) / 2}


def main():
    p = argparse.ArgumentParser()
    for arg in ("--run", "--config", "--start", "--end", "--command", "--out"):
        p.add_argument(arg, required=True)
    a = p.parse_args()
    scores = benchlib.load(os.path.join(a.run, "eval", "eval.json"))
    with open(os.path.join(a.run, "timings.tsv")) as f:
        timings = [dict(zip(("step", "seconds", "command"), line.rstrip("\n").split("\t"))) for line in f if line.strip()]
    for t in timings:
        t["seconds"] = float(t["seconds"])
    wall = float(a.end) - float(a.start)
    avg = scores["average"]
    chance = sum(CHANCE[f] for f in scores["families"]) / len(scores["families"])
    targets = {"text_accuracy_at_least_85": avg["text_accuracy"] >= 85.0,
               "gap_at_least_15_points": avg["gap"] >= 15.0,
               "audio_at_least_20_points_above_chance": avg["audio_accuracy"] >= chance + 20.0,
               "wall_time_at_most_60_min": wall <= 3600.0}
    stages = {s: stage_summary(os.path.join(a.run, s, "metrics.jsonl")) for s in ("text", "align")}
    commits = sorted({records(os.path.join(a.run, s, "metrics.jsonl"))[0]["commit"] for s in ("text", "align")})
    result = {"what": "base LALM built from scratch: corpus, text stage, align stage, eval (bench/run_base.sh)",
              "machine": benchlib.this_machine(),
              "commit": " ".join(commits), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              "command": a.command, "config": a.config, "wall_seconds": wall, "timings": timings,
              "stages": stages, "eval": scores, "chance_accuracy": CHANCE, "targets": targets}
    with open(os.path.join(a.run, "eval", "eval.md")) as f:
        table = f.read().split("\n", 2)[2]
    lines = [f"# Base model: {a.config}", "",
             f"`{a.command}` at commit {result['commit']} on {result['machine']['host']} "
             f"({result['machine']['cpu']}, {result['machine']['cores']} cores), {result['date'][:19]} UTC.", "",
             "Test split, greedy decoding; gap = text - audio accuracy (points); WER over tokenizer pieces; "
             f"chance accuracy {', '.join(f'{k} {v:.1f}%' for k, v in CHANCE.items())}.", "",
             table.rstrip(), "",
             "| step | wall time |", "|---|---:|"]
    lines += [f"| {t['step']} | {t['seconds'] / 60:.1f} min |" for t in timings]
    lines += [f"| **total** | **{wall / 60:.1f} min** |", ""]
    lines += [benchlib.targets_line("Targets", targets), ""]
    benchlib.write_experiment(a.out, result, lines)


if __name__ == "__main__":
    main()
