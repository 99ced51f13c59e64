#!/usr/bin/env python3
"""cord train / eval / export on a Hugging Face decoder, against transformers (no download).

A tiny random Qwen2ForCausalLM (q/k/v biases, untied head) with a byte-level BPE and
SmolLM2's ChatML template (default system turn), on the tiny pipeline's corpus:
  * cord eval --ckpt source: each test question goes through the chat template; cord's
    greedy text answers equal transformers' generate() on apply_chat_template of the same
    question (decoded text, item for item), under tp 2;
  * cord train, train.stage = text (tp 2): the training loss falls; cord export of the trained
    weights loads in transformers and gives cord's logits on chat prompts (<= 1e-4); the
    export of the stage's last training checkpoint (read at tp 1) has identical tensors;
  * the align stage with no text stage in its run directory: starts from the
    decoder as loaded, trains the audio side; cord eval of it reports text, audio and WER;
  * the distill stage (CORD) from it, a few steps;
  * the built-in model's weights refused by an hf: eval, and the trained weights under a
    tokenizer.json with two ids swapped (another vocabulary fingerprint); a
    directory without tokenizer.json or without a chat template, and --ckpt source of the
    built-in model, each refused with exit code 2 and nothing written.
Usage: hf_train_oracle.py --cord BUILD/cord --mpiexec MPIEXEC --corpus FILE --work-dir DIR
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import h5py
import torch
import transformers
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_decoder_oracle import SMOLLM2_TEMPLATE, add_tokenizer  # noqa: E402

MAX_ABS = 1e-4
NEW_TOKENS = 12
TEST_ITEMS = 16
# The tiny audio side, so that tp 2 divides its heads.
AUDIO = ["--set", "model.audio.d_model=32", "--set", "model.audio.n_layers=1", "--set", "model.audio.n_heads=4"]


def build_model(work):
    config = transformers.Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, vocab_size=320, max_position_embeddings=1024,
                                      rms_norm_eps=1e-6, tie_word_embeddings=False, eos_token_id=2, bos_token_id=1)
    torch.manual_seed(2024)
    model = transformers.Qwen2ForCausalLM(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn_like(param) * (0.2 if param.dim() > 1 else 0.5) + (1.0 if param.dim() == 1 else 0))
    directory = os.path.join(work, "qwen2_chat")
    shutil.rmtree(directory, ignore_errors=True)
    model.save_pretrained(directory)
    fast = add_tokenizer(directory, SMOLLM2_TEMPLATE)
    return directory, fast


def run_cord(args, ranks, extra, expect_ok=True):
    command = [args.mpiexec, "-n", str(ranks), args.cord] + extra + AUDIO + [
        "--set", f"parallel.tp={ranks}", "--set", "runtime.threads=1", "--set", f"train.corpus={args.corpus}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if expect_ok and result.returncode != 0:
        sys.exit(f"FAIL: {' '.join(command)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


NO_SPACE_BEFORE = ".,?:;!)"


def decode_words(vocab, ids):
    """data::Tokenizer::decode: the corpus's canonical text of word-level ids."""
    text, previous = "", None
    for token in (vocab[i] for i in ids):
        glue = (previous is None or (len(token) == 1 and token in NO_SPACE_BEFORE)
                or (token.isdigit() and previous.isdigit()) or previous == "(")
        text += ("" if glue else " ") + token
        previous = token
    return text


def test_questions(corpus, count):
    """The first `count` test-split questions as text, in corpus order (cord eval's order)."""
    with h5py.File(corpus, "r") as f:
        vocab = bytes(f["tokenizer/vocab"][:]).decode().split("\n")
        split = f["items/split"][:]
        offsets = f["text/question_offsets"][:]
        tokens = f["text/question_tokens"][:]
    test = [i for i in range(len(split)) if split[i] == 2][:count]
    return [decode_words(vocab, tokens[offsets[i]:offsets[i + 1]].tolist()) for i in test]


