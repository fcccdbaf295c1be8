"""Grading submissions: one subprocess per worker group, watched from here, restarted after a hang or a crash.

Student code is untrusted. Each submission is copied (source files only) to a
temporary folder; each worker group (:data:`grading.questions.WORKERS`) runs in
its own process with a memory limit (``RLIMIT_DATA``), a limit of CPU time per
check (an alarm inside the worker, and a kill from here a few seconds later;
CPU time, so that a loaded machine does not fail correct code), a backstop for
code that sleeps or waits forever, no network and one thread. When a check hangs or kills its process, that check
fails with the reason, the other checks of its component (``Check.group``) fail
as "not run", and a new process continues with the rest: a crash, hang,
``sys.exit`` or import error costs only what it blocks.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from grading.questions import QUESTIONS, Check, all_checks
from grading.submission import Submission, copy_sources

GIB = 2**30


@dataclass(frozen=True)
class Limits:
    """Resource limits of the worker processes."""

    memory_gib: float = 3.0
    time_factor: float = 1.0  # multiplies every check's limit (seconds of CPU time)
    startup_seconds: float = 60.0  # CPU time to import the student's files (torch, torchvision, PyG included)
    grace_seconds: float = 5.0  # CPU time after a check's limit before the process is killed from outside
    # Backstop for code that sleeps or waits forever: seconds the process is seen sleeping.
    idle_factor: float = 3.0
    idle_extra_seconds: float = 60.0

    def idle_limit(self, cpu_limit: float) -> float:
        return self.idle_factor * cpu_limit + self.idle_extra_seconds


@dataclass
class CheckResult:
    id: str
    question: str
    title: str
    points: float
    earned: float
    passed: bool
    message: str
    seconds: float


@dataclass
class QuestionResult:
    id: str
    title: str
    points: float
    earned: float
    checks: list[CheckResult]


@dataclass
class SubmissionResult:
    submission: str
    root: str
    layout: str
    notes: list[str]
    questions: list[QuestionResult]
    seconds: float = 0.0

    @property
    def earned(self) -> float:
        return sum(q.earned for q in self.questions)

    @property
    def points(self) -> float:
        return sum(q.points for q in self.questions)

    def to_json(self) -> dict:
        return {**asdict(self), "earned": self.earned, "points": self.points}


@dataclass
class _Outcome:
    passed: bool
    message: str
    seconds: float = 0.0


@dataclass
class _WorkerRun:
    """What the parent learned from one worker process."""

    outcomes: dict[str, _Outcome] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    ready: bool = False
    loading: str = ""
    current: str | None = None
    current_limit: float = 0.0
    current_cpu_start: float = 0.0
    current_idle_start: float = 0.0
    cpu_seconds: float = 0.0  # of the worker process, as last measured
    idle_seconds: float = 0.0  # time it was seen sleeping


def _preexec(memory_bytes: int) -> Callable[[], None]:
    def apply_limits() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        try:  # Linux: the worker dies with the grader, even if the grader is killed
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    return apply_limits


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    env["MPLBACKEND"] = "Agg"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    # The grader's own package must be importable whatever the current folder is.
    grader_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (grader_root, env.get("PYTHONPATH", "")) if p)
    return env


def _read_events(path: Path, offset: int) -> tuple[list[dict], int]:
    """Complete JSON lines of ``path`` after byte ``offset``, and the new offset."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    events = []
    for line in data[:end].splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue  # a student could write to our file descriptor; ignore what is not ours
    return events, offset + end


def _apply(event: dict, run: _WorkerRun) -> None:
    kind = event.get("event")
    if kind == "loading":
        run.loading = event.get("file", "")
    elif kind == "ready":
        run.ready = True
        run.notes += [n for n in event.get("notes", []) if n not in run.notes]
    elif kind == "start":
        run.current, run.current_limit = event["id"], float(event["limit"])
        run.current_cpu_start, run.current_idle_start = run.cpu_seconds, run.idle_seconds
    elif kind == "done":
        run.outcomes[event["id"]] = _Outcome(bool(event["passed"]), str(event["message"]), float(event["seconds"]))
        run.current = None


