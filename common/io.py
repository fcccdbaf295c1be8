"""Atomic writes (a crash never leaves a half-written file) and checkpoint loading with one-line errors."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from common.runtime import UserError


def _write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write through ``write(file)`` into a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)  # mkstemp makes the file 0600; give it the usual mode
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write UTF-8 text atomically."""
    return _write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON (UTF-8, non-ASCII kept) atomically."""
    return write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", path)


def save_torch(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` atomically."""
    return _write_atomic(path, lambda f: torch.save(obj, f))


def load_checkpoint(
    path: str | os.PathLike,
    kind: str,
    required_keys: tuple[str, ...] = (),
    map_location: str | torch.device = "cpu",
    weights_only: bool = True,
    hint: str = "delete it or choose another --results_dir",
) -> dict:
    """``torch.load`` a checkpoint dict; a missing, truncated or foreign file becomes one ``UserError`` line."""
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=weights_only)
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except Exception:
        raise UserError(f"{path} is not a valid {kind} checkpoint (truncated?); {hint}") from None
    missing = [key for key in required_keys if not isinstance(checkpoint, dict) or key not in checkpoint]
    if not isinstance(checkpoint, dict) or missing:
        raise UserError(f"{path} is not a valid {kind} checkpoint (missing {', '.join(missing) or 'a dict'}); {hint}")
    return checkpoint


def read_json(path: str | os.PathLike, kind: str = "JSON") -> Any:
    """Read a JSON file; a missing or broken file becomes one ``UserError`` line."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except (OSError, ValueError):
        raise UserError(f"{path} is not a valid {kind} file; delete it or regenerate it") from None
