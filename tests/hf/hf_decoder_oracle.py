#!/usr/bin/env python3
"""cord against transformers on tiny random Hugging Face decoders (no download).

Builds a LlamaForCausalLM (tied embeddings, one safetensors file) and a Qwen2ForCausalLM
(q/k/v biases, untied, sharded files with an index), and a Qwen2 with 317 ids (tp 2 and 4
then pad the vocabulary) from configs, with every weight drawn
at random (norm weights and biases too, so that a misplaced tensor cannot hide), and checks:
  * logits of 20 prompts: cord generate --logits-out vs model(ids).logits, max |diff| <= 1e-4
    (fp32), under tp 1, 2 and 4;
  * greedy continuations (cord's batched left-padded KV-cache decode vs generate() one
    prompt at a time): identical token for token;
  * cord export (from tp 2) -> from_pretrained -> the same logits as the source, in fp32
    and loadable in bf16;
  * text prompts: a tiny byte-level BPE (trained by `tokenizers`) with a ChatML chat
    template (SmolLM2's, which inserts a default system turn, and Qwen2's): cord generate
    --prompts gives the ids of transformers' apply_chat_template, and decodes its output;
  * bad directories: each refused with exit code 2, a message naming the file and the
    tensor or field, and nothing written.
Usage: hf_decoder_oracle.py --cord BUILD/cord --mpiexec MPIEXEC --work-dir DIR
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys

import torch
import transformers
from safetensors.torch import load_file

MAX_ABS = 1e-4
EOS = 1
NEW_TOKENS = 16


def build_models(work):
    """The two tiny models, saved; returns {name: directory}."""
    common = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=320, max_position_embeddings=256, rms_norm_eps=1e-6,
                  eos_token_id=EOS, bos_token_id=0)
    specs = {
        "llama": (transformers.LlamaConfig(tie_word_embeddings=True, rope_theta=50000.0, **common),
                  transformers.LlamaForCausalLM, None),
        "qwen2": (transformers.Qwen2Config(tie_word_embeddings=False, **common),
                  transformers.Qwen2ForCausalLM, "40KB"),
        # 317 ids: tp 2 and 4 do not divide them, so cord pads the vocabulary (untied head).
        "qwen2_vocab317": (transformers.Qwen2Config(tie_word_embeddings=False, **dict(common, vocab_size=317)),
                           transformers.Qwen2ForCausalLM, None),
    }
    dirs = {}
    for seed, (name, (config, cls, shard_size)) in enumerate(specs.items()):
        torch.manual_seed(1000 + seed)
        model = cls(config).eval()
        with torch.no_grad():
            for param in model.parameters():
                param.copy_(torch.randn_like(param) * (0.2 if param.dim() > 1 else 0.5) + (1.0 if param.dim() == 1 else 0))
        directory = os.path.join(work, name)
        shutil.rmtree(directory, ignore_errors=True)
        kwargs = {"max_shard_size": shard_size} if shard_size else {}
        model.save_pretrained(directory, **kwargs)
        dirs[name] = directory
    return dirs


def prompts(count=20, vocab=320):
    generator = torch.Generator().manual_seed(7)
    out = []
    for i in range(count):
        length = 3 + (i * 7) % 22
        out.append(torch.randint(2, vocab, (length,), generator=generator).tolist())
    return out


def run_cord(args, ranks, extra, expect_ok=True):
    command = [args.mpiexec, "-n", str(ranks), args.cord] + extra + ["--set", f"parallel.tp={ranks}",
                                                                       "--set", "runtime.threads=1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if expect_ok and result.returncode != 0:
        sys.exit(f"FAIL: {' '.join(command)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def check_against_transformers(args, name, directory, prompt_ids):
    model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    with torch.no_grad():
        reference_logits = [model(torch.tensor([p])).logits[0] for p in prompt_ids]
        reference_tokens = []
        for p in prompt_ids:
            out = model.generate(torch.tensor([p]), do_sample=False, max_new_tokens=NEW_TOKENS, eos_token_id=EOS,
                                 pad_token_id=EOS, attention_mask=torch.ones(1, len(p), dtype=torch.long))
            reference_tokens.append(out[0, len(p):].tolist())
    for ranks in (1, 2, 4):
        logits_path = os.path.join(args.work_dir, f"{name}_tp{ranks}_logits.safetensors")
        out_path = os.path.join(args.work_dir, f"{name}_tp{ranks}.jsonl")
        extra = ["generate", "--set", f"model.source=hf:{directory}", "--max-new-tokens", str(NEW_TOKENS),
                 "--eos", str(EOS), "--out", out_path, "--logits-out", logits_path]
        for p in prompt_ids:
            extra += ["--ids", " ".join(map(str, p))]
        run_cord(args, ranks, extra)
        logits = load_file(logits_path)
        worst = max((logits[f"logits.{i}"] - reference_logits[i]).abs().max().item() for i in range(len(prompt_ids)))
        with open(out_path) as f:
            generated = [json.loads(line)["ids"] for line in f]
        mismatches = [i for i in range(len(prompt_ids)) if generated[i] != reference_tokens[i]]
        print(f"{name} tp {ranks}: max |logit diff| {worst:.2e} over {len(prompt_ids)} prompts; "
              f"greedy continuations identical: {len(prompt_ids) - len(mismatches)}/{len(prompt_ids)}")
        if worst > MAX_ABS:
            sys.exit(f"FAIL: {name} tp {ranks}: logits differ by {worst:.3e} > {MAX_ABS}")
        if mismatches:
            i = mismatches[0]
            sys.exit(f"FAIL: {name} tp {ranks}: prompt {i} continues {generated[i]} in cord, "
                     f"{reference_tokens[i]} in transformers")
    return reference_logits


def check_export(args, name, directory, prompt_ids, reference_logits):
    for dtype, tolerance in (("float32", 1e-6), ("bfloat16", None)):
        out = os.path.join(args.work_dir, f"{name}_export_{dtype}")
        shutil.rmtree(out, ignore_errors=True)
        run_cord(args, 2, ["export", "--set", f"model.source=hf:{directory}", "--out", out, "--dtype", dtype])
        model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
        with torch.no_grad():
            worst = max((model(torch.tensor([p])).logits[0].float() - reference_logits[i]).abs().max().item()
                        for i, p in enumerate(prompt_ids))
        print(f"{name} export {dtype} -> from_pretrained: max |logit diff| {worst:.2e} "
              f"(weights {next(model.parameters()).dtype})")
        if tolerance is not None and worst > tolerance:
            sys.exit(f"FAIL: {name} export {dtype}: logits differ by {worst:.3e} > {tolerance}")


# --- chat prompts ---------------------------------------------------------------------------

SMOLLM2_TEMPLATE = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                    "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
                    "{% endif %}")
QWEN2_TEMPLATE = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                  "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
                  "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
                  "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
CONVERSATIONS = [
    [{"role": "user", "content": "Tom has 3 apples and buys 14 more. How many apples does Tom have now?"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Who is taller, Ada or Bo?"}],
    [{"role": "user", "content": "What is 12 plus 7?"}, {"role": "assistant", "content": "The answer is 19."},
     {"role": "user", "content": "And 12 minus 7?"}],
    [{"role": "user", "content": "Caf\u00e9 \u00fcber na\u00efve \U0001F600 \u4e2d\u6587   tabs\tand\nnewlines"}],
]


def add_tokenizer(directory, template):
    """A byte-level BPE of at most 320 ids trained on corpus-like text, with ChatML specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    text = [c["content"] for conversation in CONVERSATIONS for c in conversation] * 20 + [
        "The answer is 42.", "How many apples does Mia have?", "Sort the people by height."] * 20
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(text, trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|im_start|>",
                                                eos_token="<|im_end|>", unk_token="<|endoftext|>")
    fast.chat_template = template
    fast.save_pretrained(directory)
    return fast


