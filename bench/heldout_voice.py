#!/usr/bin/env python3
"""A voice no model here trained on (bench/run_heldout_voice.sh): test questions of a corpus
spoken by festival (its default English voice, kal_diphone) instead of espeak-ng.

  heldout_voice.py prepare --corpus C --out DIR [--per-family N]
      the first N test items of each family (corpus row order): DIR/wav/ROW.wav spoken by
      festival's text2wave in the corpus's spoken form (digits one by one, + - = as words,
      option labels as "option ay,"; the rules of src/data/speech.cpp), DIR/manifest.tsv for
      `cord corpus import`, DIR/rows.json (manifest line -> corpus row)
  heldout_voice.py summarize --dir DIR --espeak-eval EVAL --festival-eval EVAL --out OUT
      per family, on the same items: audio accuracy and transcript WER of one model from
      espeak-ng's audio (its eval of the whole corpus, these rows picked) and from
      festival's; OUT.json and OUT.md
"""
import argparse
import datetime
import json
import os
import subprocess
import sys

import benchlib

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
LETTERS = ["ay", "bee", "see", "dee", "ee", "eff"]
PUNCT_NO_SPACE_BEFORE = set(".,?:;!)")


def canonical(pieces):
    """Tokenizer pieces -> canonical text (include/cord/data/tokenizer.hpp)."""
    out = ""
    for i, p in enumerate(pieces):
        prev = pieces[i - 1] if i else None
        glued = (not out or p in PUNCT_NO_SPACE_BEFORE or prev == "(" or (p.isdigit() and prev is not None and prev.isdigit()))
        out += p if glued else " " + p
    return out


def spoken(text):
    """The corpus's spoken form of canonical text, digit by digit."""
    words, i = [], 0
    while i < len(text):
        c = text[i]
        if c.isdigit():
            words.append(ONES[int(c)])
            i += 1
            continue
        if (i == 0 or text[i - 1] == " ") and c in "ABCDEF" and text[i + 1:i + 2] == ":":
            words.append(f"option {LETTERS['ABCDEF'.index(c)]},")
            i += 2
            continue
        if c in "+-=":
            words.append({"+": "plus", "-": "minus", "=": "equals"}[c])
            i += 1
            continue
        if c == " ":
            words.append("")
        else:
            if not words or words[-1] == "":
                words.append(c)
            else:
                words[-1] += c
        i += 1
    return " ".join(w for w in words if w)


def test_items(corpus, per_family):
    import h5py
    with h5py.File(corpus, "r") as f:
        vocab = bytes(f["tokenizer/vocab"][:]).decode().split("\n")
        families = f.attrs["families"].split(",") if isinstance(f.attrs["families"], str) else \
            f.attrs["families"].decode().split(",")
        split, family = f["items/split"][:], f["items/family"][:]

        def text(name, row):
            tokens, offsets = f[f"text/{name}_tokens"], f[f"text/{name}_offsets"]
            return canonical([vocab[t] for t in tokens[offsets[row]:offsets[row + 1]]])
        chosen = []
        for fam_id, fam in enumerate(families):
            rows = [r for r in range(len(split)) if split[r] == 2 and family[r] == fam_id][:per_family]
            chosen += [{"row": r, "family": fam, "question": text("question", r), "answer": text("answer", r),
                        "solution": text("solution", r)} for r in rows]
    return chosen


