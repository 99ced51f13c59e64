#!/usr/bin/env python3
"""cord's BPE tokenizer (cord::hf::BpeTokenizer) against Hugging Face `tokenizers`.

Trains small byte-level BPE tokenizers with `tokenizers` on generated text, in the layouts
of GPT-2, SmolLM2, Qwen2 and Llama-3 and in variants that exercise every Split behaviour,
added-token flags and unknown tokens. Each tokenizer.json is saved, read back by
`tokenizers` (so both sides read the same file), and its ids for thousands of test strings
are compared with those of the C++ tool (tests/hf/tokenize_tool.cpp) exactly, with
add_special_tokens both ways. The decoded texts are compared too, with and without
skip_special_tokens, and so is the decoding of random id sequences (partial UTF-8
included). Prints the counts and fails with the first mismatches.

    tokenizer_oracle.py --tool PATH/cord-hf-tokenize --work-dir DIR [--strings N]
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
import unicodedata

try:
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
    from tokenizers import pre_tokenizers, processors, trainers
except ImportError as error:  # the set-up script installs it into the venv
    sys.exit(f"tokenizer_oracle: cannot import tokenizers ({error}); run ./setup.sh, which installs it in the venv")

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
CHATML_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]

# --- test text ---------------------------------------------------------------------------

NAMES = ["Tom", "Anna", "Li Wei", "José", "Zoë", "Mohammed", "Priya", "Олег", "Søren", "Chloé", "Ngozi", "Kenji"]
THINGS = ["apples", "pencils", "marbles", "cookies", "books", "stickers", "bananas", "coins", "cupcakes",
          "strawberries", "dinosaurs", "notebooks", "tickets", "balloons"]
UNICODE_SNIPPETS = [
    "café", "naïve", "Zürich", "São Paulo", "façade", "crème brûlée", "Ångström", "Dvořák", "İstanbul",
    "e\u0301", "cafe\u0301", "a\u0308", "o\u0302\u0323", "A\u030a", "n\u0303o", "\u0301\u0301", "ﬁ ligature",
    "汉字", "日本語のテキスト", "한국어 문장", "中文，标点。", "Ｆｕｌｌｗｉｄｔｈ",
    "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "Привет, мир!", "Γειά σου Κόσμε", "สวัสดีชาวโลก",
    "😀", "👍🏽", "👨\u200d👩\u200d👧\u200d👦", "🏳️\u200d🌈", "🇫🇷🇯🇵", "1️⃣", "❤️", "🤖💬", "🧑🏿\u200d🚀",
    "\u200b", "\ufeff", "\ufffd", "\u00ad", "\u180e", "\u2028", "\u3000", "\u00a0", "\u2009",
    "١٢٣ ٤٥٦", "①②③", "½ ¾", "Ⅻ", "²³", "𝟘𝟙𝟚", "\x00", "\x07", "\x1b[0m", "\x7f",
]
WHITESPACE_RUNS = ["  \t\n\n  x", "\r\n", "\n\n\n", "   ", "\t\t", " \n ", "x  ", "  x", "\x0b\x0c",
                   "a\u00a0b", "a\u3000b", "a\u180eb", "\r\r\n", " \t \n", "\n \n  \n"]
CODE_SNIPPETS = [
    "def f(x):\n    return x**2 + 1\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
    "if x != y && z >= 3: print('ok')",
    "const std::string& s = \"a\\tb\";",
    "SELECT name, COUNT(*) FROM t WHERE id <> 7 GROUP BY name;",
    "<div class=\"x\">&amp;</div>",
    "λx. x + 1  # comment",
    "x = [1, 2, 3]; y = {'a': 1}",
    "    indented\n        more\n",
]
CONTRACTIONS = ["DON'T", "I'M", "you'RE", "It's", "they'll", "We'VE", "she'd", "'s", "''", "rock'n'roll",
                "O'Brien's", "CAN'T", "'LL", "isn’t", "I'd've"]


def word_problem(rng):
    name, other = rng.sample(NAMES, 2)
    thing = rng.choice(THINGS)
    a, b = rng.randint(0, 999), rng.randint(1, 120)
    forms = [
        f"{name} has {a} {thing} and buys {b} more. How many {thing} does {name} have now?",
        f"{name} had {a + b} {thing}. {name} gave {b} to {other}. How many {thing} are left?",
        f"If {name} reads {b} pages a day, how many pages will {name} read in {a % 30 + 1} days?",
        f"{name} earns ${a}.{rng.randint(0, 99):02d} per hour and works {b} hours. What does {name} earn?",
        f"A box holds {b} {thing}. How many boxes are needed for {a * b} {thing}?",
        f"What is {a} + {b}? Answer: {a + b}",
        f"Compute {a} × {b} − {a % 7}. The answer is {a * b - a % 7}.",
        f"{name} ran {a / 10:.1f} km on Monday and {b / 4:.2f} km on Tuesday.",
    ]
    return rng.choice(forms)


def choice_question(rng):
    values = rng.sample(range(1, 5000), 4)
    letters = "ABCD"
    options = " ".join(f"{letters[i]}) {v}" for i, v in enumerate(values))
    forms = [
        f"Which number is the largest? {options}\nAnswer: {letters[values.index(max(values))]}",
        f"Question: Which is smallest?\n{options.replace(') ', '. ')}\nThe answer is ({letters[values.index(min(values))]}).",
        f"Put these numbers in order from smallest to largest: {', '.join(map(str, values))}.",
        f"Order the words alphabetically: {', '.join(rng.sample(THINGS, 4))}.",
        f"True or false: {values[0]} is greater than {values[1]}? {'True' if values[0] > values[1] else 'False'}",
    ]
    return rng.choice(forms)


def chat_text(rng, specials):
    question = word_problem(rng)
    if specials is LLAMA3_SPECIALS:
        return ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n" + question +
                "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    system = rng.choice(["", "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"])
    answer = rng.choice(["", f"The answer is {rng.randint(0, 99)}.<|im_end|>\n"])
    return f"{system}<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n{answer}"


def digit_run(rng):
    forms = [str(rng.randint(0, 10 ** rng.randint(1, 15))), f"{rng.random() * 1000:.5f}", f"{rng.randint(1, 10**9):,}",
             "0" * rng.randint(1, 9), f"{rng.randint(1, 12)}/{rng.randint(1, 28)}/{rng.randint(1990, 2030)}",
             f"+1 ({rng.randint(100, 999)}) {rng.randint(100, 999)}-{rng.randint(1000, 9999)}"]
    return rng.choice(forms)


def random_characters(rng):
    ranges = [(0x20, 0x7e), (0x00, 0x1f), (0xa0, 0x17f), (0x300, 0x36f), (0x370, 0x3ff), (0x400, 0x4ff),
              (0x600, 0x6ff), (0x900, 0x97f), (0x2000, 0x206f), (0x3040, 0x30ff), (0x4e00, 0x4fff),
              (0xac00, 0xacff), (0x1f300, 0x1f64f), (0x1f900, 0x1f9ff), (0xff00, 0xffef)]
    chars = []
    for _ in range(rng.randint(1, 25)):
        low, high = rng.choice(ranges)
        chars.append(chr(rng.randint(low, high)))
    return "".join(chars)


def fragment(rng, specials):
    kind = rng.randrange(10)
    if kind == 0:
        return word_problem(rng)
    if kind == 1:
        return choice_question(rng)
    if kind == 2:
        return rng.choice(UNICODE_SNIPPETS)
    if kind == 3:
        return rng.choice(WHITESPACE_RUNS)
    if kind == 4:
        return rng.choice(CODE_SNIPPETS)
    if kind == 5:
        return rng.choice(CONTRACTIONS)
    if kind == 6:
        return digit_run(rng)
    if kind == 7:
        return rng.choice(specials + ["<|im_sta", "<|", "|>", "<|endoftext|", "<<|im_end|>>"])
    if kind == 8:
        return random_characters(rng)
    return rng.choice(THINGS + NAMES)


def test_strings(rng, count, specials, extra_fragments=()):
    """Whole sentences, chat turns, lone fragments and random mixes of everything."""
    strings = ["", " ", "\n", "a", "  ", "\t", "Hello world", "Hello  world", " Hello", "DON'T STOP"]
    strings += UNICODE_SNIPPETS + WHITESPACE_RUNS + CODE_SNIPPETS + CONTRACTIONS + specials
    while len(strings) < count:
        kind = rng.randrange(6)
        if kind == 0:
            strings.append(word_problem(rng))
        elif kind == 1:
            strings.append(choice_question(rng))
        elif kind == 2:
            strings.append(chat_text(rng, specials))
        else:
            pool = [fragment(rng, specials) for _ in range(rng.randint(1, 6))]
            pool += [rng.choice(extra_fragments) for _ in range(rng.randint(0, 3) if extra_fragments else 0)]
            rng.shuffle(pool)
            strings.append(rng.choice(["", " ", "\n", "  ", ", "]).join(pool))
    return strings[:count]


# Debian 12's PCRE2 (10.42) classifies characters by Unicode 14.0, `tokenizers`' Oniguruma by
# a later version: characters added since differ by design. The sweep below covers every
# character that Unicode 14 assigns, and runs where Python's tables are that version too.
SWEEP_UNICODE_VERSION = "14.0.0"


def unicode_sweep():
    """Every assigned code point (but private use), in order, 256 to a string."""
    if unicodedata.unidata_version != SWEEP_UNICODE_VERSION:
        print(f"Unicode sweep skipped: Python's Unicode is {unicodedata.unidata_version}, not {SWEEP_UNICODE_VERSION}")
        return []
    assigned = [c for c in range(0x110000) if unicodedata.category(chr(c)) not in ("Cn", "Cs", "Co")]
    return ["".join(map(chr, assigned[i:i + 256])) for i in range(0, len(assigned), 256)]


def nfc_sweep(sweep):
    """The sweep for NFC tokenizers. `tokenizers`' NFC (a fork of an old unicode-normalization
    crate) lacks the combining classes and compositions of characters added since about
    Unicode 10, where utf8proc follows the standard; in the strings where the two differ,
    a space goes between the characters, so that each is still classified but none combine."""
    nfc = normalizers.NFC()
    spaced = [s if nfc.normalize_str(s) == unicodedata.normalize("NFC", s) else " ".join(s) for s in sweep]
    changed = sum(a != b for a, b in zip(sweep, spaced))
    if changed:
        print(f"Unicode sweep: {changed} strings spaced out for the NFC tokenizers (tokenizers' NFC predates their marks)")
    return spaced


# --- tokenizers ------------------------------------------------------------------------------

def byte_level_spelling(text):
    """GPT-2's byte-to-character spelling of `text` (for hand-made vocabulary entries)."""
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    mapping, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return "".join(mapping[b] for b in text.encode("utf-8"))


