#!/usr/bin/env python3
"""tools/convert_whisper_ct2.py without the wheel: a tiny random Whisper built by
transformers is written out in CTranslate2's binary layout (fused q|k|v and k|v, zero key
biases, an alias for the tied output projection), read back by the converter's reader and
renamed to Hugging Face's layout; the rebuilt model must give the original's logits. Also:
a file of another binary version and a variable of an unknown dtype are refused, naming
them. Exit 0 = pass."""
import os
import struct
import sys
import tempfile

import numpy as np
import torch
import transformers

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import convert_whisper_ct2 as conv  # noqa: E402


def expect(condition, message):
    if not condition:
        print("FAIL:", message)
        sys.exit(1)


def string(text):
    data = text.encode() + b"\0"
    return struct.pack("<H", len(data)) + data


def variable(name, array, dtype_id=4):
    array = np.asarray(array)  # (ascontiguousarray would make a scalar 1-d)
    dims = array.shape
    return (string(name) + struct.pack("<B", len(dims)) + struct.pack("<" + "I" * len(dims), *dims) +
            struct.pack("<BI", dtype_id, array.nbytes) + array.tobytes())


def ct2_variables(model):
    """The CTranslate2 names and fused tensors of a transformers Whisper (float16)."""
    s = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    out = {"encoder/num_heads": np.array(model.config.encoder_attention_heads, np.int16),
           "decoder/num_heads": np.array(model.config.decoder_attention_heads, np.int16)}
    for conv_name in ("conv1", "conv2"):
        for p in ("weight", "bias"):
            out[f"encoder/{conv_name}/{p}"] = s[f"model.encoder.{conv_name}.{p}"]
    out["encoder/position_encodings/encodings"] = s["model.encoder.embed_positions.weight"]
    out["decoder/embeddings/weight"] = s["model.decoder.embed_tokens.weight"]
    out["decoder/position_encodings/encodings"] = s["model.decoder.embed_positions.weight"]

    def ln(dst, src):
        out[f"{dst}/gamma"], out[f"{dst}/beta"] = s[f"{src}.weight"], s[f"{src}.bias"]

    def fused(dst, src, parts):
        weights = [s[f"{src}.{p}_proj.weight"] for p in parts]
        biases = [s.get(f"{src}.{p}_proj.bias", np.zeros(weights[0].shape[0], np.float32)) for p in parts]
        return np.concatenate(weights), np.concatenate(biases)

    for side, n in (("encoder", model.config.encoder_layers), ("decoder", model.config.decoder_layers)):
        for i in range(n):
            d, h = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
            w, b = fused(d, f"{h}.self_attn", ("q", "k", "v"))
            out[f"{d}/self_attention/linear_0/weight"], out[f"{d}/self_attention/linear_0/bias"] = w, b
            out[f"{d}/self_attention/linear_1/weight"] = s[f"{h}.self_attn.out_proj.weight"]
            out[f"{d}/self_attention/linear_1/bias"] = s[f"{h}.self_attn.out_proj.bias"]
            ln(f"{d}/self_attention/layer_norm", f"{h}.self_attn_layer_norm")
            if side == "decoder":
                out[f"{d}/attention/linear_0/weight"] = s[f"{h}.encoder_attn.q_proj.weight"]
                out[f"{d}/attention/linear_0/bias"] = s[f"{h}.encoder_attn.q_proj.bias"]
                w, b = fused(d, f"{h}.encoder_attn", ("k", "v"))
                out[f"{d}/attention/linear_1/weight"], out[f"{d}/attention/linear_1/bias"] = w, b
                out[f"{d}/attention/linear_2/weight"] = s[f"{h}.encoder_attn.out_proj.weight"]
                out[f"{d}/attention/linear_2/bias"] = s[f"{h}.encoder_attn.out_proj.bias"]
                ln(f"{d}/attention/layer_norm", f"{h}.encoder_attn_layer_norm")
            for ct2, hf in (("linear_0", "fc1"), ("linear_1", "fc2")):
                out[f"{d}/ffn/{ct2}/weight"], out[f"{d}/ffn/{ct2}/bias"] = s[f"{h}.{hf}.weight"], s[f"{h}.{hf}.bias"]
            ln(f"{d}/ffn/layer_norm", f"{h}.final_layer_norm")
        ln(f"{side}/layer_norm", f"model.{side}.layer_norm")
    return out


