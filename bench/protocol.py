"""The transfer protocol (bench/run_protocol.sh, docs/experiments.md#the-transfer-protocol).

  python3 bench/protocol.py plan        the cells to run, one per line, most important first:
                                        CELL<TAB>REGIME<TAB>STEPS<TAB>METHOD<TAB>SEED<TAB>SETS
  python3 bench/protocol.py archive --base-run BASE_RUN --runs RUNS --archive DIR [--cell CELL]
                                        records the base's eval and the finished cells in DIR
  python3 bench/protocol.py summarize --archive DIR --out OUT [--command C]
                                        OUT.json, OUT.md and OUT.png from the archived cells

A cell is one distill run from the base and its eval: RUNS/CELL/{distill,eval,wall.tsv}.
Its record in the archive (DIR/CELL.json, a few kB: per-item correctness, the eval's
report, the validation curve, ms/step, wall time) is what the summary reads, and what a
later sitting keeps: the run folders (checkpoints, the corpus) may be gone. DIR/base.json
is the base's eval with its fingerprints: the SHA-256 of the base checkpoint's bytes (every
cell record carries the one it started from; records of another base are refused rather
than mixed), of the test items it was scored on (row, family, answer: a regenerated corpus
must give the same), and of its predictions (on another CPU they may differ in a few items,
which is reported; the archived eval stays the base). Training is not bit-exact across CPU
models, so a cell is one sample of its method on the machine its record names.
Regimes: transfer (distil on the arithmetic family alone, train.families = arithmetic) and
in_domain (every family); both evaluate every family of the test split. The plan is the
product of the environment's knobs (defaults in brackets):
  CORD_REGIMES        [transfer in_domain]
  CORD_BUDGETS        [1000 3000] distill steps; the first budget is the seeded one
  CORD_METHODS        [cord cord-unweighted opd grpo sft fkl]
  CORD_SEEDED_METHODS [cord sft fkl] run with every seed of CORD_SEEDS at the first budget
  CORD_SEEDS          [1 2 3] (every other cell runs seed 1)
  CORD_LONG_REGIMES   [transfer] the regimes that run the longer budgets too (the paper's
                      3,000 steps are its transfer setting; in_domain is Table 1's 1,000)
  CORD_LONG_SEEDS     [1 2] the seeds of CORD_SEEDED_METHODS at the longer budgets (every
                      other method runs seed 1 there)
  CORD_VARIANTS       [] names of VARIANTS below, each run at the first budget, transfer regime,
                      with CORD_VARIANT_SEEDS [1 2]; a warm-started variant's budget counts
                      its warm start's steps (its cell is named by the whole budget)
Order: the first budget (for each regime its seed-1 cells, then the other seeds), then the
longer budgets (the same order); variants last. A killed protocol resumes where it
stopped: a cell with an eval is done, a cell without one continues from its newest
checkpoint.

Statistics: gap reduction = 1 - gap / gap(base) with gap = the base's text accuracy minus
the method's audio accuracy, on the in-domain family (arithmetic), the out-of-domain ones
(multiple choice and ordering) and all three; a part's accuracy is the mean of its
families' accuracies, as cord eval averages. The interval of a difference between
two methods is a paired bootstrap: every replicate draws the test items with replacement
within each family (the same items for both methods and the base) and, for each method,
its seeds with replacement; a method's per-item accuracy is the mean over its drawn seeds.
95% = the 2.5th and 97.5th percentiles of 4,000 replicates. A difference is claimed only
when its interval excludes 0.
"""
import argparse
import datetime
import hashlib
import json
import os
import sys

import benchlib

METHODS = ["cord", "cord-unweighted", "opd", "grpo", "sft", "fkl"]
IN_DOMAIN = ("arithmetic",)
OUT_OF_DOMAIN = ("multiple_choice", "ordering")
# CORD variants (docs/method.md#variants): name -> (method, overrides, warm start). A warm
# start (METHOD, STEPS) first runs that method for STEPS steps (its own cell) and starts the
# variant from its weights for the rest of the budget.
VARIANTS = {
    # Balancing the two terms: token_mean makes the token term a mean over tokens (about
    # 27 times smaller here), so that GRPO's share grows; the second also weights GRPO 4x.
    "cord-token-mean": ("cord", ["cord.aggregation=token_mean"], None),
    "cord-token-mean-seq4": ("cord", ["cord.aggregation=token_mean", "cord.sequence_loss_weight=4"], None),
    "cord-k-fraction": ("cord", ["cord.top_k_fraction=0.1"], None),       # the paper's 20 of ~200
    "cord-group-tokens": ("cord", ["cord.token_rollouts=group"], None),   # N x more on-policy tokens
    "cord-fkl-mixture": ("cord", ["cord.fkl_mixture=0.5"], None),         # GKD-style lambda
    "sft-then-cord": ("cord", [], ("sft", 500)),                          # half SFT, then CORD
}
BOOTSTRAP_REPLICATES = 4000
RECORD_FORMAT = 1  # of the archive's records (base.json, CELL.json)


