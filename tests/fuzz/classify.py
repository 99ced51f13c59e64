#!/usr/bin/env python3
"""Tells the saved inputs of a fork-mode fuzz target apart: cord's findings from libhdf5's.

The HDF5 readers (corpus, checkpoint, weights) hand libhdf5 damaged files, and libhdf5
1.10.8 itself crashes, loops or allocates without bound on some of them. libFuzzer's fork
mode goes on past those and saves each input; this replays one input at a time and names
the innermost stack frame of its report, so that only cord's own findings fail a run.

  classify.py BINARY INPUT...               one line per input: KIND<TAB>INPUT<TAB>FRAME
  classify.py --smoke BINARY DIR -- ARG...  runs BINARY ARG... (fork mode, inputs saved under
                                            DIR/), then classifies what it saved
  classify.py --clean BINARY                removes the input files that crashed children of
                                            BINARY left in /dev/shm
Exit status 1 when any input is cord's (or the smoke's fuzzer did not finish its run).
KIND is cord, libhdf5, gone (does not fail any more) or unattributed (out of memory with no
single allocation over 512 MB, so the stacks printed are not the cause).
Used by tests/fuzz/run.sh and the ctest smokes of tests/fuzz/CMakeLists.txt.
"""
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=1:allocator_may_return_null=1",
                 "LSAN_OPTIONS": f"suppressions={HERE}/lsan.supp"}
# Frames that report a bad call from inside themselves: libFuzzer's, the sanitizers', the C
# library's allocator and memcpy.
NOT_THE_CALLER = re.compile(r"libFuzzer|fuzzer::|__sanitizer|__asan|__ubsan|__interceptor_|libc\.so|sysdeps|"
                            r"in (malloc|calloc|realloc|strdup|operator new)|pthread|raise|abort|sleep")


def innermost_frame(binary, artifact):
    """Replays one saved input; returns the innermost stack frame of its report that is the
    caller's, or a "(...)" text when there is none to name."""
    try:
        # -malloc_limit_mb: a single allocation over 512 MB fails with its own stack, so an
        # out-of-memory input is attributed to whoever asked for the memory.
        proc = subprocess.run([binary, "-timeout=5", "-malloc_limit_mb=512", artifact], capture_output=True, text=True,
                              errors="replace", env=dict(os.environ, **SANITIZER_ENV), timeout=60)
        text = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        text = (e.stdout or b"").decode(errors="replace") + (e.stderr or b"").decode(errors="replace")
    if "out-of-memory (used:" in text:
        return "(unattributed: RSS over the limit without one allocation over 512 MB)"
    frames = [l.strip() for l in text.splitlines() if re.match(r"\s*#\d+ 0x", l)]
    frames = [f for f in frames if not NOT_THE_CALLER.search(f)]
    return frames[0] if frames else "(no stack: " + (text.strip().splitlines() or ["nothing printed"])[-1] + ")"


def kind_of(frame):
    if frame.startswith("(no stack"):
        return "gone"
    if frame.startswith("(unattributed"):
        return "unattributed"
    return "libhdf5" if "libhdf5" in frame else "cord"


def classify(binary, artifacts):
    """Prints and returns [(kind, input, frame)] for every artifact."""
    rows = []
    for artifact in artifacts:
        frame = innermost_frame(binary, artifact)
        rows.append((kind_of(frame), artifact, frame))
        print(f"{rows[-1][0]}\t{os.path.basename(artifact)}\t{frame[:200]}")
    return rows


def remove_dead_inputs(binary):
    """Removes the /dev/shm input files (fuzz_support.hpp) of this target's processes that
    died on an input, as fork-mode children do; a live process's file is left alone."""
    name = os.path.basename(binary)
    for entry in os.listdir("/dev/shm") if os.path.isdir("/dev/shm") else []:
        match = re.fullmatch(re.escape(name) + r"_(\d+)\.h5", entry)
        if not match:
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            os.remove(os.path.join("/dev/shm", entry))
        except PermissionError:
            pass


def smoke(binary, directory, args):
    """The ctest smoke of a fork-mode target: the fuzzer's exit status counts libhdf5's own
    failures too, so it is ignored; the run must finish, and no saved input may be cord's."""
    os.makedirs(directory, exist_ok=True)
    for old in os.listdir(directory):
        os.remove(os.path.join(directory, old))
    proc = subprocess.run([binary, *args, f"-artifact_prefix={directory}/"], capture_output=True, text=True,
                          errors="replace", env=dict(os.environ, **SANITIZER_ENV))
    log = proc.stdout + proc.stderr
    print("\n".join(l for l in log.splitlines() if l.startswith(("INFO: exiting", "#", "stat::")))[-3000:])
    finished = "INFO: exiting" in log or "Done " in log
    if not finished:
        print(log[-5000:])
        print(f"classify.py: {binary} did not finish its run (exit {proc.returncode})")
    rows = classify(binary, sorted(os.path.join(directory, f) for f in os.listdir(directory)))
    remove_dead_inputs(binary)
    return 0 if finished and not any(kind == "cord" for kind, _, _ in rows) else 1


def main(argv):
    if len(argv) >= 4 and argv[0] == "--smoke" and argv[3] == "--":
        return smoke(argv[1], argv[2], argv[4:])
    if len(argv) == 2 and argv[0] == "--clean":
        remove_dead_inputs(argv[1])
        return 0
    if len(argv) >= 1 and not argv[0].startswith("-"):
        return 1 if any(kind == "cord" for kind, _, _ in classify(argv[0], argv[1:])) else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
