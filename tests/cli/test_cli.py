#!/usr/bin/env python3
"""End-to-end cases for the `cord` binary, one ctest per case (see tests/CMakeLists.txt).

Usage: test_cli.py --cord PATH --abort-program PATH --mpiexec PATH --source-dir DIR CASE
Each case runs the real binary (under mpiexec where it says npN) and checks exit code,
output and messages. Exit 0 = pass; an AssertionError prints what differed.
"""
import argparse
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

ARGS = None


def run(cmd, timeout=90, env=None):
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    proc.elapsed = time.monotonic() - started
    return proc


def cord(*args, ranks=None):
    cmd = [ARGS.cord, *args]
    if ranks is not None:
        cmd = [ARGS.mpiexec, "-n", str(ranks), *cmd]
    return run(cmd)


def expect(condition, message, proc=None):
    if not condition:
        detail = ""
        if proc is not None:
            detail = f"\n--- exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        raise AssertionError(message + detail)


def case_help():
    proc = cord("--help")
    expect(proc.returncode == 0, "cord --help must exit 0", proc)
    expect("info" in proc.stdout, "--help lists info", proc)
    for command in ("info", "corpus", "train", "eval", "ckpt"):
        expect(f"  {command}" in proc.stdout, f"--help lists '{command}'", proc)
    proc = cord("train", "--help")
    expect(proc.returncode == 0 and "--resume" in proc.stdout and "--max-wall-minutes" in proc.stdout,
           "train --help documents --resume and --max-wall-minutes", proc)
    proc = cord("info", "--help")
    expect(proc.returncode == 0 and "--json" in proc.stdout and "--set" in proc.stdout, "info --help", proc)
    proc = cord("--version")
    expect(proc.returncode == 0 and proc.stdout.startswith("cord "), "--version", proc)


def case_unknown_command():
    proc = cord("trian")
    expect(proc.returncode == 2, "unknown command exits 2", proc)
    expect("unknown command 'trian'" in proc.stderr, "names the command", proc)


def case_unknown_option():
    proc = cord("info", "--jsn")
    expect(proc.returncode == 2, "unknown option exits 2", proc)
    expect("--jsn" in proc.stderr, "names the option", proc)


def case_info_table_np2():
    proc = cord("info", ranks=2)
    expect(proc.returncode == 0, "info on 2 ranks", proc)
    expect("world 2 = dp 2 x tp 1" in proc.stdout, "layout line", proc)
    expect(proc.stdout.count("\n1 ") + proc.stdout.count("\n0 ") == 2, "one row per rank", proc)


def case_info_json_tp2_np4():
    proc = cord("info", "--json", "--set", "parallel.tp=2", ranks=4)
    expect(proc.returncode == 0, "info --json on 4 ranks", proc)
    report = json.loads(proc.stdout)
    expect(report["world_size"] == 4, "world_size 4")
    expect(report["layout"] == {"dp": 2, "tp": 2}, f"layout dp=2 tp=2, got {report['layout']}")
    ranks = report["ranks"]
    expect([r["rank"] for r in ranks] == [0, 1, 2, 3], "one record per rank, in order")
    for r in ranks:
        rank = r["rank"]
        expect(r["dp_rank"] == rank // 2 and r["tp_rank"] == rank % 2, f"coords of rank {rank}: {r}")
        expect(r["tp_group"] == [rank - rank % 2, rank - rank % 2 + 1], f"tp group of rank {rank}: {r}")
        expect(r["dp_group"] == [rank % 2, rank % 2 + 2], f"dp group of rank {rank}: {r}")
        expect(r["local_rank"] == rank and r["local_size"] == 4, f"local rank of rank {rank}: {r}")
        expect(isinstance(r["gpu_usable"], bool), "gpu_usable is a boolean")
    for key in ("cuda_compiled", "nccl_compiled"):
        expect(isinstance(report["build"][key], bool), f"build.{key} is a boolean")
    for key in ("torch", "mpi", "hdf5", "boost", "nccl", "cuda_runtime"):
        expect(report["versions"].get(key), f"versions.{key} present: {report['versions']}")
    expect(report["versions"]["hdf5_parallel"] is True, "parallel HDF5")
    model = report["model"]
    expect(model["total_params"] == model["decoder_params"] + model["encoder_params"] + model["projector_params"],
           f"model parameter counts add up: {model}")
    expect(model["decoder_train_flops_per_token"] == 3 * model["decoder_forward_flops_per_token"], "train = 3 x fwd")


def case_bad_tp_np4():
    proc = cord("info", "--set", "parallel.tp=3", ranks=4)
    expect(proc.returncode == 2, "tp=3 on 4 ranks exits 2", proc)
    message = "parallel.tp=3 does not divide world size 4"
    expect(proc.stderr.count(message) == 1, "the message is printed exactly once", proc)


def case_bad_override_np2():
    proc = cord("info", "--set", "runtime.device=tpu", ranks=2)
    expect(proc.returncode == 2, "bad device exits 2", proc)
    expect(proc.stderr.count("runtime.device='tpu' is not one of cpu, cuda, auto") == 1, "message once", proc)


def case_unknown_config_key():
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write("[parallel]\ntp = 1\n\n[runtime]\ndevise = \"cpu\"\n")
        path = f.name
    try:
        proc = cord("info", "--config", path)
        expect(proc.returncode == 2, "unknown key exits 2", proc)
        expect(f"unknown key 'runtime.devise' in {path}:5" in proc.stderr, "names key, file and line", proc)
        expect("did you mean 'runtime.device'" in proc.stderr, "suggests the right key", proc)
    finally:
        os.unlink(path)


def case_dry_run_np2():
    proc = cord("info", "--dry-run", "--set", "parallel.tp=2", ranks=2)
    expect(proc.returncode == 0, "dry run exits 0", proc)
    expect("[parallel]" in proc.stdout and "tp = 2" in proc.stdout, "resolved config printed", proc)
    expect("# rank layout: world 2 = dp 1 x tp 2" in proc.stdout, "layout printed", proc)
    expect("# rank 1: dp_rank 0, tp_rank 1, tp group [0, 1], dp group [1]" in proc.stdout, "rank 1 line", proc)
    expect(proc.stdout.count("# resolved config") == 1, "printed once (rank 0)", proc)


def case_shipped_jobs():
    jobs = os.path.join(ARGS.source_dir, "jobs")
    files = sorted(f for f in os.listdir(jobs) if f.endswith(".toml"))
    expect(files, "jobs/ has job files")
    for name in files:
        proc = cord("info", "--config", os.path.join(jobs, name), "--dry-run")
        expect(proc.returncode == 0, f"jobs/{name} loads and validates", proc)


def case_abort_on_rank_failure_np2():
    proc = run([ARGS.mpiexec, "-n", "2", ARGS.abort_program], timeout=60)
    expect(proc.returncode != 0, "a failing rank makes the job exit non-zero", proc)
    expect(proc.elapsed < 30, f"the job ended within 30 s (took {proc.elapsed:.1f} s)", proc)
    expect(proc.stderr.count("injected failure for the abort test") == 1, "message printed once", proc)
    expect("rank 1 on" in proc.stderr, "message names the rank", proc)


# --- cord corpus (need h5py and numpy: ctest runs these cases with the venv's python) ----

def corpus_job():
    return os.path.join(ARGS.source_dir, "jobs", "corpus_tiny.toml")


def h5_datasets(path):
    import h5py
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        out["attrs"] = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    return out


def case_corpus_help():
    proc = cord("--help")
    expect(proc.returncode == 0 and "  corpus" in proc.stdout, "--help lists corpus", proc)
    proc = cord("corpus", "--help")
    expect(proc.returncode == 0, "corpus --help exits 0", proc)
    for text in ("synth|import|inspect|verify [PATH]", "--out", "--manifest", "--json", "--set"):
        expect(text in proc.stdout, f"corpus --help mentions {text}", proc)
    proc = cord("corpus")
    expect(proc.returncode == 2 and "give an ACTION: synth, import, inspect or verify" in proc.stderr, "no action", proc)
    proc = cord("corpus", "bake")
    expect(proc.returncode == 2 and "unknown action 'bake'" in proc.stderr, "unknown action", proc)
    proc = cord("corpus", "synth", "--config", corpus_job())
    expect(proc.returncode == 2 and "--out PATH is required" in proc.stderr, "synth needs --out", proc)


def case_corpus_synth_inspect_np2():
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "tiny.h5")
        proc = cord("corpus", "synth", "--config", corpus_job(), "--out", out, ranks=2)
        expect(proc.returncode == 0, "synth on 2 ranks", proc)
        expect(os.listdir(tmp) == ["tiny.h5"], f"only the corpus is left, got {os.listdir(tmp)}")
        proc = cord("corpus", "inspect", out, "--json")
        expect(proc.returncode == 0, "inspect --json", proc)
        report = json.loads(proc.stdout)
        expect(report["items"] == 36 and report["schema_version"] == 3, f"items and schema: {report}")
        expect(report["families"] == {"arithmetic": 12, "multiple_choice": 12, "ordering": 12}, f"{report['families']}")
        expect(sum(report["splits"].values()) == 36 and report["vocab_size"] > 100, f"{report}")
        expect(report["feature_config"]["n_mels"] == 80 and report["feature_config"]["kind"] == "cord" and
               report["duration_s"]["min"] > 0.5, f"{report}")
        proc = cord("corpus", "inspect", out)
        expect(proc.returncode == 0 and "multiple_choice" in proc.stdout and "schema 3" in proc.stdout, "table", proc)
        sys.path.insert(0, os.path.dirname(__file__))
        from corpus_fixture import read_item
        question, answer, features = read_item(out, 0)
        expect(question.endswith("?") and answer, f"h5py reads item 0: {question!r} / {answer!r}")
        expect(features.shape[1] == 80 and features.shape[0] > 100, f"features {features.shape}")


def case_corpus_rank_independence_np3():
    import numpy as np
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for ranks in (1, 2, 3):
            files[ranks] = os.path.join(tmp, f"np{ranks}.h5")
            # 100 items = 4 blocks of 32: several write rounds, and a rank without a block on 3 ranks.
            proc = cord("corpus", "synth", "--config", corpus_job(), "--set", "corpus.items=100", "--out", files[ranks],
                        ranks=ranks)
            expect(proc.returncode == 0, f"synth on {ranks} ranks", proc)
        reference = h5_datasets(files[1])
        expect(len(reference) == 20, f"19 datasets + attributes, got {sorted(reference)}")
        for ranks in (2, 3):
            other = h5_datasets(files[ranks])
            expect(sorted(other) == sorted(reference), f"same datasets with {ranks} ranks")
            for name, value in reference.items():
                if name == "attrs":
                    expect(other[name] == value, f"attributes differ with {ranks} ranks")
                    continue
                same = value.dtype == other[name].dtype and value.shape == other[name].shape and \
                    value.tobytes() == other[name].tobytes()
                expect(same, f"dataset {name} differs between 1 and {ranks} ranks")
        expect(np.isfinite(reference["audio/features"].astype(np.float32)).all(), "finite features")


def case_corpus_h5py_fixture():
    sys.path.insert(0, os.path.dirname(__file__))
    from corpus_fixture import write_corpus
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "fixture.h5")
        n = write_corpus(path)
        proc = cord("corpus", "inspect", path, "--json")
        expect(proc.returncode == 0, "a corpus written by h5py from data/README.md loads", proc)
        report = json.loads(proc.stdout)
        expect(report["items"] == n and report["splits"] == {"train": 2, "validation": 1, "test": 1}, f"{report}")
        # Schema 2, with checksums computed in Python from the README: cord verifies them.
        path = os.path.join(tmp, "fixture_v2.h5")
        write_corpus(path, schema=2)
        proc = cord("corpus", "verify", path)
        expect(proc.returncode == 0 and f"{n} items, every checksum matches" in proc.stdout,
               "a schema-2 corpus written by h5py from data/README.md verifies", proc)


def case_corpus_bad_files():
    sys.path.insert(0, os.path.dirname(__file__))
    from corpus_fixture import write_corpus
    with tempfile.TemporaryDirectory() as tmp:
        expected = {
            "schema_version": "schema_version 99 is not supported",
            "missing_dataset": "missing dataset /audio/frame_offsets",
            "wrong_dtype": "dataset /items/difficulty: dtype float64, expected int32",
            "wrong_shape": "dataset /items/split: shape [3], expected [4]",
            "nan": "dataset /audio/features: item 1 has NaN or infinite values",
        }
        for broken, message in expected.items():
            path = os.path.join(tmp, f"{broken}.h5")
            write_corpus(path, broken)
            proc = cord("corpus", "inspect", path)
            expect(proc.returncode != 0, f"{broken}: non-zero exit", proc)
            expect(path in proc.stderr and message in proc.stderr, f"{broken}: names file and dataset", proc)
        path = os.path.join(tmp, "truncated.h5")
        write_corpus(path)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        proc = cord("corpus", "inspect", path)
        expect(proc.returncode != 0 and f"cannot open {path} as HDF5" in proc.stderr, "truncated file", proc)
        missing = os.path.join(tmp, "absent.h5")
        proc = cord("corpus", "inspect", missing)
        expect(proc.returncode != 0 and missing in proc.stderr, "missing file", proc)


