"""Summarises one jobs/pipeline.sh run into NAME.json and NAME.md: the eval scores, wall
time per step, the last training and validation records of each stage, machine, the commit
the binary was built from (metrics headers) and command.
  --mode base (bench/run_base.sh: corpus, text, align, eval): targets text accuracy >= 85%
    averaged over families, audio at least 15 points below text and at least 20 points
    above the average chance level, at most 60 minutes.
  --mode main (bench/run_main.sh, the README's main job, which adds CORD and its eval
    against the base, once per seed): targets, on every seed, the whole job in at most
    30 minutes, CORD closing at least 20% of the base's gap with text accuracy falling at
    most 2 points."""
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


def read_timings(run):
    with open(os.path.join(run, "timings.tsv")) as f:
        timings = [dict(zip(("step", "seconds", "command"), line.rstrip("\n").split("\t"))) for line in f if line.strip()]
    for t in timings:
        t["seconds"] = float(t["seconds"])
    return timings


def stage_commits(run, stage_names):
    return sorted({records(os.path.join(run, s, "metrics.jsonl"))[0]["commit"] for s in stage_names})


def eval_table(path):
    """The per-family table of an eval.md (everything after its title and blank line)."""
    with open(path) as f:
        return f.read().split("\n", 2)[2].rstrip()


def timing_lines(timings, wall):
    return (["| step | wall time |", "|---|---:|"] +
            [f"| {t['step']} | {t['seconds'] / 60:.1f} min |" for t in timings] +
            [f"| **total** | **{wall / 60:.1f} min** |", ""])


def summarize_base(a):
    """bench/run_base.sh: one pipeline run without the distill stage."""
    scores = benchlib.load(os.path.join(a.run, "eval", "eval.json"))
    timings = read_timings(a.run)
    wall = float(a.end) - float(a.start)
    avg = scores["average"]
    chance = sum(CHANCE[f] for f in scores["families"]) / len(scores["families"])
    stage_names = ("text", "align")
    targets = {"text_accuracy_at_least_85": avg["text_accuracy"] >= 85.0,
               "gap_at_least_15_points": avg["gap"] >= 15.0,
               "audio_at_least_20_points_above_chance": avg["audio_accuracy"] >= chance + 20.0,
               "wall_time_at_most_60_min": wall <= 3600.0}
    result = {"what": "base LALM built from scratch: corpus, text stage, align stage, eval (bench/run_base.sh)",
              "machine": benchlib.this_machine(),
              "commit": " ".join(stage_commits(a.run, stage_names)),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              "command": a.command, "config": a.config, "wall_seconds": wall, "timings": timings,
              "stages": {s: stage_summary(os.path.join(a.run, s, "metrics.jsonl")) for s in stage_names},
              "eval": scores, "chance_accuracy": CHANCE, "targets": targets}
    lines = [f"# Base model: {a.config}", "",
             f"`{a.command}` at commit {result['commit']} on {result['machine']['host']} "
             f"({result['machine']['cpu']}, {result['machine']['cores']} cores), {result['date'][:19]} UTC.", "",
             "Test split, greedy decoding; gap = text - audio accuracy (points); WER over tokenizer pieces; "
             f"chance accuracy {', '.join(f'{k} {v:.1f}%' for k, v in CHANCE.items())}.", "",
             eval_table(os.path.join(a.run, "eval", "eval.md")), ""]
    lines += timing_lines(timings, wall)
    lines += [benchlib.targets_line("Targets", targets), ""]
    benchlib.write_experiment(a.out, result, lines)


def main_seed(run):
    """One seed of the main job (bench/run_main.sh): its steps' times, the base's eval and
    CORD's. The wall time is the sum of the steps' times (the same as start to end for a
    seed run in one go; a seed whose CORD step ran again, CORD_MAIN_FROM, has no single span)."""
    timings = read_timings(run)
    wall = sum(t["seconds"] for t in timings)
    stage_names = ("text", "align", "distill")
    cord_eval = benchlib.load(os.path.join(run, "cord_eval", "eval.json"))
    cord = cord_eval["baseline"]["average"]
    return {"run": run, "wall_seconds": wall, "timings": timings,
            "commits": stage_commits(run, stage_names),
            "stages": {s: stage_summary(os.path.join(run, s, "metrics.jsonl")) for s in stage_names},
            "eval": benchlib.load(os.path.join(run, "eval", "eval.json")), "cord_eval": cord_eval,
            "targets": {"wall_time_at_most_30_min": wall <= 1800.0,
                        "cord_closes_at_least_20_percent_of_the_gap": (cord["gap_reduction"] or 0) >= 0.20,
                        "text_accuracy_falls_at_most_2_points": cord["text_change"] >= -2.0}}


