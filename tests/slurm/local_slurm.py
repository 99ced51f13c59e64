"""A real one-node Slurm cluster on this machine, for tests: munged, slurmctld and slurmd
started from a generated slurm.conf in a temporary folder, and torn down by PID whatever
happens (recipe: docs/slurm.md, "The local test cluster").

    with LocalSlurm(work_dir) as cluster:
        job = cluster.sbatch(["slurm/cord_node.sbatch"], env={...})
        cluster.wait_for(job)

LocalSlurm raises SlurmUnavailable when Slurm or munge is not installed or the daemons do
not come up (the caller skips); every other failure is an error. The daemons' PIDs are also
kept in WORK_DIR/daemons.pid, so that daemons left by a test that was killed outright
(a ctest timeout) are killed by the next LocalSlurm in that folder.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd")
CLIENTS = ("sbatch", "squeue", "sacct", "scontrol", "scancel", "sinfo")
MUNGE_SOCKET = "/run/munge/munge.socket.2"


class SlurmUnavailable(Exception):
    """Slurm cannot run here (not installed, not root, daemons do not start)."""


def free_port_pair():
    """Two consecutive free TCP ports (slurmctld, slurmd)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port > 65000:
            continue
        try:
            with socket.socket() as t:
                t.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise SlurmUnavailable("no two consecutive free TCP ports")