def flip_dataset_byte(path, dataset, row, byte_in_row):
    """Flips every bit of one byte of `dataset` in the file itself (row `row` of a chunked,
    uncompressed dataset, `byte_in_row` bytes into it), as a disk error would."""
    import h5py
    with h5py.File(path, "r") as f:
        ds = f[dataset]
        row_bytes = ds.dtype.itemsize * (ds.shape[1] if ds.ndim == 2 else 1)
        chunk_start = row // ds.chunks[0] * ds.chunks[0]  # (get_chunk_info_by_coord echoes the coordinate)
        chunk = ds.id.get_chunk_info_by_coord((chunk_start, 0) if ds.ndim == 2 else (chunk_start,))
        offset = chunk.byte_offset + (row - chunk_start) * row_bytes + byte_in_row
    with open(path, "r+b") as f:
        f.seek(offset)
        value = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([value ^ 0xFF]))


def case_corpus_verify():
    """Checksums: a synthesised corpus verifies; one flipped byte in an item's features or
    question ids is named (dataset and item) by verify, and by inspect, which reads items
    through the same CorpusReader::features() as the training loader."""
    import h5py
    with tempfile.TemporaryDirectory() as tmp:
        good = os.path.join(tmp, "good.h5")
        proc = cord("corpus", "synth", "--config", corpus_job(), "--out", good)
        expect(proc.returncode == 0, "synth", proc)
        proc = cord("corpus", "verify", good)
        expect(proc.returncode == 0 and "36 items, every checksum matches" in proc.stdout, "a new corpus verifies", proc)
        with h5py.File(good, "r") as f:
            frame_start = int(f["audio/frame_offsets"][17])
            question_start = int(f["text/question_offsets"][5])
        damaged = {
            "features": ("/audio/features", frame_start + 3, 41, 17),
            "question": ("/text/question_tokens", question_start, 1, 5),
        }
        for name, (dataset, row, byte, item) in damaged.items():
            path = os.path.join(tmp, f"{name}.h5")
            subprocess.run(["cp", good, path], check=True)
            flip_dataset_byte(path, dataset, row, byte)
            proc = cord("corpus", "verify", path)
            expect(proc.returncode == 1 and f"dataset {dataset} item {item}: damaged" in proc.stdout and
                   "1 damaged (dataset, item) pairs" in proc.stdout, f"{name}: verify names it", proc)
            proc = cord("corpus", "inspect", path)
            expect(proc.returncode != 0 and f"{path} dataset {dataset}: item {item} does not match its checksum"
                   in proc.stderr, f"{name}: inspect refuses it", proc)
        # Version 1 (no checksums: the h5py fixture) still loads; verify says it cannot check it.
        sys.path.insert(0, os.path.dirname(__file__))
        from corpus_fixture import write_corpus
        old = os.path.join(tmp, "v1.h5")
        write_corpus(old)
        proc = cord("corpus", "verify", old)
        expect(proc.returncode == 1 and "schema version 1 holds no checksums" in proc.stdout, "v1 verify", proc)


def write_wav(path, seconds, rate, channels, frequency=330.0):
    import wave
    import numpy as np
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.3 * np.sin(2 * np.pi * frequency * t) * 32767).astype(np.int16)
    frames = np.repeat(mono[:, None], channels, axis=1) if channels > 1 else mono
    with wave.open(path, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames.tobytes())


def case_corpus_import():
    with tempfile.TemporaryDirectory() as tmp:
        write_wav(os.path.join(tmp, "a.wav"), 1.5, 22050, 1)
        write_wav(os.path.join(tmp, "b.wav"), 2.0, 44100, 2)
        tsv = os.path.join(tmp, "manifest.tsv")
        with open(tsv, "w") as f:
            f.write("wav\tquestion\tanswer\tfamily\tsplit\n")
            f.write("a.wav\tMia has 3 apples. How many apples does Mia have now?\t3\tarithmetic\ttrain\n")
            f.write(f"{tmp}/b.wav\tWho is older, Ada or Ben? A: Ada. B: Ben.\tBen\tmultiple_choice\ttest\n")
        jsonl = os.path.join(tmp, "manifest.jsonl")
        with open(jsonl, "w") as f:
            f.write(json.dumps({"wav": "b.wav", "question": "Ben is taller than Ada. Who is the tallest?",
                                "solution": "Ben is taller than Ada. The answer is Ben.", "answer": "Ben",
                                "family": "ordering", "split": "validation"}) + "\n")
        for manifest, items in ((tsv, 2), (jsonl, 1)):
            out = os.path.join(tmp, os.path.basename(manifest) + ".h5")
            proc = cord("corpus", "import", "--manifest", manifest, "--out", out, ranks=2)
            expect(proc.returncode == 0, f"import {manifest} on 2 ranks", proc)
            proc = cord("corpus", "inspect", out, "--json")
            expect(proc.returncode == 0, "inspect the import", proc)
            report = json.loads(proc.stdout)
            expect(report["items"] == items and report["source"] == "import", f"{report}")
        report_durations = json.loads(cord("corpus", "inspect", os.path.join(tmp, "manifest.tsv.h5"), "--json").stdout)
        expect(abs(report_durations["duration_s"]["min"] - 1.5) < 0.01, f"1.5 s at 16 kHz: {report_durations}")
        expect(abs(report_durations["duration_s"]["max"] - 2.0) < 0.01, f"stereo 44.1 kHz downmixed: {report_durations}")


def case_corpus_import_bad():
    with tempfile.TemporaryDirectory() as tmp:
        write_wav(os.path.join(tmp, "ok.wav"), 1.0, 16000, 1)
        write_wav(os.path.join(tmp, "empty.wav"), 0.0, 16000, 1)
        with open(os.path.join(tmp, "junk.wav"), "w") as f:
            f.write("not audio")
        header = "wav\tquestion\tanswer\tfamily\tsplit\n"
        good = "ok.wav\tHow many apples does Mia have now?\t3\tarithmetic\ttrain\n"
        cases = {
            "missing_column.tsv": ("wav\tquestion\tanswer\tfamily\n", "manifest.tsv:1: missing column 'split'"),
            "unreadable.tsv": (header + good + "junk.wav\tHow many apples?\t3\tarithmetic\ttrain\n",
                               "unreadable.tsv:3: cannot read audio file"),
            "empty.tsv": (header + "empty.wav\tHow many apples?\t3\tarithmetic\ttrain\n", "empty.tsv:2: "),
            "vocabulary.tsv": (header + good + "ok.wav\tHow many zebras does Mia have?\t3\tarithmetic\ttrain\n",
                               "word 'zebras' is not in the vocabulary (" ),
            "family.tsv": (header + "ok.wav\tHow many apples?\t3\talgebra\ttrain\n", "family.tsv:2: unknown family 'algebra'"),
            "missing_key.jsonl": ('{"wav": "ok.wav", "question": "How many apples?", "answer": "3", "family": "arithmetic"}\n',
                                  "missing_key.jsonl:1: missing key 'split'"),
        }
        for name, (text, message) in cases.items():
            manifest = os.path.join(tmp, name if name != "missing_column.tsv" else "manifest.tsv")
            with open(manifest, "w") as f:
                f.write(text)
            out = os.path.join(tmp, "out", "corpus.h5")
            os.makedirs(os.path.dirname(out), exist_ok=True)
            proc = cord("corpus", "import", "--manifest", manifest, "--out", out, ranks=2)
            expect(proc.returncode == 2, f"{name}: exit 2", proc)
            expect(message in proc.stderr, f"{name}: message names the line: {message}", proc)
            if name == "vocabulary.tsv":
                expect("vocabulary.tsv:3 question" in proc.stderr, "names file and line", proc)
            expect(os.listdir(os.path.dirname(out)) == [], f"{name}: no output left, got {os.listdir(os.path.dirname(out))}")
            os.unlink(manifest)


def case_corpus_synth_failure_np2():
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "c.h5")
        proc = cord("corpus", "synth", "--config", corpus_job(), "--set", "corpus.voices=xx-nowhere", "--out", out,
                    ranks=2)
        expect(proc.returncode != 0 and "xx-nowhere" in proc.stderr, "a bad voice stops every rank", proc)
        expect(os.listdir(tmp) == [], f"nothing left behind, got {os.listdir(tmp)}")
        proc = cord("corpus", "synth", "--out", os.path.join(tmp, "no", "such", "dir.h5"))
        expect(proc.returncode == 2 and "cannot write to folder" in proc.stderr, "unwritable --out", proc)
        proc = cord("corpus", "synth", "--set", "corpus.families=algebra", "--out", out)
        expect(proc.returncode == 2 and "unknown family 'algebra'" in proc.stderr, "bad family", proc)


# --- cord train / cord eval --------------------------------------------------------------------
# pipeline_tiny_np2 runs jobs/pipeline.sh on jobs/pipeline_tiny.toml into WORK/pipeline
# (a ctest fixture); the other train/eval cases reuse its corpus and weights.

def pipeline_dir():
    return os.path.join(ARGS.work_dir, "pipeline")


def tiny_job():
    return os.path.join(ARGS.source_dir, "jobs", "pipeline_tiny.toml")


def fixture_sets():
    run_dir = pipeline_dir()
    return ["--config", tiny_job(), "--set", f"train.corpus={run_dir}/corpus.h5"]


