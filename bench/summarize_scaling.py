#!/usr/bin/env python3
"""Strong-scaling results (bench/run_scaling.sh) and the performance model.

Measured, per layout (ranks, dp, tp) of the same global problem: median time/step and
median comm_ms (rank 0's wall time blocked in collectives) over every run's steps after
the warm-up, pooled over rounds; speedup t1/tN, parallel efficiency t1/(N tN) and the
communication share median(comm_ms) / median(ms_per_step).

Model: step = compute + all-reduces, nothing overlapped (comm_ms measures the part that is
not hidden, so that is what the model predicts).
  compute = FLOPs per step / (min(ranks, cores) x R), R the 1-rank rate. FLOPs per step are
    read back from each step record: mfu/100 x header matmul_peak_flops x ms_per_step/1000
    (with log_every = 1 the record's window is that one step); positions per step =
    tokens_per_s x ms_per_step/1000. R = median over the 1-rank steps of FLOPs /
    (ms_per_step - comm_ms).
  all-reduce of n bytes over p ranks, ring: 2(p-1) alpha + 2(p-1)/p n / B.
  dp: the fp32 gradients of this rank's parameters (trainable_params / tp x 4 bytes), in
    ceil(bytes / train.bucket_mb) buckets, one latency term each.
  tp: per layer, 2 activation all-reduces forward (the row-parallel outputs of attention
    and MLP) and 2 backward (wq, wk, wv share one copy_to of their input, w1 and w3
    another: each all-reduces the summed input gradient once, as Megatron's fused QKV and
    w1|w3 do; before commit "tp: one backward all-reduce per shared input" there were 5), plus the vocab-parallel embedding (forward) and LM head (backward): each
    (global_batch/dp) x context x d_model x 4 bytes, context the padded length recovered from
    the FLOPs counter; plus 4 all-reduces of one float per position (vocab-parallel
    cross-entropy).
  scalars: 2 over dp (token count, loss), 1 over tp (gradient norm), 1 over the world
    (non-finite check): latency only.
  alpha, B: measured here, per world size (2 ranks: B from cord_allreduce_bench at 4 MiB,
    alpha from cord_allreduce_bench --sweep at 4 B; 4 ranks: both from the sweep, oversubscribed).

GPU projection of jobs/model_gpu.toml: the same formulas with the H100 step of
bench/results/gpu_h100.json as compute rate and NCCL bandwidths given as options; a model,
not a measurement."""
import argparse
import glob
import json
import math
import os
import statistics
import tomllib

import benchlib

LAYOUTS = [(1, 1, 1), (2, 2, 1), (2, 1, 2), (4, 4, 1), (4, 1, 4), (4, 2, 2)]  # ranks, dp, tp
FAMILIES = {"dp": [(1, 1, 1), (2, 2, 1), (4, 4, 1)], "tp": [(1, 1, 1), (2, 1, 2), (4, 1, 4)],
            "dp 2 x tp 2": [(4, 2, 2)]}
SMALL_BYTES, LARGE_BYTES = 4, 4 << 20


def name(layout):
    ranks, dp, tp = layout
    return f"np{ranks}_dp{dp}_tp{tp}"


def load_layout(folder, layout, warmup):
    """Every round's steps after the warm-up, with FLOPs and positions read back."""
    paths = sorted(glob.glob(os.path.join(folder, "round*", name(layout), "text", "metrics.jsonl")))
    if not paths:
        raise SystemExit(f"summarize_scaling: no runs of {name(layout)} under {folder}")
    steps, header = [], None
    for path in paths:
        records = [json.loads(line) for line in open(path)]
        header = next(r for r in records if r["type"] == "header")
        for r in records:
            if r["type"] != "step" or r["step"] <= warmup:
                continue
            if "comm_ms" not in r:
                raise SystemExit(f"summarize_scaling: {path} has no comm_ms: the binary predates the field, rebuild")
            seconds = r["ms_per_step"] / 1000
            steps.append({"run": path, "step": r["step"], "ms": r["ms_per_step"], "comm_ms": r["comm_ms"],
                          "flops": r["mfu"] / 100 * header["matmul_peak_flops"] * seconds,
                          "positions": r["tokens_per_s"] * seconds})
    if not steps:
        raise SystemExit(f"summarize_scaling: {name(layout)} has no steps after the {warmup} warm-up steps")
    return header, steps, len(paths)


