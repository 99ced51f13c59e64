#!/usr/bin/env python3
"""SmolLM2-135M-Instruct (converted by `./setup.sh smollm2`) in cord against transformers.

  check      20 chat prompts: the chat-template ids, the logits of every prompt position
             (max |diff| <= 1e-4, fp32) and the greedy continuations (token for token),
             cord under tp 1 and tp 3 (9 query / 3 key-value heads: tp 2 divides neither)
  decode     greedy decode throughput, batch 1 and 16, 128 new tokens (eos never stops
             either side), cord's KV-cached batched decode vs transformers generate(),
             both on --threads threads; and the load time of the weights (cord tp 1 and
             tp 3, from its log, vs safetensors.torch.load_file)
  step       a training step (forward, backward, AdamW) of the whole model, cord
             (bench/cord_hf_bench) vs PyTorch eager with AdamW foreach and fused, same
             ids and threads, 3 interleaved rounds, medians
  finetune   cord eval --ckpt source on the first --items test items, cord's text stage for
             a few steps, cord eval of the result: text accuracy per family before/after
  accuracy   text accuracy per family on a corpus's test split: each question through the
             chat template with a fixed instruction and two worked examples per family
             (from the train split), greedy, answer taken by the scorer's answer-line rule
Writes bench/results/smollm2_<part>.json and .md. Usage:
  bench/hf/smollm2.py check|decode|step|finetune|accuracy --cord build/cord --model DIR [--corpus FILE]
"""
import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import time

import torch
import transformers
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchlib import commit, this_machine  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "results")

CHAT_PROMPTS = [
    "Tom has 3 apples and buys 4 more. How many apples does Tom have now?",
    "What is 12 plus 7?",
    "Name three colours.",
    "Write one sentence about the sea.",
    "If a train leaves at 3 pm and the trip takes 2 hours, when does it arrive?",
    "Sort these numbers from smallest to largest: 9, 2, 5.",
    "What is the capital of France?",
    "Translate 'good morning' into French.",
    "Is 17 a prime number?",
    "Give me a word that rhymes with cat.",
    "Ada is taller than Bo. Bo is taller than Cy. Who is the tallest?",
    "What is 6 times 7?",
    "Explain in one sentence what a computer is.",
    "Which is heavier, a kilogram of feathers or a kilogram of iron?",
    "Count from 1 to 5.",
    "What colour is the sky on a clear day?",
    "Mia had 10 sweets and ate 4. How many are left?",
    "Say hello in Spanish.",
    "What comes after Monday?",
    "Write the number twenty one in digits.",
]


def run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        sys.exit(f"FAIL: {' '.join(command)} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def cord_generate(args, ranks, prompts_path, out_path, extra):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_mpi_yield_when_idle="1")
    threads = max(1, args.threads // ranks)
    command = ["mpiexec", "-n", str(ranks), args.cord, "generate", "--set", f"model.source=hf:{args.model}",
               "--set", f"parallel.tp={ranks}", "--set", f"runtime.threads={threads}", "--set", "runtime.precision=fp32",
               "--prompts", prompts_path, "--out", out_path] + extra
    if ranks == 3:  # the (unused, text-only here) audio encoder's heads must split 3 ways too
        command += ["--set", "model.audio.n_heads=3", "--set", "model.audio.d_model=144"]
    result = run(command, env=env, timeout=3600)
    with open(out_path) as f:
        lines = [json.loads(line) for line in f]
    return lines, result.stderr + result.stdout


def write_prompts(path, conversations):
    with open(path, "w") as f:
        for messages in conversations:
            f.write(json.dumps({"messages": messages}) + "\n")


def save(part, record, markdown):
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"smollm2_{part}.json"), "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    with open(os.path.join(RESULTS, f"smollm2_{part}.md"), "w") as f:
        f.write(markdown)
    print(markdown)


def header(args, what):
    return {"what": what, "machine": this_machine(), "commit": commit(), "command": " ".join(sys.argv),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "model": os.path.abspath(args.model), "threads": args.threads}


def check(args):
    tokenizer = transformers.AutoTokenizer.from_pretrained(args.model)
    model = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    conversations = [[{"role": "user", "content": p}] for p in CHAT_PROMPTS]
    reference_ids = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=True, return_dict=False)
                     for c in conversations]
    reference_ids = [list(ids["input_ids"]) if isinstance(ids, dict) else list(ids) for ids in reference_ids]
    new_tokens = 32
    with torch.no_grad():
        reference_logits = [model(torch.tensor([ids])).logits[0] for ids in reference_ids]
        reference_tokens = [model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                           do_sample=False, max_new_tokens=new_tokens)[0, len(ids):].tolist()
                            for ids in reference_ids]
    prompts_path = os.path.join(args.work_dir, "check_prompts.jsonl")
    write_prompts(prompts_path, conversations)
    rows = []
    # SmolLM2-135M has 9 query and 3 key/value heads: tp 2 divides neither, tp 3 both.
    for ranks in (1, 3):
        logits_path = os.path.join(args.work_dir, f"check_tp{ranks}.safetensors")
        lines, _ = cord_generate(args, ranks, prompts_path, os.path.join(args.work_dir, f"check_tp{ranks}.jsonl"),
                                 ["--max-new-tokens", str(new_tokens), "--logits-out", logits_path])
        logits = load_file(logits_path)
        same_prompt = sum(lines[i]["prompt_ids"] == reference_ids[i] for i in range(len(lines)))
        worst = max((logits[f"logits.{i}"] - reference_logits[i]).abs().max().item() for i in range(len(lines)))
        # transformers stops at eos without emitting it past max_new_tokens; cord includes eos.
        same_tokens = sum(lines[i]["ids"] == reference_tokens[i] for i in range(len(lines)))
        rows.append({"tp": ranks, "prompts": len(lines), "prompt_ids_equal": same_prompt, "max_abs_logit_diff": worst,
                     "greedy_identical": same_tokens, "example": lines[0].get("text", "")})
    record = header(args, "SmolLM2-135M-Instruct: cord vs transformers on 20 chat prompts (fp32)")
    record["new_tokens"] = new_tokens
    record["results"] = rows
    md = ("# SmolLM2-135M-Instruct in cord vs transformers (fp32, 20 chat prompts, 32 greedy tokens)\n\n"
          f"Commit {record['commit']}, `{record['command']}`.\n\n"
          "| tp | chat-template ids equal | max abs logit diff | greedy continuations identical |\n|---|---|---|---|\n")
    for r in rows:
        md += f"| {r['tp']} | {r['prompt_ids_equal']}/{r['prompts']} | {r['max_abs_logit_diff']:.2e} | {r['greedy_identical']}/{r['prompts']} |\n"
    md += f"\nFirst prompt's continuation (cord): {json.dumps(rows[0]['example'])}\n"
    save("check", record, md)
    if any(r["prompt_ids_equal"] != r["prompts"] or r["max_abs_logit_diff"] > 1e-4 or r["greedy_identical"] != r["prompts"]
           for r in rows):
        sys.exit("FAIL: cord and transformers differ (see above)")


def parse_cord_rate(log):
    match = re.search(r"generate: \d+ prompts, (\d+) tokens .* in ([0-9.e+-]+) s", log)
    return int(match.group(1)) / float(match.group(2))


def parse_cord_load(log):
    match = re.search(r"decoder loaded from .* in ([0-9.e+-]+) s", log)
    return float(match.group(1))


def decode(args):
    torch.set_num_threads(args.threads)
    tokenizer = transformers.AutoTokenizer.from_pretrained(args.model)
    model = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    new_tokens = 128
    rows = []
    for batch in (1, 16):
        conversations = [[{"role": "user", "content": CHAT_PROMPTS[i % len(CHAT_PROMPTS)]}] for i in range(batch)]
        prompts_path = os.path.join(args.work_dir, f"decode_b{batch}.jsonl")
        write_prompts(prompts_path, conversations)
        _, log = cord_generate(args, 1, prompts_path, os.path.join(args.work_dir, f"decode_b{batch}_out.jsonl"),
                               ["--max-new-tokens", str(new_tokens), "--eos", "-1"])
        cord_rate = parse_cord_rate(log)
        tokenizer.padding_side = "left"
        texts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
        inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            start = time.perf_counter()
            out = model.generate(**inputs, do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
            seconds = time.perf_counter() - start
        hf_rate = (out.shape[1] - inputs.input_ids.shape[1]) * batch / seconds
        rows.append({"batch": batch, "new_tokens": new_tokens, "cord_tokens_per_s": cord_rate,
                     "transformers_tokens_per_s": hf_rate, "ratio": cord_rate / hf_rate})
    loads = []
    for ranks in (1, 3):
        _, log = cord_generate(args, ranks, os.path.join(args.work_dir, "decode_b1.jsonl"),
                               os.path.join(args.work_dir, "load_out.jsonl"), ["--max-new-tokens", "1"])
        loads.append({"tp": ranks, "cord_load_s": parse_cord_load(log)})
    start = time.perf_counter()
    load_file(os.path.join(args.model, "model.safetensors"))
    python_load = time.perf_counter() - start
    record = header(args, "SmolLM2-135M-Instruct greedy decode and weight load: cord vs transformers / safetensors")
    record.update({"decode": rows, "load": loads, "safetensors_load_file_s": python_load})
    md = (f"# SmolLM2-135M-Instruct: decode and load, cord vs transformers ({args.threads} threads, fp32)\n\n"
          f"Commit {record['commit']}, `{record['command']}`.\n\n"
          "| batch | new tokens | cord tok/s | transformers tok/s | cord / transformers |\n|---|---|---|---|---|\n")
    for r in rows:
        md += (f"| {r['batch']} | {r['new_tokens']} | {r['cord_tokens_per_s']:.0f} | "
               f"{r['transformers_tokens_per_s']:.0f} | {r['ratio']:.2f} |\n")
    md += "\n| load | seconds |\n|---|---|\n"
    for r in loads:
        md += f"| cord, tp {r['tp']} (each rank its slices, into float32 parameters) | {r['cord_load_s']:.2f} |\n"
    md += f"| safetensors.torch.load_file (whole file, Python) | {python_load:.2f} |\n"
    save("decode", record, md)


# --- training step -------------------------------------------------------------------------

STEP_BATCH, STEP_LENGTH, STEP_REPEATS = 8, 128, 15


def step_ids(vocab):
    """hf_bench.cpp's ids: (b * 7919 + t * 131) % (V - 1) + 1."""
    b = torch.arange(STEP_BATCH).unsqueeze(1)
    t = torch.arange(STEP_LENGTH).unsqueeze(0)
    return (b * 7919 + t * 131) % (vocab - 1) + 1


def eager_step_times(args, fused):
    """PyTorch eager: the same forward, loss on the last T/2 positions, backward, AdamW."""
    model = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                                  lr=1e-5, betas=(0.9, 0.95), eps=1e-8, fused=fused, foreach=None if fused else True)
    ids = step_ids(model.config.vocab_size)
    half = STEP_LENGTH // 2
    times, losses = [], []
    for i in range(STEP_REPEATS + 1):  # the first is the warm-up
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        logits = model(input_ids=ids).logits
        loss = torch.nn.functional.cross_entropy(logits[:, half - 1:-1].reshape(-1, logits.shape[-1]),
                                                 ids[:, half:].reshape(-1))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if i > 0:
            times.append(time.perf_counter() - start)
    return times, losses


def step(args):
    torch.set_num_threads(args.threads)
    bench = os.path.join(os.path.dirname(os.path.abspath(args.cord)), "bench", "cord_hf_bench")
    out_json = os.path.join(args.work_dir, "hf_bench.json")
    env = dict(os.environ, CORD_HF_MODEL=args.model, CORD_BENCH_THREADS=str(args.threads), OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    rows = []
    # Interleaved rounds (cord, eager foreach, eager fused), so that machine noise hits all three.
    for round_ in range(3):
        result = run(["mpiexec", "--bind-to", "none", "-n", "1", bench, f"--benchmark_out={out_json}",
                      "--benchmark_out_format=json"], env=env)
        if result.returncode != 0:
            sys.exit(f"FAIL: {bench} exited {result.returncode}\n{result.stderr}")
        with open(out_json) as f:
            runs = [b for b in json.load(f)["benchmarks"] if b.get("run_type") == "iteration"]
        # Each repetition loads the model afresh and takes 1 + 5 steps, so its last loss is
        # that of step 6: compared with eager's sixth.
        cord_ms = [b["real_time"] for b in runs]
        foreach_times, foreach_losses = eager_step_times(args, fused=False)
        fused_times, fused_losses = eager_step_times(args, fused=True)
        rows.append({"round": round_, "cord_ms": cord_ms, "eager_foreach_ms": [1e3 * t for t in foreach_times],
                     "eager_fused_ms": [1e3 * t for t in fused_times],
                     "cord_first_loss": runs[-1]["first_loss"], "cord_loss_step6": runs[-1]["last_loss"],
                     "eager_foreach_first_loss": foreach_losses[0], "eager_foreach_loss_step6": foreach_losses[5],
                     "eager_fused_first_loss": fused_losses[0], "eager_fused_loss_step6": fused_losses[5],
                     "cord_phase_ms": {k: runs[-1][k] for k in ("forward_ms", "backward_ms", "adamw_ms")}})

    def median(values):
        values = sorted(values)
        return values[len(values) // 2]

    cord_ms = median([m for r in rows for m in r["cord_ms"]])
    foreach_ms = median([m for r in rows for m in r["eager_foreach_ms"]])
    fused_ms = median([m for r in rows for m in r["eager_fused_ms"]])
    per_round = [median(r["eager_fused_ms"]) / median(r["cord_ms"]) for r in rows]
    record = header(args, "SmolLM2-135M-Instruct training step (forward + backward + AdamW): cord vs PyTorch eager")
    record.update({"batch": STEP_BATCH, "length": STEP_LENGTH, "rounds": rows, "cord_median_ms": cord_ms,
                   "eager_foreach_median_ms": foreach_ms, "eager_fused_median_ms": fused_ms,
                   "ratio_vs_fused_per_round": per_round})
    best_eager = min(foreach_ms, fused_ms)
    md = (f"# SmolLM2-135M-Instruct: a training step, cord vs PyTorch eager ({args.threads} threads, fp32)\n\n"
          f"Commit {record['commit']}, `{record['command']}`.\n\n"
          f"{STEP_BATCH} sequences of {STEP_LENGTH} ids, loss on the last {STEP_LENGTH // 2} positions of each, "
          "backward, AdamW over all 134.5M parameters. 3 interleaved rounds; medians over cord's repetitions (3 a "
          f"round, each the mean of 5 steps after a warm-up step) and over eager's single steps ({STEP_REPEATS} a "
          "round, after a warm-up step).\n\n"
          "| | median ms / step | eager / cord |\n|---|---|---|\n"
          f"| cord (`bench/cord_hf_bench`) | {cord_ms:.0f} | |\n"
          f"| PyTorch eager, AdamW foreach | {foreach_ms:.0f} | {foreach_ms / cord_ms:.2f} |\n"
          f"| PyTorch eager, AdamW fused | {fused_ms:.0f} | {fused_ms / cord_ms:.2f} |\n\n"
          f"cord is {best_eager / cord_ms:.2f}x the faster eager variant (> 1 = cord faster); per round vs fused: "
          + ", ".join(f"{x:.2f}" for x in per_round) + ".\n\n"
          f"The same step: loss on the unchanged model {rows[0]['cord_first_loss']:.4f} (cord) and "
          f"{rows[0]['eager_foreach_first_loss']:.4f} (eager); after 6 steps {rows[0]['cord_loss_step6']:.4f} and "
          f"{rows[0]['eager_foreach_loss_step6']:.4f} / {rows[0]['eager_fused_loss_step6']:.4f} (foreach / fused). "
          "cord's time by phase (last round, ms a step): "
          + ", ".join(f"{k[:-3]} {v:.0f}" for k, v in rows[-1]["cord_phase_ms"].items()) + ".\n")
    save("step", record, md)


# --- fine-tune: cord eval and cord train on the model itself ----------------------------------

FINETUNE_STEPS, FINETUNE_BATCH, FINETUNE_LR = 40, 8, 3e-5


def cord_command(args, *extra):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_mpi_yield_when_idle="1")
    command = ["mpiexec", "--bind-to", "none", "-n", "1", args.cord, *extra, "--set", f"model.source=hf:{args.model}",
               "--set", f"runtime.threads={args.threads}", "--set", "runtime.precision=fp32",
               "--set", f"train.corpus={args.corpus}", "--set", f"eval.max_items={args.items}"]
    started = time.perf_counter()
    result = run(command, env=env, timeout=7200)
    return result, time.perf_counter() - started


def eval_scores(directory):
    with open(os.path.join(directory, "eval.json")) as f:
        report = json.load(f)
    return {name: family["text_accuracy"] for name, family in report["families"].items()} | {
        "average": report["average"]["text_accuracy"]}


def finetune(args):
    """cord eval --ckpt source, cord's text stage on the corpus, cord eval of the result."""
    if not args.corpus:
        sys.exit("finetune needs --corpus")
    run_dir = os.path.join(args.work_dir, "finetune")
    shutil.rmtree(run_dir, ignore_errors=True)
    _, before_s = cord_command(args, "eval", "--ckpt", "source", "--out", os.path.join(run_dir, "eval_source"))
    _, train_s = cord_command(args, "train", "--set", "train.stage=text", "--set", f"train.run_dir={run_dir}",
                                  "--set", f"train.text.steps={FINETUNE_STEPS}",
                                  "--set", f"train.text.global_batch={FINETUNE_BATCH}",
                                  "--set", f"train.text.lr={FINETUNE_LR}", "--set", f"train.text.min_lr={FINETUNE_LR / 10}",
                                  "--set", "train.text.warmup_steps=4", "--set", "train.log_every=5",
                                  "--set", "train.val_every=0", "--set", "train.val_items=0")
    _, after_s = cord_command(args, "eval", "--ckpt", os.path.join(run_dir, "text", "model.h5"),
                              "--out", os.path.join(run_dir, "eval_tuned"))
    with open(os.path.join(run_dir, "text", "metrics.jsonl")) as f:
        steps = [r for r in map(json.loads, f) if r.get("type") == "step"]
    before, after = eval_scores(os.path.join(run_dir, "eval_source")), eval_scores(os.path.join(run_dir, "eval_tuned"))
    record = header(args, "SmolLM2-135M-Instruct through cord eval and cord train (text stage): text accuracy "
                          "before and after a short fine-tune on the corpus's train split")
    record.update({"corpus": os.path.abspath(args.corpus), "test_items": args.items, "steps": FINETUNE_STEPS,
                   "global_batch": FINETUNE_BATCH, "lr": FINETUNE_LR, "before": before, "after": after,
                   "loss": [[r["step"], r["loss"]] for r in steps],
                   "tokens_per_s": steps[-1].get("tokens_per_s"), "seconds": {"eval_before": before_s,
                                                                            "train": train_s, "eval_after": after_s}})
    md = (f"# SmolLM2-135M-Instruct in cord eval and cord train ({args.threads} threads, fp32)\n\n"
          f"Commit {record['commit']}, `{record['command']}`.\n\n"
          f"The first {args.items} test items of `{os.path.basename(args.corpus)}` (corpus order), zero-shot: each "
          "question is the user turn of the model's chat template and the answer is the scorer's answer line, "
          f"greedy. Fine-tune: cord's text stage, {FINETUNE_STEPS} steps of {FINETUNE_BATCH} items from the train "
          f"split (solution or repeat-the-question targets), AdamW lr {FINETUNE_LR:g} with warmup and cosine decay.\n\n"
          "| family | before (the model as converted) | after the text stage |\n|---|---|---|\n")
    for name in before:
        md += f"| {name} | {before[name]:.1f}% | {after[name]:.1f}% |\n"
    md += (f"\nTraining loss {steps[0]['loss']:.3f} (step {steps[0]['step']}) -> {steps[-1]['loss']:.3f} (step "
           f"{steps[-1]['step']}); {steps[-1].get('tokens_per_s', 0):.0f} tokens/s. Wall time: eval {before_s:.0f} s, "
           f"train {train_s:.0f} s, eval {after_s:.0f} s.\n")
    save("finetune", record, md)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["check", "decode", "step", "finetune", "accuracy"])
    parser.add_argument("--cord", required=True)
    parser.add_argument("--model", required=True, help="the converted SmolLM2 directory")
    parser.add_argument("--corpus", help="corpus file (accuracy)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--items", type=int, default=150, help="finetune: the first N test items (corpus order)")
    parser.add_argument("--per-family", type=int, default=0,
                        help="accuracy: the first N test items of each family (0 = all)")
    parser.add_argument("--work-dir", default="/tmp/cord-smollm2")
    args = parser.parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    {"check": check, "decode": decode, "step": step, "finetune": finetune, "accuracy": accuracy}[args.part](args)


# --- accuracy -----------------------------------------------------------------------------

INSTRUCTION = ("Solve the problem. Think step by step in short sentences, then end with a line of the form "
               "'The answer is X.'")
SHOTS_PER_FAMILY = 2
CHUNK = 150  # prompts per cord generate call


def parse_answer_line(solution):
    """The scorer's rule (data::parse_answer_line): the text after the last 'The answer is '
    up to a final '.', which must end the solution."""
    prefix = "The answer is "
    at = solution.rfind(prefix)
    if at < 0 or not solution.endswith("."):
        return ""
    if at != 0 and solution[at - 1] != " ":
        return ""
    begin = at + len(prefix)
    return solution[begin:-1] if begin < len(solution) - 1 else ""


def first_answer_line(response):
    """The response up to the end of its first 'The answer is ...' sentence: a chat model
    often goes on after answering; what it answered is the first answer line."""
    match = re.search(r"The answer is [^\n]*?\.(?=\s|$)", response)
    return response[:match.end()] if match else response


def join_tokens(tokens):
    """Corpus text from its word tokens (data/README.md's rule)."""
    out = ""
    for token in tokens:
        if out and not (token in ".,?:;!)" or out.endswith("(") or (token.isdigit() and out[-1].isdigit())):
            out += " "
        out += token
    return out