def metrics(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def case_pipeline_tiny_np2():
    run_dir = pipeline_dir()
    subprocess.run(["rm", "-rf", run_dir], check=True)
    env = dict(os.environ, CORD_BUILD_DIR=os.path.dirname(os.path.abspath(ARGS.cord)), CORD_RANKS="2")
    started = time.monotonic()
    proc = subprocess.run([os.path.join(ARGS.source_dir, "jobs", "pipeline.sh"), tiny_job(), run_dir],
                          capture_output=True, text=True, timeout=300, env=env)
    elapsed = time.monotonic() - started
    expect(proc.returncode == 0, "the pipeline runs", proc)
    expect(elapsed < 120, f"the tiny pipeline takes under 2 minutes (took {elapsed:.0f} s)")
    for stage in ("text", "align"):
        records = metrics(os.path.join(run_dir, stage, "metrics.jsonl"))
        header = records[0]
        expect(header["type"] == "header" and header["stage"] == stage and "train" in header["command"],
               f"{stage}: header record with stage and command: {header}")
        steps = [r for r in records if r["type"] == "step"]
        expect(len(steps) >= 3, f"{stage}: step records")
        first, last = steps[0]["loss"], steps[-1]["loss"]
        expect(last < first, f"{stage}: the training loss falls ({first:.4f} -> {last:.4f})")
        for key in ("grad_norm", "lr", "ms_per_step", "tokens_per_s", "mfu"):
            expect(key in steps[-1], f"{stage}: step records carry {key}")
        expect(any(r["type"] == "validation" for r in records), f"{stage}: a validation record")
        expect(records[-1]["type"] == "end", f"{stage}: an end record")
        for name in ("config.toml", "model.h5"):
            expect(os.path.exists(os.path.join(run_dir, stage, name)), f"{stage}/{name} written")
        expect(f"| {stage} |" in proc.stderr, f"{stage}: step lines in the log", proc)
    report = json.load(open(os.path.join(run_dir, "eval", "eval.json")))
    expect(set(report["families"]) == {"arithmetic", "multiple_choice", "ordering"}, f"three families: {report}")
    for key in ("text_accuracy", "audio_accuracy", "gap", "word_error_rate"):
        expect(key in report["average"], f"eval.json average has {key}")
    with open(os.path.join(run_dir, "eval", "predictions.jsonl")) as f:
        predictions = [json.loads(line) for line in f]
    expect(len(predictions) == report["average"]["items"], "one prediction per evaluated item")
    expect({"answer", "text", "audio", "transcript"} <= set(predictions[0]), f"prediction fields: {predictions[0]}")
    expect("| **average** |" in proc.stdout, "the eval table is printed", proc)
    # CORD from the base, and its eval against the base's.
    records = metrics(os.path.join(run_dir, "distill", "metrics.jsonl"))
    steps = [r for r in records if r["type"] == "step"]
    expect(len(steps) >= 1 and records[-1]["type"] == "end", f"distill: step and end records: {records[-1]}")
    split = steps[-1]
    for key in ("rollout_ms", "teacher_ms", "student_ms", "window_comm_ms", "other_ms", "window_ms_per_step"):
        expect(split.get(key, -1) >= 0, f"distill step records carry the time split ({key}): {split}")
    expect(split["teacher_ms"] > 0 and split["student_ms"] > 0 and split["rollout_ms"] > 0,
           f"cord has a rollout, a teacher pass and a student pass: {split}")
    parts = sum(split[k] for k in ("rollout_ms", "teacher_ms", "student_ms", "window_comm_ms", "other_ms"))
    expect(abs(parts - split["window_ms_per_step"]) <= 0.01 * split["window_ms_per_step"] + 0.01,
           f"the parts add up to the step: {parts} vs {split['window_ms_per_step']}")
    expect(re.search(r"\| distill cord \|.*\(rollout \d+%, teacher \d+%, student \d+%, comm \d+%\)", proc.stderr),
           "distill step lines with the time split", proc)
    cord_report = json.load(open(os.path.join(run_dir, "cord_eval", "eval.json")))
    comparison = cord_report["baseline"]
    expect(comparison["baseline"] == os.path.join(run_dir, "eval", "eval.json"), f"the baseline is named: {comparison}")
    average = comparison["average"]
    expect(average["baseline_audio_accuracy"] == report["average"]["audio_accuracy"] and
           average["audio_accuracy"] == cord_report["average"]["audio_accuracy"] and
           average["text_change"] == cord_report["average"]["text_accuracy"] - report["average"]["text_accuracy"],
           f"the comparison reads both evals: {average}")
    expect("Against the baseline" in proc.stdout and "gap reduction" in proc.stdout, "the comparison is printed", proc)
    with open(os.path.join(run_dir, "timings.tsv")) as f:
        expect([line.split("\t")[0] for line in f] == ["corpus", "text", "align", "eval", "distill", "cord_eval"],
               "timings of six steps")


def train_losses(run_dir, *sets, ranks):
    proc = cord("train", *fixture_sets(), "--set", f"train.run_dir={run_dir}", "--set", "train.text.steps=8",
                "--set", "train.log_every=1", "--set", "train.val_items=0", *sets, ranks=ranks)
    expect(proc.returncode == 0, f"train on {ranks} rank(s) with {sets}", proc)
    return [r["loss"] for r in metrics(os.path.join(run_dir, "text", "metrics.jsonl")) if r["type"] == "step"]


def case_train_layouts_np2():
    """The loss is the mean over the global batch whatever the layout and accumulation."""
    base = os.path.join(ARGS.work_dir, "layouts")
    reference = train_losses(base + "-dp1", ranks=1)
    accumulated = train_losses(base + "-micro", "--set", "train.micro_batch=3", ranks=1)
    data_parallel = train_losses(base + "-dp2", ranks=2)
    tensor_parallel = train_losses(base + "-tp2", "--set", "parallel.tp=2", ranks=2)
    expect(len(reference) == 8, f"8 step records, got {reference}")
    for name, losses in (("micro_batch=3", accumulated), ("dp=2", data_parallel), ("tp=2", tensor_parallel)):
        for step, (a, b) in enumerate(zip(reference, losses)):
            expect(abs(a - b) <= 1e-4 * abs(a), f"{name}: step {step + 1} loss {b} vs dp=1 {a}")


def case_train_nonfinite():
    run_dir = os.path.join(ARGS.work_dir, "nonfinite")
    common = ["train", *fixture_sets(), "--set", f"train.run_dir={run_dir}", "--set", "train.text.steps=6",
              "--set", "train.val_items=0", "--set", "train.log_every=1"]
    proc = cord(*common, "--set", "train.inject_nonfinite=3")
    expect(proc.returncode == 0, "one non-finite step is skipped, training goes on", proc)
    expect("step 3: non-finite loss" in proc.stderr and "step skipped" in proc.stderr, "the skip is logged", proc)
    records = metrics(os.path.join(run_dir, "text", "metrics.jsonl"))
    expect([r["step"] for r in records if r["type"] == "skip"] == [3], f"one skip record for step 3: {records}")
    expect(records[-1]["type"] == "end" and records[-1]["skipped"] == 1, f"end record counts it: {records[-1]}")
    expect(all(r["skipped"] == (1 if r["step"] >= 3 else 0) for r in records if r["type"] == "step"),
           "step records carry the running count")

    os.remove(os.path.join(run_dir, "text", "model.h5"))
    proc = cord(*common, "--set", "train.inject_nonfinite=2,3,4", "--set", "train.max_nonfinite_steps=3")
    expect(proc.returncode == 1, "three non-finite steps in a row stop the run with exit 1", proc)
    expect("3 consecutive steps had a non-finite loss or gradient" in proc.stderr, "the stop is explained", proc)
    expect(not os.path.exists(os.path.join(run_dir, "text", "model.h5")), "no weights written for a stopped stage")


def case_align_trainable():
    """train.align_trainable = projector: the encoder keeps the text stage's (untrained)
    weights bit for bit, the projector learns, the decoder stays frozen as by default."""
    import h5py
    import numpy as np
    run_dir = os.path.join(ARGS.work_dir, "align-projector")
    subprocess.run(["rm", "-rf", run_dir], check=True)
    proc = cord("train", *stage_sets(run_dir, "align", 4), "--set", "train.align_trainable=projector")
    expect(proc.returncode == 0, "align with the projector alone", proc)
    def params(path):
        with h5py.File(path, "r") as f:
            return {name: f["params"][name][()] for name in f["params"]}
    init = params(os.path.join(pipeline_dir(), "text", "model.h5"))
    after = params(os.path.join(run_dir, "align", "model.h5"))
    groups = {"encoder": [], "projector": [], "decoder": []}
    for name in init:
        groups[name.split(".")[0]].append(np.array_equal(init[name], after[name]))
    expect(groups["encoder"] and all(groups["encoder"]), f"every encoder tensor unchanged ({len(groups['encoder'])})")
    expect(groups["decoder"] and all(groups["decoder"]), f"every decoder tensor unchanged ({len(groups['decoder'])})")
    expect(groups["projector"] and not any(groups["projector"]), "every projector tensor learnt")
    trained = re.search(r"(\d+) of (\d+) parameters trained", proc.stderr)
    projector_size = sum(init[n].size for n in init if n.startswith("projector."))
    expect(trained is not None and int(trained.group(1)) == projector_size,
           f"the log counts the projector's {projector_size} parameters as trained", proc)
    proc = cord("train", *stage_sets(run_dir + "-bad", "align", 4), "--set", "train.align_trainable=projector,speech")
    expect(proc.returncode == 2 and "train.align_trainable: 'speech' is not one of encoder, projector, decoder"
           in proc.stderr, "an unknown part is named", proc)


def case_train_eval_bad_input():
    run_dir = pipeline_dir()
    text_weights = os.path.join(run_dir, "text", "model.h5")
    scratch = os.path.join(ARGS.work_dir, "bad")
    os.makedirs(scratch, exist_ok=True)
    train_sets = [*fixture_sets(), "--set", f"train.run_dir={scratch}"]

    proc = cord("train", *train_sets, "--set", "train.stage=distil")
    expect(proc.returncode == 2 and "train.stage='distil' is not one of text, align" in proc.stderr,
           "unknown stage", proc)
    proc = cord("train", *train_sets, "--set", "train.corpus=/nonexistent/corpus.h5")
    expect(proc.returncode == 2 and "/nonexistent/corpus.h5 does not exist" in proc.stderr, "missing corpus", proc)
    proc = cord("train", *train_sets, "--set", "model.vocab_size=100")
    expect(proc.returncode == 2 and "smaller than the vocabulary" in proc.stderr, "model vocabulary too small", proc)
    proc = cord("train", *train_sets, "--set", "train.stage=align", "--set", f"train.init={text_weights}",
                "--set", "model.d_model=64")
    expect(proc.returncode == 2 and "model.d_model: file 32, config 64" in proc.stderr,
           "weights of another architecture", proc)
    proc = cord("eval", *fixture_sets(), "--ckpt", os.path.join(scratch, "missing.h5"), "--out", scratch)
    expect(proc.returncode == 2 and "missing.h5 does not exist" in proc.stderr, "missing weights", proc)
    proc = cord("eval", *fixture_sets(), "--ckpt", text_weights, "--split", "dev", "--out", scratch)
    expect(proc.returncode == 2 and "dev" in proc.stderr, "unknown split", proc)
    # --baseline: missing, not an eval.json, another split, other items (after decoding).
    base_eval = os.path.join(run_dir, "eval", "eval.json")
    proc = cord("eval", *fixture_sets(), "--ckpt", text_weights, "--baseline", os.path.join(scratch, "none.json"),
                "--out", scratch)
    expect(proc.returncode == 2 and "--baseline: cannot read" in proc.stderr and "none.json" in proc.stderr,
           "missing baseline", proc)
    proc = cord("eval", *fixture_sets(), "--ckpt", text_weights, "--baseline", text_weights, "--out", scratch)
    expect(proc.returncode == 2 and "is not a JSON object" in proc.stderr, "baseline that is not JSON", proc)
    proc = cord("eval", *fixture_sets(), "--ckpt", text_weights, "--baseline", base_eval, "--split", "validation",
                "--out", scratch)
    expect(proc.returncode == 2 and "scored split test, this eval scores validation" in proc.stderr,
           "baseline of another split", proc)
    proc = cord("eval", *fixture_sets(), "--ckpt", text_weights, "--baseline", os.path.dirname(base_eval),
                "--set", "eval.max_items=9", "--out", scratch)
    expect(proc.returncode == 2 and "items, this eval" in proc.stderr and base_eval in proc.stderr,
           "baseline of other items", proc)

    # A corpus whose vocabulary differs from the weights' (one token renamed, same length).
    import h5py
    import numpy as np
    renamed = os.path.join(scratch, "renamed.h5")
    subprocess.run(["cp", os.path.join(run_dir, "corpus.h5"), renamed], check=True)
    with h5py.File(renamed, "r+") as f:
        raw = bytes(f["tokenizer/vocab"][:])
        index = raw.index(b"\napples\n") + 1
        raw = raw[:index] + b"zzzzzz" + raw[index + 6:]
        f["tokenizer/vocab"][:] = np.frombuffer(raw, dtype=np.uint8)
        # A valid corpus of another vocabulary, not a damaged one: its checksum is updated too.
        sys.path.insert(0, os.path.dirname(__file__))
        from corpus_fixture import content_checksum
        f.attrs["vocab_checksum"] = np.int64(content_checksum(raw))
    proc = cord("eval", *fixture_sets(), "--ckpt", text_weights, "--data", renamed, "--out", scratch)
    expect(proc.returncode == 2 and "different vocabularies" in proc.stderr and "'zzzzzz'" in proc.stderr,
           "corpus vocabulary differs from the weights'", proc)

    # A split the corpus does not have.
    no_validation = os.path.join(scratch, "no_validation.h5")
    proc = cord("corpus", "synth", "--config", tiny_job(), "--set", "corpus.items=9",
                "--set", "corpus.validation_fraction=0", "--out", no_validation)
    expect(proc.returncode == 0, "tiny corpus without a validation split", proc)
    proc = cord("eval", *fixture_sets(), "--ckpt", text_weights, "--data", no_validation, "--split", "validation",
                "--out", scratch)
    expect(proc.returncode == 2 and "has no items in split 'validation'" in proc.stderr, "absent split", proc)


# --- cord train, stage distill (CORD and its baselines) from the tiny pipeline's base model ---

DISTILL_METHODS = ("cord", "cord-unweighted", "opd", "grpo", "sft", "fkl")


def distill(run_dir, *sets, ranks=None, steps=3):
    """A few distill steps from the tiny base; returns (process, metrics records)."""
    proc = cord("train", *fixture_sets(), "--set", f"train.run_dir={run_dir}", "--set", "train.stage=distill",
                "--set", f"train.init={os.path.join(pipeline_dir(), 'align', 'model.h5')}",
                "--set", f"train.distill.steps={steps}", "--set", "train.distill.global_batch=4",
                "--set", "train.distill.warmup_steps=1", "--set", "cord.group_size=2",
                "--set", "cord.max_new_tokens=24", "--set", "train.log_every=1", "--set", "train.val_items=4",
                *sets, ranks=ranks)
    path = os.path.join(run_dir, "distill", "metrics.jsonl")
    return proc, (metrics(path) if os.path.exists(path) else [])


def case_distill_methods_np2():
    """Every method runs end to end on dp = 2 and records what it optimises."""
    for method in DISTILL_METHODS:
        run_dir = os.path.join(ARGS.work_dir, "distill-" + method)
        subprocess.run(["rm", "-rf", run_dir], check=True)
        proc, records = distill(run_dir, "--set", f"cord.method={method}", ranks=2)
        expect(proc.returncode == 0, f"{method}: distill runs", proc)
        expect(records[0]["type"] == "header" and records[0]["method"] == method, f"{method}: header {records[0]}")
        steps = [r for r in records if r["type"] == "step"]
        expect([r["step"] for r in steps] == [1, 2, 3], f"{method}: three step records")
        for r in steps:
            expect(all(math.isfinite(r[k]) for k in ("loss", "token_loss", "sequence_loss")), f"{method}: {r}")
            expect(r["rollout_length"] > 0 and r["rollout_tokens_per_s"] > 0, f"{method}: rollouts decoded: {r}")
        grpo = method in ("cord", "cord-unweighted", "grpo")
        kl = method in ("cord", "cord-unweighted", "opd", "fkl")
        expect(all(0 <= r["reward"] <= 1 for r in steps), f"{method}: mean rewards in [0, 1]")
        if not grpo:
            expect(all(r["sequence_loss"] == 0 and r["reward"] == 0 for r in steps), f"{method}: no GRPO term")
        expect(all(r["token_loss"] == 0 for r in steps) == (method == "grpo"), f"{method}: token loss iff not grpo")
        expect(all(r["divergence"] > 0 for r in steps) == kl, f"{method}: divergence logged iff a KL method")
        validations = [r for r in records if r["type"] == "validation"]
        expect([r["step"] for r in validations] == [0, 3], f"{method}: validation before and after")
        expect(all("audio_accuracy" in r and "text_accuracy" in r for r in validations), f"{method}: both inputs")
        expect(records[-1]["type"] == "end", f"{method}: end record")
        expect(os.path.exists(os.path.join(run_dir, "distill", "model.h5")), f"{method}: weights written")
        expect(f"| distill {method} |" in proc.stderr, f"{method}: step lines", proc)


def distill_trace(records):
    return [(r["loss"], r["token_loss"], r["sequence_loss"], r["reward"], r["rollout_length"])
            for r in records if r["type"] == "step"]


def case_distill_determinism():
    """The same seed gives the same rollouts and losses; another seed other rollouts."""
    base = os.path.join(ARGS.work_dir, "distill-seed")
    runs = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        proc, records = distill(f"{base}-{name}", "--set", f"train.seed={seed}", "--set", "train.val_items=0")
        expect(proc.returncode == 0, f"seed {seed} runs", proc)
        runs[name] = distill_trace(records)
    expect(len(runs["a"]) == 3 and runs["a"] == runs["b"], f"same seed, same trace:\n{runs['a']}\n{runs['b']}")
    expect(runs["a"] != runs["c"], f"another seed, other rollouts:\n{runs['a']}\n{runs['c']}")


def case_distill_layouts_np2():
    """Micro-batches, tp = 2 and the chunked losses (cord.loss_chunk_rows, from the hidden
    states) give the losses of one pass on one rank (same rollouts), for the paper's method,
    with the variants that add rows (the token loss on the group's rollouts, the forward-KL
    mixture on the references), and for SFT's cross-entropy."""
    base = os.path.join(ARGS.work_dir, "distill-layouts")
    for method, method_sets in (("paper", []), ("variants", ["--set", "cord.token_rollouts=group",
                                                             "--set", "cord.fkl_mixture=0.4"]),
                                ("sft", ["--set", "cord.method=sft"])):
        sets = ["--set", "train.val_items=0", "--set", "cord.aggregation=token_mean", *method_sets]
        reference = distill(f"{base}-{method}-1", *sets, ranks=1)[1]
        for name, extra, ranks in (("micro", ["--set", "train.micro_batch=1"], 1),
                                   ("tp2", ["--set", "parallel.tp=2"], 2),
                                   ("chunked", ["--set", "cord.loss_chunk_rows=1"], 1),
                                   ("chunked-tp2", ["--set", "cord.loss_chunk_rows=3", "--set", "parallel.tp=2"], 2)):
            proc, records = distill(f"{base}-{method}-{name}", *sets, *extra, ranks=ranks)
            expect(proc.returncode == 0, f"{method} {name} runs", proc)
            for a, b in zip(distill_trace(reference), distill_trace(records)):
                expect(a[3:] == b[3:], f"{method} {name}: same rollouts and rewards: {a} vs {b}")
                expect(all(abs(x - y) <= 1e-4 * max(1.0, abs(x)) for x, y in zip(a[:3], b[:3])),
                       f"{method} {name}: same losses: {a} vs {b}")


def case_distill_options():
    """PPO clipping with inner steps, the current weights as teacher (the default is a frozen
    copy), other aggregations, frozen groups, a slower decoder."""
    import h5py
    import numpy as np
    init = os.path.join(pipeline_dir(), "align", "model.h5")
    for name, sets in (("ppo", ["--set", "cord.ppo_inner_steps=2", "--set", "cord.normalize_advantages=true"]),
                       ("current-teacher", ["--set", "cord.teacher=current", "--set", "cord.aggregation=sequence_mean",
                                           "--set", "cord.decoder_lr_scale=0.25"]),
                       ("audio-only", ["--set", "cord.trainable=encoder,projector", "--set", "cord.aggregation=token_mean",
                                       "--set", "cord.judge=ground_truth"]),
                       ("variants", ["--set", "cord.top_k_fraction=0.1", "--set", "cord.token_rollouts=group",
                                     "--set", "cord.fkl_mixture=0.3", "--set", "cord.aggregation=token_mean"]),
                       ("opd-mixture", ["--set", "cord.method=opd", "--set", "cord.fkl_mixture=0.5"])):
        run_dir = os.path.join(ARGS.work_dir, "distill-" + name)
        proc, records = distill(run_dir, "--set", "train.val_items=0", *sets)
        expect(proc.returncode == 0, f"{name}: runs", proc)
        expect(("learn at 0.25x the learning rate" in proc.stderr) == (name == "current-teacher"),
               f"{name}: the decoder's learning-rate scale is logged where set", proc)
        if name == "variants":
            expect("alpha on 0.1 of each rollout's positions, the token loss on the N group rollouts, forward-KL "
                   "mixture lambda = 0.3" in proc.stderr, "the variants are logged", proc)
        if name in ("variants", "opd-mixture"):
            steps = [r for r in records if r["type"] == "step"]
            # group: N = 2 audio rollouts + 1 reference per prompt; opd: 1 audio + 1 reference.
            expect(all(r["token_loss"] != 0 and r["divergence"] > 0 for r in steps), f"{name}: token loss {steps}")
        steps = [r for r in records if r["type"] == "step"]
        expect(len(steps) == 3 and all(math.isfinite(r["loss"]) for r in steps), f"{name}: finite losses {steps}")
        end = records[-1]
        expect(end["optimizer_steps"] == (6 if name == "ppo" else 3), f"{name}: optimizer steps {end}")
        with h5py.File(init, "r") as a, h5py.File(os.path.join(run_dir, "distill", "model.h5"), "r") as b:
            changed = {k: not np.array_equal(a["params"][k][()], b["params"][k][()]) for k in a["params"]}
        decoder = [k for k in changed if k.startswith("decoder.")]
        audio = [k for k in changed if k.startswith(("encoder.", "projector."))]
        expect(decoder and audio and any(changed[k] for k in audio), f"{name}: the audio path learns")
        expect(any(changed[k] for k in decoder) == (name != "audio-only"),
               f"{name}: the decoder learns iff cord.trainable names it: {[k for k in decoder if changed[k]]}")


def case_distill_bad_input():
    scratch = os.path.join(ARGS.work_dir, "distill-bad")
    proc, _ = distill(scratch, "--set", "train.init=")
    expect(proc.returncode == 2 and f"train.init {scratch}/align/model.h5 does not exist" in proc.stderr,
           "a distill stage without a base model", proc)
    proc, _ = distill(scratch, "--set", "cord.method=ppo")
    expect(proc.returncode == 2 and "cord.method='ppo' is not one of" in proc.stderr, "unknown method", proc)
    proc, _ = distill(scratch, "--set", "cord.trainable=encoder,lm")
    expect(proc.returncode == 2 and "cord.trainable: 'lm'" in proc.stderr, "unknown parameter group", proc)
    proc, _ = distill(scratch, "--set", "cord.decoder_lr_scale=0")
    expect(proc.returncode == 2 and "cord.decoder_lr_scale=0" in proc.stderr and "cord.trainable" in proc.stderr,
           "a zero decoder learning-rate scale", proc)
    proc, _ = distill(scratch, "--set", "cord.judge=llm")
    expect(proc.returncode == 2 and "cord.judge='llm'" in proc.stderr, "unknown judge", proc)
    proc, _ = distill(scratch, "--set", "cord.method=sft", "--set", "cord.token_rollouts=group")
    expect(proc.returncode == 2 and "cord.token_rollouts=group needs" in proc.stderr and "cord.method=sft" in proc.stderr,
           "the group's rollouts for a method without them", proc)
    proc, _ = distill(scratch, "--set", "cord.method=grpo", "--set", "cord.fkl_mixture=0.2")
    expect(proc.returncode == 2 and "cord.fkl_mixture mixes into a reverse-KL token loss" in proc.stderr,
           "a forward-KL mixture without a reverse-KL token loss", proc)
    proc, _ = distill(scratch, "--set", "cord.top_k_fraction=1.5")
    expect(proc.returncode == 2 and "cord.top_k_fraction" in proc.stderr, "a fraction above 1", proc)
    proc, _ = distill(scratch, "--set", "cord.loss_chunk_rows=2", "--set", "cord.ppo_inner_steps=2")
    expect(proc.returncode == 2 and "cord.loss_chunk_rows=2 needs a loss linear in the log-probabilities" in proc.stderr,
           "chunked losses with PPO's clipped ratio", proc)


# --- one training loop for every stage: the same numbers as the loops it replaced ----------
# tests/cli/stage_loop_golden.json holds every step's loss and gradient norm of a short text,
# align and distill run (each method) on the tiny pipeline's corpus, recorded with the two
# separate loops (trainer.cpp, distiller.cpp) that StageLoop replaced. Recorded with
# `test_cli.py ... --record stage_loop_golden`; the file names the machine it was recorded on.

GOLDEN_TEXT_STEPS, GOLDEN_ALIGN_STEPS, GOLDEN_DISTILL_STEPS = 12, 12, 3


def golden_path():
    return os.path.join(ARGS.source_dir, "tests", "cli", "stage_loop_golden.json")


def cpu_signature():
    """The CPU model and vector extensions: float kernels (and so the last bits of a loss)
    may differ between CPUs with other extensions."""
    model, flags = "unknown", []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown":
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags") and not flags:
                    flags = sorted(x for x in line.split(":", 1)[1].split() if x.startswith(("avx", "fma", "amx")))
    except OSError:
        pass
    return {"cpu": model, "vector_flags": flags}


def golden_trace(run_dir, stage):
    """[(step, loss of that step, grad norm)] of every step record (train.log_every = 1)."""
    records = metrics(os.path.join(run_dir, stage, "metrics.jsonl"))
    trace = []
    for r in records:
        if r["type"] == "step":
            trace.append([r["step"], r.get("step_loss", r["loss"]), r["grad_norm"]])
    return trace


def golden_runs():
    """Runs every stage of the golden set on 2 ranks (dp = 2); returns {run name: trace}."""
    base = os.path.join(ARGS.work_dir, "golden")
    subprocess.run(["rm", "-rf", base], check=True)
    traces = {}
    text_dir, align_dir = base + "-text", base + "-align"
    proc = cord("train", *stage_sets(text_dir, "text", GOLDEN_TEXT_STEPS), ranks=2)
    expect(proc.returncode == 0, "golden: text stage", proc)
    traces["text"] = golden_trace(text_dir, "text")
    proc = cord("train", *stage_sets(align_dir, "align", GOLDEN_ALIGN_STEPS),
                "--set", f"train.init={text_dir}/text/model.h5", ranks=2)
    expect(proc.returncode == 0, "golden: align stage", proc)
    traces["align"] = golden_trace(align_dir, "align")
    for method in DISTILL_METHODS:
        run_dir = f"{base}-distill-{method}"
        proc = cord("train", *stage_sets(run_dir, "distill", GOLDEN_DISTILL_STEPS),
                    "--set", f"train.init={align_dir}/align/model.h5", "--set", f"cord.method={method}", ranks=2)
        expect(proc.returncode == 0, f"golden: distill {method}", proc)
        traces["distill-" + method] = golden_trace(run_dir, "distill")
    return traces


def case_stage_loop_golden():
    """Every stage's per-step loss and gradient norm equal the recorded ones bit for bit (on
    a CPU like the recording one; elsewhere within 1e-4 relative, and the test says so)."""
    traces = golden_runs()
    if ARGS.record:
        with open(golden_path(), "w") as f:
            json.dump({"machine": cpu_signature(), "runs": traces}, f, indent=1)
            f.write("\n")
        print(f"recorded {golden_path()}")
        return
    golden = json.load(open(golden_path()))
    exact = golden["machine"] == cpu_signature()
    runs = golden["runs"]
    if not exact:
        # Other float kernels: the last bits differ, and a sampled rollout token can flip, after
        # which a distill run takes another path. Compare the deterministic stages loosely.
        print(f"note: recorded on {golden['machine']}, running on {cpu_signature()}: "
              "comparing the text and align stages within 1e-4, not the sampled distill runs")
        runs = {name: trace for name, trace in runs.items() if not name.startswith("distill")}
    expect(set(runs) <= set(traces), f"runs {sorted(traces)} vs {sorted(runs)}")
    for name, expected in runs.items():
        got = traces[name]
        expect([r[0] for r in got] == [r[0] for r in expected], f"{name}: steps {got} vs {expected}")
        for (step, loss, grad), (_, want_loss, want_grad) in zip(got, expected):
            for what, value, want in (("loss", loss, want_loss), ("grad norm", grad, want_grad)):
                same = value == want if exact else math.isclose(value, want, rel_tol=1e-4, abs_tol=1e-7)
                expect(same, f"{name} step {step}: {what} {value!r}, recorded {want!r}")


# --- checkpoint-restart: resume, faults, signals, resharding, damaged files, full disk -------

def stage_sets(run_dir, stage, steps):
    """Flags of a short `stage` run from the tiny pipeline's corpus (and base weights) into run_dir."""
    sets = [*fixture_sets(), "--set", f"train.run_dir={run_dir}", "--set", f"train.stage={stage}",
            "--set", "train.log_every=1", "--set", "train.val_items=0", "--set", f"train.{stage}.steps={steps}"]
    if stage == "align":
        sets += ["--set", f"train.init={os.path.join(pipeline_dir(), 'text', 'model.h5')}"]
    if stage == "distill":
        sets += ["--set", f"train.init={os.path.join(pipeline_dir(), 'align', 'model.h5')}",
                 "--set", "train.distill.global_batch=4", "--set", "train.distill.warmup_steps=1",
                 "--set", "cord.group_size=2", "--set", "cord.max_new_tokens=24"]
    return sets


def step_losses(run_dir, stage):
    """{step: loss} of every step record in metrics.jsonl (every attempt; a step recorded twice
    must have the same loss) and the records."""
    records = metrics(os.path.join(run_dir, stage, "metrics.jsonl"))
    losses = {}
    key = "loss" if stage == "distill" else "step_loss"
    for r in records:
        if r["type"] != "step":
            continue
        expect(r["step"] not in losses or losses[r["step"]] == r[key],
               f"{run_dir}: step {r['step']} recorded twice with different losses ({losses.get(r['step'])}, {r[key]})")
        losses[r["step"]] = r[key]
    return losses, records


def checkpoint_dir(run_dir, stage):
    return os.path.join(run_dir, stage, "checkpoints")


def set_marker(run_dir, stage, step):
    """Simulates an interruption after `step`: the marker names it, newer files are gone."""
    folder = checkpoint_dir(run_dir, stage)
    for name in os.listdir(folder):
        if name.startswith("step-") and int(name[5:13]) > step:
            os.remove(os.path.join(folder, name))
    with open(os.path.join(folder, "latest"), "w") as f:
        f.write(f"step-{step:08d}.h5\n")


def case_ckpt_resume_stages():
    """Interrupted after step 3 and resumed: steps 4..6 have bitwise the losses of the
    uninterrupted run, for the text, align and distill stages."""
    for stage in ("text", "align", "distill"):
        reference = os.path.join(ARGS.work_dir, f"ckpt-{stage}-a")
        resumed = os.path.join(ARGS.work_dir, f"ckpt-{stage}-b")
        subprocess.run(["rm", "-rf", reference, resumed], check=True)
        sets = ["--set", "ckpt.every_steps=1", "--set", "ckpt.keep_last=10"]
        proc = cord("train", *stage_sets(reference, stage, 6), *sets)
        expect(proc.returncode == 0, f"{stage}: uninterrupted run", proc)
        expected, records = step_losses(reference, stage)
        expect(sorted(expected) == list(range(1, 7)), f"{stage}: six step records: {expected}")
        saved = [r for r in records if r["type"] == "checkpoint"]
        expect([r["step"] for r in saved] == list(range(1, 7)), f"{stage}: a checkpoint record per step: {saved}")
        expect(saved[-1]["reason"] == "end of stage" and saved[0]["bytes"] > 0, f"{stage}: {saved[-1]}")
        expect("checkpoint @ step 6 (end of stage)" in proc.stderr, f"{stage}: checkpoints logged", proc)

        subprocess.run(["cp", "-r", reference, resumed], check=True)
        set_marker(resumed, stage, 3)
        proc = cord("train", *stage_sets(resumed, stage, 6), *sets, "--resume", "auto")
        expect(proc.returncode == 0, f"{stage}: resumed run", proc)
        expect("resume: " in proc.stderr and "step-00000003.h5 (step 3" in proc.stderr, f"{stage}: resume logged", proc)
        losses, records = step_losses(resumed, stage)
        headers = [r for r in records if r["type"] == "header"]
        expect(len(headers) == 2 and headers[1]["resumed_step"] == 3, f"{stage}: a second header: {headers}")
        for step in range(1, 7):
            expect(losses[step] == expected[step],
                   f"{stage}: step {step} loss {losses[step]!r} after resume, {expected[step]!r} uninterrupted")
        expect(records[-1]["type"] == "end", f"{stage}: the resumed stage ends")


def run_killed(cmd, delay, env=None):
    """Starts cmd in its own process group and kills the whole group with SIGKILL after
    `delay` seconds; returns the exit code (None when it had finished before)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=env)
    try:
        _, err = proc.communicate(timeout=delay)
        return proc.returncode, err
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, ""


def committed_step(run_dir):
    marker = os.path.join(checkpoint_dir(run_dir, "text"), "latest")
    return int(open(marker).read().strip()[5:13]) if os.path.exists(marker) else 0


def last_recorded_step(run_dir):
    """The newest step record of the latest attempt (records after its header), 0 if none."""
    path = os.path.join(run_dir, "text", "metrics.jsonl")
    if not os.path.exists(path):
        return 0
    last = 0
    with open(path) as f:
        for line in f:
            try:
                r = json.loads(line)
            except json.JSONDecodeError:  # a line being written
                continue
            if r["type"] == "header":
                last = 0
            elif r["type"] == "step":
                last = r["step"]
    return last


def run_killed_at_step(cmd, target_step, run_dir, extra_s, timeout=180):
    """Starts cmd in its own process group and kills the group with SIGKILL `extra_s` seconds
    after the run has recorded step `target_step` (0: after `extra_s` seconds, whatever it
    is doing). Progress, not a clock, decides, so a loaded machine moves the kill with the
    run. Returns the exit code (None when killed) and stderr."""
    log = tempfile.TemporaryFile(mode="w+")  # not a pipe: a full pipe would stall the job
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True, start_new_session=True)
    started = time.monotonic()
    reached = started if target_step == 0 else None
    while proc.poll() is None and time.monotonic() - started < timeout:
        if reached is None and last_recorded_step(run_dir) >= target_step:
            reached = time.monotonic()
        if reached is not None and time.monotonic() - reached >= extra_s:
            break
        time.sleep(0.005)
    code = proc.poll()
    if code is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.seek(0)
    return code, log.read()


def kill_and_resume(name, kills, ranks=None, steps=60, sets=()):
    """Kills a checkpointing text run (a checkpoint every step) with SIGKILL at `kills`
    random moments and once inside each window of a save, resumes with --resume auto each
    time, and checks that every step's loss equals the uninterrupted run's. The moments are
    chosen by the run's progress (a random step ahead, plus a random fraction of a step), so
    the test holds on a loaded machine, where every step takes longer."""
    reference = os.path.join(ARGS.work_dir, f"{name}-reference")
    victim = os.path.join(ARGS.work_dir, f"{name}-killed")
    subprocess.run(["rm", "-rf", reference, victim], check=True)
    sets = ["--set", "ckpt.every_steps=1", *sets]
    launcher = [ARGS.mpiexec, "-n", str(ranks)] if ranks else []
    started = time.monotonic()
    proc = run([*launcher, ARGS.cord, "train", *stage_sets(reference, "text", steps), *sets], timeout=300)
    expect(proc.returncode == 0, "uninterrupted run", proc)
    duration = time.monotonic() - started
    expected, _ = step_losses(reference, "text")
    cmd = [*launcher, ARGS.cord, "train", *stage_sets(victim, "text", steps), *sets, "--resume", "auto"]
    # Deterministic windows first: killed after the temporary file is written, and after the
    # rename but before the marker; then random moments, during start-up, steps and saves.
    for phase in ("written", "renamed"):
        code, err = run_killed(cmd, 120, env=dict(os.environ, CORD_TEST_CRASH_DURING_SAVE=phase))
        expect(code != 0, f"the crash hook ({phase}) kills the run: {code} {err[-2000:]}")
    rng = random.Random(int(os.environ.get("CORD_KILL_SEED", "12345")))
    trail = []
    for kill in range(kills):
        # The first kill lands during start-up (a random time before the first step); the
        # others a random number of steps ahead (at most 1.5 / kills of the run, so that
        # steps remain for the last one) and a random part of a step (0-30 ms) after it.
        done = committed_step(victim)
        if kill == 0:
            target, extra = 0, rng.uniform(0.3, 1.5)
        else:
            ahead = max(1, int(1.5 * steps / kills))
            target, extra = min(steps - 2, done + rng.randint(1, ahead)), rng.uniform(0, 0.03)
        code, err = run_killed_at_step(cmd, target, victim, extra)
        expect(code is None, f"kill {kill} (step {target} + {extra:.3f} s) came after the run had ended "
                             f"(exit {code}; committed steps so far: {trail})\n{err[-2000:]}")
        # Every kill leaves a resumable folder: the marker names a file that verifies.
        step = committed_step(victim)
        trail.append(step)
        if step > 0:
            check = cord("ckpt", "inspect", os.path.join(checkpoint_dir(victim, "text"), f"step-{step:08d}.h5"))
            expect(check.returncode == 0, f"kill {kill} at step {target}: the committed checkpoint verifies", check)
    proc = run(cmd, timeout=240)
    expect(proc.returncode == 0, "the final resume completes", proc)
    losses, records = step_losses(victim, "text")
    expect(sorted(losses) == list(range(1, steps + 1)), f"every step recorded: {sorted(losses)}")
    for step in range(1, steps + 1):
        expect(losses[step] == expected[step], f"step {step}: {losses[step]!r} vs {expected[step]!r} uninterrupted")
    expect(records[-1]["type"] == "end", "the stage ended")
    expect(os.path.exists(os.path.join(victim, "text", "model.h5")), "the weights were written")
    print(f"{kills} kills (committed step after each: {trail}) + 2 save-window crashes; the uninterrupted run took "
          f"{duration:.1f} s; every step's loss matches bitwise")


def case_ckpt_kill_np1():
    kill_and_resume("ckpt-kill", 5, steps=120)


def case_ckpt_kill_np2():
    kill_and_resume("ckpt-kill-np2", 5, ranks=2, steps=120)


def case_ckpt_soak():
    kill_and_resume("ckpt-soak", 20, ranks=2, steps=400)


def case_ckpt_async_kill_np2():
    """kill -9 at random moments of a run that checkpoints every step asynchronously (so
    most kills land while the writer thread writes): the committed checkpoint verifies
    after every kill and the resumed run's losses equal the uninterrupted run's."""
    kill_and_resume("ckpt-async-kill", 6, ranks=2, steps=120, sets=["--set", "ckpt.async=true"])


def tensor_checksums(path):
    """{dataset: checksum} of a checkpoint that verifies, but for /rng: the generators'
    states differ between any two runs (their seeds), and the text stage draws nothing."""
    proc = cord("ckpt", "inspect", path, "--json")
    expect(proc.returncode == 0, f"{path} verifies", proc)
    return {t["key"]: t["checksum"] for t in json.loads(proc.stdout)["tensors"] if not t["key"].startswith("rng/")}


def saved_records(run_dir, stage="text"):
    return [r for r in metrics(os.path.join(run_dir, stage, "metrics.jsonl")) if r["type"] == "checkpoint"]


def case_ckpt_async_np2():
    """ckpt.async on 2 ranks: every checkpoint holds the same tensors as the synchronous
    run's at that step, the run's losses are the same, a resume from an asynchronous
    checkpoint is bit-exact; with async_busy = skip a slow file system skips saves (logged)
    but never the last; SIGUSR1 exits 75 only after the stop's checkpoint is committed."""
    steps = 8
    sync_dir, async_dir, resumed = (os.path.join(ARGS.work_dir, f"ckpt-async-{n}") for n in ("sync", "async", "resumed"))
    subprocess.run(["rm", "-rf", sync_dir, async_dir, resumed], check=True)
    every = ["--set", "ckpt.every_steps=1", "--set", "ckpt.keep_last=10"]
    proc = cord("train", *stage_sets(sync_dir, "text", steps), *every, ranks=2)
    expect(proc.returncode == 0, "synchronous run", proc)
    proc = cord("train", *stage_sets(async_dir, "text", steps), *every, "--set", "ckpt.async=true", ranks=2)
    expect(proc.returncode == 0, "asynchronous run", proc)
    expect("asynchronous checkpoints: " in proc.stderr and "MB of host memory" in proc.stderr,
           "the host memory is logged", proc)
    expected, _ = step_losses(sync_dir, "text")
    losses, _ = step_losses(async_dir, "text")
    expect(losses == expected, f"the same losses with async saves:\n{losses}\n{expected}")
    records = saved_records(async_dir)
    expect([r["step"] for r in records] == list(range(1, steps + 1)), f"a checkpoint per step: {records}")
    expect(all(r["async"] and r["host_bytes"] > 0 and 0 <= r["stall_seconds"] < r["seconds"] + 1 for r in records),
           f"async records: {records}")
    for step in range(1, steps + 1):
        name = f"step-{step:08d}.h5"
        a = tensor_checksums(os.path.join(checkpoint_dir(sync_dir, "text"), name))
        b = tensor_checksums(os.path.join(checkpoint_dir(async_dir, "text"), name))
        expect(a == b, f"step {step}: the async checkpoint's tensors equal the synchronous one's")
    subprocess.run(["cp", "-r", async_dir, resumed], check=True)
    set_marker(resumed, "text", 4)
    proc = cord("train", *stage_sets(resumed, "text", steps), *every, "--set", "ckpt.async=true", "--resume", "auto",
                ranks=2)
    expect(proc.returncode == 0 and "step-00000004.h5 (step 4" in proc.stderr, "resumed from step 4", proc)
    losses, _ = step_losses(resumed, "text")
    expect(losses == expected, f"bit-exact after resuming an async checkpoint:\n{losses}\n{expected}")

    # A slow file system and a save due every step: skip, logged, and the last one waits.
    skipping = os.path.join(ARGS.work_dir, "ckpt-async-skip")
    subprocess.run(["rm", "-rf", skipping], check=True)
    slow = dict(os.environ, CORD_TEST_SLOW_H5_MS="30")
    proc = run([ARGS.mpiexec, "-n", "2", ARGS.cord, "train", *stage_sets(skipping, "text", 20), *every,
                "--set", "ckpt.async=true", "--set", "ckpt.async_busy=skip"], timeout=300, env=slow)
    expect(proc.returncode == 0, "skip run", proc)
    records = metrics(os.path.join(skipping, "text", "metrics.jsonl"))
    skipped = [r for r in records if r["type"] == "checkpoint_skipped"]
    saved = [r["step"] for r in records if r["type"] == "checkpoint"]
    expect(skipped and "is still being written (ckpt.async_busy = skip)" in proc.stderr, f"saves skipped: {saved}", proc)
    expect(saved[-1] == 20 and not set(saved) & {r["step"] for r in skipped}, f"the last save is made: {saved}")
    latest = open(os.path.join(checkpoint_dir(skipping, "text"), "latest")).read().strip()
    expect(latest == "step-00000020.h5", f"the marker names the end of the stage: {latest}")

    # SIGUSR1 while saves are in flight: exit 75 after the stop's checkpoint is committed.
    stopping = os.path.join(ARGS.work_dir, "ckpt-async-stop")
    subprocess.run(["rm", "-rf", stopping], check=True)
    cmd = [ARGS.mpiexec, "-n", "2", ARGS.cord, "train", *stage_sets(stopping, "text", 400), *every,
           "--set", "ckpt.async=true"]
    log = tempfile.TemporaryFile(mode="w+")
    job = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True, env=slow)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and last_recorded_step(stopping) < 3:
        time.sleep(0.02)
    job.send_signal(signal.SIGUSR1)
    job.wait(timeout=120)
    log.seek(0)
    err = log.read()
    expect(job.returncode == 75, f"exit 75 after SIGUSR1 (got {job.returncode})\n{err[-3000:]}")
    stop = [r for r in metrics(os.path.join(stopping, "text", "metrics.jsonl")) if r["type"] == "stop"]
    latest = open(os.path.join(checkpoint_dir(stopping, "text"), "latest")).read().strip()
    expect(len(stop) == 1 and latest == f"step-{stop[0]['step']:08d}.h5",
           f"the marker names the stop's checkpoint: {latest}, {stop}")
    tensor_checksums(os.path.join(checkpoint_dir(stopping, "text"), latest))


