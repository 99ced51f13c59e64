#!/usr/bin/env python3
"""PyTorch reference oracle for cord's LALM (the llm.c practice: check the C++ model
against an independent implementation).

Defines the same tiny model as tests/model/model_fixtures.hpp (tiny_model_config) in plain
PyTorch, draws its weights, runs one text batch and one audio batch through it, and
writes weights, inputs, logits, the loss and every gradient to an HDF5 fixture. The C++
test (model_test.cpp, ReferenceOracle) loads the weights and must reproduce the rest.

Regenerate (the fixture is committed):
  ~/.cache/cord/venv/bin/python tests/model/make_reference.py tests/model/reference_tiny.h5
"""
import json
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

CONFIG = {
    "vocab_size": 64, "d_model": 32, "n_layers": 2, "n_heads": 8, "n_kv_heads": 4, "d_ff": 64,
    "max_seq_len": 96, "rope_theta": 10000.0, "norm_eps": 1e-5,
    "audio": {"n_mels": 8, "d_model": 16, "n_layers": 1, "n_heads": 4, "projector_stack": 2},
}
BOS, EOS, PAD, AUDIO, TEXT, SEP = 0, 1, 2, 3, 4, 5
ENCODER_FF = 64  # 8/3 * 16 rounded up to a multiple of 32, as cord's encoder_d_ff()


def param_shapes():
    c, a = CONFIG, CONFIG["audio"]
    d, da, hd = c["d_model"], a["d_model"], c["d_model"] // c["n_heads"]
    shapes = {
        "encoder.conv1.weight": (da, a["n_mels"], 3), "encoder.conv1.bias": (da,),
        "encoder.conv2.weight": (da, da, 3), "encoder.conv2.bias": (da,),
    }

    def block(prefix, dim, heads, kv_heads, ff):
        head_dim = dim // heads
        shapes.update({
            f"{prefix}.attn_norm.weight": (dim,),
            f"{prefix}.attn.wq.weight": (heads * head_dim, dim),
            f"{prefix}.attn.wk.weight": (kv_heads * head_dim, dim),
            f"{prefix}.attn.wv.weight": (kv_heads * head_dim, dim),
            f"{prefix}.attn.wo.weight": (dim, heads * head_dim),
            f"{prefix}.mlp_norm.weight": (dim,),
            f"{prefix}.mlp.w1.weight": (ff, dim), f"{prefix}.mlp.w3.weight": (ff, dim),
            f"{prefix}.mlp.w2.weight": (dim, ff),
        })

    for i in range(a["n_layers"]):
        block(f"encoder.blocks.{i}", da, a["n_heads"], a["n_heads"], ENCODER_FF)
    shapes["encoder.norm.weight"] = (da,)
    k = a["projector_stack"]
    shapes.update({"projector.up.weight": (d, k * da), "projector.up.bias": (d,),
                   "projector.down.weight": (d, d), "projector.down.bias": (d,)})
    shapes["decoder.embedding.weight"] = (c["vocab_size"], d)
    for i in range(c["n_layers"]):
        block(f"decoder.blocks.{i}", d, c["n_heads"], c["n_kv_heads"], c["d_ff"])
    shapes["decoder.norm.weight"] = (d,)
    shapes["decoder.lm_head.weight"] = (c["vocab_size"], d)
    assert hd % 2 == 0
    return shapes


def make_params(generator):
    params = {}
    for name, shape in param_shapes().items():
        if name.endswith("norm.weight"):  # around 1, perturbed so that a missing scale shows
            value = 1 + 0.1 * torch.randn(shape, generator=generator)
        else:
            value = 0.2 * torch.randn(shape, generator=generator)
        params[name] = value.requires_grad_(True)
    return params


def rms_norm(x, weight):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + CONFIG["norm_eps"]) * weight


def rope_tables(head_dim, positions, theta):
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(positions, dtype=torch.float64), inv_freq)
    both = torch.cat([angles, angles], -1)
    return both.cos().float(), both.sin().float()


def apply_rope(x, positions, tables):
    cos, sin = tables[0][positions].unsqueeze(1), tables[1][positions].unsqueeze(1)
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rotated * sin


def block(P, prefix, x, positions, tables, heads, kv_heads, mask, causal):
    batch, steps, dim = x.shape
    head_dim = dim // heads
    h = rms_norm(x, P[f"{prefix}.attn_norm.weight"])

    def split(t, n):
        return t.view(batch, steps, n, head_dim).transpose(1, 2)

    q = apply_rope(split(h @ P[f"{prefix}.attn.wq.weight"].T, heads), positions, tables)
    k = apply_rope(split(h @ P[f"{prefix}.attn.wk.weight"].T, kv_heads), positions, tables)
    v = split(h @ P[f"{prefix}.attn.wv.weight"].T, kv_heads)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=heads != kv_heads)
    x = x + out.transpose(1, 2).reshape(batch, steps, heads * head_dim) @ P[f"{prefix}.attn.wo.weight"].T
    h = rms_norm(x, P[f"{prefix}.mlp_norm.weight"])
    mlp = (F.silu(h @ P[f"{prefix}.mlp.w1.weight"].T) * (h @ P[f"{prefix}.mlp.w3.weight"].T))
    return x + mlp @ P[f"{prefix}.mlp.w2.weight"].T


def zero_beyond(x, lengths):  # x [B, C, F]
    frames = torch.arange(x.shape[2])
    return x * (frames[None, :] < lengths[:, None]).unsqueeze(1).to(x.dtype)