def median(values):
    return statistics.median(list(values))


def allreduce_s(p, nbytes, alpha, bandwidth, latency="ring"):
    """Ring all-reduce of nbytes over p ranks: latency term + 2(p-1)/p nbytes / B (bus bandwidth)."""
    if p <= 1:
        return 0.0
    hops = 2 * (p - 1) if latency == "ring" else 2 * math.ceil(math.log2(p))
    return hops * alpha + 2 * (p - 1) / p * nbytes / bandwidth


def sweep_of(bench):
    """{bytes: {"bytes", "median_us", "rounds"}} from cord_allreduce_bench --sweep (Google
    Benchmark JSON: sweep/<bytes>B/round:k, each the mean over its iterations of the
    slowest rank's time per call); the median over rounds."""
    times = {}
    for b in bench["benchmarks"]:
        if b.get("run_type") != "iteration" or not b["name"].startswith("sweep/"):
            continue
        nbytes = int(b["name"].split("/")[1].rstrip("B"))
        scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[b["time_unit"]]
        times.setdefault(nbytes, []).append(b["real_time"] * scale)
    return {n: {"bytes": n, "median_us": median(t), "rounds": len(t)} for n, t in times.items()}


def constants(folder):
    """alpha (s per hop) and B (bytes/s) per world size, with where each came from."""
    sweeps = {}
    for ranks in (2, 4):
        path = os.path.join(folder, f"allreduce_sweep_np{ranks}.json")
        if os.path.exists(path):
            sweeps[ranks] = sweep_of(benchlib.load(path))
    result = {}
    for ranks, sweep in sweeps.items():
        small, large = sweep[SMALL_BYTES]["median_us"] * 1e-6, sweep[LARGE_BYTES]["median_us"] * 1e-6
        alpha = small / (2 * (ranks - 1))
        bandwidth = 2 * (ranks - 1) / ranks * (LARGE_BYTES - SMALL_BYTES) / (large - small)
        result[ranks] = {"alpha_us": alpha * 1e6, "bus_gb_per_s": bandwidth / 1e9,
                         "source": f"cord_allreduce_bench --sweep, {ranks} ranks: alpha = t(4 B) / {2 * (ranks - 1)}, "
                                   f"B from the slope t(4 MiB) - t(4 B)",
                         "sweep_bus_gb_per_s": bandwidth / 1e9,
                         "sweep": sorted(sweep.values(), key=lambda r: r["bytes"])}
    bench_path = os.path.join(folder, "allreduce_bench_np2.json")
    if os.path.exists(bench_path) and 2 in result:
        bench = benchlib.load(bench_path)
        cord_ms = median(b["real_time"] for b in bench["benchmarks"]
                         if b.get("run_type") == "iteration" and b["name"].startswith("cord_all_reduce/4MiB/"))
        alpha = result[2]["alpha_us"] * 1e-6
        result[2]["cord_allreduce_bench_4mib_ms"] = cord_ms
        result[2]["bus_gb_per_s"] = LARGE_BYTES / (cord_ms / 1000 - 2 * alpha) / 1e9
        result[2]["source"] = ("alpha = cord_allreduce_bench --sweep t(4 B) / 2 (2 ranks); B = 4 MiB / (t - 2 alpha), t the "
                               "median cord_all_reduce 4 MiB of cord_allreduce_bench (2 ranks)")
    if not result:
        raise SystemExit(f"summarize_scaling: no all-reduce measurements in {folder}")
    return result