def check_eval_source(args, directory, fast, questions):
    model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    end_of_turn = fast.convert_tokens_to_ids("<|im_end|>")
    out = os.path.join(args.work_dir, "eval_source")
    run_cord(args, 2, ["eval", "--ckpt", "source", "--set", f"model.source=hf:{directory}", "--out", out,
                       "--set", f"eval.max_items={TEST_ITEMS}", "--set", f"eval.max_new_tokens={NEW_TOKENS}"])
    with open(os.path.join(out, "predictions.jsonl")) as f:
        predictions = {p["row"]: p for p in map(json.loads, f)}
    ordered = [predictions[row] for row in sorted(predictions)]
    if len(ordered) != len(questions):
        sys.exit(f"FAIL: cord eval scored {len(ordered)} items, expected {len(questions)}")
    decoded_audio = [p["row"] for p in ordered if "audio" in p or "transcript" in p]
    if decoded_audio:
        sys.exit(f"FAIL: --ckpt source evaluates text only, but items {decoded_audio[:5]} have audio answers")
    with torch.no_grad():
        for question, prediction in zip(questions, ordered):
            ids = fast.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                           tokenize=True, return_dict=False)
            ids = list(ids["input_ids"]) if isinstance(ids, dict) else list(ids)
            generated = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=NEW_TOKENS,
                                       eos_token_id=end_of_turn, pad_token_id=end_of_turn,
                                       attention_mask=torch.ones(1, len(ids), dtype=torch.long))[0, len(ids):].tolist()
            if end_of_turn in generated:
                generated = generated[:generated.index(end_of_turn)]
            reference = fast.decode(generated)
            if prediction["text"] != reference:
                sys.exit(f"FAIL: item {prediction['row']} ({question!r}): cord answers {prediction['text']!r}, "
                         f"transformers {reference!r}")
    print(f"eval --ckpt source (tp 2): {len(ordered)} test questions through the chat template, greedy answers "
          f"identical to transformers'")


def losses(path):
    with open(path) as f:
        return [r["loss"] for r in map(json.loads, f) if r.get("type") == "step"]


def check_text_stage_and_export(args, directory):
    run = os.path.join(args.work_dir, "run_text")
    shutil.rmtree(run, ignore_errors=True)
    run_cord(args, 2, ["train", "--set", "train.stage=text", "--set", f"model.source=hf:{directory}", "--set",
                       f"train.run_dir={run}", "--set", "train.text.steps=12", "--set", "train.text.global_batch=8",
                       "--set", "train.text.lr=3e-3", "--set", "train.text.warmup_steps=2", "--set",
                       "train.log_every=1", "--set", "train.val_every=0", "--set", "train.val_items=4",
                       "--set", f"eval.max_new_tokens={NEW_TOKENS}", "--set", "ckpt.every_steps=6",
                       "--set", "ckpt.keep_last=4"])
    steps = losses(os.path.join(run, "text", "metrics.jsonl"))
    if len(steps) < 12 or not sum(steps[-3:]) < sum(steps[:3]):
        sys.exit(f"FAIL: text stage on the hf model: the loss does not fall: {steps}")
    print(f"train text (tp 2): loss {steps[0]:.3f} -> {steps[-1]:.3f} over {len(steps)} steps")

    exported = os.path.join(args.work_dir, "exported")
    shutil.rmtree(exported, ignore_errors=True)
    weights = os.path.join(run, "text", "model.h5")
    run_cord(args, 2, ["export", "--weights", weights, "--set", f"model.source=hf:{directory}", "--out", exported])
    for name in ("tokenizer.json", "config.json", "model.safetensors"):
        if not os.path.exists(os.path.join(exported, name)):
            sys.exit(f"FAIL: cord export wrote no {name}")
    conversations = [[{"role": "user", "content": q}] for q in ("How many apples does Mia have?", "Sort 3, 1, 2.")]
    prompts = os.path.join(args.work_dir, "chat.jsonl")
    with open(prompts, "w") as f:
        for conversation in conversations:
            f.write(json.dumps({"messages": conversation}) + "\n")
    logits_path = os.path.join(args.work_dir, "trained_logits.safetensors")
    run_cord(args, 2, ["generate", "--weights", weights, "--set", f"model.source=hf:{directory}", "--prompts", prompts,
                       "--max-new-tokens", "1", "--out", os.path.join(args.work_dir, "chat_out.jsonl"),
                       "--logits-out", logits_path])
    logits = load_file(logits_path)
    model = transformers.AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float32).eval()
    # PreTrainedTokenizerFast, not AutoTokenizer: transformers 5 maps model_type qwen2 to its
    # Qwen2 tokenizer class, which rebuilds the pre-tokenizer with Qwen2's own pattern instead
    # of reading this tiny test tokenizer's from tokenizer.json.
    trained = transformers.PreTrainedTokenizerFast.from_pretrained(exported)
    worst = 0.0
    with torch.no_grad():
        for i, conversation in enumerate(conversations):
            ids = trained.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True,
                                              return_dict=False)
            ids = list(ids["input_ids"]) if isinstance(ids, dict) else list(ids)
            worst = max(worst, (model(torch.tensor([ids])).logits[0] - logits[f"logits.{i}"]).abs().max().item())
    if worst > MAX_ABS:
        sys.exit(f"FAIL: the exported trained model's logits differ from cord's by {worst:.2e}")
    print(f"export of the trained text stage: transformers loads it, logits within {worst:.1e} of cord's")

    # The same weights exported from the stage's last training checkpoint (tp 2 wrote it,
    # tp 1 reads it): identical tensors.
    from_checkpoint = os.path.join(args.work_dir, "exported_from_checkpoint")
    shutil.rmtree(from_checkpoint, ignore_errors=True)
    checkpoint = os.path.join(run, "text", "checkpoints", "step-00000012.h5")
    run_cord(args, 1, ["export", "--weights", checkpoint, "--set", f"model.source=hf:{directory}",
                       "--out", from_checkpoint])
    a = load_file(os.path.join(exported, "model.safetensors"))
    b = load_file(os.path.join(from_checkpoint, "model.safetensors"))
    if a.keys() != b.keys() or any(not torch.equal(a[k], b[k]) for k in a):
        sys.exit(f"FAIL: the export of {checkpoint} differs from that of {weights}")
    print(f"export of training checkpoint step 12 (tp 2 -> tp 1): {len(a)} tensors identical to model.h5's")
    return run


