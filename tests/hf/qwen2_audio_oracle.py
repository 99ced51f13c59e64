#!/usr/bin/env python3
"""cord against transformers on a tiny random Qwen2AudioForConditionalGeneration (no download).

Builds the model from a config (Whisper-style audio tower of 2 layers, Qwen2 decoder of 2
layers, every weight drawn at random: norms, biases and the position table too, so that a
misplaced tensor cannot hide), a byte-level BPE tokenizer trained by `tokenizers` with
ChatML and Qwen2-Audio's audio specials, and Qwen2-Audio's default chat template; then
checks, for 16 kHz clips of 0.5 to 4 s:
  * audio prompts (the user turn holding one clip, through Qwen2AudioProcessor on the
    transformers side, `cord generate --audio` on cord's): the logits of every prompt
    position within 1e-4 (fp32) under tp 1 and 2, and greedy continuations identical;
  * the matching text prompts (the same turn with text): logits within 1e-4, tp 1 and 2;
  * cord export (from tp 2) -> Qwen2AudioForConditionalGeneration.from_pretrained -> the
    same audio-prompt logits;
  * the pipeline on it (tp 2): `cord corpus synth` of the tiny corpus job with Whisper
    features (corpus.features = whisper), CORD straight from the loaded model, the align
    stage from it (its loss falls), the distill stage with every cord.method from the
    aligned model, eval (text, audio and WER), and export of the distilled weights, which
    transformers loads;
  * bad input, each refused with exit code 2 and a message naming the file and field or
    tensor: config.json without audio_config, a chat template without the audio
    placeholder, a projector whose width is not the decoder's, a clip longer than the
    encoder's 30 s window, and a corpus whose features have another mel count (both named).
Usage: qwen2_audio_oracle.py --cord BUILD/cord --mpiexec MPIEXEC --corpus-job jobs/corpus_tiny.toml --work-dir DIR
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import wave

import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from whisper_features_oracle import write_wav  # noqa: E402

MAX_ABS = 1e-4
NEW_TOKENS = 8
RATE = 16000
QUESTIONS = ["What is seven plus four?", "Who is taller, Ada or Bo?", "Sort three, one, two."]


def read_wav(path):
    with wave.open(path) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def make_clips(work):
    """Tone sweeps with noise; lengths not multiples of the hop. name -> path."""
    rng = np.random.default_rng(11)
    clips = {}
    for i, seconds in enumerate((0.5, 1.37, 2.71, 4.03)):
        t = np.arange(int(seconds * RATE) + 17 * i) / RATE
        samples = 0.3 * np.sin(2 * np.pi * (150 + 900 * (i + 1) * t) * t) + 0.03 * rng.standard_normal(t.size)
        path = os.path.join(work, f"clip{i}.wav")
        write_wav(path, samples)
        clips[f"clip{i}"] = path
    long_path = os.path.join(work, "thirty_one_seconds.wav")
    write_wav(long_path, 0.05 * rng.standard_normal(31 * RATE))
    return clips, long_path


def build_tokenizer(directory, template):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>"]
    text = QUESTIONS * 20 + ["You are a helpful assistant.", "Audio 1: ", "The answer is 11.", "system user"] * 20
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(text, trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>",
                                                unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.chat_template = template
    fast.save_pretrained(directory)
    return fast


def build_model(work):
    directory = os.path.join(work, "qwen2_audio")
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    template = transformers.Qwen2AudioProcessor.default_chat_template.fget(None)
    fast = build_tokenizer(directory, template)
    audio = dict(d_model=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64, num_mel_bins=80,
                 max_source_positions=1500)
    text = dict(model_type="qwen2", hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=304, max_position_embeddings=1024, rms_norm_eps=1e-6,
                eos_token_id=fast.convert_tokens_to_ids("<|im_end|>"), tie_word_embeddings=False)
    config = transformers.Qwen2AudioConfig(audio_config=audio, text_config=text,
                                           audio_token_id=fast.convert_tokens_to_ids("<|AUDIO|>"))
    torch.manual_seed(2024)
    model = transformers.Qwen2AudioForConditionalGeneration(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn_like(param) * (0.2 if param.dim() > 1 else 0.5) + (1.0 if param.dim() == 1 else 0))
    model.save_pretrained(directory)
    processor = transformers.Qwen2AudioProcessor(
        feature_extractor=transformers.WhisperFeatureExtractor(feature_size=80), tokenizer=fast, chat_template=template)
    return directory, fast, processor


def run_cord(args, ranks, extra, expect_ok=True, tp=True):
    command = [args.mpiexec, "-n", str(ranks), args.cord] + extra + ["--set", "runtime.threads=1"]
    if tp:
        command += ["--set", f"parallel.tp={ranks}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if expect_ok and result.returncode != 0:
        sys.exit(f"FAIL: {' '.join(command)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def audio_conversation():
    return [{"role": "user", "content": [{"type": "audio", "audio_url": "clip.wav"}]}]


def reference_audio(model, processor, fast, clips):
    """Per clip: (logits [T, V] of the prompt, greedy continuation ids)."""
    text = processor.apply_chat_template(audio_conversation(), add_generation_prompt=True, tokenize=False)
    out = []
    eos = fast.convert_tokens_to_ids("<|im_end|>")
    for path in clips.values():
        inputs = processor(text=text, audio=[read_wav(path)], sampling_rate=RATE, return_tensors="pt")
        with torch.no_grad():
            logits = model(**inputs).logits[0]
            generated = model.generate(**inputs, do_sample=False, max_new_tokens=NEW_TOKENS, eos_token_id=eos,
                                       pad_token_id=eos)
        out.append((logits, generated[0, inputs["input_ids"].shape[1]:].tolist()))
    return out


def reference_text(model, fast):
    logits = []
    for question in QUESTIONS:
        ids = fast.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                       tokenize=True, return_dict=False)
        ids = list(ids["input_ids"]) if isinstance(ids, dict) else list(ids)
        with torch.no_grad():
            logits.append(model(input_ids=torch.tensor([ids])).logits[0])
    return logits


def cord_generate(args, ranks, directory, clips, tag, questions=()):
    logits_path = os.path.join(args.work_dir, f"{tag}_tp{ranks}_logits.safetensors")
    out_path = os.path.join(args.work_dir, f"{tag}_tp{ranks}.jsonl")
    extra = ["generate", "--set", f"model.source=hf:{directory}", "--max-new-tokens", str(NEW_TOKENS),
             "--out", out_path, "--logits-out", logits_path]
    for question in questions:
        extra += ["--prompt", question]
    for path in clips.values():
        extra += ["--audio", path]
    run_cord(args, ranks, extra)
    with open(out_path) as f:
        lines = [json.loads(line) for line in f]
    return load_file(logits_path), lines


def worst_difference(logits, offset, references):
    worst = 0.0
    for i, reference in enumerate(references):
        ours = logits[f"logits.{offset + i}"]
        if ours.shape != reference.shape:
            sys.exit(f"FAIL: prompt {offset + i}: cord's logits have shape {list(ours.shape)}, "
                     f"transformers' {list(reference.shape)} (the prompt layouts differ)")
        worst = max(worst, (ours - reference).abs().max().item())
    return worst


def check_against_transformers(args, directory, fast, processor, clips):
    model = transformers.Qwen2AudioForConditionalGeneration.from_pretrained(directory, dtype=torch.float32).eval()
    audio_refs = reference_audio(model, processor, fast, clips)
    text_refs = reference_text(model, fast)
    for ranks in (1, 2):
        logits, lines = cord_generate(args, ranks, directory, clips, "prompts", QUESTIONS)
        text_worst = worst_difference(logits, 0, text_refs)
        audio_worst = worst_difference(logits, len(QUESTIONS), [r[0] for r in audio_refs])
        audio_lines = lines[len(QUESTIONS):]
        same = sum(line["ids"] == ref[1] for line, ref in zip(audio_lines, audio_refs))
        print(f"tp {ranks}: text prompts max |logit diff| {text_worst:.2e}; audio prompts {audio_worst:.2e} "
              f"over {len(clips)} clips; greedy continuations identical {same}/{len(clips)}")
        if max(text_worst, audio_worst) > MAX_ABS:
            sys.exit(f"FAIL: tp {ranks}: logits differ by {max(text_worst, audio_worst):.3e} > {MAX_ABS}")
        if same != len(clips):
            bad = next(i for i, (line, ref) in enumerate(zip(audio_lines, audio_refs)) if line["ids"] != ref[1])
            sys.exit(f"FAIL: tp {ranks}: clip {bad} continues {audio_lines[bad]['ids']} in cord, "
                     f"{audio_refs[bad][1]} in transformers")
    return [r[0] for r in audio_refs]


def check_export(args, directory, processor, clips, audio_refs):
    out = os.path.join(args.work_dir, "export_float32")
    shutil.rmtree(out, ignore_errors=True)
    run_cord(args, 2, ["export", "--set", f"model.source=hf:{directory}", "--out", out, "--dtype", "float32"])
    model = transformers.Qwen2AudioForConditionalGeneration.from_pretrained(out).eval()
    text = processor.apply_chat_template(audio_conversation(), add_generation_prompt=True, tokenize=False)
    worst = 0.0
    for path, reference in zip(clips.values(), audio_refs):
        inputs = processor(text=text, audio=[read_wav(path)], sampling_rate=RATE, return_tensors="pt")
        with torch.no_grad():
            worst = max(worst, (model(**inputs).logits[0] - reference).abs().max().item())
    print(f"export float32 -> Qwen2AudioForConditionalGeneration.from_pretrained: max |logit diff| {worst:.2e}")
    if worst > 1e-6:
        sys.exit(f"FAIL: export: logits differ by {worst:.3e} > 1e-6")


METHODS = ["cord", "cord-unweighted", "opd", "grpo", "sft", "fkl"]


def losses(path):
    with open(path) as f:
        return [r["loss"] for r in map(json.loads, f) if r.get("type") == "step"]


def synth_corpus(args, name, n_mels):
    path = os.path.join(args.work_dir, name)
    if os.path.exists(path):
        os.remove(path)
    run_cord(args, 2, ["corpus", "synth", "--config", args.corpus_job, "--out", path, "--set", "corpus.features=whisper",
                       "--set", f"corpus.n_mels={n_mels}"], tp=False)
    return path


def check_pipeline(args, directory):
    corpus = synth_corpus(args, "corpus_whisper80.h5", 80)
    run = os.path.join(args.work_dir, "run")
    shutil.rmtree(run, ignore_errors=True)
    common = ["--set", f"model.source=hf:{directory}", "--set", f"train.run_dir={run}", "--set", f"train.corpus={corpus}",
              "--set", "train.log_every=1", "--set", "train.val_every=0", "--set", "train.val_items=4",
              "--set", f"eval.max_new_tokens={NEW_TOKENS}"]
    # A pretrained Qwen2-Audio is a base already: distill straight from it, no align stage.
    direct = os.path.join(args.work_dir, "run_direct")
    shutil.rmtree(direct, ignore_errors=True)
    result = run_cord(args, 2, ["train", "--set", "train.stage=distill", "--set", "train.distill.steps=2", "--set",
                                "train.distill.global_batch=4", "--set", "cord.group_size=2", "--set",
                                f"cord.max_new_tokens={NEW_TOKENS}"] + common + ["--set", f"train.run_dir={direct}"])
    if f"starting from hf:{directory}" not in result.stderr or len(losses(os.path.join(direct, "distill", "metrics.jsonl"))) != 2:
        sys.exit(f"FAIL: distill from the loaded Qwen2-Audio model (no align stage)\n{result.stderr[-3000:]}")
    print("distill (CORD, tp 2) straight from the loaded model: 2 steps")
    run_cord(args, 2, ["train", "--set", "train.stage=align", "--set", "train.align.steps=16", "--set",
                       "train.align.global_batch=8", "--set", "train.align.lr=3e-3", "--set",
                       "train.align.warmup_steps=2"] + common)
    steps = losses(os.path.join(run, "align", "metrics.jsonl"))
    if len(steps) != 16 or not sum(steps[-3:]) < sum(steps[:3]):
        sys.exit(f"FAIL: align stage on the Qwen2-Audio model: the loss does not fall: {steps}")
    print(f"align (tp 2, Whisper features): loss {steps[0]:.3f} -> {steps[-1]:.3f} over {len(steps)} steps")
    for method in METHODS:
        run_cord(args, 2, ["train", "--set", "train.stage=distill", "--set", f"cord.method={method}", "--set",
                           "train.distill.steps=2", "--set", "train.distill.global_batch=4", "--set",
                           "cord.group_size=2", "--set", f"cord.max_new_tokens={NEW_TOKENS}"] + common)
        steps = losses(os.path.join(run, "distill", "metrics.jsonl"))
        if len(steps) != 2 or not all(x == x and abs(x) < 1e6 for x in steps):
            sys.exit(f"FAIL: distill {method} losses {steps}")
        print(f"distill {method} (tp 2) from the aligned model: losses {[round(x, 4) for x in steps]}")
    run_cord(args, 2, ["eval", "--set", "eval.max_items=8"] + common)
    report = json.load(open(os.path.join(run, "eval", "eval.json")))["average"]
    for key in ("text_accuracy", "audio_accuracy", "word_error_rate"):
        if key not in report:
            sys.exit(f"FAIL: eval of the distilled Qwen2-Audio model has no {key}: {report}")
    print(f"eval of the last distill stage: text {report['text_accuracy']:.1f}%, audio {report['audio_accuracy']:.1f}%, "
          f"WER {report['word_error_rate']:.2f}")
    exported = os.path.join(args.work_dir, "exported_distilled")
    shutil.rmtree(exported, ignore_errors=True)
    weights = os.path.join(run, "distill", "model.h5")
    run_cord(args, 2, ["export", "--weights", weights, "--set", f"model.source=hf:{directory}", "--out", exported])
    model = transformers.Qwen2AudioForConditionalGeneration.from_pretrained(exported)
    source = transformers.Qwen2AudioForConditionalGeneration.from_pretrained(directory)
    trained, fixed = model.state_dict(), source.state_dict()
    moved = [name for name in fixed if not torch.equal(trained[name], fixed[name])]
    positions = [name for name in fixed if name.endswith("embed_positions.weight")]
    if not moved or any(name in moved for name in positions):
        sys.exit(f"FAIL: the distilled weights moved {len(moved)} tensors, the fixed position table among them: "
                 f"{[n for n in moved if n in positions]}")
    print(f"export of the distilled weights: transformers loads them ({len(moved)} of {len(fixed)} tensors differ "
          f"from the source; the position table, never trained, does not)")
    return corpus


def copy_model(source, target):
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    return target


def check_corpus_refused(args, directory):
    corpus = synth_corpus(args, "corpus_whisper128.h5", 128)
    run = os.path.join(args.work_dir, "run_bad_corpus")
    shutil.rmtree(run, ignore_errors=True)
    result = run_cord(args, 1, ["train", "--set", "train.stage=align", "--set", f"model.source=hf:{directory}",
                                "--set", f"train.run_dir={run}", "--set", f"train.corpus={corpus}"], expect_ok=False)
    message = result.stderr + result.stdout
    expect = ["corpus_whisper128.h5", "128 mel bins", "config.json", "model.audio.n_mels = 80"]
    if result.returncode != 2 or not all(e in message for e in expect) or os.path.exists(os.path.join(run, "align")):
        sys.exit(f"FAIL: a corpus of 128-bin features for an 80-bin model: exit {result.returncode}, expected 2 with "
                 f"{expect} named and nothing written; output:\n{message[-2000:]}")
    print("bad input refused: corpus features of 128 mel bins for a model of 80")


def check_bad_inputs(args, directory, clips, long_clip):
    def no_audio_config(d):
        path = os.path.join(d, "config.json")
        with open(path) as f:
            config = json.load(f)
        del config["audio_config"]
        with open(path, "w") as f:
            json.dump(config, f)

    def no_placeholder(d):
        jinja = os.path.join(d, "chat_template.jinja")
        with open(jinja) as f:
            template = f.read()
        with open(jinja, "w") as f:
            f.write(template.replace("<|audio_bos|><|AUDIO|><|audio_eos|>", "[audio]"))

    def wide_projector(d):
        path = os.path.join(d, "model.safetensors")
        tensors = load_file(path)
        tensors["multi_modal_projector.linear.weight"] = torch.zeros(56, 32)
        tensors["multi_modal_projector.linear.bias"] = torch.zeros(56)
        save_file(tensors, path, metadata={"format": "pt"})

    one_clip = [next(iter(clips.values()))]
    cases = [
        ("config.json without audio_config", no_audio_config, one_clip, ["config.json", "audio_config"]),
        ("template without the audio placeholder", no_placeholder, one_clip, ["chat_template.jinja", "<|AUDIO|>"]),
        ("projector wider than the decoder", wide_projector, one_clip,
         ["model.safetensors", "multi_modal_projector.linear.weight"]),
        ("clip longer than the window", None, [long_clip], ["thirty_one_seconds.wav", "window"]),
    ]
    for label, mutate, audio, expect in cases:
        target = copy_model(directory, os.path.join(args.work_dir, "bad_" + label.split()[0]))
        if mutate:
            mutate(target)
        out = os.path.join(args.work_dir, "bad_out.jsonl")
        if os.path.exists(out):
            os.remove(out)
        extra = ["generate", "--set", f"model.source=hf:{target}", "--out", out]
        for path in audio:
            extra += ["--audio", path]
        result = run_cord(args, 1, extra, expect_ok=False)
        message = result.stderr + result.stdout
        if result.returncode != 2 or not all(e in message for e in expect) or os.path.exists(out):
            sys.exit(f"FAIL: bad input '{label}': exit {result.returncode}, expected 2 with {expect} named and "
                     f"nothing written; output:\n{message[-2000:]}")
        print(f"bad input refused: {label}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cord", required=True)
    parser.add_argument("--mpiexec", required=True)
    parser.add_argument("--corpus-job", required=True)
    parser.add_argument("--work-dir", required=True)
    args = parser.parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    torch.set_num_threads(1)
    clips, long_clip = make_clips(args.work_dir)
    directory, fast, processor = build_model(args.work_dir)
    audio_refs = check_against_transformers(args, directory, fast, processor, clips)
    check_export(args, directory, processor, clips, audio_refs)
    check_pipeline(args, directory)
    check_bad_inputs(args, directory, clips, long_clip)
    check_corpus_refused(args, directory)
    print("OK")


if __name__ == "__main__":
    main()