def cpu_model(layout, steps, header, model, bucket_mb, global_batch, rate, cores, consts, tp_bwd_per_layer):
    """Predicted ms per step (median over the layout's own steps) and its parts."""
    ranks, dp, tp = layout
    c = consts.get(ranks) or consts[max(consts)]
    alpha, bandwidth = c["alpha_us"] * 1e-6, c["bus_gb_per_s"] * 1e9
    layers, width = model["n_layers"], model["d_model"]
    # decoder forward FLOPs per position = c0 + 4 L d context (model_stats.cpp); training = 3x.
    c0 = model["decoder_forward_flops_per_token"] - 4 * layers * width * model["flops_context"]
    grad_bytes = header["trainable_params"] / tp * 4
    buckets = max(1, math.ceil(grad_bytes / (bucket_mb * (1 << 20))))
    parts = []
    for s in steps:
        context = max(1.0, (s["flops"] / (3 * s["positions"]) - c0) / (4 * layers * width))
        tokens = global_batch / dp * context  # padded positions in one dp rank's batch
        compute = s["flops"] / (min(ranks, cores) * rate)
        dp_s = (buckets * allreduce_s(dp, 0, alpha, bandwidth) + allreduce_s(dp, grad_bytes, 0, bandwidth)
                if dp > 1 else 0.0)
        tp_s = 0.0
        if tp > 1:
            activations = layers * (2 + tp_bwd_per_layer) + 2
            tp_s = (activations * allreduce_s(tp, tokens * width * 4, alpha, bandwidth)
                    + 4 * allreduce_s(tp, tokens * 4, alpha, bandwidth))
        scalars = 2 * allreduce_s(dp, 0, alpha, bandwidth) + allreduce_s(tp, 0, alpha, bandwidth) \
            + allreduce_s(ranks, 0, alpha, bandwidth)
        parts.append({"compute": compute, "dp": dp_s, "tp": tp_s, "scalars": scalars, "context": context})
    out = {k: 1000 * median(p[k] for p in parts) for k in ("compute", "dp", "tp", "scalars")}
    out["comm"] = 1000 * median(p["dp"] + p["tp"] + p["scalars"] for p in parts)
    out["total"] = 1000 * median(p["compute"] + p["dp"] + p["tp"] + p["scalars"] for p in parts)
    out["context"] = median(p["context"] for p in parts)
    out["buckets"] = buckets
    return out


def gpu_projection(args, gpu, gpu_model):
    """Strong scaling of jobs/model_gpu.toml at a fixed global batch: dp only, and tp within a node x dp."""
    rate = gpu["train_model_tflops"] * 1e12  # model FLOP/s of one H100 on the measured step
    flops_per_token = rate * gpu["train_step_ms"] / 1000 / gpu["train_tokens_per_step"]
    params = gpu["decoder_params"]
    layers, width = gpu_model["n_layers"], gpu_model["d_model"]
    alpha = args.gpu_alpha_us * 1e-6
    intra, inter = args.intra_gbps * 1e9, args.inter_gbps * 1e9
    tokens = args.gpu_global_tokens
    rows = []
    n = args.gpu_min
    while n <= args.gpu_max:
        compute = tokens * flops_per_token / (n * rate)
        row = {"gpus": n, "compute_ms": 1000 * compute, "tokens_per_gpu": tokens / n}
        for family, tp in (("dp", 1), ("tp_dp", min(args.gpu_tp, n))):
            dp = n // tp
            group_tokens = tokens / dp                             # one dp group's batch
            micro = max(1, math.ceil(group_tokens / args.gpu_micro_tokens))  # micro-batches per step
            grad_bytes = params / tp * 4                           # fp32 gradients of one rank's shard
            buckets = math.ceil(grad_bytes / (args.gpu_bucket_mb * (1 << 20)))
            dp_bw = intra if n <= args.gpus_per_node else inter    # the ring's slowest link
            dp_s = (buckets * allreduce_s(dp, 0, alpha, dp_bw, args.latency)
                    + allreduce_s(dp, grad_bytes, 0, dp_bw, args.latency))
            tp_s = 0.0
            if tp > 1:  # per micro-batch: forward bf16 (row-parallel outputs), backward fp32 (copy_to grads)
                per_micro = group_tokens / micro
                fwd = layers * 2 * allreduce_s(tp, per_micro * width * 2, alpha, intra, args.latency) \
                    + allreduce_s(tp, per_micro * width * 4, alpha, intra, args.latency)           # embedding
                bwd = (layers * args.tp_bwd_per_layer + 1) * allreduce_s(tp, per_micro * width * 4, alpha, intra,
                                                                        args.latency)
                ce = 4 * allreduce_s(tp, per_micro * 4, alpha, intra, args.latency)
                tp_s = micro * (fwd + bwd + ce)
            total = compute + dp_s + tp_s
            hidden = compute + tp_s + max(0.0, dp_s - 2 / 3 * compute)  # dp all-reduce under backward (2/3)
            row[family] = {"tp": tp, "dp": dp, "micro_batches": micro, "buckets": buckets,
                           "dp_allreduce_ms": 1000 * dp_s, "tp_allreduce_ms": 1000 * tp_s,
                           "step_ms": 1000 * total, "efficiency": compute / total,
                           "efficiency_dp_overlapped": compute / hidden,
                           "tokens_per_s": tokens / total}
        rows.append(row)
        n *= 2
    below = {family: next((r["gpus"] for r in rows if r[family]["efficiency"] < 0.5), None)
             for family in ("dp", "tp_dp")}
    return {"flops_per_token": flops_per_token, "rate_flops": rate, "rows": rows, "below_50_percent_at": below}