def words(name, default):
    return os.environ.get(name, default).split()


def cell_name(regime, steps, label, seed):
    return f"{regime}-{steps}/{label}-s{seed}"


def planned_budgets():
    """CORD_BUDGETS: the distill budgets of the plan, the seeded one first."""
    return [int(b) for b in words("CORD_BUDGETS", "1000 3000")]


def plan():
    """[(cell, regime, steps, label, method, seed, sets)] in the order they should run."""
    regimes = words("CORD_REGIMES", "transfer in_domain")
    budgets = planned_budgets()
    methods = words("CORD_METHODS", " ".join(METHODS))
    seeded = set(words("CORD_SEEDED_METHODS", "cord sft fkl"))
    seeds = [int(s) for s in words("CORD_SEEDS", "1 2 3")]
    cells = []

    def add(regime, steps, label, method, seed, extra=(), budget=None):
        # budget: the steps the cell is named and tabled by (a warm-started variant trains
        # fewer itself); default its own steps.
        budget = budget or steps
        sets = [f"cord.method={method}", f"train.seed={seed}", f"train.distill.steps={steps}",
                f"train.val_every={max(1, steps // 20)}"]
        if regime == "transfer":
            sets.append("train.families=arithmetic")
        cells.append((cell_name(regime, budget, label, seed), regime, budget, label, method, seed, sets + list(extra)))

    for knob in ("CORD_REGIMES", "CORD_LONG_REGIMES"):
        for regime in words(knob, ""):
            if regime not in ("transfer", "in_domain"):
                sys.exit(f"protocol.py: {knob}: unknown regime '{regime}' (transfer, in_domain)")
    for m in methods:
        if m not in METHODS:
            sys.exit(f"protocol.py: CORD_METHODS: unknown method '{m}' ({', '.join(METHODS)})")
    for regime in regimes:
        for m in methods:
            add(regime, budgets[0], m, m, 1)
        for seed in seeds[1:]:
            for m in methods:
                if m in seeded:
                    add(regime, budgets[0], m, m, seed)
    long_regimes = words("CORD_LONG_REGIMES", "transfer")
    long_seeds = [int(s) for s in words("CORD_LONG_SEEDS", "1 2")]
    for steps in budgets[1:]:
        for regime in [r for r in regimes if r in long_regimes]:
            for m in methods:
                add(regime, steps, m, m, 1)
            for seed in long_seeds[1:]:
                for m in methods:
                    if m in seeded:
                        add(regime, steps, m, m, seed)
    for name in words("CORD_VARIANTS", ""):
        if name not in VARIANTS:
            sys.exit(f"protocol.py: CORD_VARIANTS: unknown variant '{name}' ({', '.join(VARIANTS)})")
        method, extra, warm = VARIANTS[name]
        for seed in [int(s) for s in words("CORD_VARIANT_SEEDS", "1 2")]:
            if warm is None:
                add("transfer", budgets[0], name, method, seed, extra)
                continue
            warm_method, warm_steps = warm
            if not 0 < warm_steps < budgets[0]:
                sys.exit(f"protocol.py: variant {name}: a warm start of {warm_steps} steps does not fit "
                         f"the budget of {budgets[0]}")
            warm_cell = cell_name("transfer", warm_steps, warm_method, seed)
            if warm_cell not in {c[0] for c in cells}:
                add("transfer", warm_steps, warm_method, warm_method, seed)
            # @RUNS@ is the protocol's folder (bench/protocol_lib.sh substitutes it).
            add("transfer", budgets[0] - warm_steps, name, method, seed,
                extra + [f"train.init=@RUNS@/{warm_cell}/distill/model.h5"], budget=budgets[0])
    return cells


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def item_table(eval_dir):
    """row -> (family, text_correct, audio_correct) from an eval's predictions.jsonl."""
    out = {}
    for p in read_jsonl(os.path.join(eval_dir, "predictions.jsonl")):
        if "audio_correct" not in p:
            sys.exit(f"protocol.py: {eval_dir}/predictions.jsonl has no per-item correctness (an older cord eval)")
        out[p["row"]] = (p["family"], bool(p["text_correct"]), bool(p["audio_correct"]))
    return out


