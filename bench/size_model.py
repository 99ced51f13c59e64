#!/usr/bin/env python3
"""Memory per GPU of a CORD distill step on a Qwen2-Audio-shaped model (docs/sizing.md):
parameters, gradients, AdamW state (with and without ZeRO-1), the frozen teacher, the
decoder's activations with and without activation checkpointing, the rollouts' KV caches,
and the token loss's logits (materialised, or chunked: cord.loss_chunk_rows), for the
layouts of one node (tp 8) and two nodes (tp 8 x dp 2). Arithmetic only, from the
architecture's config (Qwen2-Audio-7B's by default, or --config config.json); the
assumptions are listed in the output.

  python3 bench/size_model.py [--config config.json] --out bench/results/sizing_qwen2_audio_7b
"""
import argparse
import json

import benchlib

# Qwen2-Audio-7B's config.json (audio_config, text_config), the fields the sizes need.
QWEN2_AUDIO_7B = {
    "audio_config": {"d_model": 1280, "encoder_layers": 32, "encoder_attention_heads": 20, "encoder_ffn_dim": 5120,
                     "num_mel_bins": 128, "max_source_positions": 1500},
    "text_config": {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
                    "num_key_value_heads": 32, "intermediate_size": 11008, "vocab_size": 156032,
                    "tie_word_embeddings": False},
}
GIB = 1024 ** 3


def encoder_parameters(a):
    """Whisper encoder: two convolutions, pre-LN layers (q, v, out biases; none on k), GELU
    MLP, final LayerNorm. The 1500 sinusoidal positions are fixed (not trained)."""
    d, f, m = a["d_model"], a["encoder_ffn_dim"], a["num_mel_bins"]
    conv = m * d * 3 + d + d * d * 3 + d
    layer = 4 * d * d + 3 * d + 2 * d * f + f + d + 4 * d
    return conv + a["encoder_layers"] * layer + 2 * d


def decoder_parameters(t):
    """Qwen2 decoder: embedding, GQA attention with q/k/v biases, SwiGLU MLP, RMSNorms, LM head."""
    h, layers, v = t["hidden_size"], t["num_hidden_layers"], t["vocab_size"]
    kv = t["num_key_value_heads"] * h // t["num_attention_heads"]
    layer = h * h + 2 * h * kv + h * h + (h + 2 * kv) + 3 * h * t["intermediate_size"] + 2 * h
    head = 0 if t.get("tie_word_embeddings") else v * h
    return v * h + layers * layer + h + head


def step_memory(cfg, tp, dp, zero1, checkpointing, chunk_rows, shape):
    """Bytes per GPU of one distill step's live state, by component."""
    a, t = cfg["audio_config"], cfg["text_config"]
    params = encoder_parameters(a) + a["d_model"] * t["hidden_size"] + t["hidden_size"] + decoder_parameters(t)
    h, layers, v = t["hidden_size"], t["num_hidden_layers"], t["vocab_size"]
    rows = shape["prompts"] * shape["rows_per_prompt"]          # student sequences in a micro-batch
    positions = shape["audio_positions"] + shape["response"]     # per sequence
    tokens = rows * positions
    # Korthikanti et al. (2022), bf16 activations of one layer with tp t and no sequence
    # parallelism: s*b*h*(10 + 24/t) bytes; the attention scores' 5*a*s^2*b term is absent
    # with a memory-efficient attention kernel (SDPA). Checkpointing keeps each layer's input
    # (2*s*b*h bytes) plus one layer being recomputed.
    per_layer = tokens * h * (10 + 24 / tp)
    activations = (layers * 2 * tokens * h + per_layer) if checkpointing else layers * per_layer
    # The encoder reads every clip padded to its whole window (max_source_positions after
    # the strided convolution), once per prompt, d_a wide; checkpointed like the decoder.
    window, d_a = a["max_source_positions"], a["d_model"]
    enc_tokens = shape["prompts"] * window
    enc_layer = enc_tokens * d_a * (10 + 24 / tp)
    encoder_activations = (a["encoder_layers"] * 2 * enc_tokens * d_a + enc_layer) if checkpointing \
        else a["encoder_layers"] * enc_layer
    kv_heads = t["num_key_value_heads"]
    head_dim = h // t["num_attention_heads"]
    # Rollout decoding: bf16 K and V per position per layer, kv heads split over tp; every
    # prompt's N + 1 audio rollouts and its text reference decoded together.
    decode_rows = shape["decode_prompts"] * (shape["rows_per_prompt"] + 1)
    kv_cache = decode_rows * positions * layers * 2 * kv_heads * head_dim * 2 / tp
    # The token loss's float32 logits over this rank's V/tp columns, for both sides: the
    # logits path keeps about 8 [rows, T, V/tp] tensors for backward (student logits, its
    # log-softmax, probabilities and their product, the teacher's logits and log-softmax,
    # and the gradients); the chunked path about 8 of [chunk_rows, T, V/tp].
    logit_rows = chunk_rows if chunk_rows else rows
    logits = 8 * logit_rows * shape["response"] * (v / tp) * 4
    optimizer_shards = tp * (dp if zero1 else 1)
    out = {
        "parameters (fp32)": 4 * params / tp,
        "gradients (fp32)": 4 * params / tp,
        "AdamW m and v (fp32)": 8 * params / optimizer_shards,
        "frozen teacher (fp32 copy)": 4 * params / tp,
        "encoder activations (bf16)": encoder_activations,
        "decoder activations (bf16)": activations,
        "rollout KV caches (bf16)": kv_cache,
        "token-loss logits (fp32)": logits,
    }
    out["total"] = sum(out.values())
    return params, out