def case_ckpt_async_disk():
    """The disk fills while the writer thread writes (another process takes the space): the
    job ends with the reason, the previous checkpoint committed and intact, no partial file.
    Exit 77 (skipped) where tmpfs cannot be mounted."""
    full = os.path.join(ARGS.work_dir, "ckpt-async-full-fs")
    run_dir = os.path.join(ARGS.work_dir, "ckpt-async-disk")
    subprocess.run(["rm", "-rf", run_dir], check=True)
    subprocess.run(["umount", full], capture_output=True)
    if not mount_tmpfs(full, "size=16m"):
        print("SKIPPED: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)")
        sys.exit(77)
    try:
        # One rank: its writer goes through HDF5's POSIX driver, which reports the errno.
        cmd = [ARGS.cord, "train", *stage_sets(run_dir, "text", 400),
               "--set", f"ckpt.dir={full}", "--set", "ckpt.every_steps=5", "--set", "ckpt.keep_last=1",
               "--set", "ckpt.async=true"]
        log = tempfile.TemporaryFile(mode="w+")
        job = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True,
                               env=dict(os.environ, CORD_TEST_SLOW_H5_MS="20"))
        filler = os.path.join(full, "filler")
        deadline = time.monotonic() + 180
        # Wait for a committed checkpoint, then for the next save's temporary file, then fill the disk.
        while time.monotonic() < deadline and job.poll() is None and not os.path.exists(os.path.join(full, "latest")):
            time.sleep(0.01)
        committed = open(os.path.join(full, "latest")).read().strip()
        while time.monotonic() < deadline and job.poll() is None and not any(
                ".partial-" in n for n in os.listdir(full)):
            time.sleep(0.002)
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)  # until ENOSPC
        job.wait(timeout=180)
        log.seek(0)
        err = log.read()
        expect(job.returncode == 1 and "cannot save checkpoint" in err and "No space left on device" in err,
               f"the full disk ends the job with the reason (exit {job.returncode}):\n{err[-3000:]}")
        latest = open(os.path.join(full, "latest")).read().strip()
        os.remove(filler)
        expect(int(latest[5:13]) >= int(committed[5:13]), f"the marker still names a committed checkpoint: {latest}")
        check = cord("ckpt", "inspect", os.path.join(full, latest))
        expect(check.returncode == 0, "the previous checkpoint is intact", check)
        expect(not [n for n in os.listdir(full) if ".partial-" in n], f"no partial file left: {os.listdir(full)}")
        reason = next(line for line in err.splitlines() if "No space left on device" in line)
        print(f"disk filled during the async save after {committed}; {latest} intact; the job ended with:\n{reason}")
    finally:
        subprocess.run(["umount", full], capture_output=True)