def _exit_reason(returncode: int, log: Path) -> str:
    if returncode < 0:
        how = f"was killed by {signal.Signals(-returncode).name}"
        if -returncode == signal.SIGKILL:
            how += " (out of memory?)"
    else:
        how = f"exited with code {returncode} (os._exit or a crash)"
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()] if log.exists() else []
    return f"the grading process {how}" + (f"; last output: {lines[-1].strip()[:200]}" if lines else "")


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _process_state(pid: int) -> tuple[str, float] | None:
    """``(state letter, CPU seconds)`` of a process from ``/proc/<pid>/stat``; ``None`` once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _watch(process: subprocess.Popen, events: Path, run: _WorkerRun, limits: Limits) -> str:
    """Follow the worker until it exits; kill it on a start-up or check timeout. Returns why it was killed ('')."""
    offset, last_poll = 0, time.monotonic()
    while True:
        state = _process_state(process.pid)
        now = time.monotonic()
        if state is not None:
            run.cpu_seconds = state[1]
            # Sleeping, not computing and not waiting for a CPU: on a busy machine a process waits long
            # for a CPU, which is neither its fault nor a hang, so only this time counts as idle.
            run.idle_seconds += now - last_poll if state[0] == "S" else 0.0
        last_poll = now
        new, offset = _read_events(events, offset)
        for event in new:
            _apply(event, run)
        if process.poll() is not None:
            new, offset = _read_events(events, offset)
            for event in new:
                _apply(event, run)
            return ""
        reason = _overrun(run, limits)
        if reason:
            _kill(process)
            return reason
        time.sleep(0.05)


def _overrun(run: _WorkerRun, limits: Limits) -> str:
    """Why the worker must be killed now ('' if it may go on)."""
    if not run.ready:
        startup = limits.startup_seconds
        if run.cpu_seconds > startup or run.idle_seconds > limits.idle_limit(startup):
            return (
                f"loading {run.loading or 'the student files'} did not finish within {startup:g} s of CPU time "
                "(top-level code that trains or loops? put it under if __name__ == '__main__':)"
            )
    elif run.current:
        cpu, idle = run.cpu_seconds - run.current_cpu_start, run.idle_seconds - run.current_idle_start
        if cpu > run.current_limit + limits.grace_seconds:
            return f"did not finish within {run.current_limit:g} s of CPU time (endless loop, or far too slow?)"
        if idle > limits.idle_limit(run.current_limit):
            return f"did nothing for {idle:.0f} s (waiting forever?)"
    return ""


def _run_once(
    root: Path,
    layout: str,
    worker: str,
    pending: list[str],
    known: dict[str, bool],
    limits: Limits,
    events: Path,
    log: Path,
) -> tuple[_WorkerRun, str, int]:
    """One worker process for the ``pending`` checks; returns what it reported, why it was killed, its exit code."""
    command = [sys.executable, "-m", "grading.worker", str(root), layout, worker, str(events),
               repr(limits.time_factor), json.dumps(known), *pending]  # fmt: skip
    run = _WorkerRun()
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                   cwd=log.parent, env=_worker_env(), start_new_session=True,
                                   preexec_fn=_preexec(int(limits.memory_gib * GIB)))  # fmt: skip
        try:
            killed_because = _watch(process, events, run, limits)
        finally:
            if process.poll() is None:  # interrupted (Ctrl-C): leave no worker behind
                _kill(process)
    return run, killed_because, process.returncode


def run_worker(
    root: Path, layout: str, worker: str, check_ids: list[str], limits: Limits, logs: Path
) -> tuple[dict[str, _Outcome], list[str]]:
    """Grade ``check_ids`` of one worker group, restarting the process after every hang or crash."""
    checks = all_checks()
    outcomes: dict[str, _Outcome] = {}
    notes: list[str] = []
    attempt = 0
    while pending := [c for c in check_ids if c not in outcomes]:
        attempt += 1
        events, log = logs / f"{worker}-{attempt}.jsonl", logs / f"{worker}-{attempt}.log"
        known = {k: v.passed for k, v in outcomes.items()}
        run, killed_because, returncode = _run_once(root, layout, worker, pending, known, limits, events, log)
        outcomes.update(run.outcomes)
        notes += [n for n in run.notes if n not in notes]
        reason = killed_because or _exit_reason(returncode, log)
        if not run.ready:  # loading the student's files hung or killed the process: nothing can run
            reason = killed_because or f"loading {run.loading or 'the student files'}: {reason}"
            outcomes.update({c: _Outcome(False, reason) for c in pending if c not in outcomes})
        elif run.current is not None:  # the check that was running takes its component down with it
            culprit = checks[run.current]
            outcomes[culprit.id] = _Outcome(False, reason, run.current_limit)
            for other in pending:
                if other not in outcomes and checks[other].group == culprit.group:
                    outcomes[other] = _Outcome(False, f"not run: {culprit.name} {_short(reason)}")
        else:  # ended between checks: nothing to blame, nothing more to try
            outcomes.update({c: _Outcome(False, f"not run: {reason}") for c in pending if c not in outcomes})
    return outcomes, notes


def _short(reason: str) -> str:
    return reason if reason.startswith("did ") else "crashed the grading process"


def _score(check: Check, outcomes: dict[str, _Outcome]) -> float:
    outcome = outcomes[check.id]
    if not outcome.passed:
        return 0.0
    if check.requires_any and not any(outcomes.get(r, _Outcome(False, "")).passed for r in check.requires_any):
        return 0.0
    return check.points


def grade(
    submission: Submission,
    question_ids: list[str],
    limits: Limits,
    workdir: Path,
    progress: Callable[[], None] | None = None,
) -> SubmissionResult:
    """Grade the questions ``question_ids`` of one submission; the copy and logs go under ``workdir``."""
    tic = time.perf_counter()
    copy_root = copy_sources(submission.root, workdir / "submission")
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    questions = [q for q in QUESTIONS if q.id in question_ids]
    outcomes: dict[str, _Outcome] = {}
    notes = list(submission.notes)
    for worker in dict.fromkeys(q.worker for q in questions):
        ids = [c.id for q in questions if q.worker == worker for c in q.checks]
        worker_outcomes, worker_notes = run_worker(copy_root, submission.layout, worker, ids, limits, logs)
        outcomes.update(worker_outcomes)
        notes += worker_notes
        if progress is not None:
            progress()
    results = []
    for q in questions:
        checks = [
            CheckResult(
                c.id,
                q.id,
                c.title,
                c.points,
                _score(c, outcomes),
                outcomes[c.id].passed,
                outcomes[c.id].message,
                outcomes[c.id].seconds,
            )
            for c in q.checks
        ]
        results.append(QuestionResult(q.id, q.title, q.points, sum(c.earned for c in checks), checks))
    return SubmissionResult(
        submission.name, str(submission.root), submission.layout, notes, results, round(time.perf_counter() - tic, 1)
    )


def grade_all(
    submissions: list[Submission],
    question_ids: list[str],
    limits: Limits,
    jobs: int = 1,
    progress: Callable[[], None] | None = None,
) -> list[SubmissionResult]:
    """Grade every submission (``jobs`` at a time), each in its own temporary folder; results in input order."""

    def one(submission: Submission) -> SubmissionResult:
        with tempfile.TemporaryDirectory(prefix="grading-") as workdir:
            return grade(submission, question_ids, limits, Path(workdir), progress)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, submissions))
