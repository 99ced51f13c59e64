"""Summarises one jobs/pipeline.sh run into NAME.json and NAME.md: the eval scores, wall
time per step, the last training and validation records of each stage, machine, the commit
the binary was built from (metrics headers) and command.
  --mode base (bench/run_base.sh: corpus, text, align, eval): targets text accuracy >= 85%
    averaged over families, audio at least 15 points below text and at least 20 points
    above the average chance level, at most 60 minutes.
  --mode main (bench/run_main.sh, the README's main job, which adds CORD and its eval
    against the base): targets the whole job in at most 30 minutes, CORD closing at least
    20% of the base's gap with text accuracy falling at most 2 points."""
import argparse
import datetime
import json
import os

import benchlib


def records(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def median(records, key):
    values = sorted(r[key] for r in records if key in r)
    return values[len(values) // 2] if values else None


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
            # text and align steps carry tokens_per_s and mfu; distill steps their time split
            "medians": {k: m for k in ("tokens_per_s", "mfu", "window_ms_per_step", "rollout_ms", "teacher_ms",
                                       "student_ms", "window_comm_ms", "other_ms")
                        if (m := median(steps, k)) is not None},
            "validation": [{k: v[k] for k in ("step", "loss", "accuracy", "audio_accuracy", "text_accuracy") if k in v}
                           for v in vals]}


# Accuracy of guessing, per family: arithmetic answers are open numbers (~0), multiple
# choice has 4 options, ordering asks for one of 3 or 4 people (equally likely).
CHANCE = {"arithmetic": 0.0, "multiple_choice": 25.0, "ordering": 100.0 * (1 / 3 + 1 / 4) / 2}


def main():
    p = argparse.ArgumentParser()
    for arg in ("--run", "--config", "--start", "--end", "--command", "--out"):
        p.add_argument(arg, required=True)
    p.add_argument("--mode", choices=("base", "main"), default="base")
    a = p.parse_args()
    scores = benchlib.load(os.path.join(a.run, "eval", "eval.json"))
    with open(os.path.join(a.run, "timings.tsv")) as f:
        timings = [dict(zip(("step", "seconds", "command"), line.rstrip("\n").split("\t"))) for line in f if line.strip()]
    for t in timings:
        t["seconds"] = float(t["seconds"])
    wall = float(a.end) - float(a.start)
    avg = scores["average"]
    chance = sum(CHANCE[f] for f in scores["families"]) / len(scores["families"])
    stage_names = ("text", "align") if a.mode == "base" else ("text", "align", "distill")
    stages = {s: stage_summary(os.path.join(a.run, s, "metrics.jsonl")) for s in stage_names}
    commits = sorted({records(os.path.join(a.run, s, "metrics.jsonl"))[0]["commit"] for s in stage_names})
    if a.mode == "base":
        what = "base LALM built from scratch: corpus, text stage, align stage, eval (bench/run_base.sh)"
        targets = {"text_accuracy_at_least_85": avg["text_accuracy"] >= 85.0,
                   "gap_at_least_15_points": avg["gap"] >= 15.0,
                   "audio_at_least_20_points_above_chance": avg["audio_accuracy"] >= chance + 20.0,
                   "wall_time_at_most_60_min": wall <= 3600.0}
    else:
        what = "the main job: corpus, base (text, align), eval, CORD, eval against the base (bench/run_main.sh)"
        cord_eval = benchlib.load(os.path.join(a.run, "cord_eval", "eval.json"))
        cord = cord_eval["baseline"]["average"]
        targets = {"wall_time_at_most_30_min": wall <= 1800.0,
                   "cord_closes_at_least_20_percent_of_the_gap": (cord["gap_reduction"] or 0) >= 0.20,
                   "text_accuracy_falls_at_most_2_points": cord["text_change"] >= -2.0}
    result = {"what": what,
              "machine": benchlib.this_machine(),
              "commit": " ".join(commits), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              "command": a.command, "config": a.config, "wall_seconds": wall, "timings": timings,
              "stages": stages, "eval": scores, "chance_accuracy": CHANCE, "targets": targets}
    with open(os.path.join(a.run, "eval", "eval.md")) as f:
        table = f.read().split("\n", 2)[2]
    lines = [f"# {'Base model' if a.mode == 'base' else 'Main job'}: {a.config}", "",
             f"`{a.command}` at commit {result['commit']} on {result['machine']['host']} "
             f"({result['machine']['cpu']}, {result['machine']['cores']} cores), {result['date'][:19]} UTC.", "",
             "Test split, greedy decoding; gap = text - audio accuracy (points); WER over tokenizer pieces; "
             f"chance accuracy {', '.join(f'{k} {v:.1f}%' for k, v in CHANCE.items())}.", "",
             table.rstrip(), ""]
    if a.mode == "main":
        with open(os.path.join(a.run, "cord_eval", "eval.md")) as f:
            cord_md = f.read()
        result["cord_eval"] = cord_eval
        lines += ["After CORD (`train.stage = distill` from the base, the embedded `[cord]` defaults: a frozen "
                  "teacher):", "", cord_md.split("\n", 2)[2].rstrip(), ""]
        variant = os.path.join(a.run, "current_teacher", "eval", "eval.json")
        if os.path.exists(variant):  # not part of the main job's wall time
            result["current_teacher_eval"] = benchlib.load(variant)
            v = result["current_teacher_eval"]["baseline"]
            lines += ["The same CORD step from the same base with `cord.teacher = current` (after the main job, "
                      "not in its wall time):", "",
                      "| teacher | audio avg | text avg (change) | gap reduction | " +
                      " | ".join(f"text {f}" for f in sorted(v["families"])) + " |",
                      "|---|---:|---:|---:|" + "---:|" * len(v["families"])]
            for name, c in (("initial (default)", result["cord_eval"]["baseline"]), ("current", v)):
                lines.append(f"| {name} | {c['average']['audio_accuracy']:.1f} | {c['average']['text_accuracy']:.1f} "
                             f"({c['average']['text_change']:+.1f}) | {100 * (c['average']['gap_reduction'] or 0):+.1f}% | " +
                             " | ".join(f"{c['families'][f]['text_accuracy']:.1f}" for f in sorted(c["families"])) + " |")
            lines.append("")
    lines += ["| step | wall time |", "|---|---:|"]
    lines += [f"| {t['step']} | {t['seconds'] / 60:.1f} min |" for t in timings]
    lines += [f"| **total** | **{wall / 60:.1f} min** |", ""]
    lines += [benchlib.targets_line("Targets", targets), ""]
    benchlib.write_experiment(a.out, result, lines)


if __name__ == "__main__":
    main()
