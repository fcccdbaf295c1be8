"""How a check reports a failure: one line naming the input and the symptom, pointing into student code."""

from __future__ import annotations

import traceback
from pathlib import Path

MAX_MESSAGE = 400
# Folders whose frames count as student code in tracebacks (set by the worker to the submission copy).
STUDENT_ROOTS: list[Path] = []


class CheckFailed(Exception):
    """The student's code does not have the checked property; the message says which input broke it and how."""


class CheckTimeout(BaseException):
    """Raised by the per-check alarm. A ``BaseException`` so that ``except Exception`` in student code
    does not swallow it."""


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` on a single line, shortened to ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def student_location(error: BaseException, roots: list[Path] | None = None) -> str:
    """``part2/model.py:57`` (or ``part1/CNN.ipynb cell 11, line 3``) of the innermost student frame ('' if none)."""
    location = ""
    roots = [root.resolve() for root in (STUDENT_ROOTS if roots is None else roots)]
    for frame in traceback.extract_tb(error.__traceback__):
        if " cell " in frame.filename and frame.filename.endswith(tuple(str(n) for n in range(10))):
            location = f"{frame.filename}, line {frame.lineno}"  # notebook cells are compiled under a label
            continue
        path = Path(frame.filename).resolve()
        for root in roots:
            if path.is_relative_to(root):
                location = f"{path.relative_to(root).as_posix()}:{frame.lineno}"
    return location


def describe_error(error: BaseException, roots: list[Path] | None = None) -> str:
    """``raised ValueError: bad shape (part1/CNN.ipynb cell 11, line 30)`` for an exception from student code."""
    if isinstance(error, SystemExit):
        what = f"called sys.exit({error.code!r})"
    elif isinstance(error, MemoryError):
        what = "ran out of memory (MemoryError)"
    elif isinstance(error, KeyboardInterrupt):
        what = "raised KeyboardInterrupt"
    else:
        what = f"raised {type(error).__name__}: {error}"
        if isinstance(error, AttributeError) and ("_modules" in str(error) or "_parameters" in str(error)):
            what += " (does __init__ call super().__init__()?)"
    where = student_location(error, roots)
    return one_line(f"{what} ({where})" if where else what)


def call_student(what: str, function, *args, **kwargs):
    """``function(*args, **kwargs)``; any exception becomes :class:`CheckFailed` ``"<what> raised ..."``.

    ``what`` names the call with its input, e.g. ``"convolution2D(X (2, 3, 7, 5), ...)"``.
    The per-check timeout still propagates.
    """
    try:
        return function(*args, **kwargs)
    except CheckTimeout:
        raise
    except BaseException as error:  # student code may sys.exit() or raise anything
        raise CheckFailed(f"{what} {describe_error(error)}") from None