def wall_seconds(cell_dir):
    """Sum of the cell's training segments (one per start; a resumed cell has several)."""
    path = os.path.join(cell_dir, "wall.tsv")
    if not os.path.exists(path):
        return None
    total = 0.0
    with open(path) as f:
        for line in f:
            start, end = line.split()[:2]
            total += float(end) - float(start)
    return total


def cell_from_run(runs, cell):
    """The finished cell RUNS/CELL as a dict (None while its eval is missing)."""
    d = os.path.join(runs, cell[0])
    if not os.path.exists(os.path.join(d, "eval", "eval.json")):
        return None
    report = benchlib.load(os.path.join(d, "eval", "eval.json"))
    recs = read_jsonl(os.path.join(d, "distill", "metrics.jsonl"))
    header = next(r for r in recs if r["type"] == "header")

    def last_per_step(kind):
        # A resumed (or restarted) cell appends: the later segment's record of a step wins.
        by_step = {r["step"]: r for r in recs if r["type"] == kind}
        return [by_step[k] for k in sorted(by_step)]
    steps = last_per_step("step")
    return {"cell": cell[0], "regime": cell[1], "steps": cell[2], "label": cell[3], "method": cell[4],
            "seed": cell[5], "sets": cell[6], "items": item_table(os.path.join(d, "eval")),
            "report": report, "kl": report.get("text_kl_from_reference"), "commit": report.get("commit"),
            "train_commit": header.get("commit"),
            "ms_per_step": sum(r["window_ms_per_step"] for r in steps) / len(steps) if steps else None,
            "wall_seconds": wall_seconds(d),
            "validation": [(r["step"], r["audio_accuracy"], r["text_accuracy"]) for r in last_per_step("validation")]}


# --- the archive: one small record per cell, kept across sittings -----------------------------

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def predictions_sha256(eval_dir):
    """Of the eval's predictions, order-free (ranks write their rows in any order)."""
    lines = sorted(json.dumps(p, sort_keys=True) for p in read_jsonl(os.path.join(eval_dir, "predictions.jsonl")))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def pack_items(table):
    """row -> (family, text, audio) as rows + two 0/1 strings (the records stay a few kB)."""
    rows = sorted(table)
    return {"rows": rows, "families": [table[r][0] for r in rows],
            "text_correct": "".join("1" if table[r][1] else "0" for r in rows),
            "audio_correct": "".join("1" if table[r][2] else "0" for r in rows)}


def unpack_items(record, path):
    rows, fams, text, audio = (record[k] for k in ("rows", "families", "text_correct", "audio_correct"))
    if not len(rows) == len(fams) == len(text) == len(audio):
        sys.exit(f"protocol.py: {path}: rows, families, text_correct and audio_correct differ in length")
    return {r: (f, t == "1", a == "1") for r, f, t, a in zip(rows, fams, text, audio)}


def write_json_atomically(path, value):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def read_record(path):
    record = benchlib.load(path)
    if record.get("format") != RECORD_FORMAT:
        sys.exit(f"protocol.py: {path}: record format {record.get('format')}, this protocol.py reads {RECORD_FORMAT}")
    return record


