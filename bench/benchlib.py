"""Shared by the bench/ summarizers: the facts every results file records next to its
numbers (machine, commit, date, command), and the Google Benchmark JSON reading."""
import json
import platform
import subprocess


def git(*args):
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def commit():
    # Results files being rewritten by the run itself do not make the code dirty.
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench/results")
    return git("rev-parse", "HEAD") + ("-dirty" if dirty else "")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(google_benchmark_context):
    return {"host": platform.node(), "cpu": cpu_model(), "cores": google_benchmark_context.get("num_cpus"),
            "kernel": platform.release(), "load_avg": google_benchmark_context.get("load_avg")}


def this_machine():
    """The machine a CPU experiment ran on (its summarizer runs there too)."""
    import os
    return {"host": platform.node(), "cpu": cpu_model(), "cores": os.cpu_count(), "kernel": platform.release()}


def targets_line(label, targets):
    return f"{label}: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in targets.items())


def write_experiment(out, result, lines):
    """An experiment's out.json (indented) and out.md (the lines), and the Markdown on stdout."""
    with open(out + ".json", "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    with open(out + ".md", "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


def load(path):
    with open(path) as f:
        return json.load(f)


def write_results(path, what, command, summary, raw, context=None):
    """raw: one Google Benchmark JSON, or a dict of them (then `context` is one's context)."""
    context = context or raw["context"]
    result = {"what": what, "machine": machine(context), "commit": commit(),
              "date": context.get("date"), "command": command, "summary": summary,
              "google_benchmark": raw}
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