def case_ckpt_signal_np2():
    """SIGUSR1 to mpiexec mid-run: checkpoint, exit 75, and the resumed run matches; the
    wall-time limit does the same."""
    reference = os.path.join(ARGS.work_dir, "ckpt-signal-reference")
    victim = os.path.join(ARGS.work_dir, "ckpt-signal")
    subprocess.run(["rm", "-rf", reference, victim], check=True)
    steps = 40
    proc = cord("train", *stage_sets(reference, "text", steps), ranks=2)
    expect(proc.returncode == 0, "uninterrupted run", proc)
    expected, _ = step_losses(reference, "text")
    cmd = [ARGS.mpiexec, "-n", "2", ARGS.cord, "train", *stage_sets(victim, "text", steps), "--resume", "auto"]
    log = tempfile.TemporaryFile(mode="w+")  # not a pipe: nobody reads it while the job runs
    job = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True)
    path = os.path.join(victim, "text", "metrics.jsonl")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if os.path.exists(path) and any(r["type"] == "step" for r in metrics(path)):
            break
        time.sleep(0.05)
    job.send_signal(signal.SIGUSR1)
    job.wait(timeout=120)
    log.seek(0)
    err = log.read()
    expect(job.returncode == 75, f"exit 75 after SIGUSR1 (got {job.returncode})\n{err[-3000:]}")
    expect("stopping after step" in err and "SIGUSR1" in err, f"the stop is logged:\n{err[-3000:]}")
    records = metrics(path)
    stop = [r for r in records if r["type"] == "stop"]
    expect(len(stop) == 1 and stop[0]["step"] < steps, f"a stop record before the end: {stop}")
    expect(not os.path.exists(os.path.join(victim, "text", "model.h5")), "no weights for an unfinished stage")
    proc = run(cmd, timeout=120)
    expect(proc.returncode == 0 and f"step-{stop[0]['step']:08d}.h5" in proc.stderr, "resumed to the end", proc)
    losses, _ = step_losses(victim, "text")
    for step in range(1, steps + 1):
        expect(losses[step] == expected[step], f"step {step}: {losses[step]!r} vs {expected[step]!r}")

    # --max-wall-minutes: the run stops itself in time, with a checkpoint, and resumes.
    walled = os.path.join(ARGS.work_dir, "ckpt-wall")
    subprocess.run(["rm", "-rf", walled], check=True)
    long_run = stage_sets(walled, "text", 100000)
    proc = cord("train", *long_run, "--max-wall-minutes", "0.15", ranks=2)
    expect(proc.returncode == 75 and "wall-time limit" in proc.stderr, "the wall-time limit stops the run", proc)
    expect(proc.elapsed < 0.15 * 60 + 5, f"before the limit (took {proc.elapsed:.1f} s)", proc)
    stopped = [r for r in metrics(os.path.join(walled, "text", "metrics.jsonl")) if r["type"] == "stop"][0]["step"]
    proc = cord("train", *long_run, "--resume", "auto", "--max-wall-minutes", "0.1", ranks=2)
    expect(proc.returncode == 75 and f"(step {stopped}," in proc.stderr, "the next attempt resumes", proc)


