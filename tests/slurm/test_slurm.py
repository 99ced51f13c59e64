#!/usr/bin/env python3
"""The job scripts in slurm/, submitted to a real one-node Slurm cluster started on this
machine (tests/slurm/local_slurm.py), one ctest per case (tests/CMakeLists.txt, label slurm).

Usage: test_slurm.py --cord PATH --mpiexec PATH --source-dir DIR --work-dir DIR
                     --pipeline-dir DIR CASE
--pipeline-dir: the tiny pipeline run of the test suite (corpus.h5, align/model.h5).
Exit 0 = pass, 77 = skipped (Slurm cannot run here; the reason is printed), anything
else = fail.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

from local_slurm import LocalSlurm, SlurmUnavailable

ARGS = None


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def metrics(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def step_losses(run_dir, stage="text"):
    """{step: step_loss}; a step recorded twice (a rerun) must have the same loss."""
    losses = {}
    for r in metrics(os.path.join(run_dir, stage, "metrics.jsonl")):
        if r["type"] == "step":
            expect(losses.get(r["step"], r["step_loss"]) == r["step_loss"],
                   f"{run_dir}: step {r['step']} recorded twice with different losses")
            losses[r["step"]] = r["step_loss"]
    return losses


def fresh_dir(name):
    path = os.path.join(ARGS.work_dir, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def train_args(run_dir, steps, *extra):
    """A tiny text stage from the test suite's pipeline corpus into run_dir."""
    return ["train", "--config", os.path.join(ARGS.source_dir, "jobs", "pipeline_tiny.toml"),
            "--set", f"train.corpus={os.path.join(ARGS.pipeline_dir, 'corpus.h5')}",
            "--set", f"train.run_dir={run_dir}", "--set", "train.stage=text", "--set", "train.log_every=1",
            "--set", "train.val_items=0", "--set", f"train.text.steps={steps}", *extra]


def job_env():
    return {"CORD_HOME": ARGS.source_dir, "CORD_BIN": ARGS.cord}


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def wait_for_first_step(cluster, job, run_dir, out):
    """Waits (up to 120 s) until the job's text stage has recorded a step; returns metrics.jsonl."""
    path = os.path.join(run_dir, "text", "metrics.jsonl")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if os.path.exists(path) and any(r["type"] == "step" for r in metrics(path)):
            return path
        time.sleep(0.1)
    raise AssertionError(f"no step within 120 s: {cluster.states(job)}\n{read(out)[-3000:] if os.path.exists(out) else ''}")


def case_job_np2(cluster):
    """A 2-rank job (srun --mpi=pmix, then the mpirun alternative) completes with its
    checkpoints, metrics and the allocation logged; the multi-node script runs as on a CPU
    partition."""
    for launcher in ("srun", "mpirun"):
        work = fresh_dir(f"job-np2-{launcher}")
        run_dir = os.path.join(work, "run")
        out = os.path.join(work, "job.out")
        job = cluster.sbatch(["--ntasks=2", f"--output={out}", os.path.join(ARGS.source_dir, "slurm", "cord_node.sbatch"),
                              *train_args(run_dir, 6, "--set", "ckpt.every_steps=3")],
                             env=dict(job_env(), CORD_LAUNCHER=launcher), cwd=work)
        states = cluster.wait_for(job, timeout=180)
        log = read(out)
        expect(states == {job: "COMPLETED"}, f"{launcher}: job {job} ended {states}\n{log[-3000:]}")
        expect("2 task(s)" in log and "SLURM_RESTART_COUNT=0" in log, f"{launcher}: the allocation is logged:\n{log[-2000:]}")
        expect("world 2 = dp 2 x tp 1" in log, f"{launcher}: cord ran on 2 ranks:\n{log[-2000:]}")
        losses = step_losses(run_dir)
        expect(sorted(losses) == list(range(1, 7)), f"{launcher}: 6 steps recorded, got {sorted(losses)}")
        checkpoints = os.path.join(run_dir, "text", "checkpoints")
        expect(read(os.path.join(checkpoints, "latest")).strip() == "step-00000006.h5",
               f"{launcher}: the marker names step 6: {os.listdir(checkpoints)}")
        expect(os.path.exists(os.path.join(run_dir, "text", "model.h5")), f"{launcher}: the stage's weights")
    # The multi-node script, as on a CPU partition (its GPU request overridden), on this one node.
    work = fresh_dir("multinode")
    out = os.path.join(work, "job.out")
    job = cluster.sbatch(["--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1", "--gpus-per-node=0", f"--output={out}",
                          os.path.join(ARGS.source_dir, "slurm", "cord_multinode.sbatch"), "info"], env=job_env(), cwd=work)
    states = cluster.wait_for(job, timeout=120)
    log = read(out)
    expect(states == {job: "COMPLETED"} and "world 2 = dp 2 x tp 1" in log, f"multinode script: {states}\n{log[-2000:]}")


