"""The command-line convention of every entry point: argparse types, common options, one-line errors."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import Any

from common.runtime import PRECISIONS, UserError


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite positive number, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


class _DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show ``(default: x)`` once, and not at all for ``None`` (the help text then says what happens)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def make_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """A parser named ``python -m partN.x`` whose help shows every default once."""
    summary = (description or "").strip().split("\n\n")[0]
    return argparse.ArgumentParser(prog=prog, description=summary, formatter_class=_DefaultsHelpFormatter)


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