def check_chat(args, directory):
    for name, template in (("smollm2", SMOLLM2_TEMPLATE), ("qwen2", QWEN2_TEMPLATE)):
        target = copy_model(directory, os.path.join(args.work_dir, f"chat_{name}"))
        fast = add_tokenizer(target, template)
        jinja = os.path.join(target, "chat_template.jinja")
        if name == "qwen2" and os.path.exists(jinja):
            # Older directories keep the template in tokenizer_config.json: read it there.
            os.remove(jinja)
            with open(os.path.join(target, "tokenizer_config.json")) as f:
                config = json.load(f)
            config["chat_template"] = template
            with open(os.path.join(target, "tokenizer_config.json"), "w") as f:
                json.dump(config, f)
        prompts = os.path.join(args.work_dir, f"chat_{name}.jsonl")
        with open(prompts, "w") as f:
            for conversation in CONVERSATIONS:
                f.write(json.dumps({"messages": conversation}) + "\n")
        out = os.path.join(args.work_dir, f"chat_{name}_out.jsonl")
        run_cord(args, 2, ["generate", "--set", f"model.source=hf:{target}", "--prompts", prompts, "--out", out,
                           "--max-new-tokens", "6"])
        with open(out) as f:
            lines = [json.loads(line) for line in f]
        for conversation, line in zip(CONVERSATIONS, lines):
            reference = fast.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True,
                                                 return_dict=False)
            reference = list(reference["input_ids"]) if isinstance(reference, dict) else list(reference)
            if line["prompt_ids"] != reference:
                sys.exit(f"FAIL: chat {name}: cord's prompt ids {line['prompt_ids']} differ from transformers' "
                         f"{reference} for {conversation}")
            if line["text"] != fast.decode(line["ids"], skip_special_tokens=True):
                sys.exit(f"FAIL: chat {name}: cord decodes {line['ids']} as {line['text']!r}")
        print(f"chat template {name}: {len(lines)} conversations, prompt ids identical to apply_chat_template")