def case_requeue(cluster):
    """USR1 to the batch shell mid-run (scancel --batch --signal=USR1): the step
    checkpoints, the job requeues itself, the rerun resumes and finishes with losses
    identical, step by step, to an uninterrupted run."""
    steps = 300  # ~4 s at ~11 ms per step: the signal lands mid-run
    work = fresh_dir("requeue")
    reference = os.path.join(work, "reference")
    proc = subprocess.run([ARGS.mpiexec, "-n", "2", ARGS.cord, *train_args(reference, steps)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
    expect(proc.returncode == 0, f"the uninterrupted reference run failed:\n{proc.stderr[-3000:]}")
    expected = step_losses(reference)

    run_dir = os.path.join(work, "run")
    out = os.path.join(work, "job.out")
    job = cluster.sbatch(["--ntasks=2", f"--output={out}",
                          os.path.join(ARGS.source_dir, "slurm", "cord_preemptible.sbatch"), *train_args(run_dir, steps)],
                         env=job_env(), cwd=work)
    path = wait_for_first_step(cluster, job, run_dir, out)
    subprocess.run(["scancel", "--batch", "--signal=USR1", job], env=cluster.env, check=True)
    states = cluster.wait_for(job, timeout=240)
    log = read(out)
    expect(states == {job: "COMPLETED"}, f"job {job} ended {states}\n{log[-4000:]}")
    expect("SIGUSR1: forwarding it to the job step" in log, f"the batch shell forwarded USR1:\n{log[-4000:]}")
    expect("scontrol requeue" in log and "SLURM_RESTART_COUNT=1" in log, f"requeued once and logged:\n{log[-4000:]}")
    stops = [r for r in metrics(path) if r["type"] == "stop"]
    expect(len(stops) == 1 and stops[0]["step"] < steps, f"one checkpoint-and-stop before the end: {stops}")
    expect(f"step-{stops[0]['step']:08d}.h5" in log, f"the rerun resumed from step {stops[0]['step']}:\n{log[-3000:]}")
    losses = step_losses(run_dir)
    expect(sorted(losses) == list(range(1, steps + 1)), f"every step recorded: {sorted(losses)}")
    for step in range(1, steps + 1):
        expect(losses[step] == expected[step], f"step {step}: {losses[step]!r} after requeue vs {expected[step]!r}")


def case_requeue_by_scheduler(cluster):
    """`scontrol requeue` of the running job (what preemption with requeue does): the step
    gets SIGTERM, checkpoints and exits 75; the batch script sees that Slurm has already
    requeued the job and says so (no failed `scontrol requeue` of its own); the rerun
    resumes and completes every step."""
    steps = 300
    work = fresh_dir("requeue-by-scheduler")
    run_dir = os.path.join(work, "run")
    out = os.path.join(work, "job.out")
    job = cluster.sbatch(["--ntasks=2", f"--output={out}",
                          os.path.join(ARGS.source_dir, "slurm", "cord_preemptible.sbatch"), *train_args(run_dir, steps)],
                         env=job_env(), cwd=work)
    path = wait_for_first_step(cluster, job, run_dir, out)
    subprocess.run(["scontrol", "requeue", job], env=cluster.env, check=True)
    states = cluster.wait_for(job, timeout=240)
    log = read(out)
    expect(states == {job: "COMPLETED"}, f"job {job} ended {states}\n{log[-4000:]}")
    expect("ERROR" not in log and "failed" not in log, f"no false error in the log:\n{log[-4000:]}")
    expect(f"Slurm has already requeued job {job}" in log or f"Slurm requeued job {job} itself" in log,
           f"the script says Slurm requeued the job:\n{log[-4000:]}")
    expect("SLURM_RESTART_COUNT=1" in log, f"the rerun is logged:\n{log[-4000:]}")
    stops = [r for r in metrics(path) if r["type"] == "stop"]
    expect(len(stops) == 1 and "SIGTERM" in stops[0]["reason"], f"one checkpoint-and-stop after SIGTERM: {stops}")
    losses = step_losses(run_dir)
    expect(sorted(losses) == list(range(1, steps + 1)), f"every step recorded: {sorted(losses)}")


def case_table1_array(cluster):
    """slurm/submit_table1.sh: the job array runs one method per task from the same base,
    and the dependent job assembles the table (into a test folder, not bench/results)."""
    work = fresh_dir("table1")
    config = os.path.join(work, "table1_tiny.toml")
    # The tiny pipeline's job file (its [train.distill] and [cord] too), named for the table.
    with open(os.path.join(ARGS.source_dir, "jobs", "pipeline_tiny.toml")) as f:
        text = f.read()
    with open(config, "w") as f:
        f.write(text)
    results = os.path.join(work, "results")
    env = dict(cluster.env, **job_env(), CORD_METHODS="cord sft", CORD_RESULTS_DIR=results,
               CORD_SBATCH_ARGS=f"--chdir={work}")
    proc = subprocess.run([os.path.join(ARGS.source_dir, "slurm", "submit_table1.sh"), config, ARGS.pipeline_dir,
                           os.path.join(work, "runs")], capture_output=True, text=True, env=env,
                          cwd=ARGS.source_dir, timeout=60)
    expect(proc.returncode == 0, f"submit_table1.sh exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    array, assemble = proc.stdout.strip().splitlines()[-1].split()
    waiting = cluster.scontrol_show(assemble)
    expect(waiting.get("JobState") == "PENDING" and f"afterok:{array}" in waiting.get("Dependency", ""),
           f"the assembly job waits for the array: {waiting.get('JobState')} {waiting.get('Dependency')}")
    array_states = cluster.wait_for(array, timeout=300)
    logs = "".join(read(os.path.join(work, n)) for n in sorted(os.listdir(work)) if n.endswith(".out"))
    expect(sorted(array_states.values()) == ["COMPLETED", "COMPLETED"], f"array tasks: {array_states}\n{logs[-4000:]}")
    states = cluster.wait_for(assemble, timeout=180)
    logs = "".join(read(os.path.join(work, n)) for n in sorted(os.listdir(work)) if n.endswith(".out"))
    expect(states == {assemble: "COMPLETED"}, f"assembly job: {states}\n{logs[-4000:]}")
    table = json.load(open(os.path.join(results, "table1_tiny.json")))
    expect(sorted(table["methods"]) == ["cord", "sft"], f"the table has both methods: {sorted(table['methods'])}")
    expect(table["base"]["scores"], "the base row is there")
    md = read(os.path.join(results, "table1_tiny.md"))
    expect("slurm/submit_table1.sh" in md and f"array job {array}, assembly job {assemble}" in md, f"the command is recorded:\n{md[:600]}")


def case_protocol_array(cluster):
    """slurm/submit_protocol.sh: the plan frozen in RUNS/plan.tsv, one array task per cell,
    then the summary (afterany); a resubmission runs nothing that is done."""
    work = fresh_dir("protocol")
    results = os.path.join(work, "results")
    runs = os.path.join(work, "runs")
    env = dict(cluster.env, **job_env(), CORD_PROTOCOL_CONFIG=os.path.join(ARGS.source_dir, "jobs", "pipeline_tiny.toml"),
               CORD_REGIMES="transfer", CORD_BUDGETS="2", CORD_SEEDS="1 2", CORD_METHODS="cord sft",
               CORD_SEEDED_METHODS="cord", CORD_RESULTS_DIR=results, CORD_PYTHON=sys.executable,
               CORD_SBATCH_ARGS=f"--chdir={work}")
    submit = [os.path.join(ARGS.source_dir, "slurm", "submit_protocol.sh"), ARGS.pipeline_dir, runs]
    proc = subprocess.run(submit, capture_output=True, text=True, env=env, cwd=ARGS.source_dir, timeout=60)
    expect(proc.returncode == 0, f"submit_protocol.sh exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    array, assemble = proc.stdout.strip().splitlines()[-1].split()
    expect(len(read(os.path.join(runs, "plan.tsv")).splitlines()) == 3, "3 cells planned: cord s1, sft s1, cord s2")
    waiting = cluster.scontrol_show(assemble)
    expect(f"afterany:{array}" in waiting.get("Dependency", ""), f"the summary waits for the array: {waiting}")
    array_states = cluster.wait_for(array, timeout=300)
    logs = "".join(read(os.path.join(work, n)) for n in sorted(os.listdir(work)) if n.endswith(".out"))
    expect(sorted(array_states.values()) == ["COMPLETED"] * 3, f"array tasks: {array_states}\n{logs[-4000:]}")
    states = cluster.wait_for(assemble, timeout=180)
    logs = "".join(read(os.path.join(work, n)) for n in sorted(os.listdir(work)) if n.endswith(".out"))
    expect(states == {assemble: "COMPLETED"}, f"assembly job: {states}\n{logs[-4000:]}")
    summary = json.load(open(os.path.join(results, "protocol.json")))
    expect(summary["cells_done"] == summary["cells_planned"] == 3, f"every cell summarised: {summary['cells_done']}")
    md = read(os.path.join(results, "protocol.md"))
    expect(f"array job {array}, assembly job {assemble}" in md, f"the command is recorded:\n{md[:600]}")
    records = [os.path.join(results, "protocol_cells", n) for n in
               ("base.json", "transfer-2/cord-s1.json", "transfer-2/sft-s1.json", "transfer-2/cord-s2.json")]
    expect(all(os.path.exists(r) for r in records), f"each task recorded its cell, the summary job the base: {records}")
    # Resubmitted: every task finds its cell done and trains nothing.
    proc = subprocess.run(submit, capture_output=True, text=True, env=env, cwd=ARGS.source_dir, timeout=60)
    expect(proc.returncode == 0, f"resubmission exited {proc.returncode}:\n{proc.stderr}")
    again = proc.stdout.strip().splitlines()[-1].split()[0]
    expect(sorted(cluster.wait_for(again, timeout=120).values()) == ["COMPLETED"] * 3, "the rerun's tasks complete")
    logs = "".join(read(os.path.join(work, n)) for n in sorted(os.listdir(work)) if n.endswith(".out") and again in n)
    expect(logs.count("is already done") == 3 and "cord train" not in logs, f"nothing is trained again:\n{logs[-3000:]}")


def case_scaling_array(cluster):
    """slurm/submit_scaling.sh: prepare -> one array task per rank layout -> assembly, each
    waiting for the last (afterok); a short variant (1 round of 3 steps) into a test folder."""
    work = fresh_dir("scaling")
    out = os.path.join(work, "results", "scaling")
    env = dict(cluster.env, **job_env(), CORD_SCALING_DIR=os.path.join(work, "runs"), CORD_SCALING_ROUNDS="1",
               CORD_SCALING_STEPS="3", CORD_SCALING_OUT=out, CORD_SBATCH_ARGS=f"--chdir={work}")
    proc = subprocess.run([os.path.join(ARGS.source_dir, "slurm", "submit_scaling.sh")], capture_output=True, text=True,
                          env=env, cwd=ARGS.source_dir, timeout=60)
    expect(proc.returncode == 0, f"submit_scaling.sh exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    prepare, array, assemble = proc.stdout.strip().splitlines()[-1].split()
    states = {}
    for job in (prepare, array, assemble):
        states.update(cluster.wait_for(job, timeout=300))
    logs = "".join(read(os.path.join(work, n)) for n in sorted(os.listdir(work)) if n.endswith(".out"))
    expect(len(states) == 8 and set(states.values()) == {"COMPLETED"}, f"every job completed: {states}\n{logs[-4000:]}")
    result = json.load(open(out + ".json"))
    layouts = sorted((r["ranks"], r["dp"], r["tp"]) for r in result["rows"])
    expect(layouts == [(1, 1, 1), (2, 1, 2), (2, 2, 1), (4, 1, 4), (4, 2, 2), (4, 4, 1)], f"every layout: {layouts}")
    expect(f"array {array}" in read(out + ".md"), "the jobs are recorded in the command line")


CASES = {"job_np2": case_job_np2, "requeue": case_requeue, "requeue_by_scheduler": case_requeue_by_scheduler,
         "table1_array": case_table1_array, "protocol_array": case_protocol_array,
         "scaling_array": case_scaling_array}


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for option in ("--cord", "--mpiexec", "--source-dir", "--work-dir", "--pipeline-dir"):
        parser.add_argument(option, required=True)
    parser.add_argument("case", choices=sorted(CASES))
    ARGS = parser.parse_args()
    ARGS.work_dir = os.path.abspath(os.path.join(ARGS.work_dir, "slurm"))
    for needed in (os.path.join(ARGS.pipeline_dir, "corpus.h5"), os.path.join(ARGS.pipeline_dir, "align", "model.h5")):
        if not os.path.exists(needed):
            print(f"FAIL: {needed} is missing (the tiny pipeline fixture, cli_pipeline_tiny_np2, runs first)")
            return 1
    # A SIGTERM (ctest, a user) unwinds through the finally below, which tears the cluster down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"{ARGS.case}: terminated"))
    try:
        cluster = LocalSlurm(ARGS.work_dir)
        cluster.__enter__()
    except SlurmUnavailable as e:
        print(f"SKIP: Slurm cannot run here: {e}")
        return 77
    try:
        CASES[ARGS.case](cluster)
    except AssertionError as e:
        print(f"FAIL {ARGS.case}: {e}")
        print(cluster.log_tail("slurmctld"), cluster.log_tail("slurmd"))
        return 1
    finally:
        cluster.close()
    print(f"PASS {ARGS.case}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
