#!/usr/bin/env python3
"""End-to-end cases for the `cord` binary, one ctest per case (see tests/CMakeLists.txt).

Usage: test_cli.py --cord PATH --abort-program PATH --mpiexec PATH --source-dir DIR CASE
Each case runs the real binary (under mpiexec where it says npN) and checks exit code,
output and messages. Exit 0 = pass; an AssertionError prints what differed.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ARGS = None


def run(cmd, timeout=90):
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
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
    for later in ("train", "eval", "corpus", "ckpt"):
        expect(f"  {later}" not in proc.stdout, f"--help must not list '{later}' before it exists", proc)
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


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cord", required=True)
    parser.add_argument("--abort-program", required=True)
    parser.add_argument("--mpiexec", required=True)
    parser.add_argument("--source-dir", required=True)
    parser.add_argument("case")
    ARGS = parser.parse_args()
    test = globals().get("case_" + ARGS.case)
    if test is None:
        sys.exit(f"unknown case {ARGS.case}")
    test()
    print(f"case {ARGS.case}: passed")


if __name__ == "__main__":
    main()
