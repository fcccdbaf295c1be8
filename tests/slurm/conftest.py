"""A real single-node SLURM cluster for the tests of ``lisa_jobs/``.

The session fixture :func:`slurm_cluster` starts ``munged``, ``slurmctld`` and ``slurmd``
from the Debian packages ``slurm-wlm`` and ``munge`` (``.ci/run`` installs them where they
are missing) without systemd and without touching ``/etc``: every key, socket, PID file,
log, spool and state folder lives in a pytest temporary folder, the ports are picked free
at start-up, and clients find the cluster through ``SLURM_CONF``. The configuration comes
from ``slurm.conf.in`` and ``gres.conf.in`` beside this file: one node with fake GPUs in a
``gpu_shared`` partition, like the GPU nodes of the course's cluster.

The cluster is stopped after the session even when tests fail: running jobs are
cancelled, then each daemon is terminated through the PID in its own PID file.

Where SLURM or munge is not installed, or the cluster does not come up, the tests are
skipped with the reason; with ``SLURM_TESTS_REQUIRED=1`` they fail instead.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REQUIRED_PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "scancel")
NODE = "node1"
# Resources the node advertises (slurmd accepts more than the machine has): enough for
# the job files' requests (3 CPUs, up to 32000M, 1 GPU each) and for the test runs
# that share the node at once.
NODE_CPUS = 16
NODE_MEMORY_MB = 192000
# SLURM needs one distinct device file per GPU; nothing ever opens them.
FAKE_GPU_FILES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
TERMINAL_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)
START_TIMEOUT_S = 30.0


class ClusterError(RuntimeError):
    """The local cluster could not be started or did not answer."""


def _free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that are free right now (held open together, then released)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _process_state(pid: int) -> str | None:
    """State letter of ``pid`` from ``/proc`` (``"Z"`` for a zombie), ``None`` if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _process_name(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return None


def _tail(path: Path, lines: int = 25) -> str:
    if not path.is_file():
        return f"({path} does not exist)"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return f"--- last lines of {path}:\n" + "\n".join(text)


class SlurmCluster:
    """A one-node SLURM cluster whose files all live under ``root``.

    Attributes:
        root: folder holding the configuration, keys, sockets, PID files, logs and state.
        conf: the ``slurm.conf`` that clients read through ``SLURM_CONF``.
        env: environment for client commands and submitted jobs (the test process's
            environment without inherited ``SLURM_*`` variables, plus ``SLURM_CONF``).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        self.munge_dir = root / "munge"
        self.pid_files = {
            "slurmd": root / "run" / "slurmd.pid",
            "slurmctld": root / "run" / "slurmctld.pid",
            "munged": self.munge_dir / "munged.pid",
        }
        self.logs = {
            "slurmd": root / "log" / "slurmd.log",
            "slurmctld": root / "log" / "slurmctld.log",
            "munged": self.munge_dir / "munged.log",
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        env["SLURM_CONF"] = str(self.conf)
        self.env = env

    # ------------------------------------------------------------------ start / stop
    def write_config(self) -> None:
        """Fill in ``slurm.conf.in`` and ``gres.conf.in`` (``gres.conf`` must sit beside ``slurm.conf``)."""
        for sub in ("state", "spool", "run", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        ctld_port, slurmd_port = _free_ports(2)
        values = {
            "root": str(self.root),
            "controller": socket.gethostname().split(".")[0],
            "ctld_port": ctld_port,
            "slurmd_port": slurmd_port,
            "user": pwd.getpwuid(os.getuid()).pw_name,
            "munge_socket": str(self.munge_dir / "munge.socket"),
            "node": NODE,
            "cpus": NODE_CPUS,
            "memory_mb": NODE_MEMORY_MB,
            "gpus": len(FAKE_GPU_FILES),
            "gpu_lines": "\n".join(f"NodeName={NODE} Name=gpu File={f}" for f in FAKE_GPU_FILES),
        }
        for name in ("slurm.conf", "gres.conf"):
            template = string.Template((HERE / f"{name}.in").read_text())
            (self.root / name).write_text(template.substitute(values))

    def start_munge(self) -> None:
        # munged insists on a private key file, and on a socket that every user can reach;
        # pytest's temporary folders are private to us, so --force turns that check into a
        # warning (only this user's clients and daemons talk to this munged).
        self.munge_dir.mkdir(mode=0o755, exist_ok=True)
        key = self.munge_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self._run_daemon(
            "munged",
            [
                "munged",
                "--force",
                f"--socket={self.munge_dir / 'munge.socket'}",
                f"--key-file={key}",
                f"--pid-file={self.pid_files['munged']}",
                f"--log-file={self.logs['munged']}",
                f"--seed-file={self.munge_dir / 'munged.seed'}",
            ],
        )

    def start(self) -> None:
        """Write the configuration, start the three daemons and wait until the node is idle."""
        self.write_config()
        self.start_munge()
        self._run_daemon("slurmctld", ["slurmctld", "-f", str(self.conf)])
        self._run_daemon("slurmd", ["slurmd", "-f", str(self.conf), "-N", NODE])
        deadline = time.monotonic() + START_TIMEOUT_S
        state = ""
        while time.monotonic() < deadline:
            result = self.run("scontrol", "-o", "show", "node", NODE, check=False)
            match = re.search(r"\bState=(\S+)", result.stdout)
            state = match.group(1) if match else result.stderr.strip()
            if state == "IDLE":
                return
            time.sleep(0.5)
        raise ClusterError(
            f"node {NODE} not idle after {START_TIMEOUT_S:.0f} s (state: {state})\n" + self.daemon_logs()
        )

    def _run_daemon(self, name: str, command: list[str]) -> None:
        """Start a daemon that forks into the background, and wait for its PID file."""
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise ClusterError(
                f"{' '.join(command)} exited with {result.returncode}: "
                f"{result.stderr.strip()}\n{_tail(self.logs[name])}"
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._pid(name) is not None:
                return
            time.sleep(0.1)
        raise ClusterError(f"{name} wrote no PID file {self.pid_files[name]}\n{_tail(self.logs[name])}")

    def _pid(self, name: str) -> int | None:
        """PID from ``name``'s PID file, if that process is alive and really is ``name``."""
        try:
            pid = int(self.pid_files[name].read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None
        if _process_state(pid) in (None, "Z") or _process_name(pid) != name:
            return None
        return pid

    def stop(self) -> None:
        """Cancel all jobs, then stop slurmd, slurmctld and munged through their PID files."""
        if self._pid("slurmctld") is not None and self._pid("slurmd") is not None:
            # Cancelled jobs end through slurmd, so it must still be up here.
            try:
                self.run("scancel", f"--user={os.getuid()}", check=False, timeout=15)
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    running = self.run("squeue", "-h", "-t", "RUNNING,COMPLETING", check=False, timeout=15)
                    if running.returncode != 0 or not running.stdout.strip():
                        break
                    time.sleep(0.5)
            except subprocess.TimeoutExpired:
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self._pid(name)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 10
                while _process_state(pid) not in (None, "Z") and time.monotonic() < deadline:
                    time.sleep(0.1)
                if _process_state(pid) not in (None, "Z"):
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def daemon_logs(self) -> str:
        return "\n".join(_tail(path) for path in self.logs.values())

    # ------------------------------------------------------------------ clients
    def run(
        self,
        *command: str,
        check: bool = True,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess:
        """Run a client command (``sbatch``, ``scontrol``, a submit script, ...) against this cluster."""
        result = subprocess.run(
            command, cwd=cwd, env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} exited with {result.returncode}:\n{result.stdout}{result.stderr}"
            )
        return result

    def sbatch(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
        """Submit with ``sbatch --parsable`` and return the job id."""
        result = self.run("sbatch", "--parsable", *args, cwd=cwd, env=env)
        return result.stdout.strip().split(";")[0]

    def jobs(self, job_id: str) -> list[dict[str, str]]:
        """One record per job (per array task) of ``job_id``, from ``scontrol show job``."""
        result = self.run("scontrol", "-o", "show", "job", job_id)
        records = []
        for line in result.stdout.splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            if "JobId" in fields:
                records.append(fields)
        return records

    def wait(self, job_id: str, timeout: float) -> list[dict[str, str]]:
        """Wait until every task of ``job_id`` is in a final state and return their records."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.jobs(job_id)
            if records and all(r["JobState"] in TERMINAL_STATES for r in records):
                return records
            if time.monotonic() > deadline:
                states = ", ".join(f"{r['JobId']}: {r['JobState']} ({r.get('Reason')})" for r in records)
                raise AssertionError(
                    f"job {job_id} not finished after {timeout:.0f} s: {states}\n"
                    + "\n".join(_tail(Path(r["StdOut"])) for r in records if r.get("StdOut"))
                )
            time.sleep(1)

    @staticmethod
    def report(records: list[dict[str, str]]) -> str:
        """States of a job's tasks and the end of their logs, for assertion messages."""
        parts = []
        for r in records:
            task = f"_{r['ArrayTaskId']}" if r.get("ArrayTaskId") else ""
            parts.append(
                f"job {r.get('ArrayJobId') or r['JobId']}{task} ({r.get('JobName')}): "
                f"{r['JobState']}, exit code {r.get('ExitCode')}, reason {r.get('Reason')}"
            )
            if r.get("StdOut"):
                parts.append(_tail(Path(r["StdOut"]), lines=40))
        return "\n".join(parts)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A running one-node SLURM cluster (see the module docstring); stopped at the end of the session."""
    required = os.environ.get("SLURM_TESTS_REQUIRED") == "1"
    missing = [p for p in REQUIRED_PROGRAMS if shutil.which(p) is None]
    if missing:
        reason = (
            f"SLURM is not installed ({', '.join(missing)} not found); "
            "install it with `apt-get install --no-install-recommends slurm-wlm munge`"
        )
        if required:
            pytest.fail(reason)
        pytest.skip(reason)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        try:
            cluster.start()
        except (ClusterError, OSError, subprocess.TimeoutExpired) as err:
            reason = f"the local SLURM cluster did not start: {err}"
            if required:
                pytest.fail(reason)
            pytest.skip(reason)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def submit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder that jobs are submitted from: the job files write their logs to ``lisa_jobs/logs/`` in it."""
    path = tmp_path_factory.mktemp("submit")
    (path / "lisa_jobs" / "logs").mkdir(parents=True)
    return path


@pytest.fixture(scope="session")
def job_python_env(repo_root: Path) -> dict[str, str]:
    """Environment variables that make the job files use this test run's Python environment."""
    if sys.prefix != sys.base_prefix:
        venv = Path(sys.prefix)
    else:
        venv = repo_root / ".venv"
    if not (venv / "bin" / "activate").is_file():
        pytest.skip(f"no virtual environment with bin/activate at {venv} for the jobs to use")
    return {"VENV": str(venv), "REPO_DIR": str(repo_root), "OMP_NUM_THREADS": "1"}