def stopped_rank_run(name, ranks, stop_at, *sets, timeout_s=6):
    """A 40-step text stage (a checkpoint every 2 steps) in which CORD_TEST_STOP_AT=POINT:STEP:RANK
    makes one rank SIGSTOP itself when step STEP starts or inside the checkpoint of step STEP.
    Returns the exit code, stderr, the seconds from the step record just before the stop
    (STEP - 1, or STEP for a save) to the job's end, and the run folder."""
    run_dir = os.path.join(ARGS.work_dir, name)
    subprocess.run(["rm", "-rf", run_dir], check=True)
    point, step, _ = stop_at.split(":")
    step = int(step) - (1 if point == "step" else 0)
    watch = ["--set", f"runtime.hang_timeout_s={timeout_s}", "--set", "ckpt.every_steps=2", *sets]
    cmd = [ARGS.mpiexec, "-n", str(ranks), ARGS.cord, "train", *stage_sets(run_dir, "text", 40), *watch]
    log = tempfile.TemporaryFile(mode="w+")  # not a pipe: nobody reads it while the job runs
    job = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True, start_new_session=True,
                           env=dict(os.environ, CORD_TEST_STOP_AT=stop_at))
    path = os.path.join(run_dir, "text", "metrics.jsonl")
    stopped_at = None
    deadline = time.monotonic() + 180
    while job.poll() is None and time.monotonic() < deadline:
        if stopped_at is None and os.path.exists(path) and any(
                r["type"] == "step" and r["step"] == step for r in metrics(path)):
            stopped_at = time.monotonic()
        time.sleep(0.05)
    hung = job.poll() is None
    if hung:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    log.seek(0)
    err = log.read()
    expect(not hung, f"{name}: the job still ran 180 s after it started:\n{err[-3000:]}")
    expect(stopped_at is not None, f"{name}: step {step} was never recorded:\n{err[-3000:]}")
    return job.returncode, err, time.monotonic() - stopped_at, run_dir


def expect_hang_reported(name, code, err, after_s, stopped_rank, waiting, timeout_s=6):
    """Exit 3 within the timeout + 30 s, one message naming the stopped rank, and the
    waiting ranks' step and collective."""
    expect(code == 3, f"{name}: exit code 3 (got {code}):\n{err[-3000:]}")
    expect(after_s <= timeout_s + 30, f"{name}: ended {after_s:.1f} s after the stop (limit {timeout_s + 30} s)")
    expect(err.count("hang watchdog: no rank has made progress") == 1, f"{name}: one message:\n{err[-3000:]}")
    expect(f"rank {stopped_rank} stopped responding" in err, f"{name}: names rank {stopped_rank}:\n{err[-3000:]}")
    for line in waiting:
        expect(line in err, f"{name}: reports '{line}':\n{err[-3000:]}")
    print(f"{name}: exit 3 {after_s:.1f} s after the stop (runtime.hang_timeout_s = {timeout_s})")


def expect_resumes(name, run_dir, ranks, committed, *sets):
    """The last committed checkpoint is step `committed`, verifies, and the stage resumes from it
    to the end (steps recorded twice have bitwise the same loss: step_losses checks)."""
    expect(committed_step(run_dir) == committed, f"{name}: committed step {committed_step(run_dir)}, "
                                                 f"expected {committed}")
    path = os.path.join(checkpoint_dir(run_dir, "text"), f"step-{committed:08d}.h5")
    check = cord("ckpt", "inspect", path)
    expect(check.returncode == 0, f"{name}: the committed checkpoint verifies", check)
    proc = run([ARGS.mpiexec, "-n", str(ranks), ARGS.cord, "train", *stage_sets(run_dir, "text", 40),
                "--set", "ckpt.every_steps=2", *sets, "--resume", "auto"], timeout=240)
    expect(proc.returncode == 0 and f"step-{committed:08d}.h5 (step {committed}" in proc.stderr,
           f"{name}: resumes from step {committed} to the end", proc)
    losses, _ = step_losses(run_dir, "text")
    expect(sorted(losses) == list(range(1, 41)), f"{name}: every step recorded: {sorted(losses)}")


