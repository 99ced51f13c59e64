#!/usr/bin/env python3
"""Turns cord_model_bench output (one run on 1 rank, one on 2 ranks) into
bench/results/model_small.json: GEMM peak, training tokens/s and MFU on 1 and 2 threads,
decode speed-up of the KV cache over full recompute, and tp=2 vs tp=1 step time."""
import argparse
import statistics
from collections import defaultdict

import benchlib


def runs(raw):
    """name -> list of per-run entries (aggregates skipped)."""
    out = defaultdict(list)
    for b in raw["benchmarks"]:
        if b.get("run_type") == "aggregate":
            continue
        out[b["run_name"] if "run_name" in b else b["name"]].append(b)
    return out


def ms(entry):
    assert entry["time_unit"] == "ms", entry
    return entry["real_time"]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("single_rank_json")
    parser.add_argument("two_rank_json")
    parser.add_argument("--command", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    single = benchlib.load(args.single_rank_json)
    pair = benchlib.load(args.two_rank_json)
    one = runs(single)

    peak = {}
    train = {}
    for threads in (1, 2):
        gemm = one[f"gemm_fp32/{threads}/min_time:1.000/real_time"][0]
        peak[threads] = gemm["flops"] / 1e9
        steps = one[f"train_step/{threads}/iterations:10/repeats:3/manual_time"]
        step_ms = statistics.median(ms(s) for s in steps)
        tokens_per_s = steps[0]["tokens_per_step"] / (step_ms / 1e3)
        achieved = tokens_per_s * steps[0]["train_flops_per_token"] / 1e9
        train[threads] = {"step_ms": step_ms, "tokens_per_s": tokens_per_s, "achieved_gflops": achieved,
                          "gemm_peak_gflops": peak[threads], "mfu": achieved / peak[threads]}
    kv = ms(one["decode/kv_cache/1/iterations:3/manual_time"][0])
    recompute = ms(one["decode/recompute/0/iterations:1/manual_time"][0])
    tp_times = defaultdict(list)
    for b in pair["benchmarks"]:
        tp_times[b["name"].split("/")[1]].append(ms(b))
    tp1, tp2 = statistics.median(tp_times["1"]), statistics.median(tp_times["2"])
    summary = {
        "config": "small: vocab 256, d 128, 4 layers, 4 heads, d_ff 352; text batch 64 x 41 positions",
        "train": {f"{t}_threads": v for t, v in train.items()},
        "decode_200_tokens_batch_32": {"kv_cache_ms": kv, "recompute_ms": recompute, "speedup": recompute / kv},
        "tp_2_ranks_1_thread_each": {"tp1_step_ms": tp1, "tp2_step_ms": tp2, "speedup": tp1 / tp2},
    }
    benchlib.write_results(args.out, "cord model benchmarks (bench/model_bench.cpp)", args.command, summary,
                           {"single_rank": single, "two_ranks": pair}, context=single["context"])
    for t, v in train.items():
        print(f"train {t} thread(s): {v['step_ms']:.1f} ms/step, {v['tokens_per_s']:.0f} tokens/s, "
              f"{v['achieved_gflops']:.1f} GFLOP/s of {v['gemm_peak_gflops']:.1f} peak = MFU {v['mfu']:.1%}")
    print(f"decode 200 x 32: KV cache {kv:.0f} ms, recompute {recompute:.0f} ms, speed-up {recompute / kv:.1f}x")
    print(f"2 ranks: tp=1 {tp1:.1f} ms/step, tp=2 {tp2:.1f} ms/step, speed-up {tp1 / tp2:.2f}x")


if __name__ == "__main__":
    main()