def test_items_sha256(eval_dir):
    """Of the test split's items as the eval saw them (row, family, answer): the corpus's
    identity, whatever the model answered."""
    lines = sorted(json.dumps([p["row"], p["family"], p["answer"]]) for p in
                   read_jsonl(os.path.join(eval_dir, "predictions.jsonl")))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def archive_base(a, model_sha):
    """Writes DIR/base.json from RUNS/base/eval, or checks that this base is the archived one:
    the same weights (their bytes) and the same test items. Its predictions may differ on
    another CPU (another kernel's rounding flips a greedy choice now and then): that is
    reported, and the archived eval stays the protocol's base."""
    path = os.path.join(a.archive, "base.json")
    eval_dir = os.path.join(a.runs, "base", "eval")
    have_eval = os.path.exists(os.path.join(eval_dir, "eval.json"))
    if os.path.exists(path):
        archived = read_record(path)
        if archived["model_sha256"] != model_sha:
            sys.exit(f"protocol.py: {a.base_run}/align/model.h5 (sha256 {model_sha[:12]}) is not the base the "
                     f"records in {a.archive} started from ({path}: {archived['model_sha256'][:12]}); use another "
                     f"archive (CORD_PROTOCOL_ARCHIVE) or that base")
        if not have_eval:
            return
        if test_items_sha256(eval_dir) != archived["test_items_sha256"]:
            sys.exit(f"protocol.py: the base's eval {eval_dir}/predictions.jsonl scored other test items than the "
                     f"archived one ({path}): same weights, another corpus (regenerated with another config?)")
        if predictions_sha256(eval_dir) != archived["predictions_sha256"]:
            here, there = item_table(eval_dir), unpack_items(archived, path)
            flips = sum(here[r][1:] != there[r][1:] for r in there)
            print(f"protocol.py: note: the base's eval here differs from the archived one ({archived['machine']['cpu']}) "
                  f"on {flips} of {len(there)} items; the archived eval stays the base", file=sys.stderr)
        return
    if not have_eval:
        return  # the base's eval comes later (the Slurm assembly job); cells carry model_sha256
    write_json_atomically(path, {"format": RECORD_FORMAT, "model_sha256": model_sha,
                                 "test_items_sha256": test_items_sha256(eval_dir),
                                 "predictions_sha256": predictions_sha256(eval_dir), "machine": benchlib.this_machine(),
                                 "report": benchlib.load(os.path.join(eval_dir, "eval.json")),
                                 **pack_items(item_table(eval_dir))})


def archive(a):
    """Records the base (archive_base) and every finished, not yet archived cell of the plan
    (or only --cell); an archived cell is never rewritten."""
    model_sha = sha256_file(os.path.join(a.base_run, "align", "model.h5"))
    archive_base(a, model_sha)
    for cell in plan():
        if a.cell and cell[0] != a.cell:
            continue
        path = os.path.join(a.archive, cell[0] + ".json")
        c = None if os.path.exists(path) else cell_from_run(a.runs, cell)
        if c is None:
            continue
        record = {"format": RECORD_FORMAT, "base_model_sha256": model_sha, "machine": benchlib.this_machine(),
                  **pack_items(c.pop("items")), **{k: v for k, v in c.items() if k != "kl"}}
        write_json_atomically(path, record)
        print(f"protocol.py: archived {cell[0]} -> {path}", file=sys.stderr)


def load_archive(directory):
    """(base table, base record, [cell dicts]) of the planned cells found in the archive."""
    base_path = os.path.join(directory, "base.json")
    if not os.path.exists(base_path):
        sys.exit(f"protocol.py: {base_path} is missing (bench/run_protocol.sh records the base's eval there)")
    base_record = read_record(base_path)
    base = unpack_items(base_record, base_path)
    cells = []
    for cell in plan():
        path = os.path.join(directory, cell[0] + ".json")
        if not os.path.exists(path):
            continue
        r = read_record(path)
        if r["base_model_sha256"] != base_record["model_sha256"]:
            sys.exit(f"protocol.py: {path} started from base {r['base_model_sha256'][:12]}, "
                     f"{base_path} is {base_record['model_sha256'][:12]}")
        if list(r["sets"]) != list(cell[6]):
            sys.exit(f"protocol.py: {path} ran with {' '.join(r['sets'])}, the plan says {' '.join(cell[6])}")
        c = {k: v for k, v in r.items() if k not in ("rows", "families", "text_correct", "audio_correct")}
        c["items"] = unpack_items(r, path)
        c["kl"] = r["report"].get("text_kl_from_reference")
        c["validation"] = [tuple(v) for v in r["validation"]]
        cells.append(c)
    return base, base_record, cells


# --- statistics -------------------------------------------------------------------------------

def accuracy(rows, table, column):
    """Percent of `rows` correct in `table` (row -> (family, text, audio)); column 1 text, 2 audio."""
    return 100.0 * sum(table[r][column] for r in rows) / len(rows)