def case_hang_watchdog_np2():
    """SIGSTOP of rank 1 of 2 mid-step and inside a checkpoint save: exit 3 naming rank 1,
    and the last committed checkpoint verifies and resumes."""
    code, err, after, run_dir = stopped_rank_run("hang-step-np2", 2, "step:10:1")
    expect_hang_reported("mid-step", code, err, after, 1, ["rank 0 (", "step 10, in all_reduce"])
    expect_resumes("mid-step", run_dir, 2, 8)
    code, err, after, run_dir = stopped_rank_run("hang-save-np2", 2, "save:6:1")
    expect_hang_reported("in a save", code, err, after, 1, ["rank 0 (", "step 6, in checkpoint save"])
    expect_resumes("in a save", run_dir, 2, 4)


def case_hang_watchdog_np4():
    """tp 2 x dp 2: SIGSTOP of rank 2 of 4 mid-step, and of rank 3 inside a save."""
    tp = ["--set", "parallel.tp=2"]
    code, err, after, run_dir = stopped_rank_run("hang-step-np4", 4, "step:8:2", *tp)
    expect_hang_reported("np4 mid-step", code, err, after, 2, ["rank 0 (", "rank 1 (", "rank 3 (", "step 8, in"])
    expect_resumes("np4 mid-step", run_dir, 4, 6, *tp)
    code, err, after, run_dir = stopped_rank_run("hang-save-np4", 4, "save:4:3", *tp)
    expect_hang_reported("np4 in a save", code, err, after, 3, ["rank 0 (", "rank 1 (", "rank 2 ("])
    expect_resumes("np4 in a save", run_dir, 4, 2, *tp)


def case_hang_watchdog_slow_np2():
    """No false alarm: with every HDF5 transfer slowed (CORD_TEST_SLOW_H5_MS), checkpoint saves
    and validations take longer than runtime.hang_timeout_s, but they keep making progress."""
    run_dir = os.path.join(ARGS.work_dir, "hang-slow-np2")
    subprocess.run(["rm", "-rf", run_dir], check=True)
    timeout_s = 2
    sets = [*stage_sets(run_dir, "text", 4), "--set", f"runtime.hang_timeout_s={timeout_s}",
            "--set", "ckpt.every_steps=4", "--set", "train.val_items=64", "--set", "train.val_every=2"]
    cmd = [ARGS.mpiexec, "-n", "2", ARGS.cord, "train", *sets]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                          env=dict(os.environ, CORD_TEST_SLOW_H5_MS="250"))
    expect(proc.returncode == 0 and "hang watchdog" not in proc.stderr, "the slow run completes", proc)
    records = metrics(os.path.join(run_dir, "text", "metrics.jsonl"))
    saves = [r["seconds"] for r in records if r["type"] == "checkpoint"]
    validations = [r["seconds"] for r in records if r["type"] == "validation"]
    expect(saves and max(saves) > timeout_s, f"a save took longer than the timeout: {saves}")
    expect(validations and max(validations) > timeout_s, f"a validation took longer than the timeout: {validations}")
    print(f"saves {saves} s, validations {validations} s, hang_timeout_s {timeout_s}: no alarm")


def case_ckpt_reshard_np2():
    """A checkpoint written with tp = 2 continues under dp = 2 (with ZeRO-1) and back; the
    losses stay within 1e-4 of the original run's. Also with a vocabulary of 231 rows, which
    tp = 2 pads to 232 (the checkpoint holds the 231 real ones)."""
    for vocab in (None, 231):
        reshard_runs(vocab)


def reshard_runs(vocab):
    base = os.path.join(ARGS.work_dir, "ckpt-reshard" + (f"-vocab{vocab}" if vocab else ""))
    sets = ["--set", "ckpt.every_steps=3", "--set", "ckpt.keep_last=10"]
    if vocab:
        sets += ["--set", f"model.vocab_size={vocab}"]
    runs = {}
    for name, layout in (("tp2", ["--set", "parallel.tp=2"]), ("dp2", ["--set", "train.zero1=true"])):
        run_dir = f"{base}-{name}"
        subprocess.run(["rm", "-rf", run_dir], check=True)
        proc = cord("train", *stage_sets(run_dir, "text", 6), *sets, *layout, ranks=2)
        expect(proc.returncode == 0, f"{name}: run", proc)
        runs[name] = (run_dir, layout, step_losses(run_dir, "text")[0])
    for source, target in (("tp2", "dp2"), ("dp2", "tp2")):
        source_dir, _, source_losses = runs[source]
        _, layout, _ = runs[target]
        run_dir = f"{base}-{source}-to-{target}"
        subprocess.run(["rm", "-rf", run_dir], check=True)
        checkpoint = os.path.join(checkpoint_dir(source_dir, "text"), "step-00000003.h5")
        proc = cord("train", *stage_sets(run_dir, "text", 6), *sets, *layout, "--resume", checkpoint, ranks=2)
        expect(proc.returncode == 0, f"{source} -> {target}: resumed", proc)
        losses, _ = step_losses(run_dir, "text")
        expect(sorted(losses) == [4, 5, 6], f"{source} -> {target}: steps 4..6 run: {sorted(losses)}")
        for step in (4, 5, 6):
            a, b = source_losses[step], losses[step]
            expect(abs(a - b) <= 1e-4 * abs(a), f"{source} -> {target} (vocab {vocab}): step {step} loss {b} vs {a}")


def flip_bytes(path, offset, count=64):
    with open(path, "r+b") as f:
        f.seek(offset)
        data = bytearray(f.read(count))
        f.seek(offset)
        f.write(bytes(b ^ 0x5A for b in data))


def case_ckpt_bad_input():
    """`cord ckpt inspect`, and damaged, foreign or missing checkpoints named by resume."""
    import h5py
    run_dir = os.path.join(ARGS.work_dir, "ckpt-bad")
    subprocess.run(["rm", "-rf", run_dir], check=True)
    sets = ["--set", "ckpt.every_steps=2", "--set", "ckpt.keep_last=10"]
    proc = cord("train", *stage_sets(run_dir, "text", 6), *sets)
    expect(proc.returncode == 0, "a run with checkpoints", proc)
    folder = checkpoint_dir(run_dir, "text")
    step6, step4 = os.path.join(folder, "step-00000006.h5"), os.path.join(folder, "step-00000004.h5")

    proc = cord("ckpt", "inspect", step6, "--json")
    expect(proc.returncode == 0, "inspect a good checkpoint", proc)
    info = json.loads(proc.stdout)
    expect(info["verified"] and info["step"] == 6 and info["stage"] == "text", f"inspect: {info}")
    expect(info["layout"] == {"world": 1, "dp": 1, "tp": 1, "zero1": False}, f"layout: {info['layout']}")
    keys = {t["key"] for t in info["tensors"]}
    expect({"params/decoder.norm.weight", "optim/exp_avg/decoder.norm.weight", "loader", "rng/cpu"} <= keys,
           f"tensors: {sorted(keys)}")
    with h5py.File(step6, "r") as f:  # readable with h5py, as docs/checkpoints.md documents
        expect(f.attrs["step"] == 6 and f["params/decoder.norm.weight"].shape == (32,), "h5py reads it")
        offset = f["params/decoder.embedding.weight"].id.get_offset()
    proc = cord("ckpt", "inspect", step6)
    expect(proc.returncode == 0 and "every checksum verifies" in proc.stdout, "table output", proc)

    flip_bytes(step6, offset + 100)
    proc = cord("ckpt", "inspect", step6)
    expect(proc.returncode == 1 and "checksum mismatch in dataset /params/decoder.embedding.weight" in proc.stdout,
           "flipped bytes are found and named", proc)
    proc = cord("train", *stage_sets(run_dir, "text", 8), *sets, "--resume", step6)
    expect(proc.returncode == 2 and f"cannot resume from checkpoint {step6}: checksum mismatch" in proc.stderr,
           "a named damaged checkpoint is an error", proc)
    proc = cord("train", *stage_sets(run_dir, "text", 8), *sets, "--resume", "auto")
    expect(proc.returncode == 0 and f"passed over {step6}: checksum mismatch" in proc.stderr
           and "step-00000004.h5 (step 4" in proc.stderr, "resume auto uses the previous checkpoint", proc)

    os.truncate(step4, 1000)
    proc = cord("ckpt", "inspect", step4)
    expect(proc.returncode == 1 and "unreadable" in proc.stdout, "a truncated file", proc)
    proc = cord("train", *stage_sets(run_dir, "text", 8), *sets, "--resume", os.path.join(run_dir, "nothing.h5"))
    expect(proc.returncode == 2 and "nothing.h5: does not exist" in proc.stderr, "a missing checkpoint", proc)
    proc = cord("train", *stage_sets(run_dir, "text", 8), *sets,
                "--resume", os.path.join(pipeline_dir(), "text", "model.h5"))
    expect(proc.returncode == 2 and "not a cord checkpoint" in proc.stderr, "a weights file is not a checkpoint", proc)
    good = os.path.join(folder, "step-00000008.h5")
    proc = cord("train", *stage_sets(run_dir, "text", 8), *sets, "--set", "model.d_model=64", "--resume", good)
    expect(proc.returncode == 2 and "model.d_model: file 32, config 64" in proc.stderr, "another architecture", proc)
    proc = cord("train", *stage_sets(os.path.join(ARGS.work_dir, "ckpt-bad-align"), "align", 8), "--resume", good)
    expect(proc.returncode == 2 and "belongs to stage text" in proc.stderr, "another stage", proc)
    proc = cord("ckpt", "verify", good)
    expect(proc.returncode == 2 and "unknown action 'verify'" in proc.stderr, "unknown ckpt action", proc)


