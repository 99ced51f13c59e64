"""Summarises bench/run_table1.sh into NAME.json, NAME.md and NAME.png: for the base and
every distill method, audio and text accuracy per family on the test split, the gap to the
base's text accuracy (gap = text acc of the base - audio acc of the method, as in the
paper), its reduction (1 - gap / gap_base), the text-accuracy change, wall time, the
step-by-step metrics of each run, and audio accuracy over steps (validation split) for all
methods. Target (issue): CORD reduces the average gap by >= 40% with text accuracy falling
<= 1 point."""
import argparse
import datetime
import json
import os

import benchlib


def records(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def row(scores, base):
    """Per family and average: accuracies, gap to the base's text accuracy, its reduction."""
    out = {}
    for key, cur in [("average", scores["average"])] + sorted(scores["families"].items()):
        ref = base["average"] if key == "average" else base["families"][key]
        base_gap = ref["text_accuracy"] - ref["audio_accuracy"]
        gap = ref["text_accuracy"] - cur["audio_accuracy"]
        out[key] = {"audio_accuracy": cur["audio_accuracy"], "text_accuracy": cur["text_accuracy"], "gap": gap,
                    "gap_reduction": 1.0 - gap / base_gap if base_gap > 0 else None,
                    "text_change": cur["text_accuracy"] - ref["text_accuracy"],
                    "audio_unparsed": cur["audio_unparsed"], "items": cur["items"]}
    return out


SPLIT_PARTS = ("rollout_ms", "teacher_ms", "student_ms", "window_comm_ms", "other_ms")


def time_split(step_records):
    """Mean ms per step of each part over the run (rank 0's; step records average their
    window), or None for records written before the split existed."""
    recs = [r for r in step_records if all(k in r for k in SPLIT_PARTS)]
    if not recs:
        return None
    out = {k: sum(r[k] for r in recs) / len(recs) for k in SPLIT_PARTS + ("window_ms_per_step",)}
    return out


def percent(x):
    return "-" if x is None else f"{100.0 * x:+.1f}%"


def plot(curves, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for method, points in curves.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=method)
    ax.set_xlabel("distill step")
    ax.set_ylabel("audio accuracy, validation split (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    p = argparse.ArgumentParser()
    for arg in ("--base", "--runs", "--config", "--start", "--end", "--command", "--out"):
        p.add_argument(arg, required=True)
    p.add_argument("--methods", nargs="+", required=True)
    a = p.parse_args()
    base = benchlib.load(os.path.join(a.runs, "base", "eval", "eval.json"))
    with open(os.path.join(a.runs, "timings.tsv")) as f:
        wall_of = {m: float(s) for m, s in (line.rstrip("\n").split("\t") for line in f if line.strip())}
    methods, curves, commits = {}, {}, set()
    for method in a.methods:
        scores = benchlib.load(os.path.join(a.runs, method, "eval", "eval.json"))
        recs = records(os.path.join(a.runs, method, "distill", "metrics.jsonl"))
        commits.add(recs[0]["commit"])
        vals = [r for r in recs if r["type"] == "validation"]
        curves[method] = [(v["step"], v["audio_accuracy"]) for v in vals]
        end = next(r for r in recs if r["type"] == "end")
        methods[method] = {"scores": row(scores, base), "wall_seconds": wall_of.get(method),
                           "steps": end["steps"], "skipped": end["skipped"], "train_seconds": end["seconds"],
                           "validation": [{k: v[k] for k in ("step", "audio_accuracy", "text_accuracy")} for v in vals],
                           "step_records": [r for r in recs if r["type"] == "step"],
                           "time_split_ms": time_split([r for r in recs if r["type"] == "step"])}
    wall = float(a.end) - float(a.start)
    target = None
    if "cord" in methods:
        avg = methods["cord"]["scores"]["average"]
        target = {"gap_reduction_at_least_40_percent": avg["gap_reduction"] is not None and avg["gap_reduction"] >= 0.40,
                  "text_accuracy_falls_at_most_1_point": avg["text_change"] >= -1.0}
    result = {"what": "Table 1: distill methods from one base model (bench/run_table1.sh)",
              "machine": benchlib.this_machine(),
              "commit": " ".join(sorted(commits)), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              "command": a.command, "config": a.config, "wall_seconds": wall,
              "base": {"weights": base.get("weights"), "scores": row(base, base)}, "methods": methods,
              "targets": target}
    plot(curves, a.out + ".png")

    families = sorted(base["families"])
    head = "| method | " + " | ".join(f"audio {f}" for f in families) + " | audio avg | text avg | gap | gap reduction | text change | wall |"
    lines = [f"# Table 1: {a.config}", "",
             f"`{a.command}` at commit {result['commit']} on {result['machine']['host']} "
             f"({result['machine']['cpu']}, {result['machine']['cores']} cores), {result['date'][:19]} UTC; "
             f"total wall time {wall / 60:.1f} min.", "",
             "Test split, greedy decoding, accuracy in %. gap = the base's text accuracy - the method's audio "
             "accuracy (points); gap reduction = 1 - gap / gap(base); text change = text accuracy - the base's.", "",
             head, "|---|" + "---:|" * (len(families) + 6)]

    def line(name, sc, wall_s):
        avg = sc["average"]
        cells = [f"{sc[f]['audio_accuracy']:.1f}" for f in families]
        return (f"| {name} | " + " | ".join(cells) + f" | **{avg['audio_accuracy']:.1f}** | {avg['text_accuracy']:.1f} | "
                f"{avg['gap']:.1f} | {percent(avg['gap_reduction']) if name != 'base' else '-'} | "
                f"{avg['text_change']:+.1f} | {'-' if wall_s is None else f'{wall_s / 60:.1f} min'} |")

    lines.append(line("base", result["base"]["scores"], None))
    for method, m in methods.items():
        lines.append(line(method, m["scores"], m["wall_seconds"]))
    lines += ["", "Text accuracy per family:", "", "| method | " + " | ".join(families) + " |",
              "|---|" + "---:|" * len(families)]
    lines.append("| base | " + " | ".join(f"{result['base']['scores'][f]['text_accuracy']:.1f}" for f in families) + " |")
    for method, m in methods.items():
        lines.append(f"| {method} | " + " | ".join(f"{m['scores'][f]['text_accuracy']:.1f}" for f in families) + " |")
    lines += ["", "Where a distill step's time goes (rank 0, mean over the run): rollout = the batched KV-cached "
              "generation of every rollout; teacher = the teacher's no-grad forward; student = forward, losses and "
              "backward; comm = blocked in collectives; other = judge, clipping, AdamW.", "",
              "| method | ms/step | rollout | teacher | student fwd+bwd | comm | other |", "|---|---:|---:|---:|---:|---:|---:|"]
    for method, m in methods.items():
        t = m["time_split_ms"]
        if t is None:
            lines.append(f"| {method} | - | - | - | - | - | - |")
            continue
        shares = " | ".join(f"{100 * t[k] / t['window_ms_per_step']:.0f}%" for k in SPLIT_PARTS)
        lines.append(f"| {method} | {t['window_ms_per_step']:.0f} | {shares} |")
    lines += ["", f"Audio accuracy over steps (validation split): {os.path.basename(a.out)}.png", ""]
    if target is not None:
        lines += [benchlib.targets_line("Targets (cord)", target), ""]
    benchlib.write_experiment(a.out, result, lines)


if __name__ == "__main__":
    main()