PARTS = {"in_domain": IN_DOMAIN, "out_of_domain": OUT_OF_DOMAIN, "all": IN_DOMAIN + OUT_OF_DOMAIN}


def families_of(base):
    """family -> its rows (test items), from the base's table."""
    fam = {}
    for row, (family, _, _) in base.items():
        fam.setdefault(family, []).append(row)
    return fam


def part_accuracy(families, part, table, column):
    """The mean over the part's families of each family's accuracy (as cord eval averages)."""
    fams = [f for f in PARTS[part] if f in families]
    return sum(accuracy(families[f], table, column) for f in fams) / len(fams)


def gap_reduction(families, part, base, tables):
    """1 - gap / gap(base) on a part, with the method's audio accuracy averaged over its seeds'
    tables; None when the base has no gap there."""
    base_text, base_audio = part_accuracy(families, part, base, 1), part_accuracy(families, part, base, 2)
    audio = sum(part_accuracy(families, part, t, 2) for t in tables) / len(tables)
    base_gap = base_text - base_audio
    return None if base_gap <= 0 else 1.0 - (base_text - audio) / base_gap


def bootstrap_difference(base, a_tables, b_tables, rng):
    """Paired bootstrap of GR(a) - GR(b) per part: {part: {estimate, low, high, excludes_zero}}."""
    import numpy as np
    families = families_of(base)
    estimates = {}
    for p in PARTS:
        a, b = gap_reduction(families, p, base, a_tables), gap_reduction(families, p, base, b_tables)
        estimates[p] = None if a is None or b is None else a - b
    # Per family, [items, 2] arrays of 0/1 (text, audio) in one fixed row order, for speed.
    def matrix(table, fam):
        return np.array([[table[r][1], table[r][2]] for r in families[fam]], dtype=float)
    base_m = {f: matrix(base, f) for f in families}
    a_m = [{f: matrix(t, f) for f in families} for t in a_tables]
    b_m = [{f: matrix(t, f) for f in families} for t in b_tables]
    draws = {p: [] for p in PARTS}
    for _ in range(BOOTSTRAP_REPLICATES):
        a_pick = rng.integers(0, len(a_m), len(a_m))
        b_pick = rng.integers(0, len(b_m), len(b_m))
        means = {}  # family -> (base text, base audio, a audio, b audio) accuracies on the drawn items
        for f in families:
            i = rng.integers(0, len(families[f]), len(families[f]))
            means[f] = (base_m[f][i, 0].mean(), base_m[f][i, 1].mean(),
                        np.mean([a_m[k][f][i, 1].mean() for k in a_pick]),
                        np.mean([b_m[k][f][i, 1].mean() for k in b_pick]))
        for p, fams in PARTS.items():
            fams = [f for f in fams if f in means]
            m = [sum(means[f][k] for f in fams) / len(fams) for k in range(4)]
            gap = m[0] - m[1]
            if gap <= 0:
                continue
            draws[p].append((m[2] - m[3]) / gap)  # GR(a) - GR(b) = (audio_a - audio_b) / gap(base)
    out = {}
    for p, d in draws.items():
        if estimates[p] is None or len(d) < BOOTSTRAP_REPLICATES // 2:
            out[p] = None  # the base has no gap on these items: no gap reduction to compare
            continue
        low, high = np.percentile(np.array(d), 2.5), np.percentile(np.array(d), 97.5)
        out[p] = {"estimate": estimates[p], "low": float(low), "high": float(high),
                  "excludes_zero": bool(low > 0 or high < 0)}
    return out


# --- summary ----------------------------------------------------------------------------------