def mount_tmpfs(path, options):
    os.makedirs(path, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", path], capture_output=True).returncode == 0


def case_ckpt_disk():
    """A full file system and a read-only one: a clear error, the previous checkpoint intact.
    Exit 77 (skipped) where tmpfs cannot be mounted."""
    full = os.path.join(ARGS.work_dir, "ckpt-full-fs")
    readonly = os.path.join(ARGS.work_dir, "ckpt-ro-fs")
    run_dir = os.path.join(ARGS.work_dir, "ckpt-disk")
    subprocess.run(["rm", "-rf", run_dir], check=True)
    subprocess.run(["umount", full], capture_output=True)
    subprocess.run(["umount", readonly], capture_output=True)
    if not mount_tmpfs(full, "size=3m"):
        print("SKIPPED: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)")
        sys.exit(77)
    try:
        proc = cord("train", *stage_sets(run_dir, "text", 20), "--set", f"ckpt.dir={full}",
                    "--set", "ckpt.every_steps=1", "--set", "ckpt.keep_last=20")
        expect(proc.returncode == 1 and f"not enough space in {full}" in proc.stderr, "the full disk is named", proc)
        saved = [r["step"] for r in metrics(os.path.join(run_dir, "text", "metrics.jsonl")) if r["type"] == "checkpoint"]
        expect(saved, "some checkpoints fit before the disk filled")
        latest = open(os.path.join(full, "latest")).read().strip()
        expect(latest == f"step-{saved[-1]:08d}.h5", f"the marker names the last good checkpoint: {latest}")
        check = cord("ckpt", "inspect", os.path.join(full, latest))
        expect(check.returncode == 0, "the previous checkpoint is intact", check)
        expect(not [n for n in os.listdir(full) if ".partial-" in n], f"no partial file left: {os.listdir(full)}")

        expect(mount_tmpfs(readonly, "size=1m,ro"), "a read-only tmpfs")
        proc = cord("train", *stage_sets(run_dir, "text", 3), "--set", f"ckpt.dir={readonly}")
        expect(proc.returncode == 1 and f"cannot save checkpoint {readonly}/step-00000003.h5" in proc.stderr,
               "an unwritable folder is named", proc)
    finally:
        subprocess.run(["umount", full], capture_output=True)
        subprocess.run(["umount", readonly], capture_output=True)


def eval_report(out, *sets, ranks):
    proc = cord("eval", *fixture_sets(), "--ckpt", os.path.join(pipeline_dir(), "align", "model.h5"),
                "--out", out, *sets, ranks=ranks)
    expect(proc.returncode == 0, f"eval on {ranks} rank(s) {sets}", proc)
    report = json.load(open(os.path.join(out, "eval.json")))
    return report["families"], report["average"]


def case_eval_layouts_np2():
    """Items dealt to dp ranks and decoded under tp give the same scores as one rank."""
    base = os.path.join(ARGS.work_dir, "eval-layouts")
    reference = eval_report(base + "-1", ranks=1)
    for name, sets in (("dp=2", []), ("tp=2", ["--set", "parallel.tp=2"])):
        other = eval_report(base + "-" + name, *sets, ranks=2)
        expect(other == reference, f"{name} scores equal one rank's:\n{other}\n{reference}")


def text_kl(out, ckpt, *sets, ranks):
    """eval of CKPT with --reference (the tiny base) -> its text_kl_from_reference."""
    base = os.path.join(pipeline_dir(), "align", "model.h5")
    proc = cord("eval", *fixture_sets(), "--ckpt", ckpt, "--reference", base, "--out", out, *sets, ranks=ranks)
    expect(proc.returncode == 0, f"eval --reference of {ckpt} on {ranks} rank(s) {sets}", proc)
    expect("KL(reference || these weights)" in proc.stdout, "the KL table is printed", proc)
    return json.load(open(os.path.join(out, "eval.json")))["text_kl_from_reference"]


def case_distill_transfer():
    """The transfer protocol's two pieces: distilling on one family (train.families) and the
    text branch's KL from the base (eval --reference): 0 for the base itself, positive after
    training, the same on one rank and under tp = 2."""
    run_dir = os.path.join(ARGS.work_dir, "distill-transfer")
    subprocess.run(["rm", "-rf", run_dir], check=True)
    proc, records = distill(run_dir, "--set", "train.families=arithmetic", "--set", "cord.method=sft",
                            "--set", "train.val_items=0", "--set", "train.distill.lr=1e-2", steps=4)
    expect(proc.returncode == 0, "distill on arithmetic alone runs", proc)
    expect("training items only from families arithmetic" in proc.stderr, "the restriction is logged", proc)
    proc, _ = distill(run_dir + "-bad", "--set", "train.families=arithmetic,poetry")
    expect(proc.returncode == 2 and "train.families: unknown family 'poetry'" in proc.stderr,
           "an unknown family is named", proc)
    base = os.path.join(pipeline_dir(), "align", "model.h5")
    same = text_kl(os.path.join(run_dir, "kl-base"), base, ranks=1)
    expect(same["average"] == 0 and all(f["kl"] == 0 for f in same["families"].values()),
           f"the base against itself: KL 0 exactly: {same}")
    expect(sorted(same["families"]) == ["arithmetic", "multiple_choice", "ordering"] and
           all(f["tokens"] > 0 for f in same["families"].values()), f"every family's solutions counted: {same}")
    tuned = os.path.join(run_dir, "distill", "model.h5")
    one = text_kl(os.path.join(run_dir, "kl-1"), tuned, ranks=1)
    expect(one["average"] > 0 and all(f["kl"] > 0 for f in one["families"].values()), f"trained: KL > 0: {one}")
    for name, sets in (("dp2", []), ("tp2", ["--set", "parallel.tp=2"])):
        other = text_kl(os.path.join(run_dir, "kl-" + name), tuned, *sets, ranks=2)
        expect(abs(other["average"] - one["average"]) <= 1e-5 * one["average"] and
               all(other["families"][f]["tokens"] == one["families"][f]["tokens"] for f in one["families"]),
               f"{name}: the KL of one rank: {other} vs {one}")
    proc = cord("eval", *fixture_sets(), "--ckpt", tuned, "--reference", run_dir + "/none.h5",
                "--out", os.path.join(run_dir, "kl-missing"))
    expect(proc.returncode == 2 and f"cord eval --reference: {run_dir}/none.h5 does not exist" in proc.stderr,
           "a missing reference is named", proc)


def case_protocol_tiny():
    """bench/run_protocol.sh on the tiny base: split across two calls (CORD_MAX_CELLS), the
    second continues where the first stopped; every cell is evaluated against the base with
    the text branch's KL, and the summary counts every planned cell."""
    work = os.path.join(ARGS.work_dir, "protocol")
    subprocess.run(["rm", "-rf", work], check=True)
    env = dict(os.environ, CORD_PROTOCOL_CONFIG=tiny_job(), CORD_REGIMES="transfer in_domain", CORD_BUDGETS="2 4",
               CORD_LONG_REGIMES="transfer in_domain", CORD_LONG_SEEDS="1", CORD_SEEDS="1 2", CORD_METHODS="cord sft", CORD_SEEDED_METHODS="cord",
               CORD_RESULTS_DIR=os.path.join(work, "results"), CORD_BUILD_DIR=os.path.dirname(ARGS.cord),
               CORD_PYTHON=sys.executable)
    script = os.path.join(ARGS.source_dir, "bench", "run_protocol.sh")
    runs = os.path.join(work, "runs")
    first = run([script, pipeline_dir(), runs], timeout=240, env=dict(env, CORD_MAX_CELLS="2"))
    expect(first.returncode == 0 and "stopping after 2 cell(s)" in first.stderr, "the first call stops after 2 cells", first)
    done = [c for c in ("transfer-2/cord-s1", "transfer-2/sft-s1", "transfer-2/cord-s2")
            if os.path.exists(os.path.join(runs, c, "eval", "eval.json"))]
    expect(done == ["transfer-2/cord-s1", "transfer-2/sft-s1"], f"the plan's first two cells, in order: {done}")
    second = run([script, pipeline_dir(), runs], timeout=240, env=env)
    expect(second.returncode == 0, "the second call finishes the plan", second)
    expect("1/10 transfer-2/cord-s1: done" in second.stderr and "3/10 transfer-2/cord-s2: transfer" in second.stderr,
           "finished cells are kept, the next one trains", second)
    result = json.load(open(os.path.join(work, "results", "protocol.json")))
    expect(result["cells_done"] == result["cells_planned"] == 10, f"10 cells: {result['cells_done']}")
    for cell in ("transfer-2/cord-s1", "in_domain-4/sft-s1"):
        report = json.load(open(os.path.join(runs, cell, "eval", "eval.json")))
        expect(report["text_kl_from_reference"]["average"] >= 0, f"{cell}: the text branch's KL from the base")
        with open(os.path.join(runs, cell, "wall.tsv")) as f:
            expect(len(f.read().split("\n")) == 2, f"{cell}: one training segment")
        log = open(os.path.join(runs, cell, "cell.log")).read()
        expect(("training items only from families arithmetic" in log) == cell.startswith("transfer"),
               f"{cell}: the family restriction iff transfer")
    rows = {(r["regime"], r["steps"], r["label"]): r for r in result["rows"]}
    expect(rows[("transfer", 2, "cord")]["seeds"] == [1, 2] and rows[("transfer", 4, "sft")]["seeds"] == [1],
           f"seeds per row: {[(k, r['seeds']) for k, r in rows.items()]}")
    expect(os.path.exists(os.path.join(work, "results", "protocol.png")), "the plot is written")
    # A later sitting without the run folders: the records are the protocol's state.
    archive = os.path.join(work, "results", "protocol_cells")
    expect(os.path.exists(os.path.join(archive, "base.json")) and
           os.path.exists(os.path.join(archive, "in_domain-4/sft-s1.json")), f"records in {archive}")
    subprocess.run(["rm", "-rf", runs, os.path.join(work, "results", "protocol.json")], check=True)
    third = run([script, pipeline_dir(), runs], timeout=240, env=env)
    expect(third.returncode == 0 and "10/10 in_domain-4/sft-s1: done" in third.stderr and
           not re.search(r": (transfer|in_domain), \d+ steps", third.stderr), "the base is evaluated again and matches; no cell trains", third)
    again = json.load(open(os.path.join(work, "results", "protocol.json")))
    expect(again["cells_done"] == 10 and again["rows"] == result["rows"],
           "the summary from the records alone is the same", again)
    # Records of another base are refused, not mixed.
    base_record = json.load(open(os.path.join(archive, "base.json")))
    base_record["model_sha256"] = "0" * 64
    json.dump(base_record, open(os.path.join(archive, "base.json"), "w"))
    other = run([script, pipeline_dir(), runs], timeout=240, env=env)
    expect(other.returncode != 0 and "align/model.h5" in other.stderr and
           "is not the base the records in" in other.stderr, "another base is named and refused", other)


def case_gpu_pipeline():
    """Both training stages, eval and the CORD distill stage on the GPU (bf16 autocast), then
    checkpoint-restart of the text and align stages there; exit 77 (skipped) without one."""
    proc = cord("info", "--json")
    expect(proc.returncode == 0, "info --json", proc)
    rank = json.loads(proc.stdout)["ranks"][0]
    if not rank["gpu_usable"]:
        print(f"SKIPPED: no usable GPU ({rank['gpu_unavailable_reason']})")
        sys.exit(77)
    run_dir = os.path.join(ARGS.work_dir, "gpu")
    subprocess.run(["rm", "-rf", run_dir], check=True)
    os.makedirs(run_dir)
    corpus = os.path.join(run_dir, "corpus.h5")
    proc = cord("corpus", "synth", "--config", tiny_job(), "--out", corpus)
    expect(proc.returncode == 0, "tiny corpus", proc)
    sets = ["--config", tiny_job(), "--set", "runtime.device=cuda", "--set", f"train.corpus={corpus}",
            "--set", f"train.run_dir={run_dir}"]
    for stage in ("text", "align"):
        proc = cord("train", *sets, "--set", f"train.stage={stage}")
        expect(proc.returncode == 0, f"{stage} stage on the GPU", proc)
        records = metrics(os.path.join(run_dir, stage, "metrics.jsonl"))
        expect(records[0]["device"] == "cuda:0" and records[0]["precision"] == "bf16",
               f"{stage}: runs on cuda:0 in bf16: {records[0]}")
        steps = [r for r in records if r["type"] == "step"]
        expect(steps[-1]["loss"] < steps[0]["loss"], f"{stage}: the loss falls on the GPU")
    proc = cord("eval", *sets, "--out", os.path.join(run_dir, "eval"))
    expect(proc.returncode == 0 and "| **average** |" in proc.stdout, "eval on the GPU", proc)
    proc = cord("train", *sets, "--set", "train.stage=distill", "--set", "train.distill.steps=4",
                "--set", "train.distill.global_batch=8", "--set", "cord.max_new_tokens=32",
                "--set", "train.log_every=1", "--set", "train.val_items=8")
    expect(proc.returncode == 0, "CORD distill stage on the GPU", proc)
    records = metrics(os.path.join(run_dir, "distill", "metrics.jsonl"))
    expect(records[0]["device"] == "cuda:0" and records[0]["precision"] == "bf16", f"distill on cuda:0: {records[0]}")
    steps = [r for r in records if r["type"] == "step"]
    expect(len(steps) == 4 and all(math.isfinite(r["loss"]) and r["divergence"] > 0 for r in steps),
           f"distill: finite losses and divergences on the GPU: {steps}")

    # Checkpoint-restart on the GPU (CUDA generator state included): bit-exact resume is not
    # required there (atomics in cuBLAS/cuDNN backward), but the losses after resuming from
    # step 3 must continue the uninterrupted run's within 1e-3.
    for stage in ("text", "align"):
        reference, resumed = (os.path.join(run_dir, f"resume-{stage}-{x}") for x in ("a", "b"))
        stage_flags = [*sets, "--set", f"train.stage={stage}", "--set", f"train.{stage}.steps=6",
                       "--set", "train.log_every=1", "--set", "train.val_items=0", "--set", "ckpt.every_steps=1",
                       "--set", "ckpt.keep_last=10"]
        if stage == "align":
            stage_flags += ["--set", f"train.init={os.path.join(run_dir, 'text', 'model.h5')}"]
        proc = cord("train", *stage_flags, "--set", f"train.run_dir={reference}")
        expect(proc.returncode == 0, f"{stage}: uninterrupted run with checkpoints on the GPU", proc)
        expected = {r["step"]: r["step_loss"] for r in metrics(os.path.join(reference, stage, "metrics.jsonl"))
                    if r["type"] == "step"}
        subprocess.run(["cp", "-r", reference, resumed], check=True)
        set_marker(resumed, stage, 3)
        proc = cord("train", *stage_flags, "--set", f"train.run_dir={resumed}", "--resume", "auto")
        expect(proc.returncode == 0 and "step-00000003.h5 (step 3" in proc.stderr, f"{stage}: resumed on the GPU", proc)
        records = metrics(os.path.join(resumed, stage, "metrics.jsonl"))
        second_header = max(i for i, r in enumerate(records) if r["type"] == "header")
        after = {r["step"]: r["step_loss"] for r in records[second_header:] if r["type"] == "step"}
        expect(sorted(after) == [4, 5, 6], f"{stage}: the resumed attempt logs steps 4..6: {sorted(after)}")
        for step, loss in after.items():
            expect(abs(loss - expected[step]) <= 1e-3,
                   f"{stage}: step {step} loss {loss!r} after resume on the GPU, {expected[step]!r} uninterrupted")


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cord", required=True)
    parser.add_argument("--abort-program", required=True)
    parser.add_argument("--mpiexec", required=True)
    parser.add_argument("--source-dir", required=True)
    parser.add_argument("--work-dir", help="train/eval cases: shared run folder (ctest fixture)")
    parser.add_argument("--record", action="store_true", help="stage_loop_golden: write the golden file")
    parser.add_argument("case")
    ARGS = parser.parse_args()
    test = globals().get("case_" + ARGS.case)
    if test is None:
        sys.exit(f"unknown case {ARGS.case}")
    test()
    print(f"case {ARGS.case}: passed")


if __name__ == "__main__":
    main()