def train(corpus, pre_tokenizer, vocab_size, specials, normalizer=None, model=None, alphabet=True):
    tokenizer = Tokenizer(model or models.BPE())
    if normalizer is not None:
        tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if alphabet else [])
    tokenizer.train_from_iterator(corpus, trainer)
    return json.loads(tokenizer.to_str())


def byte_level(add_prefix_space=False, use_regex=True):
    return pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space, use_regex=use_regex)


def split_then_bytes(pattern, behavior="isolated", invert=False):
    return pre_tokenizers.Sequence([pre_tokenizers.Split(pattern, behavior, invert=invert), byte_level(use_regex=False)])


def with_pre_tokenizer(document, pre_tokenizer):
    """`document` with another pre-tokenizer (as its JSON)."""
    changed = json.loads(json.dumps(document))
    changed["pre_tokenizer"] = json.loads(pre_tokenizer.__getstate__())
    return changed


def llama3_document(corpus):
    """Llama-3's layout: ignore_merges, whole words in the vocabulary that no merge builds,
    special tokens after the model's ids, and a <|begin_of_text|> template."""
    document = train(corpus, split_then_bytes(Regex(LLAMA3_PATTERN)), 700, [])
    vocab = document["model"]["vocab"]
    for word in [" strawberries", " dinosaurs", " notebooks", " balloons", " cupcakes", " Mohammed", " Priya",
                 " apples", "2024", "Hello", " DON", "'T", " the", " many"]:
        spelled = byte_level_spelling(word)
        if spelled not in vocab:
            vocab[spelled] = len(vocab)
    document["model"]["ignore_merges"] = True
    tokenizer = Tokenizer.from_str(json.dumps(document))
    tokenizer.add_special_tokens(LLAMA3_SPECIALS + [f"<|reserved_special_token_{i}|>" for i in range(4)])
    bos = tokenizer.token_to_id("<|begin_of_text|>")
    template = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                             pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                             special_tokens=[("<|begin_of_text|>", bos)])
    tokenizer.post_processor = processors.Sequence([processors.ByteLevel(trim_offsets=False), template])
    return json.loads(tokenizer.to_str())