class LocalSlurm:
    # CPUs the node claims: more than the machine's cores (config_overrides), so that a
    # 4-rank job and a dependent job can be scheduled on a 2-core machine.
    CPUS = 8

    def __init__(self, work_dir):
        missing = [p for p in DAEMONS if not os.access(p, os.X_OK)]
        missing += [c for c in CLIENTS if shutil.which(c) is None]
        if missing:
            raise SlurmUnavailable("not installed: " + ", ".join(missing) + " (Debian: slurm-wlm munge)")
        if os.geteuid() != 0:
            raise SlurmUnavailable("the local cluster runs its daemons as root; not root here")
        os.makedirs(work_dir, exist_ok=True)
        self.pid_file = os.path.join(work_dir, "daemons.pid")
        kill_leftover_daemons(self.pid_file)
        self.dir = tempfile.mkdtemp(prefix="slurm-", dir=work_dir)
        self.conf = os.path.join(self.dir, "slurm.conf")
        self.env = dict(os.environ, SLURM_CONF=self.conf)
        self.pids = {}  # daemon name -> PID, for the teardown
        self.started_munge = False

    # --- set-up and teardown -------------------------------------------------------------

    def __enter__(self):
        try:
            self._write_config()
            self._start_munge()
            self._start("slurmctld", ["/usr/sbin/slurmctld", "-D", "-i", "-f", self.conf])
            self._wait_until(lambda: self._run(["scontrol", "ping"], check=False).returncode == 0,
                             30, "slurmctld did not answer scontrol ping")
            self._start("slurmd", ["/usr/sbin/slurmd", "-D", "-N", "localhost", "-f", self.conf])
            self._wait_until(self._node_idle, 30, "node localhost did not become idle")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        """Cancels what is left, kills the daemons this object started (by PID) and removes
        the cgroup folders slurmd leaves behind."""
        if "slurmctld" in self.pids:
            self._run(["scancel", "--full", "--user", "root"], check=False)
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.pop(name, None)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self._save_pids()
        for process in getattr(self, "processes", []):
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
            for controller in _listdir(root):
                leftover = os.path.join(root, controller, "slurm_localhost")
                for path, _, _ in sorted(os.walk(leftover), key=lambda w: -len(w[0])):
                    try:
                        os.rmdir(path)
                    except OSError:
                        pass

    def _write_config(self):
        port = free_port_pair()
        for sub in ("state", "spool"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        d = self.dir
        lines = [
            "ClusterName=cordtest", "SlurmctldHost=localhost", "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", "CredType=cred/munge", "AuthInfo=cred_expire=10",
            "ProctrackType=proctrack/cgroup", "TaskPlugin=task/cgroup,task/affinity",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory", "DefMemPerCPU=1000",
            "MpiDefault=pmix", "SlurmdParameters=config_overrides", "SchedulerParameters=sched_interval=2",
            "MailProg=/bin/true", "ReturnToService=2", "JobRequeue=0", "KillWait=5", "MinJobAge=600",
            f"SlurmctldPort={port}", f"SlurmdPort={port + 1}",
            f"StateSaveLocation={d}/state", f"SlurmdSpoolDir={d}/spool",
            f"SlurmctldPidFile={d}/slurmctld.pid", f"SlurmdPidFile={d}/slurmd.pid",
            f"SlurmctldLogFile={d}/slurmctld.log", f"SlurmdLogFile={d}/slurmd.log",
            "JobCompType=jobcomp/none", "AccountingStorageType=accounting_storage/none",
            f"NodeName=localhost CPUs={self.CPUS} RealMemory={self.CPUS * 1000} State=UNKNOWN",
            "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
        ]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(os.path.join(self.dir, "cgroup.conf"), "w") as f:
            f.write("CgroupPlugin=autodetect\nConstrainCores=yes\nConstrainRAMSpace=yes\n")

    def _start_munge(self):
        if subprocess.run(["munge", "-n"], capture_output=True).returncode == 0:
            return  # a munged already runs here: use it, and leave it running
        os.makedirs("/run/munge", exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        key = "/etc/munge/munge.key"
        if not os.path.exists(key):  # the package normally creates it; a fresh container may lack it
            proc = subprocess.run(["mungekey", "--create", "--keyfile", key], capture_output=True, text=True)
            if proc.returncode != 0:
                raise SlurmUnavailable(f"no {key} and mungekey --create failed: {proc.stderr.strip()}")
            shutil.chown(key, "munge", "munge")
            os.chmod(key, 0o600)
        proc = subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SlurmUnavailable(f"munged did not start: {proc.stderr.strip()}")
        # munged daemonises; its PID file names the daemon.
        pid_file = "/run/munge/munged.pid"
        self._wait_until(lambda: os.path.exists(pid_file), 10, "munged wrote no PID file")
        with open(pid_file) as f:
            self.pids["munged"] = int(f.read().split()[0])
        self._save_pids()
        self._wait_until(lambda: subprocess.run(["munge", "-n"], capture_output=True).returncode == 0, 10,
                         "munge -n fails after starting munged")

    def _start(self, name, cmd):
        log = open(os.path.join(self.dir, name + ".out"), "w")
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                   start_new_session=True)
        self.processes = getattr(self, "processes", []) + [process]
        self.pids[name] = process.pid
        self._save_pids()
        time.sleep(0.2)
        if process.poll() is not None:
            raise SlurmUnavailable(f"{name} exited at once ({process.returncode}): {self.log_tail(name)}")

    def _save_pids(self):
        with open(self.pid_file, "w") as f:
            f.writelines(f"{name} {pid}\n" for name, pid in self.pids.items())

    def _node_idle(self):
        out = self._run(["sinfo", "-h", "-N", "-o", "%T"], check=False).stdout.strip()
        return out.startswith("idle")

    def _wait_until(self, condition, seconds, what):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.2)
        raise SlurmUnavailable(f"{what} within {seconds} s; logs in {self.dir}: {self.log_tail('slurmctld')}"
                               f" {self.log_tail('slurmd')}")

    # --- what tests use --------------------------------------------------------------------

    def log_tail(self, name, lines=15):
        for suffix in (".log", ".out"):
            path = os.path.join(self.dir, name + suffix)
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    return f"\n--- {path}\n" + "".join(f.readlines()[-lines:])
        return ""

    def _run(self, cmd, check=True, env=None, cwd=None):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env or self.env, cwd=cwd, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def sbatch(self, args, env=None, cwd=None):
        """Submits; returns the job id (for an array, the array's job id)."""
        proc = self._run(["sbatch", "--parsable", *args], env=dict(self.env, **(env or {})), cwd=cwd)
        return proc.stdout.strip().split(";")[0]

    def scontrol_show(self, job):
        """{key: value} of `scontrol show job` for one job (the first record)."""
        proc = self._run(["scontrol", "-o", "show", "job", str(job)], check=False)
        if proc.returncode != 0:
            return {}
        fields = {}
        for token in proc.stdout.splitlines()[0].split():
            key, _, value = token.partition("=")
            fields[key] = value
        return fields

    def states(self, job):
        """The state of every job (array task) under `job`: {job id: state}."""
        proc = self._run(["scontrol", "-o", "show", "job", str(job)], check=False)
        states = {}
        for line in proc.stdout.splitlines():
            fields = dict(t.partition("=")[::2] for t in line.split())
            states[fields.get("JobId")] = fields.get("JobState")
        return states

    def wait_for(self, job, timeout=240, done=("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL",
                                                "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED")):
        """Waits until every job under `job` has ended; returns {job id: state}."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.states(job)
            if states and all(s in done for s in states.values()):
                return states
            time.sleep(0.5)
        raise AssertionError(f"job {job} did not end within {timeout} s: {self.states(job)}"
                             f"{self.log_tail('slurmctld')}{self.log_tail('slurmd')}")


def kill_leftover_daemons(pid_file):
    """Kills the daemons an earlier LocalSlurm recorded in pid_file and did not tear down,
    each only if that PID still runs the same program."""
    try:
        with open(pid_file) as f:
            recorded = [line.split() for line in f if line.strip()]
    except OSError:
        return
    for name, pid in recorded:
        try:
            with open(f"/proc/{pid}/comm") as f:
                running = f.read().strip()
        except OSError:
            continue
        if running == name and _alive(int(pid)):
            os.kill(int(pid), signal.SIGKILL)
    os.remove(pid_file)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []
