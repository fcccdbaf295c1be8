"""One grading process: load a submission's files for one worker group and run the requested checks.

Run by :mod:`grading.runner`, never by hand::

    python -m grading.worker ROOT LAYOUT WORKER EVENTS_FILE LIMIT_FACTOR KNOWN_RESULTS CHECK_ID...

``KNOWN_RESULTS`` is a JSON object ``{check id: passed}`` of checks graded by an
earlier process of the same submission (after a restart): a check whose
``requires_any`` checks all failed is not run.

Progress goes to ``EVENTS_FILE`` as JSON lines, so that the parent can see
which check is running and keep every finished result when this process has
to be killed: ``{"event": "ready", "notes": [...]}`` after loading,
``{"event": "start", "id": ...}`` before and ``{"event": "done", "id": ...,
"passed": ..., "message": ..., "seconds": ...}`` after each check. The student's
prints go to this process's stdout/stderr, which the parent sends to files.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grading import failures
from grading.failures import CheckFailed, CheckTimeout, describe_error, one_line
from grading.questions import Check, all_checks
from grading.student import WORKER_FILES, StudentCode

TIMEOUT_MESSAGE = "did not finish within"


@dataclass
class Context:
    """What a check function gets: the student's code, a fresh scratch folder, a cache shared by the worker's checks."""

    code: StudentCode
    scratch: Path
    cache: dict[str, Any] = field(default_factory=dict)


def _no_network(*args, **kwargs):
    raise OSError("network access is disabled while grading (the data are provided locally)")


def _isolate_process() -> None:
    """No network, no GUI, one thread: student code runs the same on every grading machine."""
    socket.socket.connect = _no_network  # type: ignore[method-assign]
    socket.create_connection = _no_network  # type: ignore[assignment]
    os.environ["MPLBACKEND"] = "Agg"
    warnings.simplefilter("ignore")
    import torch

    torch.set_num_threads(1)


def _on_alarm(signum, frame):
    raise CheckTimeout()


def run_check(check: Check, context: Context, limit: float) -> tuple[bool, str]:
    """Run one check with an alarm after ``limit`` seconds of CPU time; returns ``(passed, message)``.

    CPU time, not wall time: a busy machine must not fail a correct submission.
    A check that sleeps or waits forever is caught by the parent's idle backstop.
    """
    module_name, function_name = check.func.split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    signal.signal(signal.SIGPROF, _on_alarm)
    signal.setitimer(signal.ITIMER_PROF, limit)
    try:
        note = function(context)
        return True, one_line(note or "")
    except CheckFailed as failure:
        return False, one_line(str(failure))
    except CheckTimeout:
        return False, f"{TIMEOUT_MESSAGE} {limit:g} s of CPU time (endless loop, or far too slow?)"
    except BaseException as error:  # student code may sys.exit() or raise anything
        return False, describe_error(error)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)


def _unmet_requirement(check: Check, known: dict[str, bool], checks: dict[str, Check]) -> str:
    """Why ``check`` is not run ('' if it is): every check it requires is known to have failed."""
    if not check.requires_any or not all(known.get(r) is False for r in check.requires_any):
        return ""
    names = [checks[r].name for r in check.requires_any]
    return f"not graded: counts only once {names[0] if len(names) == 1 else 'one of ' + ', '.join(names)} passes"


class Events:
    """The JSON-lines channel to the parent."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as the process

    def send(self, **event: Any) -> None:
        self.file.write(json.dumps(event) + "\n")
        self.file.flush()


def main(argv: list[str]) -> None:
    root, layout, worker, events_path, limit_factor, known_results, *check_ids = argv
    known: dict[str, bool] = json.loads(known_results)
    events = Events(Path(events_path))
    root = Path(root)
    failures.STUDENT_ROOTS[:] = [root]
    _isolate_process()
    checks = all_checks()
    # Import the check modules before any student folder is on sys.path, so that no student file shadows them.
    for check_id in check_ids:
        importlib.import_module(checks[check_id].func.split(":")[0])
    code = StudentCode(root, layout)
    scratch_base = Path(tempfile.mkdtemp(prefix=f"scratch-{worker}-", dir=root.parent))
    os.chdir(scratch_base)
    for label in WORKER_FILES[worker]:
        events.send(event="loading", file=label)
        code.load(label)
    events.send(event="ready", notes=code.notes)
    context = Context(code, scratch_base)
    timed_out: dict[str, str] = {}  # group -> the check of that group that timed out
    for number, check_id in enumerate(check_ids):
        check = checks[check_id]
        unmet = _unmet_requirement(check, known, checks)
        if check.group in timed_out:
            unmet = f"not run: {timed_out[check.group]} did not finish in time"
        if unmet:
            events.send(event="done", id=check_id, passed=False, message=unmet, seconds=0.0, skipped=True)
            known[check_id] = False
            continue
        limit = check.limit * float(limit_factor)
        context.scratch = Path(tempfile.mkdtemp(prefix=f"check{number}-", dir=scratch_base))
        os.chdir(context.scratch)
        events.send(event="start", id=check_id, limit=limit)
        tic = time.perf_counter()
        passed, message = run_check(check, context, limit)
        events.send(
            event="done", id=check_id, passed=passed, message=message, seconds=round(time.perf_counter() - tic, 2)
        )
        known[check_id] = passed
        if message.startswith(TIMEOUT_MESSAGE):
            timed_out[check.group] = check.name
    # Student threads or atexit handlers must not keep a finished worker alive.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