ADDED_FLAG_TOKENS = [
    AddedToken("<tag>", lstrip=True, rstrip=True, normalized=False),
    AddedToken("[MASK]", single_word=True, normalized=False),
    AddedToken("café", normalized=True),
    AddedToken("hello world", single_word=True, normalized=True),
    AddedToken("<sep>", lstrip=True, normalized=True),
    AddedToken("end>", rstrip=True, normalized=False),
]
ADDED_FLAG_FRAGMENTS = ["<tag>", "  <tag>  ", "x<tag>y", "\t<tag>\n", "[MASK]", "a[MASK]", "[MASK]b", " [MASK] ",
                        "[MASK]é", "é[MASK]", "café", "cafe\u0301", "CAFÉ", "cafe\u0301s", "hello world",
                        "hello worlds", "say hello world!", "<sep>", "  <sep>", "<|Special Norm|>", "the end>  x",
                        "<tag><tag>", "  <tag>  <sep>  ", "\u3000<tag>\u2009", "_[MASK]_", "1[MASK]", "ﬁ",
                        "[MASK]\u200d", "\u0301[MASK]", "²[MASK]", "[MASK]Ⅻ", "١[MASK]", "\u180e<tag>",
                        "<tag>\u2028", "\x1c<tag>", "<tag>\x85"]