def check_align_eval_distill(args, directory):
    run = os.path.join(args.work_dir, "run_align")
    shutil.rmtree(run, ignore_errors=True)
    common = ["--set", f"model.source=hf:{directory}", "--set", f"train.run_dir={run}", "--set", "train.log_every=1",
              "--set", "train.val_every=0", "--set", "train.val_items=4", "--set", f"eval.max_new_tokens={NEW_TOKENS}"]
    result = run_cord(args, 2, ["train", "--set", "train.stage=align", "--set", "train.align.steps=6", "--set",
                                "train.align.global_batch=8", "--set", "train.align.warmup_steps=1"] + common)
    if "the decoder is" not in result.stderr:
        sys.exit(f"FAIL: the align stage does not say it starts from the loaded decoder\n{result.stderr}")
    steps = losses(os.path.join(run, "align", "metrics.jsonl"))
    if len(steps) != 6 or not all(x == x and x < 1e4 for x in steps):
        sys.exit(f"FAIL: align stage losses {steps}")
    out = os.path.join(run, "eval")
    run_cord(args, 2, ["eval", "--set", f"eval.max_items={TEST_ITEMS}"] + common)
    report = json.load(open(os.path.join(out, "eval.json")))
    for key in ("text_accuracy", "audio_accuracy", "word_error_rate"):
        if key not in report["average"]:
            sys.exit(f"FAIL: eval of the aligned hf model has no {key}: {report['average']}")
    print(f"train align (tp 2, from the loaded decoder): loss {steps[0]:.3f} -> {steps[-1]:.3f}; eval: "
          f"WER {report['average']['word_error_rate']:.2f}")
    run_cord(args, 2, ["train", "--set", "train.stage=distill", "--set", "cord.method=cord", "--set", "train.distill.steps=2",
                       "--set", "train.distill.global_batch=4", "--set", "cord.group_size=2",
                       "--set", f"cord.max_new_tokens={NEW_TOKENS}"] + common)
    steps = losses(os.path.join(run, "distill", "metrics.jsonl"))
    if len(steps) != 2 or not all(x == x for x in steps):
        sys.exit(f"FAIL: distill stage losses {steps}")
    print(f"train distill (CORD, tp 2) from it: {len(steps)} steps, losses {steps}")