def read_corpus(path):
    import h5py
    with h5py.File(path, "r") as f:
        vocab = bytes(f["tokenizer/vocab"][:]).decode("utf-8").split("\n")
        families = f.attrs["families"].split(",")
        splits = f.attrs["splits"].split(",")
        def texts(name):
            offsets = f[f"text/{name}_offsets"][:]
            tokens = f[f"text/{name}_tokens"][:]
            return [join_tokens([vocab[t] for t in tokens[offsets[i]:offsets[i + 1]]]) for i in range(len(offsets) - 1)]
        questions, solutions, answers = texts("question"), texts("solution"), texts("answer")
        return [{"family": families[fam], "split": splits[split], "question": q, "solution": s, "answer": a}
                for fam, split, q, s, a in zip(f["items/family"][:], f["items/split"][:], questions, solutions, answers)]


def accuracy(args):
    if not args.corpus:
        sys.exit("accuracy needs --corpus")
    items = read_corpus(args.corpus)
    shots = {}
    for item in items:
        if item["split"] == "train" and len(shots.setdefault(item["family"], [])) < SHOTS_PER_FAMILY:
            shots[item["family"]].append(item)
    test, taken = [], {}
    for item in items:
        if item["split"] == "test" and (args.per_family == 0 or taken.get(item["family"], 0) < args.per_family):
            taken[item["family"]] = taken.get(item["family"], 0) + 1
            test.append(item)
    conversations = []
    for item in test:
        messages = [{"role": "system", "content": INSTRUCTION}]
        for shot in shots[item["family"]]:
            messages += [{"role": "user", "content": shot["question"]}, {"role": "assistant", "content": shot["solution"]}]
        messages.append({"role": "user", "content": item["question"]})
        conversations.append(messages)
    # Batches of CHUNK prompts (one cord generate each): one left-padded batch of every
    # test prompt would need a KV cache of over 10 GB.
    lines, rates = [], []
    for start in range(0, len(conversations), CHUNK):
        prompts_path = os.path.join(args.work_dir, f"accuracy_prompts_{start}.jsonl")
        write_prompts(prompts_path, conversations[start:start + CHUNK])
        chunk, log = cord_generate(args, 1, prompts_path, os.path.join(args.work_dir, f"accuracy_out_{start}.jsonl"),
                                   ["--max-new-tokens", "96"])
        lines += chunk
        rates.append(parse_cord_rate(log))
        print(f"accuracy: {len(lines)}/{len(conversations)} prompts decoded", flush=True)
    per_family = {}
    examples = {}
    for item, line in zip(test, lines):
        answer = parse_answer_line(first_answer_line(line["text"].strip()))
        score = per_family.setdefault(item["family"], {"items": 0, "correct": 0, "unparsed": 0})
        score["items"] += 1
        score["correct"] += answer == item["answer"]
        score["unparsed"] += answer == ""
        examples.setdefault(item["family"], {"question": item["question"], "answer": item["answer"],
                                             "response": line["text"]})
    for score in per_family.values():
        score["accuracy"] = 100.0 * score["correct"] / score["items"]
    average = sum(s["accuracy"] for s in per_family.values()) / len(per_family)
    record = header(args, "SmolLM2-135M-Instruct as a text teacher: greedy text accuracy per family, test split")
    record.update({"corpus": os.path.abspath(args.corpus), "per_family": args.per_family, "instruction": INSTRUCTION, "shots_per_family": SHOTS_PER_FAMILY,
                   "max_new_tokens": 96, "families": per_family, "average_accuracy": average, "examples": examples,
                   "decode_tokens_per_s": sum(rates) / len(rates)})
    md = ("# SmolLM2-135M-Instruct as a text teacher on our families (test split, greedy)\n\n"
          f"Commit {record['commit']}, `{record['command']}`; "
          f"{'the first ' + str(args.per_family) + ' test items of each family' if args.per_family else 'every test item'}"
          ". Prompt: the chat template with the system turn "
          f"\"{INSTRUCTION}\" and {SHOTS_PER_FAMILY} worked examples per family from the train split; the answer "
          "is the scorer's answer-line rule applied to the response up to its first answer line.\n\n"
          "| family | items | text accuracy % | no answer line |\n|---|---|---|---|\n")
    for name, s in per_family.items():
        md += f"| {name} | {s['items']} | {s['accuracy']:.1f} | {s['unparsed']} |\n"
    md += f"| average (macro) | {len(test)} | {average:.1f} | |\n"
    save("accuracy", record, md)


if __name__ == "__main__":
    main()