def added_flags_document(qwen2):
    tokenizer = Tokenizer.from_str(json.dumps(qwen2))
    tokenizer.add_tokens(ADDED_FLAG_TOKENS)
    tokenizer.add_special_tokens([AddedToken("<|Special Norm|>", special=True, normalized=True)])
    return json.loads(tokenizer.to_str())


def legacy_merges(document):
    """The same tokenizer with merges written as "a b" strings (older tokenizers)."""
    changed = json.loads(json.dumps(document))
    changed["model"]["merges"] = ["#version: 0.2"] + [" ".join(pair) for pair in changed["model"]["merges"]]
    return changed


SWEPT = {"gpt2", "qwen2", "llama3", "smollm2", "split_word_classes", "split_word_boundaries"}


def documents(rng):
    """name -> (tokenizer.json document, special tokens of its test text, extra fragments, share of strings).
    The tokenizers in SWEPT also get the Unicode sweep."""
    corpus = test_strings(random.Random(rng.random()), 4000, CHATML_SPECIALS)
    gpt2 = train(corpus, byte_level(), 600, ["<|endoftext|>"])
    qwen2 = train(corpus, split_then_bytes(Regex(QWEN2_PATTERN)), 800, CHATML_SPECIALS, normalizer=normalizers.NFC())
    smollm2 = train(corpus, pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level()]), 500,
                    CHATML_SPECIALS)
    ascii_corpus = [s for s in corpus if s.isascii()]
    unk = train(ascii_corpus, byte_level(), 400, ["<unk>"], model=models.BPE(unk_token="<unk>", fuse_unk=True),
                alphabet=False)
    unk_unfused = json.loads(json.dumps(unk))
    unk_unfused["model"]["fuse_unk"] = False
    unk_dropped = json.loads(json.dumps(unk))
    unk_dropped["model"]["unk_token"] = None
    split = pre_tokenizers.Split
    variants = {
        "split_string_removed": pre_tokenizers.Sequence([split(" ", "removed"), byte_level(use_regex=False)]),
        "split_merged_with_previous": split_then_bytes(Regex(r"\s+"), "merged_with_previous"),
        "split_merged_with_next": split_then_bytes(Regex(r"[.,!?]"), "merged_with_next"),
        "split_contiguous": split_then_bytes(Regex(r"\d"), "contiguous"),
        "split_inverted_removed": split_then_bytes(Regex(r"\w+"), "removed", invert=True),
        "split_inverted_contiguous": split_then_bytes(Regex(r"(?i)[aeiou]+"), "contiguous", invert=True),
        "split_anchors": split_then_bytes(Regex(r"^\s*|\s*$|^[A-Z]")),
        "split_empty_matches": split_then_bytes(Regex(r"\h+|x*")),
        "split_merged_with_next_inverted": split_then_bytes(Regex(r"\S+"), "merged_with_next", invert=True),
        "split_word_classes": split_then_bytes(Regex(r"\w+|\W"), "removed", invert=True),
        "split_word_boundaries": split_then_bytes(Regex(r"\b|\B[a-z]"), "merged_with_previous"),
        "digits_runs": pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=False), byte_level()]),
        "byte_level_prefix_space": byte_level(add_prefix_space=True),
        "split_prefix_space": pre_tokenizers.Sequence([split(Regex(QWEN2_PATTERN), "isolated"),
                                                       byte_level(add_prefix_space=True, use_regex=False)]),
    }
    result = {
        "gpt2": (gpt2, ["<|endoftext|>"], (), 1.0),
        "gpt2_legacy_merges": (legacy_merges(gpt2), ["<|endoftext|>"], (), 0.15),
        "qwen2": (qwen2, CHATML_SPECIALS, (), 1.0),
        "smollm2": (smollm2, CHATML_SPECIALS, (), 1.0),
        "llama3": (llama3_document(corpus), LLAMA3_SPECIALS, (), 1.0),
        "added_flags": (added_flags_document(qwen2), CHATML_SPECIALS, ADDED_FLAG_FRAGMENTS, 0.4),
        "unk_fused": (unk, ["<unk>"], (), 0.15),
        "unk_unfused": (unk_unfused, ["<unk>"], (), 0.15),
        "unk_dropped": (unk_dropped, ["<unk>"], (), 0.15),
    }
    for name, pre_tokenizer in variants.items():
        result[name] = (with_pre_tokenizer(gpt2, pre_tokenizer), ["<|endoftext|>"], (), 0.12)
    return result