def mean_sd(values):
    m = sum(values) / len(values)
    sd = (sum((v - m) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return m, sd


def seed_table(seeds):
    """One row a seed (the base, then CORD against it), then mean ± sd over seeds."""
    cols = (("base text %", lambda c: c["baseline_text_accuracy"]), ("base audio %", lambda c: c["baseline_audio_accuracy"]),
            ("base gap (pts)", lambda c: c["baseline_gap"]), ("text % after", lambda c: c["text_accuracy"]),
            ("text change", lambda c: c["text_change"]), ("audio % after", lambda c: c["audio_accuracy"]),
            ("gap reduction %", lambda c: 100 * (c["gap_reduction"] or 0)))
    lines = ["| seed | " + " | ".join(name for name, _ in cols) + " | wall time |",
             "|---|" + "---:|" * (len(cols) + 1)]
    for s in seeds:
        c = s["cord_eval"]["baseline"]["average"]
        lines.append(f"| {os.path.basename(s['run'])} | " + " | ".join(f"{f(c):+.1f}" if name == "text change" else f"{f(c):.1f}"
                                                              for name, f in cols) + f" | {s['wall_seconds'] / 60:.1f} min |")
    cells = []
    for name, f in cols:
        m, sd = mean_sd([f(s["cord_eval"]["baseline"]["average"]) for s in seeds])
        cells.append(f"**{m:.1f} ± {sd:.1f}**")
    m, sd = mean_sd([s["wall_seconds"] / 60 for s in seeds])
    lines.append("| mean ± sd | " + " | ".join(cells) + f" | {m:.1f} ± {sd:.1f} min |")
    return lines


def summarize_main(a):
    """bench/run_main.sh: the main job once per seed; every seed must meet every target."""
    seeds = [main_seed(run) for run in a.runs]
    first = seeds[0]
    targets = {name: all(s["targets"][name] for s in seeds) for name in first["targets"]}
    result = {"what": "the main job (corpus, base (text, align), eval, CORD, eval against the base) once per seed "
                      "(bench/run_main.sh); every target must hold on every seed",
              "machine": benchlib.this_machine(),
              "commit": " ".join(sorted({c for s in seeds for c in s["commits"]})),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              "command": a.command, "config": a.config, "chance_accuracy": CHANCE, "targets": targets, "seeds": seeds}
    lines = [f"# Main job: {a.config}, {len(seeds)} seeds", "",
             f"`{a.command}` at commit {result['commit']} on {result['machine']['host']} "
             f"({result['machine']['cpu']}, {result['machine']['cores']} cores), {result['date'][:19]} UTC.", "",
             "Seed S sets `train.seed = S` (data order, task draws, rollouts) and `model.init_seed = 1233 + S` "
             "(initial weights); seed 1 is the embedded default, what `./setup.sh run` runs. Each seed builds its own "
             "base and runs CORD from it. Test split (780 items), greedy decoding; gap = the base's text accuracy - "
             "audio accuracy (points); gap reduction = 1 - gap / the base's gap; averages over the three families.", ""]
    lines += seed_table(seeds) + [""]
    lines += [f"Seed-1 base ({first['run']}), per family; WER over tokenizer pieces; chance accuracy "
              f"{', '.join(f'{k} {v:.1f}%' for k, v in CHANCE.items())}:", "",
              eval_table(os.path.join(first["run"], "eval", "eval.md")), "",
              "After CORD (`train.stage = distill` from that base, the embedded `[cord]` defaults):", "",
              eval_table(os.path.join(first["run"], "cord_eval", "eval.md")), ""]
    variant = os.path.join(first["run"], "current_teacher", "eval", "eval.json")
    if os.path.exists(variant):  # CORD_MAIN_CURRENT_TEACHER=1: not part of the job's wall time
        result["current_teacher_eval"] = benchlib.load(variant)
        lines += current_teacher_lines(first["cord_eval"]["baseline"], result["current_teacher_eval"]["baseline"])
    lines += ["Seed 1, wall time per step:", ""] + timing_lines(first["timings"], first["wall_seconds"])
    lines += [benchlib.targets_line("Targets (every seed)", targets), ""]
    benchlib.write_experiment(a.out, result, lines)


def current_teacher_lines(initial, current):
    lines = ["The same CORD step from the seed-1 base with `cord.teacher = current` (after the job, not in its wall "
             "time):", "",
             "| teacher | audio avg | text avg (change) | gap reduction | " +
             " | ".join(f"text {f}" for f in sorted(current["families"])) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(current["families"])]
    for name, c in (("initial (default)", initial), ("current", current)):
        lines.append(f"| {name} | {c['average']['audio_accuracy']:.1f} | {c['average']['text_accuracy']:.1f} "
                     f"({c['average']['text_change']:+.1f}) | {100 * (c['average']['gap_reduction'] or 0):+.1f}% | " +
                     " | ".join(f"{c['families'][f]['text_accuracy']:.1f}" for f in sorted(c["families"])) + " |")
    return lines + [""]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=("base", "main"), default="base")
    p.add_argument("--run", help="base: the pipeline's run folder")
    p.add_argument("--runs", nargs="+", help="main: one run folder a seed (bench/run_main.sh)")
    p.add_argument("--start", help="base: the run's start (seconds since the epoch)")
    p.add_argument("--end", help="base: its end")
    for arg in ("--config", "--command", "--out"):
        p.add_argument(arg, required=True)
    a = p.parse_args()
    if a.mode == "base":
        if not (a.run and a.start and a.end):
            p.error("--mode base needs --run, --start and --end")
        summarize_base(a)
    else:
        if not a.runs:
            p.error("--mode main needs --runs")
        summarize_main(a)


if __name__ == "__main__":
    main()
