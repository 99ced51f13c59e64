"""bench/protocol.py: the plan's cells and order, and the paired bootstrap of a gap-reduction
difference on synthetic test items (no cord run needed). Exit 0 = pass."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
import protocol  # noqa: E402


def expect(condition, message):
    if not condition:
        print("FAIL:", message)
        sys.exit(1)


def table(rng, n_per_family, text_p, audio_p):
    """row -> (family, text_correct, audio_correct) with the given chance of each, per family."""
    out, row = {}, 0
    for family in ("arithmetic", "multiple_choice", "ordering"):
        for _ in range(n_per_family):
            out[row] = (family, rng.random() < text_p[family], rng.random() < audio_p[family])
            row += 1
    return out


def with_audio(base, rng, audio_p):
    return {r: (f, t, rng.random() < audio_p[f]) for r, (f, t, _) in base.items()}


def test_plan():
    os.environ.update(CORD_REGIMES="transfer in_domain", CORD_BUDGETS="1000 3000", CORD_SEEDS="1 2 3",
                      CORD_METHODS="cord cord-unweighted opd grpo sft fkl", CORD_SEEDED_METHODS="cord sft fkl")
    os.environ.pop("CORD_VARIANTS", None)
    os.environ.pop("CORD_LONG_REGIMES", None)
    os.environ.pop("CORD_LONG_SEEDS", None)
    cells = protocol.plan()
    names = [c[0] for c in cells]
    expect(len(names) == len(set(names)) == 2 * (6 + 2 * 3) + 6 + 3, f"33 distinct cells: {len(names)}")
    expect({c[1] for c in cells if c[2] == 3000} == {"transfer"}, "by default only transfer runs 3,000 steps")
    expect(names[-4:] == ["transfer-3000/fkl-s1", "transfer-3000/cord-s2", "transfer-3000/sft-s2", "transfer-3000/fkl-s2"],
           f"at 3,000 steps seed 1 of every method, then seed 2 of the seeded ones: {names[-4:]}")
    expect(names[0] == "transfer-1000/cord-s1" and names[6] == "transfer-1000/cord-s2",
           f"transfer seed 1 first, then its other seeds: {names[:8]}")
    expect(all("train.families=arithmetic" in c[6] for c in cells if c[1] == "transfer") and
           not any("train.families=arithmetic" in c[6] for c in cells if c[1] == "in_domain"),
           "only the transfer regime restricts the families")
    first_long = next(i for i, n in enumerate(names) if "-3000/" in n)
    expect(all("-1000/" in n for n in names[:first_long]), "every 1,000-step cell before any 3,000-step one")
    expect({c[5] for c in cells if c[3] == "grpo"} == {1}, "unseeded methods run seed 1 only")
    os.environ["CORD_LONG_REGIMES"] = "transfer in_domain"
    expect(len(protocol.plan()) == 42, "CORD_LONG_REGIMES adds in_domain's 3,000-step cells")
    os.environ["CORD_LONG_SEEDS"] = "1"
    expect(len(protocol.plan()) == 36, "CORD_LONG_SEEDS=1: seed 1 alone at 3,000 steps")
    os.environ.pop("CORD_LONG_SEEDS")
    os.environ["CORD_LONG_REGIMES"] = "in-domain"
    try:
        protocol.plan()
        expect(False, "an unknown regime in CORD_LONG_REGIMES is refused")
    except SystemExit as e:
        expect("CORD_LONG_REGIMES" in str(e), f"the refusal names the knob: {e}")
    os.environ.pop("CORD_LONG_REGIMES")
    os.environ["CORD_VARIANTS"] = "cord-token-mean"
    variants = [c for c in protocol.plan() if c[3] == "cord-token-mean"]
    expect(len(variants) == 2 and all("cord.aggregation=token_mean" in c[6] for c in variants), f"variants: {variants}")
    os.environ["CORD_VARIANTS"] = "sft-then-cord"
    cells = protocol.plan()
    names = [c[0] for c in cells]
    warm = names.index("transfer-500/sft-s1")
    then = names.index("transfer-1000/sft-then-cord-s1")
    expect(warm < then, f"the warm start runs before the variant: {names[-4:]}")
    sets = cells[then][6]
    expect("train.distill.steps=500" in sets and "train.init=@RUNS@/transfer-500/sft-s1/distill/model.h5" in sets,
           f"the variant trains the rest of the budget from the warm start's weights: {sets}")
    os.environ.pop("CORD_VARIANTS")


def test_bootstrap():
    rng = np.random.default_rng(1)
    text = {"arithmetic": 0.95, "multiple_choice": 0.95, "ordering": 0.95}
    base = table(rng, 300, text, {"arithmetic": 0.5, "multiple_choice": 0.6, "ordering": 0.2})
    better = [with_audio(base, rng, {"arithmetic": 0.8, "multiple_choice": 0.8, "ordering": 0.5}) for _ in range(3)]
    worse = [with_audio(base, rng, {"arithmetic": 0.6, "multiple_choice": 0.65, "ordering": 0.25}) for _ in range(3)]
    diff = protocol.bootstrap_difference(base, better, worse, np.random.default_rng(2))
    for part in ("in_domain", "out_of_domain", "all"):
        d = diff[part]
        expect(d["low"] <= d["estimate"] <= d["high"] and d["excludes_zero"] and d["low"] > 0,
               f"{part}: a clearly better method's interval lies above 0: {d}")
    # The same method against copies of itself: no difference claimed.
    same = protocol.bootstrap_difference(base, better, better, np.random.default_rng(3))
    expect(all(abs(same[p]["estimate"]) < 1e-12 and not same[p]["excludes_zero"] for p in same),
           f"a method against itself: estimate 0, interval around 0: {same}")
    # Two methods of the same quality (different draws): the interval includes 0.
    twin = [with_audio(base, rng, {"arithmetic": 0.8, "multiple_choice": 0.8, "ordering": 0.5}) for _ in range(3)]
    tie = protocol.bootstrap_difference(base, better, twin, np.random.default_rng(4))
    expect(all(tie[p]["low"] < 0 < tie[p]["high"] for p in tie), f"equal methods: the interval includes 0: {tie}")
    # The estimate is the plain difference of the seed-mean gap reductions.
    families = protocol.families_of(base)
    want = protocol.gap_reduction(families, "all", base, better) - protocol.gap_reduction(families, "all", base, worse)
    expect(abs(diff["all"]["estimate"] - want) < 1e-12, f"estimate {diff['all']['estimate']} vs {want}")


def test_records():
    """A cell's items survive the archive's packed form; the predictions' fingerprint ignores
    the order ranks wrote them in but not their content."""
    import json
    import tempfile
    rng = np.random.default_rng(5)
    items = table(rng, 7, {"arithmetic": 0.9, "multiple_choice": 0.5, "ordering": 0.5},
                  {"arithmetic": 0.4, "multiple_choice": 0.5, "ordering": 0.1})
    packed = protocol.pack_items(items)
    expect(protocol.unpack_items(json.loads(json.dumps(packed)), "x") == items, "pack/unpack round trip")
    lines = [{"row": r, "family": f, "text": "1 2", "text_correct": t} for r, (f, t, _) in items.items()]
    with tempfile.TemporaryDirectory() as d:
        def fingerprint(rows):
            with open(os.path.join(d, "predictions.jsonl"), "w") as f:
                f.write("".join(json.dumps(x) + "\n" for x in rows))
            return protocol.predictions_sha256(d)
        first = fingerprint(lines)
        expect(fingerprint(lines[::-1]) == first, "the fingerprint does not depend on the line order")
        lines[3]["text"] = "1 3"
        expect(fingerprint(lines) != first, "another prediction, another fingerprint")


if __name__ == "__main__":
    test_plan()
    test_bootstrap()
    test_records()
    print("protocol_test: passed")
