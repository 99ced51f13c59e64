#!/usr/bin/env python3
"""A Qwen2-Audio directory from real pretrained parts: a Whisper encoder, a new projector and
a pretrained causal LM, put together the way Qwen2-Audio itself was built.

  --whisper DIR   a Hugging Face Whisper (WhisperForConditionalGeneration or WhisperModel),
                  e.g. ~/.cache/cord/models/whisper-tiny.en from ./setup.sh whisper
  --decoder DIR   a Hugging Face causal LM that cord loads (Llama / Mistral / Qwen2) with a
                  tokenizer.json and a ChatML chat template, e.g. SmolLM2-135M-Instruct from
                  ./setup.sh smollm2
  --out DIR       the Qwen2AudioForConditionalGeneration directory to write

What OUT holds:
  * audio_tower.*: the Whisper encoder's weights as they are (its decoder is dropped).
    Qwen2-Audio pools by 2 before the encoder's final LayerNorm, where Whisper normalises
    every frame; the projector trained on top absorbs the difference.
  * multi_modal_projector.linear: [decoder width, encoder width], drawn from N(0, 0.02)
    with --seed, bias zero: the part the align stage trains from scratch.
  * language_model.*: the decoder's weights, with one embedding row and one head row
    appended per new token: <|audio_bos|>, <|AUDIO|>, <|audio_eos|>, each the mean of the
    existing rows. A decoder with tied embeddings gets an untied copy of its table as the
    head: transformers' Qwen2AudioForConditionalGeneration reads its own lm_head.
  * tokenizer.json with those three as special tokens; chat_template.jinja: Qwen2-Audio's
    template (its audio placeholder) with the decoder's own default system turn;
    preprocessor_config.json: WhisperFeatureExtractor with the encoder's mel bins.

Checks, all required before anything is written (the directory is built beside OUT and
renamed into place):
  * transformers loads OUT as Qwen2AudioForConditionalGeneration with every key used;
  * on a text prompt through the chat template its logits equal the decoder's own
    (max |diff| <= 1e-4; the new rows are never read by it);
  * on a 30 s clip its encoder's last layer equals the Whisper encoder's (<= 1e-4).

Usage: tools/build_qwen2_audio.py --whisper DIR --decoder DIR --out DIR [--seed 1234]
"""
import argparse
import json
import os
import re
import shutil
import sys

import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file

NEW_TOKENS = ["<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>"]
PROJECTOR_STD = 0.02
TOLERANCE = 1e-4


def fail(message):
    sys.exit(f"build_qwen2_audio: {message}")


def read_json(path):
    if not os.path.exists(path):
        fail(f"{path} does not exist")
    with open(path) as f:
        return json.load(f)


def state_dict(directory):
    """Every tensor of a Hugging Face directory (one file or an index of shards)."""
    single = os.path.join(directory, "model.safetensors")
    if os.path.exists(single):
        return load_file(single)
    index = read_json(os.path.join(directory, "model.safetensors.index.json"))
    tensors = {}
    for shard in sorted(set(index["weight_map"].values())):
        tensors.update(load_file(os.path.join(directory, shard)))
    return tensors


def encoder_weights(whisper_dir):
    """audio_tower.* from a Whisper directory's encoder."""
    tensors = state_dict(whisper_dir)
    out = {}
    for name, value in tensors.items():
        for prefix in ("model.encoder.", "encoder."):
            if name.startswith(prefix):
                out["audio_tower." + name[len(prefix):]] = value.float()
    if "audio_tower.conv1.weight" not in out:
        fail(f"{whisper_dir} holds no Whisper encoder (no model.encoder.conv1.weight)")
    return out


def audio_config(whisper_dir):
    c = read_json(os.path.join(whisper_dir, "config.json"))
    if c.get("model_type") != "whisper":
        fail(f"{whisper_dir}/config.json: model_type is {c.get('model_type')!r}, not whisper")
    if c.get("activation_function", "gelu") != "gelu":
        fail(f"{whisper_dir}/config.json: activation_function {c['activation_function']!r} is not gelu")
    return dict(d_model=c["d_model"], encoder_layers=c["encoder_layers"],
                encoder_attention_heads=c["encoder_attention_heads"], encoder_ffn_dim=c["encoder_ffn_dim"],
                num_mel_bins=c["num_mel_bins"], max_source_positions=c["max_source_positions"])


def default_system(decoder_dir):
    """The decoder's template's default system turn, or Qwen2-Audio's."""
    path = os.path.join(decoder_dir, "chat_template.jinja")
    text = open(path).read() if os.path.exists(path) else read_json(
        os.path.join(decoder_dir, "tokenizer_config.json")).get("chat_template", "")
    found = re.search(r"<\|im_start\|>system(?:\\n|\n)([^<{}]*)<\|im_end\|>", text)
    return found.group(1) if found else "You are a helpful assistant."


def chat_template(system):
    template = transformers.Qwen2AudioProcessor.default_chat_template.fget(None)
    return template.replace("You are a helpful assistant.", system)


def add_tokens(decoder_dir, out_dir):
    """tokenizer.json with NEW_TOKENS as special tokens; returns (tokenizer, their ids)."""
    from tokenizers import AddedToken, Tokenizer
    tokenizer = Tokenizer.from_file(os.path.join(decoder_dir, "tokenizer.json"))
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in NEW_TOKENS])
    tokenizer.save(os.path.join(out_dir, "tokenizer.json"))
    return tokenizer, [tokenizer.token_to_id(t) for t in NEW_TOKENS]


