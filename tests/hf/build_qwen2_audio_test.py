#!/usr/bin/env python3
"""tools/build_qwen2_audio.py on tiny random parts (no download): a Whisper (2 encoder layers)
and a Llama decoder with tied embeddings and SmolLM2's ChatML template become one Qwen2-Audio
directory. Checks that
  * the tool's own checks pass (text logits = the decoder's, the encoder's last layer =
    Whisper's) and it writes the directory whole;
  * the template keeps the decoder's default system turn and gains the audio placeholder,
    the tokenizer the three audio tokens, the embedding one row per new token;
  * cord loads the result: `cord generate --audio` gives transformers' logits (<= 1e-4)
    and greedy tokens on two clips;
  * a Whisper directory that is not one is refused with nothing written.
Usage: build_qwen2_audio_test.py --cord BUILD/cord --mpiexec MPIEXEC --tool tools/build_qwen2_audio.py --work-dir DIR
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import torch
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_decoder_oracle import SMOLLM2_TEMPLATE, add_tokenizer  # noqa: E402
from qwen2_audio_oracle import cord_generate, make_clips, reference_audio, worst_difference  # noqa: E402


def build_parts(work):
    whisper_dir, decoder_dir = os.path.join(work, "whisper"), os.path.join(work, "llama")
    for d in (whisper_dir, decoder_dir):
        shutil.rmtree(d, ignore_errors=True)
    torch.manual_seed(5)
    whisper = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(
        d_model=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64, decoder_layers=1,
        decoder_attention_heads=4, decoder_ffn_dim=64, num_mel_bins=80, max_source_positions=1500, vocab_size=100,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
        max_target_positions=64))
    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=320, max_position_embeddings=1024, tie_word_embeddings=True, eos_token_id=2, bos_token_id=1))
    with torch.no_grad():
        for model in (whisper, llama):
            for param in model.parameters():
                param.copy_(torch.randn_like(param) * (0.2 if param.dim() > 1 else 0.5) + (1.0 if param.dim() == 1 else 0))
    whisper.save_pretrained(whisper_dir)
    llama.save_pretrained(decoder_dir)
    add_tokenizer(decoder_dir, SMOLLM2_TEMPLATE)
    return whisper_dir, decoder_dir


def check_tied_export(args, out, clips, processor, built_logits):
    """The built model with text_config tied (no lm_head in the file): cord loads it and its
    export carries the head, so that transformers reads the same model back."""
    from safetensors.torch import load_file, save_file
    tied = os.path.join(args.work_dir, "qwen2_audio_tied")
    shutil.rmtree(tied, ignore_errors=True)
    shutil.copytree(out, tied)
    tensors = load_file(os.path.join(tied, "model.safetensors"))
    del tensors["language_model.lm_head.weight"]  # a copy of the table (the tool unties a tied decoder)
    save_file(tensors, os.path.join(tied, "model.safetensors"), metadata={"format": "pt"})
    config_path = os.path.join(tied, "config.json")
    config = json.load(open(config_path))
    config["text_config"]["tie_word_embeddings"] = True
    json.dump(config, open(config_path, "w"))
    exported = os.path.join(args.work_dir, "tied_exported")
    shutil.rmtree(exported, ignore_errors=True)
    result = run([args.mpiexec, "-n", "1", args.cord, "export", "--set", f"model.source=hf:{tied}", "--out", exported,
                  "--set", "runtime.threads=1"])
    if result.returncode != 0:
        sys.exit(f"FAIL: cord export of a tied Qwen2-Audio\n{result.stderr[-2000:]}")
    model, info = transformers.Qwen2AudioForConditionalGeneration.from_pretrained(exported, dtype=torch.float32,
                                                                                 output_loading_info=True)
    if info["missing_keys"] or info["unexpected_keys"]:
        sys.exit(f"FAIL: transformers reads cord's export of a tied Qwen2-Audio with {info}")
    text = processor.apply_chat_template([{"role": "user", "content": [{"type": "audio", "audio_url": "x"}]}],
                                         add_generation_prompt=True, tokenize=False)
    path = next(iter(clips.values()))
    from qwen2_audio_oracle import read_wav
    inputs = processor(text=text, audio=[read_wav(path)], sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        worst = (model.eval()(**inputs).logits[0] - built_logits["logits.0"]).abs().max().item()
    if worst > 1e-4:
        sys.exit(f"FAIL: the export of the tied model gives logits {worst:.2e} from the built model's")
    print(f"tied text_config: cord loads it, its export has the head, transformers reads it back within {worst:.1e}")


def run(command):
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cord", required=True)
    p.add_argument("--mpiexec", required=True)
    p.add_argument("--tool", required=True)
    p.add_argument("--work-dir", required=True)
    args = p.parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    torch.set_num_threads(1)
    whisper_dir, decoder_dir = build_parts(args.work_dir)
    out = os.path.join(args.work_dir, "qwen2_audio")
    result = run([sys.executable, args.tool, "--whisper", whisper_dir, "--decoder", decoder_dir, "--out", out])
    if result.returncode != 0:
        sys.exit(f"FAIL: build_qwen2_audio.py exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    print(result.stdout.strip().splitlines()[-1])

    template = open(os.path.join(out, "chat_template.jinja")).read()
    config = json.load(open(os.path.join(out, "config.json")))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=os.path.join(out, "tokenizer.json"),
                                                eos_token="<|im_end|>")
    ids = [fast.convert_tokens_to_ids(t) for t in ("<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>")]
    if ("<|audio_bos|><|AUDIO|><|audio_eos|>" not in template or "You are a helpful AI assistant named SmolLM" not in
            template or config["audio_token_index"] != ids[1] or config["text_config"]["vocab_size"] != max(ids) + 1):
        sys.exit(f"FAIL: the template, the audio token ids {ids} or the vocabulary of {out} are not as built")
    print(f"template: Qwen2-Audio's placeholder with SmolLM2's system turn; audio tokens {ids}, "
          f"vocabulary {config['text_config']['vocab_size']}")

    clips, _ = make_clips(args.work_dir)
    clips = dict(list(clips.items())[1:3])
    model = transformers.Qwen2AudioForConditionalGeneration.from_pretrained(out, dtype=torch.float32).eval()
    processor = transformers.Qwen2AudioProcessor(
        feature_extractor=transformers.WhisperFeatureExtractor(feature_size=80), tokenizer=fast, chat_template=template)
    references = reference_audio(model, processor, fast, clips)
    logits, lines = cord_generate(argparse.Namespace(mpiexec=args.mpiexec, cord=args.cord, work_dir=args.work_dir),
                                  1, out, clips, "built")
    worst = worst_difference(logits, 0, [r[0] for r in references])
    same = sum(line["ids"] == ref[1] for line, ref in zip(lines, references))
    print(f"cord on the built model: audio-prompt logits within {worst:.2e} of transformers', greedy {same}/{len(clips)}")
    if worst > 1e-4 or same != len(clips):
        sys.exit("FAIL: cord and transformers disagree on the built model")

    check_tied_export(args, out, clips, processor, logits)

    bad_out = os.path.join(args.work_dir, "not_built")
    result = run([sys.executable, args.tool, "--whisper", decoder_dir, "--decoder", decoder_dir, "--out", bad_out])
    if result.returncode == 0 or "model_type" not in result.stderr or os.path.exists(bad_out) or \
            os.path.exists(bad_out + ".partial"):
        sys.exit(f"FAIL: a decoder given as --whisper: exit {result.returncode}\n{result.stderr[-1500:]}")
    print("refused: a decoder directory as --whisper (nothing written)")
    print("OK")


if __name__ == "__main__":
    main()