BUDGET_GIB = 72.0


def largest_micro_batch(cfg, tp, dp, zero1, checkpointing, chunk_rows):
    """The most prompts per micro-batch whose step fits BUDGET_GIB (0 if none does)."""
    best = 0
    for prompts in range(1, 257):
        shape = dict(SHAPE, prompts=prompts)
        if step_memory(cfg, tp, dp, zero1, checkpointing, chunk_rows, shape)[1]["total"] / GIB > BUDGET_GIB:
            break
        best = prompts
    return best


LAYOUTS = [  # (name, tp, dp, zero1)
    ("1 node x 8 GPUs: tp 8", 8, 1, False),
    ("2 nodes x 8 GPUs: tp 8 x dp 2", 8, 2, False),
    ("2 nodes x 8 GPUs: tp 8 x dp 2, ZeRO-1", 8, 2, True),
]
# One micro-batch of 4 prompts: the paper's N = 4 GRPO rollouts + 1 token rollout per
# prompt; 10 s of speech (250 encoder positions after pooling: 25 per second) and 200
# response tokens; rollouts decoded 16 prompts at a time.
SHAPE = {"prompts": 4, "rows_per_prompt": 5, "audio_positions": 250, "response": 200, "decode_prompts": 16}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", help="a Qwen2-Audio config.json (default: Qwen2-Audio-7B's, built in)")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    cfg = QWEN2_AUDIO_7B if a.config is None else json.load(open(a.config))
    rows = []
    for name, tp, dp, zero1 in LAYOUTS:
        for checkpointing in (False, True):
            for chunk in (0, 1):
                params, mem = step_memory(cfg, tp, dp, zero1, checkpointing, chunk, SHAPE)
                rows.append({"layout": name, "tp": tp, "dp": dp, "zero1": zero1, "activation_checkpointing": checkpointing,
                             "loss_chunk_rows": chunk, "gib": {k: x / GIB for k, x in mem.items()}})
    result = {"what": "memory per GPU of one CORD distill step (bench/size_model.py), arithmetic",
              "commit": benchlib.commit(), "command": f"python3 bench/size_model.py --out {a.out}",
              "config": cfg, "shape": SHAPE, "parameters": params,
              "parameters_by_part": {"encoder": encoder_parameters(cfg["audio_config"]),
                                     "projector": cfg["audio_config"]["d_model"] * cfg["text_config"]["hidden_size"]
                                     + cfg["text_config"]["hidden_size"],
                                     "decoder": decoder_parameters(cfg["text_config"])},
              "rows": rows}
    parts = result["parameters_by_part"]
    lines = ["# Memory per GPU of a CORD step on Qwen2-Audio-7B", "",
             f"`{result['command']}` at commit {result['commit'][:12]}. Arithmetic from the architecture, not a "
             "measurement.", "",
             f"Parameters: {params / 1e9:.3f} B (encoder {parts['encoder'] / 1e9:.3f} B, projector "
             f"{parts['projector'] / 1e6:.1f} M, decoder {parts['decoder'] / 1e9:.3f} B).", "",
             f"Micro-batch: {SHAPE['prompts']} prompts × {SHAPE['rows_per_prompt']} rollouts, "
             f"{SHAPE['audio_positions']} audio + {SHAPE['response']} response positions; rollouts decoded "
             f"{SHAPE['decode_prompts']} prompts at a time (N + 1 audio rollouts and one text reference each).", "",
             "| layout | act. ckpt | loss chunk | params | grads | AdamW | teacher | enc. act. | dec. act. | KV caches | logits | **total GiB** |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        g = r["gib"]
        lines.append(f"| {r['layout']} | {'yes' if r['activation_checkpointing'] else 'no'} | "
                     f"{r['loss_chunk_rows'] or 'off'} | " +
                     " | ".join(f"{g[k]:.1f}" for k in ("parameters (fp32)", "gradients (fp32)", "AdamW m and v (fp32)",
                                                        "frozen teacher (fp32 copy)", "encoder activations (bf16)",
                                                        "decoder activations (bf16)",
                                                        "rollout KV caches (bf16)", "token-loss logits (fp32)")) +
                     f" | **{g['total']:.1f}** |")
    lines += ["", f"Largest micro-batch (prompts) within {BUDGET_GIB:.0f} GiB per GPU (an 80 GB H100 less 10% headroom):", ""]
    for name, tp, dp, zero1 in LAYOUTS:
        fits = []
        for checkpointing in (False, True):
            for chunk in (0, 1):
                fits.append(f"{largest_micro_batch(cfg, tp, dp, zero1, checkpointing, chunk)} "
                            f"({'ckpt' if checkpointing else 'no ckpt'}, chunk {chunk or 'off'})")
        lines.append(f"- {name}: " + ", ".join(fits))
    lines += ["", "Assumptions: fp32 parameters, gradients and AdamW state (bf16 autocast computes); the frozen "
              "teacher is a second fp32 copy (cord.teacher = initial); every parameter split over tp (norms and "
              "biases are too small to matter); activations after Korthikanti et al. (2022) without sequence "
              "parallelism and without the attention-score term (a memory-efficient attention kernel); KV caches in "
              "bf16 with the key/value heads split over tp; about 8 float32 logit-sized tensors for the token loss. "
              "Not counted: the allocator's fragmentation, communication buffers, CUDA context (~1 GiB).", ""]
    benchlib.write_experiment(a.out, result, lines)


if __name__ == "__main__":
    main()