def prepare(a):
    os.makedirs(os.path.join(a.out, "wav"), exist_ok=True)
    items = test_items(a.corpus, a.per_family)
    lines = ["wav\tquestion\tanswer\tfamily\tsplit\tsolution"]
    for item in items:
        wav = os.path.join("wav", f"{item['row']}.wav")
        proc = subprocess.run(["text2wave", "-o", os.path.join(a.out, wav)], input=spoken(item["question"]),
                              text=True, capture_output=True)
        if proc.returncode != 0:
            sys.exit(f"heldout_voice: text2wave failed on corpus row {item['row']}: {proc.stderr.strip()}")
        lines.append("\t".join([wav, item["question"], item["answer"], item["family"], "test", item["solution"]]))
    with open(os.path.join(a.out, "manifest.tsv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(a.out, "rows.json"), "w") as f:
        json.dump([i["row"] for i in items], f)
    print(f"heldout_voice: {len(items)} questions spoken by festival -> {a.out}/manifest.tsv", file=sys.stderr)


def word_errors(hypothesis, reference):
    """Levenshtein distance between two word lists."""
    prev = list(range(len(reference) + 1))
    for i, h in enumerate(hypothesis, 1):
        cur = [i] + [0] * len(reference)
        for j, r in enumerate(reference, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (h != r))
        prev = cur
    return prev[-1]


def pieces(text):
    out, word = [], ""
    for c in text:
        if c.isalpha() or c == "'":
            word += c
            continue
        if word:
            out.append(word)
            word = ""
        if not c.isspace():
            out.append(c)
    return out + ([word] if word else [])


def scores(predictions, rows_by_key, questions):
    """family -> (items, audio correct, word errors, reference words) over the chosen items."""
    out = {}
    for p in predictions:
        if p["row"] not in rows_by_key:
            continue
        key = rows_by_key[p["row"]]
        ref = pieces(questions[key])
        s = out.setdefault(p["family"], [0, 0, 0, 0])
        s[0] += 1
        s[1] += int(bool(p["audio_correct"]))
        s[2] += word_errors(pieces(p.get("transcript", "")), ref)
        s[3] += len(ref)
    return out


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def summarize(a):
    rows = json.load(open(os.path.join(a.dir, "rows.json")))
    with open(os.path.join(a.dir, "manifest.tsv")) as f:
        manifest = [line.rstrip("\n").split("\t") for line in f][1:]
    questions = {i: m[1] for i, m in enumerate(manifest)}
    # espeak: the corpus's rows; festival: the imported corpus's rows are the manifest lines.
    espeak = scores(read_jsonl(os.path.join(a.espeak_eval, "predictions.jsonl")), {r: i for i, r in enumerate(rows)},
                    questions)
    festival = scores(read_jsonl(os.path.join(a.festival_eval, "predictions.jsonl")), {i: i for i in range(len(rows))},
                      questions)
    # Both evals must score every chosen question: an espeak-ng eval cut short by eval.max_items
    # would otherwise compare festival's 70 a family with fewer espeak-ng items.
    for name, got in (("espeak-ng", espeak), ("festival", festival)):
        if sum(s[0] for s in got.values()) != len(rows):
            counts = {fam: s[0] for fam, s in got.items()}
            sys.exit(f"heldout_voice: the {name} eval scores {counts} of the {len(rows)} chosen questions "
                     f"(rows.json); evaluate more of the test split (eval.max_items)")
    table = {}
    for fam in sorted(set(espeak) | set(festival)):
        e, v = espeak.get(fam, [0, 0, 0, 1]), festival.get(fam, [0, 0, 0, 1])
        table[fam] = {"items": v[0], "espeak_audio_accuracy": 100 * e[1] / max(e[0], 1),
                      "festival_audio_accuracy": 100 * v[1] / max(v[0], 1),
                      "espeak_wer": 100 * e[2] / e[3], "festival_wer": 100 * v[2] / v[3]}
    result = {"what": "one model's audio accuracy and transcript WER on the same test questions spoken by espeak-ng "
                      "(the corpus) and by festival (kal_diphone, never trained on)",
              "machine": benchlib.this_machine(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              "commit": benchlib.commit(), "command": a.command, "espeak_eval": a.espeak_eval,
              "festival_eval": a.festival_eval, "families": table}
    lines = [f"# A held-out voice: festival vs espeak-ng", "", f"`{a.command}` at commit {result['commit']}.", "",
             "The same test questions, greedy decoding; WER over tokenizer pieces of the model's transcript.", "",
             "| family | items | audio acc % (espeak-ng) | audio acc % (festival) | WER % (espeak-ng) | WER % (festival) |",
             "|---|---:|---:|---:|---:|---:|"]
    for fam, t in table.items():
        lines.append(f"| {fam} | {t['items']} | {t['espeak_audio_accuracy']:.1f} | {t['festival_audio_accuracy']:.1f} | "
                     f"{t['espeak_wer']:.1f} | {t['festival_wer']:.1f} |")
    lines.append("")
    benchlib.write_experiment(a.out, result, lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    pr = sub.add_parser("prepare")
    pr.add_argument("--corpus", required=True)
    pr.add_argument("--out", required=True)
    pr.add_argument("--per-family", type=int, default=70)
    su = sub.add_parser("summarize")
    su.add_argument("--dir", required=True)
    su.add_argument("--espeak-eval", required=True)
    su.add_argument("--festival-eval", required=True)
    su.add_argument("--out", required=True)
    su.add_argument("--command", default="bench/run_heldout_voice.sh")
    a = p.parse_args()
    prepare(a) if a.what == "prepare" else summarize(a)


if __name__ == "__main__":
    main()