def group_rows(cells, base):
    """(regime, steps, label) -> the row of the table: means and spreads over seeds."""
    families = families_of(base)
    groups = {}
    for c in cells:
        groups.setdefault((c["regime"], c["steps"], c["label"]), []).append(c)
    out = {}
    for key, members in groups.items():
        members.sort(key=lambda c: c["seed"])
        tables = [m["items"] for m in members]
        row = {"regime": key[0], "steps": key[1], "label": key[2], "method": members[0]["method"],
               "sets": members[0]["sets"], "seeds": [m["seed"] for m in members], "cells": [m["cell"] for m in members]}
        for part in PARTS:
            per_seed = [gap_reduction(families, part, base, [t]) for t in tables]
            row[f"gap_reduction_{part}"] = [None if g is None else 100 * g for g in per_seed]
            row[f"audio_{part}"] = [part_accuracy(families, part, t, 2) for t in tables]
            row[f"text_change_{part}"] = [part_accuracy(families, part, t, 1) - part_accuracy(families, part, base, 1)
                                          for t in tables]
        for fam, rows in families.items():
            row[f"text_change_{fam}"] = [accuracy(rows, t, 1) - accuracy(rows, base, 1) for t in tables]
            row[f"audio_{fam}"] = [accuracy(rows, t, 2) for t in tables]
            row[f"kl_{fam}"] = [m["kl"]["families"][fam]["kl"] if m["kl"] else None for m in members]
        row["kl_all"] = [m["kl"]["average"] if m["kl"] else None for m in members]
        row["ms_per_step"] = [m["ms_per_step"] for m in members]
        row["wall_seconds"] = [m["wall_seconds"] for m in members]
        row["validation"] = [m["validation"] for m in members]
        row["commits"] = sorted({m["commit"] for m in members} | {m["train_commit"] for m in members})
        out[key] = row
    return out


def mean_sd(values):
    import numpy as np
    v = [x for x in values if x is not None]
    if not v:
        return None, None
    return float(np.mean(v)), (float(np.std(v, ddof=1)) if len(v) > 1 else None)


def fmt(values, digits=1, signed=False):
    m, s = mean_sd(values)
    if m is None:
        return "-"
    text = f"{m:+.{digits}f}" if signed else f"{m:.{digits}f}"
    return text + (f" ± {s:.{digits}f}" if s is not None else "")


