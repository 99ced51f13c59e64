#!/usr/bin/env python3
"""Chunked full-vocabulary KL results (bench/run_kl_chunk.sh): per variant the median time of
a forward + backward over the repetitions, the largest peak-memory rise, both as ratios to
the logits path, and the chunked loss's and gradient norm's relative difference from the
logits path's, and both paths' errors against the chunked path in float64. Goals: some
chunk size with peak <= 25% of the logits path's at <= 1.2x its time; every difference from
the logits path <= 1e-6; the chunked gradient no further from float64 than the logits
path's."""
import argparse
import statistics

import benchlib


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--raw", required=True)
    p.add_argument("--command", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    raw = benchlib.load(a.raw)
    runs = {}
    for b in raw["benchmarks"]:
        if b.get("run_type") == "iteration":
            runs.setdefault(b["name"].split("/iterations")[0].split("/repeats")[0], []).append(b)
    rows = {}
    for name, items in runs.items():
        rows[name] = {"ms": statistics.median(b["real_time"] for b in items),
                      "ms_spread": [min(b["real_time"] for b in items), max(b["real_time"] for b in items)],
                      "peak_mb": max(b["peak_MB"] for b in items),
                      "loss_rel_diff": max(b["loss_rel_diff"] for b in items),
                      "grad_rel_diff": max(b["grad_rel_diff"] for b in items),
                      "loss_rel_err_f64": max(b["loss_rel_err_f64"] for b in items),
                      "grad_rel_err_f64": max(b["grad_rel_err_f64"] for b in items),
                      "positions": int(items[0]["positions"])}
    base = rows["logits"]
    for r in rows.values():
        r["time_ratio"] = r["ms"] / base["ms"]
        r["peak_ratio"] = r["peak_mb"] / base["peak_mb"]
    chunked = {k: r for k, r in rows.items() if k != "logits"}
    targets = {"a_chunk_size_with_peak_at_most_25pct_at_at_most_1.2x_time":
                   any(r["peak_ratio"] <= 0.25 and r["time_ratio"] <= 1.2 for r in chunked.values()),
               "losses_and_gradients_within_1e-6_of_the_logits_path": all(
                   r["loss_rel_diff"] <= 1e-6 and r["grad_rel_diff"] <= 1e-6 for r in chunked.values()),
               "chunked_gradient_no_further_from_float64_than_the_logits_path": all(
                   r["grad_rel_err_f64"] <= base["grad_rel_err_f64"] for r in chunked.values())}
    summary = {"vocab": 151936, "d": 64, "positions": base["positions"], "rows": rows, "targets": targets}
    benchlib.write_results(a.out + ".json", "CORD's weighted reverse KL forward + backward at V = 151,936: "
                           "chunked_token_loss vs materialised logits (bench/kl_chunk_bench.cpp)",
                           a.command, summary, raw)
    m = benchlib.machine(raw["context"])
    lines = [f"# Full-vocabulary KL at V = 151,936: chunked vs logits", "",
             f"`{a.command}` at commit {benchlib.commit()[:12]} on {m['host']} ({m['cpu']}, {m['cores']} cores), "
             f"{raw['context'].get('date', '')[:19]}.", "",
             f"CORD's weighted reverse KL (alpha 2, beta 1.5, top-K 20, sum aggregation), forward + backward into the "
             f"hidden states and the LM head, {base['positions']} rollout positions, d 64, float32, one rank. "
             "Time: median of 3 repetitions (min..max); peak: the largest rise of the resident set in an iteration.",
             "Differences: relative to the logits path (loss; the norm of the hidden states' gradient), and to the chunked "
             "path computed in float64 (err f64).",
             "", "| variant | ms | ms min..max | peak MB | time / logits | peak / logits | loss diff | grad diff | loss err f64 | grad err f64 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['ms']:.0f} | {r['ms_spread'][0]:.0f}..{r['ms_spread'][1]:.0f} | {r['peak_mb']:.0f} | "
                     f"{r['time_ratio']:.2f} | {r['peak_ratio']:.3f} | {r['loss_rel_diff']:.1e} | {r['grad_rel_diff']:.1e} | "
                     f"{r['loss_rel_err_f64']:.1e} | {r['grad_rel_err_f64']:.1e} |")
    lines += ["", benchlib.targets_line("Targets", targets), ""]
    with open(a.out + ".md", "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
