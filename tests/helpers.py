"""Small helpers shared by the command-line tests (imported as ``from helpers import ...``)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from common.cli import run_cli


def file_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root``, by relative path: "nothing changed" is equality of two of these."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def run_entry_point(main: Callable[[], object], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """Run an entry point as ``python -m`` would; returns ``(exit code, stderr lines)``."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main)
    return exit_info.value.code, capsys.readouterr().err.splitlines()
