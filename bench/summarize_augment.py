#!/usr/bin/env python3
"""bench/run_augment.sh's comparison: one align stage trained without and one with
[train.augment], each scored on the same test questions spoken by espeak-ng (the corpus's
voice) and by festival (never trained on), from the two heldout_voice JSON files, plus
each model's whole-test-split eval. Writes OUT.json and OUT.md."""
import argparse
import datetime

import benchlib


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for arg in ("--base", "--augmented", "--base-eval", "--augmented-eval", "--sets", "--align-seconds", "--command",
                "--out"):
        p.add_argument(arg, required=True)
    a = p.parse_args()
    models = {"base": benchlib.load(a.base), "augmented": benchlib.load(a.augmented)}
    evals = {"base": benchlib.load(a.base_eval), "augmented": benchlib.load(a.augmented_eval)}
    families = sorted(models["base"]["families"])
    result = {"what": "the align stage without and with training-time augmentation: audio accuracy and WER on "
                      "test questions spoken by espeak-ng and by festival (never trained on)",
              "machine": benchlib.this_machine(), "commit": benchlib.commit(),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(), "command": a.command,
              "augment_sets": a.sets.split(), "augmented_align_seconds": float(a.align_seconds),
              "heldout": models, "test_split": {k: v["average"] for k, v in evals.items()}}
    lines = ["# Training-time augmentation and a voice never trained on", "",
             f"`{a.command}` at commit {result['commit']} on {result['machine']['cpu']}.", "",
             f"The augmented align stage: `{' '.join(a.sets.split())}`, otherwise the base's align stage from the same "
             f"text stage and seed ({float(a.align_seconds) / 60:.1f} min). Greedy decoding; the first 70 test "
             "questions of each family; WER over tokenizer pieces of the model's transcript.", "",
             "| family | model | audio acc % (espeak-ng) | audio acc % (festival) | WER % (espeak-ng) | WER % (festival) |",
             "|---|---|---:|---:|---:|---:|"]
    for fam in families:
        for name, m in models.items():
            t = m["families"][fam]
            lines.append(f"| {fam} | {name} | {t['espeak_audio_accuracy']:.1f} | {t['festival_audio_accuracy']:.1f} | "
                         f"{t['espeak_wer']:.1f} | {t['festival_wer']:.1f} |")
    lines += ["", "The whole test split (espeak-ng), averaged over families:", "",
              "| model | text acc % | audio acc % | gap (pts) | WER % |", "|---|---:|---:|---:|---:|"]
    for name, e in evals.items():
        avg = e["average"]
        lines.append(f"| {name} | {avg['text_accuracy']:.1f} | {avg['audio_accuracy']:.1f} | {avg['gap']:.1f} | "
                     f"{avg['word_error_rate']:.1f} |")
    lines.append("")
    benchlib.write_experiment(a.out, result, lines)


if __name__ == "__main__":
    main()