def plot(result, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = {(r["ranks"], r["dp"], r["tp"]): r for r in result["rows"]}
    cores = result["machine"]["cores"]
    fig, (ax_t, ax_e) = plt.subplots(1, 2, figsize=(11, 4.2))
    for (family, layouts), color in zip(FAMILIES.items(), ("C0", "C1", "C2")):
        xs = [l[0] for l in layouts]
        ax_t.plot(xs, [rows[l]["ms_per_step"] for l in layouts], "o-", color=color, label=f"{family} measured")
        ax_t.plot(xs, [rows[l]["model"]["total"] for l in layouts], "x--", color=color, label=f"{family} model")
        ax_e.plot(xs, [rows[l]["efficiency"] for l in layouts], "o-", color=color, label=f"{family} measured")
        ax_e.plot(xs, [rows[l]["model_efficiency"] for l in layouts], "x--", color=color, label=f"{family} model")
    for ax in (ax_t, ax_e):
        ax.axvspan(cores + 0.5, 4.5, color="0.9", zorder=0)
        ax.text(cores + 0.6, ax.get_ylim()[1] * 0.97 if ax is ax_t else 1.05, f"> {cores} cores:\noversubscribed",
                va="top", fontsize=8)
        ax.set_xticks([1, 2, 4])
        ax.set_xlabel("ranks (1 torch thread each)")
        ax.grid(alpha=0.3)
    ax_t.set_ylabel("median ms / step")
    ax_t.set_ylim(bottom=0)
    ax_t.set_title("time per step (fixed global batch)")
    ax_e.set_ylabel("parallel efficiency t1 / (N tN)")
    ax_e.set_ylim(0, 1.1)
    ax_e.set_title("efficiency")
    ax_e.legend(fontsize=7)
    fig.suptitle(f"cord text stage, strong scaling on {result['machine']['cpu']} ({cores} cores)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out + ".png", dpi=120)
    plt.close(fig)

    gpu = result["gpu_projection"]
    fig, (ax_e, ax_b) = plt.subplots(1, 2, figsize=(11, 4.2))
    xs = [r["gpus"] for r in gpu["rows"]]
    for (family, label), color in zip((("dp", "dp only"), ("tp_dp", f"tp {gpu['options']['gpu_tp']} in a node x dp")),
                                      ("C0", "C3")):
        ax_e.plot(xs, [r[family]["efficiency"] for r in gpu["rows"]], "o-", color=color, label=label)
        ax_e.plot(xs, [r[family]["efficiency_dp_overlapped"] for r in gpu["rows"]], ":", color=color,
                  label=f"{label}, dp all-reduce hidden in backward")
    ax_e.axhline(0.5, color="k", lw=0.8, ls="--")
    ax_e.set_xscale("log", base=2)
    ax_e.set_xticks(xs, [str(x) for x in xs])
    ax_e.set_ylim(0, 1.05)
    ax_e.set_xlabel("GPUs")
    ax_e.set_ylabel("efficiency (model)")
    ax_e.set_title("projected strong-scaling efficiency", fontsize=10)
    ax_e.legend(fontsize=7)
    width = 0.38
    for k, (family, hatch) in enumerate((("dp", ""), ("tp_dp", "//"))):
        pos = [i + (k - 0.5) * width for i in range(len(xs))]
        shares = [(r["compute_ms"] / r[family]["step_ms"], r[family]["dp_allreduce_ms"] / r[family]["step_ms"],
                   r[family]["tp_allreduce_ms"] / r[family]["step_ms"]) for r in gpu["rows"]]
        bottom = [0.0] * len(xs)
        for part, (color, label) in enumerate((("C2", "compute"), ("C0", "dp all-reduce"), ("C1", "tp all-reduce"))):
            heights = [sh[part] for sh in shares]
            ax_b.bar(pos, heights, width, bottom=bottom, color=color, hatch=hatch, edgecolor="white",
                     label=label if k == 0 else None)
            bottom = [b + h for b, h in zip(bottom, heights)]
    ax_b.set_xticks(range(len(xs)), [str(x) for x in xs])
    ax_b.set_ylim(0, 1)
    ax_b.set_xlabel("GPUs (left bar: dp only; right, hatched: tp x dp)")
    ax_b.set_ylabel("share of the modelled step")
    ax_b.set_title("where the step goes", fontsize=10)
    ax_b.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    o = gpu["options"]
    fig.suptitle(f"MODEL, not a measurement: jobs/model_gpu.toml, {o['gpu_global_tokens']:,} tokens/step, "
                 f"H100 step rate, NCCL {o['intra_gbps']:g} GB/s intra / {o['inter_gbps']:g} GB/s inter, "
                 f"alpha {o['gpu_alpha_us']:g} us ({o['latency']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(out + "_model.png", dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", required=True, help="the run folder of bench/run_scaling.sh")
    parser.add_argument("--config", default="jobs/scaling_small.toml")
    parser.add_argument("--command", required=True)
    parser.add_argument("--out", required=True, help="results prefix: OUT.json, OUT.md, OUT.png, OUT_model.png")
    parser.add_argument("--start", type=float)
    parser.add_argument("--end", type=float)
    parser.add_argument("--warmup", type=int, default=2, help="steps left out at the start of every run")
    parser.add_argument("--tp-bwd-per-layer", type=int, default=2,
                        help="tp activation all-reduces per layer in backward: 2 as cord is written (one shared "
                             "copy_to for wq, wk, wv and one for w1, w3); 5 models unshared ones")
    gpu = parser.add_argument_group("GPU projection (a model)")
    gpu.add_argument("--gpu-json", default="bench/results/gpu_h100.json")
    gpu.add_argument("--gpu-config", default="jobs/model_gpu.toml")
    gpu.add_argument("--gpu-global-tokens", type=int, default=524288,
                     help="fixed global batch in tokens (strong scaling; default 1024 sequences x 512)")
    gpu.add_argument("--gpu-micro-tokens", type=int, default=16384,
                     help="tokens per micro-batch of one dp group (default: the measured H100 step)")
    gpu.add_argument("--intra-gbps", type=float, default=150.0, help="NCCL bus bandwidth inside a node, GB/s")
    gpu.add_argument("--inter-gbps", type=float, default=25.0, help="NCCL bus bandwidth across nodes per GPU, GB/s")
    gpu.add_argument("--gpu-alpha-us", type=float, default=10.0, help="latency per ring hop, us")
    gpu.add_argument("--latency", choices=("ring", "tree"), default="ring",
                     help="latency term: ring 2(p-1) alpha, tree 2 log2(p) alpha")
    gpu.add_argument("--gpus-per-node", type=int, default=8)
    gpu.add_argument("--gpu-tp", type=int, default=8)
    gpu.add_argument("--gpu-bucket-mb", type=float, default=None, help="gradient bucket (default: train.bucket_mb)")
    gpu.add_argument("--gpu-min", type=int, default=8)
    gpu.add_argument("--gpu-max", type=int, default=1024)
    args = parser.parse_args()

    info = benchlib.load(os.path.join(args.dir, "info.json"))
    cores = os.cpu_count()
    loaded = {layout: load_layout(args.dir, layout, args.warmup) for layout in LAYOUTS}
    first_run = next(iter(loaded.values()))[1][0]["run"]
    with open(os.path.join(os.path.dirname(first_run), "config.toml"), "rb") as f:
        resolved = tomllib.load(f)  # the stage's resolved config: every default filled in
    bucket_mb = resolved["train"]["bucket_mb"]
    global_batch = resolved["train"]["text"]["global_batch"]
    consts = constants(args.dir)
    model = {**info["model"], "n_layers": resolved["model"]["n_layers"], "d_model": resolved["model"]["d_model"]}

    header1, steps1, _ = loaded[(1, 1, 1)]
    rate = median(s["flops"] / ((s["ms"] - s["comm_ms"]) / 1000) for s in steps1)
    t1 = median(s["ms"] for s in steps1)
    positions1 = {(s["step"]): s["positions"] for s in steps1}
    rows = []
    for layout in LAYOUTS:
        header, steps, runs = loaded[layout]
        ranks, dp, tp = layout
        ms = median(s["ms"] for s in steps)
        comm = median(s["comm_ms"] for s in steps)
        predicted = cpu_model(layout, steps, header, model, bucket_mb, global_batch, rate, cores, consts,
                              args.tp_bwd_per_layer)
        same = all(abs(s["positions"] - positions1[s["step"]]) <= 0.5 for s in steps if s["step"] in positions1)
        rows.append({"ranks": ranks, "dp": dp, "tp": tp, "oversubscribed": ranks > cores, "runs": runs,
                     "steps": len(steps), "ms_per_step": ms, "comm_ms": comm, "comm_fraction": comm / ms,
                     "speedup": t1 / ms, "efficiency": t1 / (ranks * ms),
                     "flops_per_step": median(s["flops"] for s in steps),
                     "positions_per_step": median(s["positions"] for s in steps),
                     "same_positions_as_1_rank": same, "model": predicted,
                     "model_error": predicted["total"] / ms - 1,
                     "model_speedup": None, "model_efficiency": None})
    t1_model = rows[0]["model"]["total"]
    for r in rows:
        r["model_speedup"] = t1_model / r["model"]["total"]
        r["model_efficiency"] = t1_model / (r["ranks"] * r["model"]["total"])

    gpu_json = benchlib.load(args.gpu_json)
    with open(args.gpu_config, "rb") as f:
        gpu_model = tomllib.load(f)["model"]
    if args.gpu_bucket_mb is None:
        args.gpu_bucket_mb = bucket_mb
    projection = gpu_projection(args, gpu_json, gpu_model)
    other = argparse.Namespace(**{**vars(args), "latency": "tree" if args.latency == "ring" else "ring"})
    projection["below_50_percent_at_other_latency"] = {"latency": other.latency,
                                                       **gpu_projection(other, gpu_json, gpu_model)["below_50_percent_at"]}
    projection["options"] = {k: getattr(args, k) for k in
                             ("gpu_global_tokens", "gpu_micro_tokens", "intra_gbps", "inter_gbps", "gpu_alpha_us",
                              "latency", "gpus_per_node", "gpu_tp", "gpu_bucket_mb", "tp_bwd_per_layer")}
    projection["inputs"] = {"gpu_json": args.gpu_json, "train_step_ms": gpu_json["train_step_ms"],
                            "train_tokens_per_step": gpu_json["train_tokens_per_step"],
                            "train_model_tflops": gpu_json["train_model_tflops"],
                            "decoder_params": gpu_json["decoder_params"], "gpu_commit": gpu_json.get("commit"),
                            "gpu_config": args.gpu_config, "n_layers": gpu_model["n_layers"],
                            "d_model": gpu_model["d_model"]}

    machine = benchlib.this_machine()
    machine["load_avg"] = list(os.getloadavg())
    result = {"what": "strong scaling of the text stage (jobs/scaling_small.toml, fixed global batch) over dp x tp "
                      "layouts on this machine, a compute + all-reduce performance model checked against it, and "
                      "the model's projection of jobs/model_gpu.toml to many GPUs (a model, not a measurement)",
              "machine": machine, "commit": benchlib.commit(), "command": args.command, "config": args.config,
              "seconds": (args.end - args.start) if args.start and args.end else None,
              "warmup_steps": args.warmup, "global_batch": global_batch,
              "trainable_params": header1["trainable_params"], "bucket_mb": bucket_mb,
              "rate_1rank_gflops": rate / 1e9, "matmul_peak_1rank_gflops": header1["matmul_peak_flops"] / 1e9,
              "allreduce": consts, "rows": rows, "gpu_projection": projection}

    m = machine
    lines = [f"# Strong scaling, text stage ({m['cpu']}, {m['cores']} cores, commit {result['commit'][:12]})", "",
             f"`{args.command}`" + (f"; {result['seconds']:.0f} s" if result["seconds"] else "")
             + f"; load average at the end {m['load_avg'][0]:.2f}", "",
             f"One global problem ({args.config}: d_model {resolved['model']['d_model']}, "
             f"{resolved['model']['n_layers']} layers, global batch {global_batch}, "
             f"{header1['trainable_params']:,} trained parameters, one torch thread per rank), medians over every "
             f"run's steps after the first {args.warmup} (pooled over rounds). comm = rank 0's time blocked in "
             f"collectives (`comm_ms`), waiting for slower ranks included.", "",
             "| ranks | dp | tp | runs x steps | ms/step | speedup | efficiency | comm ms | comm share | same batches |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        flag = " (oversubscribed)" if r["oversubscribed"] else ""
        lines.append(f"| {r['ranks']}{flag} | {r['dp']} | {r['tp']} | {r['runs']} x {r['steps'] // r['runs']} | "
                     f"{r['ms_per_step']:.1f} | {r['speedup']:.2f} | {r['efficiency']:.2f} | {r['comm_ms']:.1f} | "
                     f"{r['comm_fraction']:.2f} | {'yes' if r['same_positions_as_1_rank'] else 'NO'} |")
    lines += ["", f"{cores} cores: runs with more ranks than cores share cores (2 ranks per core at 4 ranks), so "
              "their efficiency says how the code behaves oversubscribed, not how it scales. \"same batches\": every "
              "step has the 1-rank run's positions (the same global problem).", "",
              "## Performance model", "",
              "step = compute + all-reduces, none overlapped (comm_ms counts only what is not hidden).",
              f"- compute = FLOPs per step / (min(ranks, cores) x R). FLOPs per step = mfu/100 x header "
              f"matmul_peak_flops x ms_per_step/1000 of each step record (PaLM's count, cord's MFU numerator). "
              f"R = median over the 1-rank steps of FLOPs / (ms_per_step - comm_ms) = "
              f"**{rate / 1e9:.1f} GFLOP/s** ({100 * rate / header1['matmul_peak_flops']:.0f}% of the "
              f"{header1['matmul_peak_flops'] / 1e9:.1f} GFLOP/s fp32 1024^3 GEMM the run measured).",
              "- all-reduce of n bytes over p ranks (ring): 2(p-1) alpha + 2(p-1)/p n / B.",
              f"- dp: the fp32 gradients of one rank's shard (trainable_params / tp x 4 B = "
              f"{header1['trainable_params'] * 4 / 1e6:.2f} MB at tp 1) in ceil(bytes / {bucket_mb:g} MiB) buckets "
              "(train.bucket_mb), one latency term per bucket.",
              f"- tp: per layer 2 activation all-reduces forward and {args.tp_bwd_per_layer} backward (cord's "
              "layers: wq, wk, wv share one copy_to of their input, w1 and w3 another, as Megatron's fused QKV and "
              "w1|w3), "
              "+ the embedding (forward) and LM head (backward); each (global batch / dp) x padded context x d_model "
              "x 4 B, the padded context read back from the FLOPs counter (which uses it); + 4 one-float-per-position "
              "all-reduces (vocab-parallel cross-entropy).",
              "- scalars: 2 over dp, 1 over tp, 1 over the world per step (latency only).", "",
              "All-reduce constants measured in this run:", "",
              "| world | alpha per hop | B (bus) | from |", "|---|---|---|---|"]
    for ranks, c in sorted(consts.items()):
        extra = ""
        if "cord_allreduce_bench_4mib_ms" in c:
            extra = (f" (cord_all_reduce 4 MiB: {c['cord_allreduce_bench_4mib_ms']:.3f} ms; the sweep's own slope "
                     f"gives {c['sweep_bus_gb_per_s']:.2f} GB/s)")
        over = " (oversubscribed)" if ranks > cores else ""
        lines.append(f"| {ranks}{over} | {c['alpha_us']:.2f} us | {c['bus_gb_per_s']:.2f} GB/s | {c['source']}{extra} |")
    lines += ["", "| ranks | dp | tp | compute ms | dp ms | tp ms | model ms | measured ms | error | model comm ms | "
              "measured comm ms | model speedup | measured speedup |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p = r["model"]
        flag = "*" if r["oversubscribed"] else ""
        lines.append(f"| {r['ranks']}{flag} | {r['dp']} | {r['tp']} | {p['compute']:.1f} | {p['dp']:.2f} | "
                     f"{p['tp']:.2f} | {p['total']:.1f} | {r['ms_per_step']:.1f} | {100 * r['model_error']:+.0f}% | "
                     f"{p['comm']:.2f} | {r['comm_ms']:.2f} | {r['model_speedup']:.2f} | {r['speedup']:.2f} |")
    checked = [r for r in rows if not r["oversubscribed"]]
    lines += ["", "\\* oversubscribed: the model's compute assumes the ranks share the cores evenly; its constants are "
              "the 4-rank (oversubscribed) sweep. Model checked where it applies (ranks <= cores): "
              + ", ".join(f"dp {r['dp']} x tp {r['tp']} {100 * r['model_error']:+.0f}%" for r in checked) + ".",
              "The model has no load imbalance: measured comm includes waiting for the slower rank, the model's "
              "does not.", ""]

    proj = projection
    o = proj["options"]
    below = proj["below_50_percent_at"]
    alt = proj["below_50_percent_at_other_latency"]
    lines += ["## Projection to GPUs (a model, not a measurement)", "",
              f"jobs/model_gpu.toml ({gpu_json['decoder_params'] / 1e6:.1f}M decoder parameters, "
              f"{gpu_model['n_layers']} layers, d_model {gpu_model['d_model']}), strong scaling: a fixed global batch "
              f"of **{o['gpu_global_tokens']:,} tokens** per step. Compute rate: the measured H100 step "
              f"({gpu_json['train_step_ms']:.1f} ms for {gpu_json['train_tokens_per_step']:.0f} tokens = "
              f"{gpu_json['train_model_tflops']:.1f} model TFLOP/s, {proj['flops_per_token'] / 1e6:.0f} MFLOP/token; "
              f"{args.gpu_json}), assumed to hold at every per-GPU batch (optimistic where a GPU gets few tokens). "
              f"NCCL constants entered, not measured: {o['intra_gbps']:g} GB/s bus bandwidth inside a node of "
              f"{o['gpus_per_node']}, {o['inter_gbps']:g} GB/s per GPU across nodes, alpha {o['gpu_alpha_us']:g} us "
              f"per hop ({o['latency']} latency term). dp: fp32 gradients in {o['gpu_bucket_mb']:g} MiB buckets, "
              f"once per step; tp {o['gpu_tp']} inside a node: per micro-batch of <= {o['gpu_micro_tokens']:,} tokens "
              f"per dp group, 2 bf16 forward and {o['tp_bwd_per_layer']} fp32 backward activation all-reduces per "
              "layer + embedding + head + cross-entropy. Efficiency = ideal compute / modelled step (= t1 / (N tN) "
              "with t1 one GPU's compute); 'overlapped' lets the dp all-reduce hide behind backward (2/3 of compute).",
              "",
              "| GPUs | tokens/GPU | compute ms | dp only: all-reduce ms | step ms | efficiency (overlapped) | "
              f"tp {o['gpu_tp']} x dp: dp | tp ms | dp ms | step ms | efficiency (overlapped) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in proj["rows"]:
        d, t = r["dp"], r["tp_dp"]
        lines.append(f"| {r['gpus']} | {r['tokens_per_gpu']:.0f} | {r['compute_ms']:.2f} | {d['dp_allreduce_ms']:.2f} | "
                     f"{d['step_ms']:.2f} | {100 * d['efficiency']:.0f}% ({100 * d['efficiency_dp_overlapped']:.0f}%) | "
                     f"{t['dp']} | {t['tp_allreduce_ms']:.2f} | {t['dp_allreduce_ms']:.2f} | {t['step_ms']:.2f} | "
                     f"{100 * t['efficiency']:.0f}% ({100 * t['efficiency_dp_overlapped']:.0f}%) |")
    names = {"dp": "dp only", "tp_dp": f"tp {o['gpu_tp']} x dp"}
    lines += ["", "Efficiency below 50%: " + "; ".join(
        f"{names[k]} from {v} GPUs" if v else f"{names[k]} not within {args.gpu_max} GPUs" for k, v in below.items())
        + f" ({o['latency']} latency term; with the {alt['latency']} term (--latency {alt['latency']}): " + "; ".join(
        f"{names[k]} from {alt[k]} GPUs" if alt[k] else f"{names[k]} not within {args.gpu_max} GPUs" for k in names)
        + "). The numbers move with the entered bandwidths, latency, batch and bucket size: rerun "
        "`bench/summarize_scaling.py --dir RUN_DIR ...` with other options (see --help).", ""]
    benchlib.write_experiment(args.out, result, lines)
    plot(result, args.out)


if __name__ == "__main__":
    main()
