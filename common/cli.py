"""The command-line convention of every entry point: argparse types, common options, one-line errors."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from common.runtime import PRECISIONS, UserError


def _number_type(cast: Callable[[str], Any], valid: Callable[[Any], bool], expected: str, name: str):
    """An argparse type: ``cast(text)``, refused with "expected <expected>" unless ``valid``."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not valid(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value

    parse.__name__ = parse.__qualname__ = name
    return parse


positive_int = _number_type(int, lambda v: v >= 1, "a positive integer", "positive_int")
nonnegative_int = _number_type(int, lambda v: v >= 0, "an integer >= 0", "nonnegative_int")
positive_float = _number_type(float, lambda v: math.isfinite(v) and v > 0, "a finite positive number", "positive_float")
nonnegative_float = _number_type(
    float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0", "nonnegative_float"
)
finite_float = _number_type(float, math.isfinite, "a finite number", "finite_float")


class _DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show ``(default: x)`` once, and not at all for ``None`` (the help text then says what happens)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class _OneLineErrorParser(argparse.ArgumentParser):
    """Argument errors as one line (``error: python -m partN.x: ...``, exit 2) instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def make_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """A parser named ``python -m partN.x`` whose help shows every default once and whose errors are one line."""
    summary = (description or "").strip().split("\n\n")[0]
    return _OneLineErrorParser(prog=prog, description=summary, formatter_class=_DefaultsHelpFormatter)


def add_runtime_args(parser: argparse.ArgumentParser, precision: bool = True) -> None:
    """``--device``, ``--threads`` (and ``--precision``): where and how to compute."""
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:N or mps (default: cuda when available, else cpu)"
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads for torch (default: torch's choice, one per core)",
    )
    if precision:
        parser.add_argument(
            "--precision",
            choices=PRECISIONS,
            default=None,
            help="autocast precision of the forward pass (default: fp32 on CPU, bf16/fp16 on CUDA)",
        )


def add_run_args(parser: argparse.ArgumentParser, results_dir: str, seed: int = 0) -> None:
    """``--results_dir``, ``--overwrite``, ``--seed`` and the runtime options of a trainer."""
    parser.add_argument(
        "--results_dir",
        default=results_dir,
        help="folder for results; a run there resumes only with identical settings",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="if --results_dir holds a run with other settings, move it aside and start again",
    )
    parser.add_argument("--seed", type=int, default=seed, help="random seed")
    add_runtime_args(parser)


def run_cli(main: Callable[[], Any]) -> Any:
    """Run an entry point: a ``UserError`` becomes ``error: ...`` (exit 2), Ctrl-C exits 130 with a hint."""
    try:
        return main()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        raise SystemExit(130) from None
