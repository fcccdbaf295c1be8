"""Device, precision, seeding and threads: how every trainer sets up where and how it computes."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch

PRECISIONS = ("fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class UserError(Exception):
    """A problem with the user's input or files: printed as one line ``error: ...``, never a traceback."""


def resolve_device(spec: str | None = None) -> torch.device:
    """``None``/``"auto"``: CUDA when available, else CPU; ``cpu``, ``cuda``, ``cuda:N``, ``mps`` are checked."""
    if spec in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UserError(f"unknown --device {spec!r}; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {spec} requested but CUDA is not available; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) visible")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise UserError(f"--device {spec} requested but MPS is not available; use --device cpu")
    elif device.type != "cpu":
        raise UserError(f"unsupported --device {spec!r}; use cpu, cuda, cuda:N or mps")
    return device


def device_name(device: torch.device) -> str:
    """``cpu`` or ``cuda:0 (NVIDIA A100 ...)``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """``None``: fp32 on CPU (the safe default), bf16 on CUDA where supported, else fp16."""
    if precision is None:
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast context for the forward pass and loss (``fp32``: no autocast)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for fp16 (bf16 has fp32's exponent range and needs none)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_threads(threads: int | None) -> int:
    """Use ``threads`` intra-op threads (``None``: torch's default); returns the number in use."""
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def start_line(script: str, device: torch.device, precision: str, results_dir: object) -> str:
    """The one line every run prints first: what runs where, and where its results go."""
    line = (
        f"{script}: device {device_name(device)}, precision {precision}, "
        f"{torch.get_num_threads()} thread(s), results in {results_dir}"
    )
    print(line, flush=True)
    return line


@contextlib.contextmanager
def num_threads(threads: int) -> Iterator[None]:
    """Temporarily run torch on ``threads`` intra-op threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
