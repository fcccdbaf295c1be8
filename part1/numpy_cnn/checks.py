"""Argument checks shared by the vectorised and the loop implementation: bad input raises one clear ``ValueError``."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import numpy as np

Pair = int | Sequence[int]


def as_pair(value: Pair, name: str, minimum: int) -> tuple[int, int]:
    """``value`` as a pair of ints ``>= minimum``; an int ``v`` means ``(v, v)``."""
    if isinstance(value, Integral) and not isinstance(value, bool):
        pair = (int(value), int(value))
    else:
        try:
            items = tuple(value)
        except TypeError:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}") from None
        if len(items) != 2 or not all(isinstance(v, Integral) and not isinstance(v, bool) for v in items):
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        pair = (int(items[0]), int(items[1]))
    if min(pair) < minimum:
        kind = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{name} must be {kind}, got {pair}")
    return pair


def as_image_batch(X: np.ndarray, name: str = "X") -> np.ndarray:
    """``X`` as an array of shape ``(N, C, H, W)``."""
    X = np.asarray(X)
    if X.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got an array of shape {X.shape}")
    return X


def float_dtype(*arrays: np.ndarray) -> np.dtype:
    """dtype of a result: float32 stays float32, integers become float64."""
    return np.result_type(*(a.dtype for a in arrays), 1.0)


def check_conv_args(
    X: np.ndarray, W: np.ndarray, stride: Pair, padding: Pair
) -> tuple[np.ndarray, np.ndarray, tuple[int, int], tuple[int, int], tuple[int, int]]:
    """``(X, W, stride, padding, (OH, OW))`` with ``OH = 1 + (IH + 2 ph - FH) // sh`` (likewise ``OW``)."""
    X = as_image_batch(X, "X")
    W = np.asarray(W)
    if W.ndim != 4:
        raise ValueError(f"W must have shape (F, C, FH, FW), got an array of shape {W.shape}")
    sh, sw = as_pair(stride, "stride", minimum=1)
    ph, pw = as_pair(padding, "padding", minimum=0)
    _, C, IH, IW = X.shape
    _, WC, FH, FW = W.shape
    if WC != C:
        raise ValueError(f"channel mismatch: X has {C} channels (shape {X.shape}) but W expects {WC} (shape {W.shape})")
    if min(X.shape + W.shape) == 0:
        raise ValueError(f"X and W must not be empty, got shapes {X.shape} and {W.shape}")
    if FH > IH + 2 * ph or FW > IW + 2 * pw:
        raise ValueError(
            f"filter {FH}x{FW} is larger than the padded input "
            f"{IH + 2 * ph}x{IW + 2 * pw} (input {IH}x{IW}, padding {(ph, pw)})"
        )
    out_size = (1 + (IH + 2 * ph - FH) // sh, 1 + (IW + 2 * pw - FW) // sw)
    return X, W, (sh, sw), (ph, pw), out_size


def check_grad_shape(grad: np.ndarray, expected: tuple[int, ...], name: str) -> np.ndarray:
    """``grad`` as an array whose shape is the forward output's ``expected`` shape."""
    grad = np.asarray(grad)
    if grad.shape != tuple(expected):
        raise ValueError(f"{name} has shape {grad.shape}, but the forward pass gives {tuple(expected)}")
    return grad


def check_pool_args(X: np.ndarray, f: int, s: int) -> tuple[np.ndarray, tuple[int, int]]:
    """``(X, (OH, OW))`` with ``OH = 1 + (IH - f) // s`` and ``OW = 1 + (IW - f) // s``."""
    X = as_image_batch(X, "X")
    for name, value in (("f", f), ("s", s)):
        if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if min(X.shape) == 0:
        raise ValueError(f"X must not be empty, got shape {X.shape}")
    IH, IW = X.shape[2:]
    if f > IH or f > IW:
        raise ValueError(f"pooling window {f}x{f} is larger than the input {IH}x{IW}")
    return X, (1 + (IH - f) // s, 1 + (IW - f) // s)