def encode_audio(P, mel, lengths):
    a = CONFIG["audio"]
    l1 = (lengths + 1) // 2
    l2 = (l1 + 1) // 2
    x = zero_beyond(mel.transpose(1, 2), lengths)
    x = zero_beyond(F.gelu(F.conv1d(x, P["encoder.conv1.weight"], P["encoder.conv1.bias"], stride=2, padding=1)), l1)
    x = zero_beyond(F.gelu(F.conv1d(x, P["encoder.conv2.weight"], P["encoder.conv2.bias"], stride=2, padding=1)), l2)
    x = x.transpose(1, 2)
    batch, frames, _ = x.shape
    positions = torch.arange(frames).expand(batch, frames)
    tables = rope_tables(a["d_model"] // a["n_heads"], CONFIG["max_seq_len"] * a["projector_stack"], 10000.0)
    mask = (positions < l2[:, None])[:, None, None, :]
    for i in range(a["n_layers"]):
        x = block(P, f"encoder.blocks.{i}", x, positions, tables, a["n_heads"], a["n_heads"], mask, False)
    x = rms_norm(x, P["encoder.norm.weight"])
    k = a["projector_stack"]
    groups = frames // k
    stacked = x[:, : groups * k].reshape(batch, groups, k * x.shape[2])
    up = F.gelu(stacked @ P["projector.up.weight"].T + P["projector.up.bias"])
    return up @ P["projector.down.weight"].T + P["projector.down.bias"], l2 // k


def decode(P, ids_rows, frame_rows, marker, responses):
    """Right-padded [bos][marker][middle][sep][response]; returns logits and targets."""
    c = CONFIG
    embed = P["decoder.embedding.weight"]
    sequences, targets = [], []
    for middle_ids, frames, response in zip(ids_rows, frame_rows, responses):
        head = embed[torch.tensor([BOS, marker])]
        middle = frames if frames is not None else embed[torch.tensor(middle_ids, dtype=torch.long)]
        tail_ids = [SEP] + response
        seq = torch.cat([head, middle, embed[torch.tensor(tail_ids)]])
        prompt = 2 + middle.shape[0] + 1
        target = [-1] * seq.shape[0]
        for i, token in enumerate(response):
            target[prompt + i - 1] = token
        sequences.append(seq)
        targets.append(target)
    width = max(s.shape[0] for s in sequences)
    rows = []
    for seq in sequences:
        pad = embed[torch.full((width - seq.shape[0],), PAD)]
        rows.append(torch.cat([seq, pad]))
    x = torch.stack(rows)
    target = torch.tensor([t + [-1] * (width - len(t)) for t in targets])
    positions = torch.arange(width).expand(x.shape[0], width)
    tables = rope_tables(c["d_model"] // c["n_heads"], c["max_seq_len"], c["rope_theta"])
    for i in range(c["n_layers"]):
        x = block(P, f"decoder.blocks.{i}", x, positions, tables, c["n_heads"], c["n_kv_heads"], None, True)
    logits = rms_norm(x, P["decoder.norm.weight"]) @ P["decoder.lm_head.weight"].T
    return logits, target


def response_loss(logits, target):
    mask = target >= 0
    nll = -torch.log_softmax(logits, -1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (nll * mask).sum(), int(mask.sum())


def main(path):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(2026)
    P = make_params(generator)
    questions = [[7, 9, 11, 13], [20, 21, 22, 23, 24, 25]]
    responses = [[30, 31, 32, 33, EOS], [40, 41, EOS]]
    mel_lengths = torch.tensor([21, 30])
    mel = torch.randn(2, 30, CONFIG["audio"]["n_mels"], generator=generator)
    mel[0, 21:] = 0

    text_logits, text_target = decode(P, questions, [None, None], TEXT, responses)
    frames, frame_lengths = encode_audio(P, mel, mel_lengths)
    audio_logits, audio_target = decode(P, [None, None], [frames[b, : frame_lengths[b]] for b in range(2)], AUDIO,
                                        responses)
    text_sum, text_count = response_loss(text_logits, text_target)
    audio_sum, audio_count = response_loss(audio_logits, audio_target)
    loss = (text_sum + audio_sum) / (text_count + audio_count)
    loss.backward()

    def padded(rows):
        width = max(len(r) for r in rows)
        return np.array([r + [-1] * (width - len(r)) for r in rows], dtype=np.int64)

    with h5py.File(path, "w") as f:
        f.attrs["config"] = json.dumps(CONFIG)
        f.attrs["generator"] = "tests/model/make_reference.py, torch " + torch.__version__
        for name, value in P.items():
            f[f"params/{name}"] = value.detach().numpy()
            f[f"grads/{name}"] = value.grad.numpy()
        f["inputs/questions"] = padded(questions)
        f["inputs/responses"] = padded(responses)
        f["inputs/mel"] = mel.numpy()
        f["inputs/mel_lengths"] = mel_lengths.numpy().astype(np.int64)
        f["outputs/text_logits"] = text_logits.detach().numpy()
        f["outputs/audio_logits"] = audio_logits.detach().numpy()
        f["outputs/loss"] = np.array([loss.item()], dtype=np.float32)  # shape [1]: cord::h5 reads rows
    print(f"wrote {path}: loss {loss.item():.6f}, {len(P)} parameters")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/model/reference_tiny.h5")