# --- bad input ------------------------------------------------------------------------------

def copy_model(source, target):
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    return target


def edit_config(directory, **changes):
    path = os.path.join(directory, "config.json")
    with open(path) as f:
        config = json.load(f)
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    with open(path, "w") as f:
        json.dump(config, f)


def rewrite_header(path, edit):
    """Applies edit(header dict) -> bytes-or-dict to a safetensors file's header."""
    with open(path, "rb") as f:
        data = f.read()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + size])
    new = edit(header)
    raw = new if isinstance(new, bytes) else json.dumps(new).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + data[8 + size:])


def bad_cases(llama, qwen2, work):
    cases = []

    def case(label, source, mutate, expect):
        directory = copy_model(source, os.path.join(work, "bad", label))
        mutate(directory)
        cases.append((label, directory, expect))

    case("no_config", llama, lambda d: os.remove(os.path.join(d, "config.json")), ["config.json", "does not exist"])
    case("model_type", llama, lambda d: edit_config(d, model_type="gpt2"), ["config.json", "model_type", "gpt2"])
    case("architecture", llama, lambda d: edit_config(d, architectures=["LlamaForSequenceClassification"]),
         ["config.json", "architectures"])
    case("rope_type", llama, lambda d: edit_config(d, rope_parameters={"rope_type": "yarn", "rope_theta": 1e4}),
         ["config.json", "rope_type", "yarn"])
    case("sliding_window", qwen2, lambda d: edit_config(d, use_sliding_window=True),
         ["config.json", "use_sliding_window"])
    case("hidden_act", llama, lambda d: edit_config(d, hidden_act="gelu"), ["config.json", "hidden_act"])
    def not_json(d):
        rewrite_header(os.path.join(d, "model.safetensors"), lambda h: b"{not json")
    case("header_not_json", llama, not_json, ["model.safetensors", "not valid JSON"])
    def outside(d):
        def edit(h):
            h["model.norm.weight"]["data_offsets"][1] += 10 ** 9
            return h
        rewrite_header(os.path.join(d, "model.safetensors"), edit)
    case("offsets_outside", llama, outside, ["model.safetensors", "model.norm.weight", "outside"])
    def overlap(d):
        def edit(h):
            names = [k for k in h if k != "__metadata__"]
            a, b = sorted(names, key=lambda k: h[k]["data_offsets"][0])[:2]
            h[b]["data_offsets"] = h[a]["data_offsets"]
            h[b]["shape"] = h[a]["shape"]
            return h
        rewrite_header(os.path.join(d, "model.safetensors"), edit)
    case("overlap", llama, overlap, ["model.safetensors", "overlap"])
    def dtype(d):
        def edit(h):
            h["model.norm.weight"]["dtype"] = "F8_E4M3"
            return h
        rewrite_header(os.path.join(d, "model.safetensors"), edit)
    case("unknown_dtype", llama, dtype, ["model.safetensors", "model.norm.weight", "F8_E4M3"])
    case("shape_mismatch", llama, lambda d: edit_config(d, intermediate_size=96),
         ["model.safetensors", "mlp.gate_proj.weight", "shape"])
    def missing(d):
        tensors = load_file(os.path.join(d, "model.safetensors"))
        tensors.pop("model.layers.1.mlp.up_proj.weight")
        from safetensors.torch import save_file
        save_file(tensors, os.path.join(d, "model.safetensors"))
    case("missing_tensor", llama, missing, ["model.layers.1.mlp.up_proj.weight", "no safetensors file"])
    def missing_shard(d):
        shard = sorted(f for f in os.listdir(d) if f.startswith("model-0"))[0]
        os.remove(os.path.join(d, shard))
    case("missing_shard", qwen2, missing_shard, ["model.safetensors.index.json", "does not exist"])
    case("tp_heads", llama, lambda d: edit_config(d, num_attention_heads=2, num_key_value_heads=1, head_dim=None),
         ["parallel.tp"])
    return cases