# --- comparison --------------------------------------------------------------------------------

def run_tool(tool, tokenizer_path, requests, work_dir, name):
    requests_path = os.path.join(work_dir, f"{name}.requests.jsonl")
    results_path = os.path.join(work_dir, f"{name}.results.jsonl")
    with open(requests_path, "w", encoding="utf-8") as out:
        for request in requests:
            out.write(json.dumps(request) + "\n")
    done = subprocess.run([tool, tokenizer_path, requests_path, results_path], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name}: {tool} failed ({done.returncode}): {done.stderr.strip()}")
    with open(results_path, encoding="utf-8") as results:
        return [json.loads(line) for line in results]


def random_id_sequences(rng, vocab_size, count):
    """Short id lists over the whole vocabulary and a little past it (ids that name nothing)."""
    return [[rng.randrange(vocab_size + 3) for _ in range(rng.randint(1, 8))] for _ in range(count)]


class Tally:
    def __init__(self):
        self.strings = self.encodes = self.tokens = self.decodes = self.round_trips = 0
        self.mismatches = []

    def mismatch(self, name, what, case, expected, got):
        """Records a difference, shown from a little before its first differing element."""
        first = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), min(len(expected), len(got)))
        start = max(0, first - 4)
        shown = repr(case) if len(repr(case)) <= 160 else repr(case)[:160] + "..."
        self.mismatches.append(
            f"[{name}] {what} of {shown} (length {len(expected)} vs {len(got)}, first difference at {first}):\n"
            f"    tokenizers: {expected[start:first + 8]!r}\n    cord:       {got[start:first + 8]!r}")


