"""Corpus files written by h5py straight from data/README.md, for the `cord corpus`
end-to-end cases: a valid tiny corpus, and broken variants of it.

write_corpus(path, broken=None, schema=1): broken is one of None, "schema_version",
"missing_dataset", "wrong_dtype", "wrong_shape", "nan"; schema 2 adds the checksums,
computed here from the README's definition; returns the number of items.
read_item(path, i): one item as the README's snippet reads it (question text, answer text,
features [frames, 80] float32).
"""
import h5py
import numpy as np

SPECIALS = ["<pad>", "<bos>", "<eos>", "<audio>", "</audio>", "<text>", "<sep>"]
DIGITS = [str(d) for d in range(10)]
PUNCTUATION = list(".,?:;!+-=()")
WORDS = ["Ada", "How", "The", "answer", "apples", "does", "has", "have", "is", "many", "now"]
VOCAB = SPECIALS + DIGITS + PUNCTUATION + WORDS
FAMILIES = "arithmetic,multiple_choice,ordering"


def tokens(text):
    ids = []
    for word in text.replace(".", " .").replace("?", " ?").split():
        if word.isdigit():
            ids.extend(VOCAB.index(d) for d in word)
        else:
            ids.append(VOCAB.index(word))
    return ids


def ragged(group, name, rows, dtype):
    values = np.concatenate([np.asarray(r, dtype=dtype) for r in rows]) if rows else np.zeros(0, dtype)
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r) for r in rows])
    group.create_dataset(name + "_tokens", data=values)
    group.create_dataset(name + "_offsets", data=offsets)


def fmix32(x):
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & 0xFFFFFFFF
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & 0xFFFFFFFF
    return x ^ (x >> 16)


def content_checksum(data):
    """data/README.md "Checksums": one term per little-endian 32-bit word, then per trailing
    byte, term(j, w) = fmix32(w + j * 0x9E3779B1 mod 2^32), summed mod 2^64; as int64."""
    data = bytes(data)
    words = len(data) // 4
    total = 0
    for j in range(words):
        w = int.from_bytes(data[4 * j:4 * j + 4], "little")
        total += fmix32((w + j * 0x9E3779B1) & 0xFFFFFFFF)
    for t, byte in enumerate(data[4 * words:]):
        total += fmix32((byte + (words + t) * 0x9E3779B1) & 0xFFFFFFFF)
    total %= 1 << 64
    return total - (1 << 64) if total >= 1 << 63 else total


CHECKSUM_COLUMNS = ["/items/index", "/items/family", "/items/split", "/items/difficulty", "/items/speaker",
                    "/items/rate", "/items/pitch", "/items/duration_s", "/text/question_tokens",
                    "/text/solution_tokens", "/text/answer_tokens", "/audio/features"]


def add_checksums(f):
    n = f["items/family"].shape[0]
    rows = np.zeros((n, len(CHECKSUM_COLUMNS)), dtype=np.int64)
    for c, name in enumerate(CHECKSUM_COLUMNS):
        data = f[name][:]
        if name.startswith("/items/"):
            parts = [data[i:i + 1] for i in range(n)]
        else:
            offsets = f[name.replace("_tokens", "_offsets").replace("features", "frame_offsets")][:]
            parts = [data[offsets[i]:offsets[i + 1]] for i in range(n)]
        for i, part in enumerate(parts):
            rows[i, c] = content_checksum(np.ascontiguousarray(part).tobytes())
    f.create_group("checksums").create_dataset("items", data=rows)
    f.attrs["checksum_columns"] = ",".join(CHECKSUM_COLUMNS)
    f.attrs["vocab_checksum"] = np.int64(content_checksum(f["tokenizer/vocab"][:].tobytes()))


def write_corpus(path, broken=None, schema=1):
    n = 4
    questions = [f"Ada has {3 + i} apples. How many apples does Ada have now?" for i in range(n)]
    answers = [str(3 + i) for i in range(n)]
    solutions = [f"The answer is {a}." for a in answers]
    frames = [50 + 10 * i for i in range(n)]
    rng = np.random.default_rng(0)
    features = rng.uniform(-1, 1, size=(sum(frames), 80)).astype(np.float16)
    if broken == "nan":
        features[frames[0] + 2, 5] = np.nan
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "cord-corpus"
        f.attrs["schema_version"] = np.int64(99 if broken == "schema_version" else schema)
        f.attrs["source"] = "import"
        f.attrs["seed"] = np.int64(0)
        f.attrs["config"] = ""
        f.attrs["families"] = FAMILIES
        f.attrs["splits"] = "train,validation,test"
        f.attrs["speakers"] = ""
        for key, value in {"sample_rate": 16000, "n_mels": 80, "n_fft": 400, "win_length": 400, "hop_length": 160}.items():
            f.attrs[key] = np.int64(value)
        f.attrs["mel_scale"] = "slaney"
        f.attrs["log_mel"] = "whisper"
        items = f.create_group("items")
        items.create_dataset("index", data=np.arange(n, dtype=np.int64))
        items.create_dataset("family", data=np.zeros(n, dtype=np.int8))
        split = np.array([0, 0, 1, 2], dtype=np.int8)
        items.create_dataset("split", data=split[:-1] if broken == "wrong_shape" else split)
        items.create_dataset("difficulty", data=np.ones(n, dtype=np.float64 if broken == "wrong_dtype" else np.int32))
        for name in ("speaker", "rate", "pitch"):
            items.create_dataset(name, data=np.full(n, -1, dtype=np.int32))
        items.create_dataset("duration_s", data=np.array(frames, dtype=np.float32) * 160 / 16000)
        text = f.create_group("text")
        ragged(text, "question", [tokens(q) for q in questions], np.int32)
        ragged(text, "solution", [tokens(s) for s in solutions], np.int32)
        ragged(text, "answer", [tokens(a) for a in answers], np.int32)
        audio = f.create_group("audio")
        audio.create_dataset("features", data=features)
        if broken != "missing_dataset":
            offsets = np.zeros(n + 1, dtype=np.int64)
            offsets[1:] = np.cumsum(frames)
            audio.create_dataset("frame_offsets", data=offsets)
        f.create_group("tokenizer").create_dataset(
            "vocab", data=np.frombuffer("\n".join(VOCAB).encode(), dtype=np.uint8))
        if schema >= 2:
            add_checksums(f)
    return n


def read_item(path, i):
    # The snippet of data/README.md.
    with h5py.File(path, "r") as f:
        vocab = bytes(f["tokenizer/vocab"][:]).decode("utf-8").split("\n")

        def text(name):
            o = f[f"text/{name}_offsets"]
            ids = f[f"text/{name}_tokens"][o[i]:o[i + 1]]
            return " ".join(vocab[t] for t in ids)

        fo = f["audio/frame_offsets"]
        features = f["audio/features"][fo[i]:fo[i + 1]].astype(np.float32)
        return text("question"), text("answer"), features