def check_bad_inputs(args, dirs):
    cases = bad_cases(dirs["llama"], dirs["qwen2"], args.work_dir)
    for label, directory, expect in cases:
        out = os.path.join(args.work_dir, "bad_out", label)
        shutil.rmtree(out, ignore_errors=True)
        ranks = 4 if label == "tp_heads" else 1
        result = run_cord(args, ranks, ["export", "--set", f"model.source=hf:{directory}", "--out", out],
                          expect_ok=False)
        message = result.stderr + result.stdout
        missing = [word for word in expect if word not in message]
        if result.returncode != 2 or missing or os.path.exists(out):
            sys.exit(f"FAIL: bad input {label}: exit {result.returncode} (want 2), message lacks {missing}, "
                     f"output written: {os.path.exists(out)}\n{message}")
        line = next((l for l in message.splitlines() if "error" in l.lower()), message.strip().splitlines()[-1])
        print(f"bad input {label}: exit 2: {line.strip()[:160]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cord", required=True)
    parser.add_argument("--mpiexec", required=True)
    parser.add_argument("--work-dir", required=True)
    args = parser.parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    torch.set_num_threads(1)
    dirs = build_models(args.work_dir)
    for name, directory in dirs.items():
        prompt_ids = prompts(vocab=317 if name.endswith("317") else 320)
        reference = check_against_transformers(args, name, directory, prompt_ids)
        check_export(args, name, directory, prompt_ids, reference)
    check_chat(args, dirs["qwen2"])
    check_bad_inputs(args, dirs)
    print("OK")


if __name__ == "__main__":
    main()
