"""Summarises bench/gpu/run.sh's output folder into OUT/gpu_summary.json: the bf16 GEMM
peak, training tokens/s and MFU (model FLOPs of the training step, PaLM's count, over
that peak), the training step's phases (forward, backward, AdamW) and its top kernels,
decoding tokens/s with the KV cache, the CORD step's time split at the gpu config, the
gpu tests' counts, and the GPU pipeline's last losses. Medians over repetitions."""
import json
import os
import statistics
import sys


def named(b, name):
    # Google Benchmark appends "/iterations:N/repeats:M/manual_time" to the registered name.
    run = b.get("run_name", "")
    return run == name or run.startswith(name + "/iterations")


def median_of(benchmarks, name, key="real_time"):
    values = [b[key] for b in benchmarks if named(b, name) and b.get("run_type") == "iteration"]
    return statistics.median(values) if values else None


def counter(benchmarks, name, key):
    for b in benchmarks:
        if named(b, name) and key in b:
            return b[key]
    return None


def cord_step_split(out):
    """The last window of the gpu-config distill stage (jobs/distill_gpu.toml): ms per step
    and its split, rollout tokens/s."""
    path = os.path.join(out, "cord_step", "distill", "metrics.jsonl")
    if not os.path.exists(path):
        return None
    records = [json.loads(line) for line in open(path)]
    steps = [r for r in records if r["type"] == "step"]
    if not steps:
        return None
    last = steps[-1]
    keys = ("window_ms_per_step", "rollout_ms", "teacher_ms", "student_ms", "window_comm_ms", "other_ms",
            "rollout_tokens_per_s", "rollout_length")
    return {"device": records[0].get("device"), "precision": records[0].get("precision"),
            "window_ending_at_step": last["step"], **{k: last.get(k) for k in keys}}


def binary_commit(out):
    """The commit `cord info` printed on the GPU machine ("cord 0.1.0 (abc123, Release, ...)")."""
    path = os.path.join(out, "info.log")
    if os.path.exists(path):
        for line in open(path):
            if line.startswith("cord ") and "(" in line:
                return line.split("(", 1)[1].split(",", 1)[0]
    return None


def main():
    out = sys.argv[1]
    results = sys.argv[2] if len(sys.argv) > 2 else None  # optional: also write bench/results/NAME.json
    raw = json.load(open(os.path.join(out, "gpu_bench.json")))
    runs = raw["benchmarks"]
    gemm_ms = median_of(runs, "gemm_bf16")
    peak = counter(runs, "gemm_bf16", "flops_per_iteration") / (gemm_ms / 1e3)
    step_ms = median_of(runs, "train_step")
    tokens = counter(runs, "train_step", "tokens_per_step")
    flops_per_token = counter(runs, "train_step", "train_flops_per_token")
    tokens_per_s = tokens / (step_ms / 1e3)
    decode_ms = median_of(runs, "decode/kv_cache")
    smi = os.path.join(out, "nvidia-smi.txt")
    summary = {
        "gpu": [line.strip() for line in open(smi).read().split("\n")[8:10]] if os.path.exists(smi) else None,
        "context": raw["context"],
        "gemm_bf16_tflops": peak / 1e12,
        "train_step_ms": step_ms, "train_tokens_per_step": tokens, "train_tokens_per_s": tokens_per_s,
        "train_model_tflops": tokens_per_s * flops_per_token / 1e12,
        "train_mfu_percent": 100 * tokens_per_s * flops_per_token / peak,
        "decoder_params": counter(runs, "train_step", "decoder_params"),
        "decode_ms": decode_ms,
        "decode_new_tokens_per_s": counter(runs, "decode/kv_cache", "new_tokens") / (decode_ms / 1e3),
    }
    if median_of(runs, "train_step_phases") is not None:
        summary["train_step_phases_ms"] = {
            "synchronised_step": median_of(runs, "train_step_phases"),
            **{phase: median_of(runs, "train_step_phases", f"{phase}_ms") for phase in ("forward", "backward", "optimizer")}}
    kernels_path = os.path.join(out, "train_step_kernels.json")
    if os.path.exists(kernels_path):
        k = json.load(open(kernels_path))
        summary["train_step_profile"] = {"wall_ms_per_step": k["wall_ms_per_step"],
                                         "device_busy_ms_per_step": k["device_busy_ms_per_step"],
                                         "top_kernels": k["kernels"][:12]}
    summary["cord_step"] = cord_step_split(out)
    tests_path = os.path.join(out, "gpu_tests.json")
    if os.path.exists(tests_path):
        t = json.load(open(tests_path))
        summary["gpu_tests"] = {"tests": t.get("tests"), "failures": t.get("failures"), "disabled": t.get("disabled")}
    for stage in ("text", "align"):
        path = os.path.join(out, "pipeline", stage, "metrics.jsonl")
        if os.path.exists(path):
            recs = [json.loads(line) for line in open(path)]
            steps = [r for r in recs if r["type"] == "step"]
            summary[f"pipeline_{stage}"] = {"first_loss": steps[0]["loss"], "last_loss": steps[-1]["loss"],
                                            "device": recs[0].get("device"), "precision": recs[0].get("precision")}
    summary["commit"] = binary_commit(out)
    summary["command"] = "bench/gpu/run.sh (CORD_GPU_BUNDLE=.gpu-bundle from bench/gpu/bundle.sh)"
    json.dump(summary, open(os.path.join(out, "gpu_summary.json"), "w"), indent=2)
    if results:
        with open(results, "w") as f:
            json.dump({"what": "GPU check of the gpu config (bench/gpu/run.sh)", **summary, "google_benchmark": raw}, f,
                      indent=2)
            f.write("\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