def equal_wall_time(rows):
    """Per (regime, steps): the wall time W of the cheapest method's whole run, and each
    method's validation audio accuracy at W (its curve at the last validation before W, on
    its mean ms/step), the equal-time comparison."""
    out = {}
    by_budget = {}
    for key, r in rows.items():
        by_budget.setdefault(key[:2], []).append(r)
    for budget, members in by_budget.items():
        walls = [(mean_sd(r["ms_per_step"])[0] or 0) * budget[1] / 1000.0 for r in members]
        w = min(walls)
        entries = {}
        for r in members:
            ms = mean_sd(r["ms_per_step"])[0]
            reached = int(w * 1000.0 / ms) if ms else 0
            accs = []
            for curve in r["validation"]:
                before = [a for s, a, _ in curve if s <= reached]
                accs.append(before[-1] if before else None)
            entries[r["label"]] = {"steps_in_wall_time": reached, "validation_audio_accuracy": accs}
        out[f"{budget[0]}-{budget[1]}"] = {"wall_seconds": w, "methods": entries}
    return out


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    # One panel of the methods per budget of the plan (a warm start's shorter budget is left
    # to the tables, unless it is all there is), and one of the CORD variants next to cord.
    budgets = {k[:2] for k in rows if k[1] in planned_budgets()} or {k[:2] for k in rows}
    panels = []
    for budget in sorted(budgets, key=lambda b: (b[0] != "transfer", b[1])):
        members = sorted(k for k in rows if k[:2] == budget)
        methods = [k for k in members if k[2] in METHODS]
        variants = [k for k in members if k[2] not in METHODS]
        if methods:
            panels.append((f"{budget[0]}, {budget[1]} steps", methods))
        if variants:
            reference = [k for k in methods if k[2] == "cord"]
            panels.append((f"{budget[0]}, {budget[1]} steps: CORD variants", reference + variants))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.2), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels):
        for key in keys:
            r = rows[key]
            # A warm-started variant's curve starts where its warm start ended.
            own = int(next(x.split("=", 1)[1] for x in r["sets"] if x.startswith("train.distill.steps=")))
            offset = r["steps"] - own
            steps = [s + offset for s, _, _ in r["validation"][0]]
            curves = [c for c in r["validation"] if [s + offset for s, _, _ in c] == steps]
            acc = np.array([[a for _, a, _ in c] for c in curves])
            line, = ax.plot(steps, acc.mean(0), marker="o", markersize=2, label=f"{r['label']} ({len(curves)} seeds)")
            if len(curves) > 1:
                ax.fill_between(steps, acc.min(0), acc.max(0), color=line.get_color(), alpha=0.15)
        ax.set_title(title)
        ax.set_xlabel("distill step")
        ax.set_ylabel("audio accuracy, validation split (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown(result, base_scores):
    lines = [f"# The transfer protocol: {result['archive']}", "",
             f"`{result['command']}`; cells trained and evaluated by the cord binary at commit(s) "
             f"{', '.join(result['commits'])}; summarised at {result['summary_commit']} on "
             f"{result['machine']['host']} ({result['machine']['cpu']}, {result['machine']['cores']} cores), "
             f"{result['date'][:19]} UTC. {result['cells_done']} of {result['cells_planned']} planned cells done.", "",
             "Test split, greedy. gap reduction (%) = 1 - gap / gap(base), gap = the base's text accuracy - the "
             "method's audio accuracy; in = arithmetic, out = multiple choice and ordering, all = the three (a part's "
             "accuracy is the mean of its families'). "
             "Mean ± sample sd over seeds. text Δ = text accuracy - the base's (points); KL = KL(base || tuned) "
             "of the text branch on the test solutions (nats/token).", "",
             f"Base: text {base_scores['all'][0]:.1f} / audio {base_scores['all'][1]:.1f} (all), "
             f"arithmetic {base_scores['in_domain'][0]:.1f} / {base_scores['in_domain'][1]:.1f}, "
             f"out of domain {base_scores['out_of_domain'][0]:.1f} / {base_scores['out_of_domain'][1]:.1f}; audio "
             f"multiple choice {base_scores['multiple_choice'][1]:.1f}, ordering {base_scores['ordering'][1]:.1f}.", ""]
    families = ("arithmetic",) + OUT_OF_DOMAIN
    for budget in sorted({(r["regime"], r["steps"]) for r in result["rows"]}, key=lambda b: (b[0] != "transfer", b[1])):
        members = [r for r in result["rows"] if (r["regime"], r["steps"]) == budget]
        lines += [f"## {budget[0]}, {budget[1]} steps", "",
                  "| method | seeds | GR in | GR out | GR all | audio all | audio MC | audio ord. | text Δ arith. "
                  "| text Δ MC | text Δ ord. | KL all | ms/step | wall min |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in members:
            wall = [None if w is None else w / 60 for w in r["wall_seconds"]]
            lines.append(f"| {r['label']} | {len(r['seeds'])} | {fmt(r['gap_reduction_in_domain'])} | "
                         f"{fmt(r['gap_reduction_out_of_domain'])} | {fmt(r['gap_reduction_all'])} | "
                         f"{fmt(r['audio_all'])} | {fmt(r['audio_multiple_choice'])} | {fmt(r['audio_ordering'])} | " +
                         " | ".join(fmt(r[f'text_change_{f}'], signed=True) for f in families) +
                         f" | {fmt(r['kl_all'], 4)} | {fmt(r['ms_per_step'], 0)} | {fmt(wall)} |")
        lines.append("")
    if result["differences"]:
        lines += ["## Paired bootstrap intervals", "",
                  "Difference in gap reduction (points of %), 95% interval; * = the interval excludes 0.", "",
                  "| regime | steps | difference | seeds | in-domain | out-of-domain | all |", "|---|---:|---|---|---|---|---|"]
        for d in result["differences"]:
            cells = []
            for p in ("in_domain", "out_of_domain", "all"):
                x = d["parts"][p]
                if x is None:
                    cells.append("-")
                    continue
                cells.append(f"{100 * x['estimate']:+.1f} [{100 * x['low']:+.1f}, {100 * x['high']:+.1f}]"
                             + (" *" if x["excludes_zero"] else ""))
            lines.append(f"| {d['regime']} | {d['steps']} | {d['a']} − {d['b']} | {d['seeds']} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Equal wall time", "",
              "W = the cheapest method's whole run at the budget (its mean ms/step × steps). Each method's "
              "validation audio accuracy at the last validation within W (mean over seeds).", "",
              "| regime-steps | W (min) | " + " | ".join(METHODS) + " |", "|---|---:|" + "---:|" * len(METHODS)]
    for budget, e in result["equal_wall_time"].items():
        cells = []
        for m in METHODS:
            x = e["methods"].get(m)
            if x is None:
                cells.append("-")
                continue
            cells.append(f"{fmt(x['validation_audio_accuracy'])} @ {x['steps_in_wall_time']}")
        lines.append(f"| {budget} | {e['wall_seconds'] / 60:.1f} | " + " | ".join(cells) + " |")
    lines += ["", f"Audio accuracy over steps (validation split, band = min..max over seeds): "
              f"{os.path.basename(result['plot'])}", ""]
    return lines


def summarize(a):
    import numpy as np
    base, _, cells = load_archive(a.archive)
    planned = plan()
    if not cells:
        sys.exit(f"protocol.py: no cell of the plan is archived in {a.archive}")
    families = families_of(base)
    for c in cells:
        if set(c["items"]) != set(base):
            sys.exit(f"protocol.py: {a.archive}/{c['cell']}.json scored other test items than the base ({a.archive}/base.json)")
        # The per-item tables must give the eval's own scores (the same definitions).
        for column, key in ((1, "text_accuracy"), (2, "audio_accuracy")):
            mine, theirs = part_accuracy(families, "all", c["items"], column), c["report"]["average"][key]
            if abs(mine - theirs) > 1e-6:
                sys.exit(f"protocol.py: {a.archive}/{c['cell']}.json: {key} {mine} from its items, {theirs} in its report")
    rows = group_rows(cells, base)
    rng = np.random.default_rng(20261203)
    differences = []
    for (regime, steps, label), r in sorted(rows.items()):
        if label != "cord":
            continue
        for other in ("sft", "fkl"):
            o = rows.get((regime, steps, other))
            if o is None:
                continue
            a_tables = [c["items"] for c in cells if (c["regime"], c["steps"], c["label"]) == (regime, steps, "cord")]
            b_tables = [c["items"] for c in cells if (c["regime"], c["steps"], c["label"]) == (regime, steps, other)]
            differences.append({"regime": regime, "steps": steps, "a": "cord", "b": other,
                                "seeds": f"{len(a_tables)} vs {len(b_tables)}",
                                "parts": bootstrap_difference(base, a_tables, b_tables, rng)})
    base_scores = {p: (part_accuracy(families, p, base, 1), part_accuracy(families, p, base, 2)) for p in PARTS}
    base_scores.update({f: (accuracy(rows, base, 1), accuracy(rows, base, 2)) for f, rows in families.items()})
    result = {"what": "the transfer protocol (bench/run_protocol.sh): distill methods from one base, "
                      "on arithmetic alone (transfer) or every family (in_domain), evaluated on every family",
              "machine": benchlib.this_machine(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              "command": a.command, "archive": a.archive, "summary_commit": benchlib.commit(),
              "commits": sorted({x for r in rows.values() for x in r["commits"] if x}),
              "cells_planned": len(planned), "cells_done": len(cells),
              "base_scores": {p: {"text_accuracy": t, "audio_accuracy": au} for p, (t, au) in base_scores.items()},
              "bootstrap": {"replicates": BOOTSTRAP_REPLICATES, "levels": "items within family, then seeds",
                            "interval": "95% percentile"},
              "rows": sorted(rows.values(), key=lambda r: (r["regime"] != "transfer", r["steps"],
                                                           METHODS.index(r["method"]), r["label"])),
              "differences": differences, "equal_wall_time": equal_wall_time(rows), "plot": a.out + ".png"}
    plot(rows, a.out + ".png")
    benchlib.write_experiment(a.out, result, markdown(result, base_scores))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command_name", required=True)
    sub.add_parser("plan")
    r = sub.add_parser("archive")
    r.add_argument("--base-run", required=True, help="the base run (its align/model.h5 is fingerprinted)")
    r.add_argument("--runs", required=True, help="the protocol's run folder (RUNS/base/eval: the base's eval)")
    r.add_argument("--archive", required=True, help="the records' folder")
    r.add_argument("--cell", help="only this cell (default: every finished cell of the plan)")
    s = sub.add_parser("summarize")
    s.add_argument("--archive", required=True, help="the records' folder (protocol.py archive)")
    s.add_argument("--out", required=True, help="results path without extension")
    s.add_argument("--command", default="bench/run_protocol.sh")
    a = p.parse_args()
    if a.command_name == "plan":
        for cell, regime, steps, label, method, seed, sets in plan():
            print("\t".join([cell, regime, str(steps), label, method, str(seed), " ".join(sets)]))
    elif a.command_name == "archive":
        archive(a)
    else:
        summarize(a)


if __name__ == "__main__":
    main()