def grow_rows(matrix, rows):
    """`matrix` [V, d] with rows appended up to `rows`, each the mean of the existing ones."""
    extra = rows - matrix.shape[0]
    if extra <= 0:
        return matrix
    return torch.cat([matrix, matrix.mean(0, keepdim=True).expand(extra, -1)], 0)


def build(args, work):
    decoder_config = read_json(os.path.join(args.decoder, "config.json"))
    tokenizer, ids = add_tokens(args.decoder, work)
    vocab = max(decoder_config["vocab_size"], max(ids) + 1)
    text_config = {k: v for k, v in decoder_config.items() if k not in ("architectures", "transformers_version")}
    text_config["vocab_size"] = vocab
    text_config["tie_word_embeddings"] = False  # see the head below
    audio = audio_config(args.whisper)
    config = transformers.Qwen2AudioConfig(audio_config=audio, text_config=text_config, audio_token_id=ids[1])
    config.architectures = ["Qwen2AudioForConditionalGeneration"]
    config.save_pretrained(work)

    tensors = encoder_weights(args.whisper)
    generator = torch.Generator().manual_seed(args.seed)
    width = text_config["hidden_size"]
    tensors["multi_modal_projector.linear.weight"] = torch.randn(width, audio["d_model"], generator=generator) * PROJECTOR_STD
    tensors["multi_modal_projector.linear.bias"] = torch.zeros(width)
    decoder = state_dict(args.decoder)
    if "lm_head.weight" not in decoder:
        # Tied embeddings: Qwen2AudioForConditionalGeneration keeps its own head, so it gets
        # a copy of the table (text_config is untied above).
        decoder["lm_head.weight"] = decoder["model.embed_tokens.weight"].clone()
    for name, value in decoder.items():
        value = value.float()
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            value = grow_rows(value, vocab)
        tensors["language_model." + name] = value.contiguous()
    save_file(tensors, os.path.join(work, "model.safetensors"), metadata={"format": "pt"})

    with open(os.path.join(work, "chat_template.jinja"), "w") as f:
        f.write(chat_template(default_system(args.decoder)))
    for name in ("generation_config.json",):
        if os.path.exists(os.path.join(args.decoder, name)):
            shutil.copy(os.path.join(args.decoder, name), os.path.join(work, name))
    transformers.WhisperFeatureExtractor(feature_size=audio["num_mel_bins"]).save_pretrained(work)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer)
    return fast


def last_layer(module, run):
    """The output of `module` (an encoder's last layer) while `run()` runs."""
    seen = []
    handle = module.register_forward_hook(lambda _m, _i, out: seen.append(out[0] if isinstance(out, tuple) else out))
    with torch.no_grad():
        run()
    handle.remove()
    return seen[-1]


def check(args, work, fast):
    model, info = transformers.Qwen2AudioForConditionalGeneration.from_pretrained(work, dtype=torch.float32,
                                                                                 output_loading_info=True)
    model.eval()
    unused = {k: sorted(v) for k, v in info.items() if k != "error_msgs" and v}
    if unused or info.get("error_msgs"):
        fail(f"transformers does not load every tensor of the assembled model as it should: {unused or info}")
    decoder = transformers.AutoModelForCausalLM.from_pretrained(args.decoder, dtype=torch.float32).eval()
    template = open(os.path.join(work, "chat_template.jinja")).read()
    text = transformers.Qwen2AudioProcessor(feature_extractor=transformers.WhisperFeatureExtractor(
        feature_size=model.config.audio_config.num_mel_bins), tokenizer=fast, chat_template=template)
    prompt = text.apply_chat_template([{"role": "user", "content": "Tom has 3 apples and buys 4 more. How many?"}],
                                      add_generation_prompt=True, tokenize=False)
    ids = torch.tensor([fast(prompt)["input_ids"]])
    with torch.no_grad():
        reference = decoder(input_ids=ids).logits[0]
        # The decoder's own ids; the appended audio tokens' logits are new.
        worst = (model(input_ids=ids).logits[0, :, :reference.shape[1]] - reference).abs().max().item()
    if worst > TOLERANCE:
        fail(f"the assembled model's text logits differ from {args.decoder}'s by {worst:.2e}")
    whisper = transformers.WhisperModel.from_pretrained(args.whisper, dtype=torch.float32).eval().encoder
    mel_bins = model.config.audio_config.num_mel_bins
    rng = np.random.default_rng(args.seed)
    features = transformers.WhisperFeatureExtractor(feature_size=mel_bins)(
        (0.1 * rng.standard_normal(30 * 16000)).astype(np.float32), sampling_rate=16000, return_tensors="pt")
    mel = features["input_features"]
    tower = model.model.audio_tower
    ours = last_layer(tower.layers[-1], lambda: tower(mel))
    theirs = last_layer(whisper.layers[-1], lambda: whisper(mel))
    encoder_worst = (ours - theirs).abs().max().item()
    if encoder_worst > TOLERANCE:
        fail(f"the assembled audio tower's last layer differs from {args.whisper}'s encoder by {encoder_worst:.2e}")
    return worst, encoder_worst


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--whisper", required=True)
    p.add_argument("--decoder", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=1234, help="seed of the projector's weights")
    args = p.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    out = os.path.abspath(args.out)
    work = out + ".partial"
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    try:
        fast = build(args, work)
        text_worst, encoder_worst = check(args, work, fast)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(out, ignore_errors=True)
    os.rename(work, out)
    print(f"build_qwen2_audio: wrote {out}: text logits within {text_worst:.1e} of {args.decoder}, "
          f"encoder's last layer within {encoder_worst:.1e} of {args.whisper}'s")


if __name__ == "__main__":
    main()