def check_encodings(name, tokenizer, strings, results, add_special, normalizes, tally):
    expected = tokenizer.encode_batch(strings, add_special_tokens=add_special)
    for text, hf, ours in zip(strings, expected, results):
        tally.encodes += 1
        tally.tokens += len(hf.ids)
        if ours["ids"] != hf.ids:
            tally.mismatch(name, f"ids (add_special_tokens={add_special})", text,
                           [tokenizer.id_to_token(i) for i in hf.ids], [tokenizer.id_to_token(i) for i in ours["ids"]])
            continue
        for skip, key in ((False, "decoded"), (True, "decoded_skip")):
            tally.decodes += 1
            hf_text = tokenizer.decode(hf.ids, skip_special_tokens=skip)
            if ours[key] != hf_text:
                tally.mismatch(name, f"decode(skip_special_tokens={skip})", text, hf_text, ours[key])
        # decode(encode(s)) == s wherever tokenizers round-trips (NFC text for NFC tokenizers).
        original = unicodedata.normalize("NFC", text) if normalizes else text
        if not add_special and ours["decoded"] == original:
            tally.round_trips += 1


def check_document(name, document, strings, args, rng, tally):
    path = os.path.join(args.work_dir, f"{name}.tokenizer.json")
    with open(path, "w", encoding="utf-8") as out:
        json.dump(document, out, ensure_ascii=False)
    tokenizer = Tokenizer.from_file(path)  # what both sides read
    ids_lists = random_id_sequences(rng, tokenizer.get_vocab_size(with_added_tokens=True), 300)
    requests = [{"text": s, "add_special_tokens": False} for s in strings]
    requests += [{"text": s, "add_special_tokens": True} for s in strings]
    requests += [{"ids": ids, "skip_special_tokens": skip} for ids in ids_lists for skip in (False, True)]
    results = run_tool(args.tool, path, requests, args.work_dir, name)
    normalizes = document.get("normalizer") is not None
    count = len(strings)
    tally.strings += count
    check_encodings(name, tokenizer, strings, results[:count], False, normalizes, tally)
    check_encodings(name, tokenizer, strings, results[count:2 * count], True, normalizes, tally)
    decoded = iter(results[2 * count:])
    for ids in ids_lists:
        for skip in (False, True):
            tally.decodes += 1
            hf_text, ours = tokenizer.decode(ids, skip_special_tokens=skip), next(decoded)["decoded"]
            if ours != hf_text:
                tally.mismatch(name, f"decode(skip_special_tokens={skip})", ids, hf_text, ours)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tool", required=True, help="the cord-hf-tokenize program")
    parser.add_argument("--work-dir", required=True, help="where the tokenizer.json files and requests go (emptied)")
    parser.add_argument("--strings", type=int, default=3000, help="test strings per main tokenizer")
    parser.add_argument("--seed", type=int, default=20240611)
    args = parser.parse_args()
    shutil.rmtree(args.work_dir, ignore_errors=True)
    os.makedirs(args.work_dir)
    started = time.monotonic()
    rng = random.Random(args.seed)
    tally = Tally()
    sweep = unicode_sweep()
    spaced_sweep = nfc_sweep(sweep)
    for name, (document, specials, extra, share) in documents(rng).items():
        strings = test_strings(random.Random(f"{args.seed}-{name}"), max(200, int(args.strings * share)), specials, extra)
        if name in SWEPT:
            strings += spaced_sweep if document.get("normalizer") else sweep
        before = len(tally.mismatches)
        check_document(name, document, strings, args, rng, tally)
        print(f"{name:34s} {len(strings):6d} strings, {len(tally.mismatches) - before} mismatches", flush=True)
    print(f"tokenizer oracle (tokenizers {__import__('tokenizers').__version__}): {tally.strings} strings, "
          f"{tally.encodes} encodings, {tally.tokens} tokens, {tally.decodes} decodes, "
          f"{tally.round_trips} exact round trips, {len(tally.mismatches)} mismatches "
          f"({time.monotonic() - started:.1f} s)")
    if tally.mismatches:
        print("first mismatches:\n" + "\n".join(tally.mismatches[:8]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
