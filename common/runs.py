"""The run-folder rule shared by every trainer.

A results folder that holds a run is resumed only when its saved settings equal
the requested ones; otherwise the run is refused, naming the differing settings
and the two ways out: another ``--results_dir``, or ``--overwrite``, which moves
the old run aside into ``<results_dir>/superseded-<time>/`` (never deletes it).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from common.io import read_json, write_json
from common.runtime import UserError


def ensure_writable(folder: str | os.PathLike, what: str = "", option: str = "--results_dir") -> Path:
    """Create ``folder`` if needed and check that files can be written in it (before any work is done).

    The error reads ``cannot write <what>to <folder> (<reason>); choose another <option>``.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise UserError(f"cannot write {what}to {folder} ({error.strerror}); choose another {option}") from None
    return folder


def _normalise(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings as they read back from JSON (tuples become lists, paths strings)."""
    return json.loads(json.dumps(settings, default=str))


def settings_diff(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """``["lr: 0.001 -> 0.01", ...]`` for every setting that differs."""
    keys = sorted(set(saved) | set(wanted))
    return [f"{key}: {saved.get(key)!r} -> {wanted.get(key)!r}" for key in keys if saved.get(key) != wanted.get(key)]


def move_aside(paths: Iterable[Path], folder: Path) -> Path | None:
    """Move the existing ``paths`` into ``folder/superseded-<time>/``; returns that folder (None if nothing moved)."""
    existing = [path for path in paths if path.exists()]
    if not existing:
        return None
    target = folder / time.strftime("superseded-%Y%m%d-%H%M%S")
    suffix = 1
    while target.exists():
        target = folder / f"{time.strftime('superseded-%Y%m%d-%H%M%S')}-{suffix}"
        suffix += 1
    target.mkdir(parents=True)
    for path in existing:  # keep the layout of the run: checkpoints/x.pt -> superseded-<time>/checkpoints/x.pt
        destination = target / path.relative_to(folder)
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, destination)
    return target


def claim_run(
    results_dir: str | os.PathLike,
    settings: dict[str, Any],
    overwrite: bool = False,
    name: str = "run",
    owned: Iterable[str] = (),
) -> bool:
    """Apply the run-folder rule; returns True when an existing run with the same settings is to be resumed.

    ``<results_dir>/<name>.config.json`` records the settings of the run in the folder; ``owned`` names
    the other files and folders (relative to ``results_dir``) that belong to this run, so that a run
    without a config file is not silently overwritten either, and ``--overwrite`` moves them aside too.
    """
    folder = ensure_writable(results_dir)
    config_path = folder / f"{name}.config.json"
    owned_paths = [config_path] + [folder / item for item in owned]
    wanted = _normalise(settings)
    if config_path.exists():
        saved = read_json(config_path, kind="run settings")
        if saved == wanted:
            return True
        reason = "holds a run with other settings (" + "; ".join(settings_diff(saved, wanted)) + ")"
    elif any(path.exists() for path in owned_paths):
        reason = "holds results of a run whose settings are unknown"
    else:
        write_json(wanted, config_path)
        return False
    if not overwrite:
        raise UserError(
            f"{folder} {reason}; choose another --results_dir, or pass --overwrite "
            "to move the old run aside and start again"
        )
    moved = move_aside(owned_paths, folder)
    print(f"--overwrite: moved the previous run to {moved}", flush=True)
    write_json(wanted, config_path)
    return False