def write_model_bin(path, variables, version=6):
    body = b"".join(variable(k, v, 2 if v.dtype == np.int16 else 4)
                    for k, v in ((k, v if v.dtype == np.int16 else v.astype(np.float16)) for k, v in variables.items()))
    alias = struct.pack("<I", 1) + string("decoder/projection/weight") + string("decoder/embeddings/weight")
    with open(path, "wb") as f:
        f.write(struct.pack("<I", version) + string("WhisperSpec") + struct.pack("<II", 3, len(variables)) + body + alias)


def main():
    torch.manual_seed(0)
    config = transformers.WhisperConfig(vocab_size=97, num_mel_bins=16, d_model=32, encoder_layers=2, decoder_layers=2,
                                        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=48,
                                        decoder_ffn_dim=48, max_source_positions=30, max_target_positions=20,
                                        decoder_start_token_id=1, pad_token_id=0, bos_token_id=0, eos_token_id=0)
    original = transformers.WhisperForConditionalGeneration(config).eval()
    # Round the weights to float16 first: the file holds float16, as the wheel's does.
    with torch.no_grad():
        for p in original.parameters():
            p.copy_(p.half().float())
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.bin")
        write_model_bin(path, ct2_variables(original))
        spec, revision, variables = conv.read_ct2(path)
        expect(spec == "WhisperSpec" and revision == 3, f"spec {spec} revision {revision}")
        expect(np.array_equal(variables["decoder/projection/weight"], variables["decoder/embeddings/weight"]),
               "the alias resolves to its target")
        rebuilt_config = conv.hf_config(variables, {"suppress_ids_begin": [], "suppress_ids": []},
                                        {"decoder_start_token_id": 1, "pad_token_id": 0, "bos_token_id": 0,
                                         "eos_token_id": 0})
        for key in ("d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads", "encoder_ffn_dim",
                    "num_mel_bins", "vocab_size", "max_source_positions", "max_target_positions"):
            expect(getattr(rebuilt_config, key) == getattr(config, key), f"config {key}")
        rebuilt = transformers.WhisperForConditionalGeneration(rebuilt_config).eval()
        missing, unexpected = rebuilt.load_state_dict({k: torch.from_numpy(v) for k, v in conv.hf_state(variables).items()},
                                                      strict=False)
        expect(missing == ["proj_out.weight"] and not unexpected, f"keys: missing {missing}, unexpected {unexpected}")
        rebuilt.tie_weights()
        features = torch.randn(1, 16, 60)
        ids = torch.tensor([[1, 5, 7, 9]])
        with torch.no_grad():
            want = original(input_features=features, decoder_input_ids=ids).logits
            got = rebuilt(input_features=features, decoder_input_ids=ids).logits
        error = (want - got).abs().max().item()
        expect(error < 1e-5, f"the rebuilt model's logits differ by {error}")
        # Refusals name what they refuse.
        write_model_bin(path, {"encoder/num_heads": np.array(4, np.int16)}, version=5)
        message = capture_exit(lambda: conv.read_ct2(path))
        expect("binary version 5" in message, f"another version: {message}")
        with open(path, "wb") as f:
            f.write(struct.pack("<I", 6) + string("WhisperSpec") + struct.pack("<II", 3, 1) +
                    string("encoder/odd") + struct.pack("<BIBI", 1, 2, 9, 2) + b"\0\0" + struct.pack("<I", 0))
        message = capture_exit(lambda: conv.read_ct2(path))
        expect("variable encoder/odd has dtype id 9" in message, f"an unknown dtype: {message}")
    print("ct2_whisper_test: passed (logits within %.1e)" % error)


def capture_exit(call):
    try:
        call()
    except SystemExit as e:
        return str(e)
    return "no error"


if __name__ == "__main__":
    main()