def check_vocabulary_refused(args, directory, builtin_weights, trained_weights):
    """Weights trained with one vocabulary are refused under another, naming the file."""
    result = run_cord(args, 2, ["eval", "--set", f"model.source=hf:{directory}", "--ckpt", builtin_weights,
                                "--out", os.path.join(args.work_dir, "refused")], expect_ok=False)
    if result.returncode != 2 or builtin_weights not in result.stderr:
        sys.exit(f"FAIL: built-in weights under an hf: model: exit {result.returncode}, expected 2 naming the file\n"
                 f"{result.stderr}")
    line = next((l for l in result.stderr.splitlines() if "error" in l), "")
    print(f"built-in weights under an hf: model: refused: {line.strip()[:200]}")
    # The same architecture with two tokens swapped in tokenizer.json: another vocabulary.
    swapped = os.path.join(args.work_dir, "swapped_vocab")
    shutil.rmtree(swapped, ignore_errors=True)
    shutil.copytree(directory, swapped)
    with open(os.path.join(swapped, "tokenizer.json")) as f:
        tokenizer = json.load(f)
    vocab = tokenizer["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.get)[100:102]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    with open(os.path.join(swapped, "tokenizer.json"), "w") as f:
        json.dump(tokenizer, f)
    result = run_cord(args, 2, ["eval", "--set", f"model.source=hf:{swapped}", "--ckpt", trained_weights,
                                "--out", os.path.join(args.work_dir, "refused_swapped")], expect_ok=False)
    if result.returncode != 2 or "different vocabularies" not in result.stderr or trained_weights not in result.stderr:
        sys.exit(f"FAIL: weights under another tokenizer: exit {result.returncode}, expected 2 naming the vocabularies"
                 f"\n{result.stderr}")
    line = next((l for l in result.stderr.splitlines() if "error" in l), "")
    print(f"weights under a tokenizer with two ids swapped: refused: {line.strip()[:200]}")


def check_bad_inputs(args, directory):
    """Each refused with exit code 2, naming what is wrong, before anything is written."""
    no_tokenizer = os.path.join(args.work_dir, "no_tokenizer")
    shutil.rmtree(no_tokenizer, ignore_errors=True)
    shutil.copytree(directory, no_tokenizer)
    os.remove(os.path.join(no_tokenizer, "tokenizer.json"))
    no_template = os.path.join(args.work_dir, "no_template")
    shutil.rmtree(no_template, ignore_errors=True)
    shutil.copytree(directory, no_template)
    os.remove(os.path.join(no_template, "chat_template.jinja"))
    with open(os.path.join(no_template, "tokenizer_config.json")) as f:
        config = json.load(f)
    config.pop("chat_template", None)
    with open(os.path.join(no_template, "tokenizer_config.json"), "w") as f:
        json.dump(config, f)
    cases = [
        ("no tokenizer.json", ["eval", "--ckpt", "source", "--set", f"model.source=hf:{no_tokenizer}"],
         os.path.join(no_tokenizer, "tokenizer.json")),
        ("no chat template", ["train", "--set", "train.stage=text", "--set", f"model.source=hf:{no_template}"],
         "chat_template"),
        ("--ckpt source of the built-in model", ["eval", "--ckpt", "source"], "model.source"),
    ]
    for label, extra, named in cases:
        out = os.path.join(args.work_dir, "bad_" + label.replace(" ", "_").replace(".", "").replace("-", ""))
        shutil.rmtree(out, ignore_errors=True)
        target = "train.run_dir" if extra[0] == "train" else None
        extra = extra + (["--set", f"{target}={out}"] if target else ["--out", out])
        result = run_cord(args, 2, extra, expect_ok=False)
        if result.returncode != 2 or named not in result.stderr or os.path.exists(out):
            sys.exit(f"FAIL: {label}: exit {result.returncode} (expected 2), naming {named!r}: "
                     f"{named in result.stderr}, output written: {os.path.exists(out)}\n{result.stderr}")
        line = next((l for l in result.stderr.splitlines() if "error" in l), "")
        print(f"bad input {label}: exit 2: {line.strip()[:200]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cord", required=True)
    parser.add_argument("--mpiexec", required=True)
    parser.add_argument("--corpus", required=True, help="the tiny pipeline's corpus (its test split)")
    parser.add_argument("--builtin-weights", required=True, help="a built-in model's weights file (refused)")
    parser.add_argument("--work-dir", required=True)
    args = parser.parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    torch.set_num_threads(1)
    directory, fast = build_model(args.work_dir)
    check_eval_source(args, directory, fast, test_questions(args.corpus, TEST_ITEMS))
    text_run = check_text_stage_and_export(args, directory)
    check_align_eval_distill(args, directory)
    check_vocabulary_refused(args, directory, args.builtin_weights, os.path.join(text_run, "text", "model.h5"))
    check_bad_inputs(args, directory)
    print("OK")


if __name__ == "__main__":
    main()
