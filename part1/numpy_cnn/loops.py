"""Convolution and max-pooling in NumPy with plain loops: the readable reference (Question 1.1).

Same names, signatures and results as :mod:`part1.numpy_cnn.vectorised`, written to read like the formulas:
one loop per output element (or window), each body one line of the equation. Slow (seconds for a
ResNet-sized layer); it is there to learn from and to test the vectorised version against.
Shapes: images ``(N, C, H, W)``, filters ``(F, C, FH, FW)``; ``Xp`` is the zero-padded input.
"""

from __future__ import annotations

import numpy as np

from part1.numpy_cnn.checks import Pair, check_conv_args, check_grad_shape, check_pool_args, float_dtype
from part1.numpy_cnn.vectorised import zero_padding

__all__ = [
    "zero_padding",
    "convolution2D",
    "convolution2D_backward_filter",
    "convolution2D_backward_input",
    "pool_forward",
    "pool_back",
]


def convolution2D(X: np.ndarray, W: np.ndarray, stride: Pair, padding: Pair) -> np.ndarray:
    """``Y[n, f, oh, ow] = sum_{c, i, j} W[f, c, i, j] * Xp[n, c, oh*sh + i, ow*sw + j]``."""
    X, W, (sh, sw), padding, (OH, OW) = check_conv_args(X, W, stride, padding)
    N = X.shape[0]
    F, _, FH, FW = W.shape
    Xp = zero_padding(X, padding)
    Y = np.zeros((N, F, OH, OW), dtype=float_dtype(X, W))
    for n in range(N):
        for f in range(F):
            for oh in range(OH):
                for ow in range(OW):
                    window = Xp[n, :, oh * sh : oh * sh + FH, ow * sw : ow * sw + FW]
                    Y[n, f, oh, ow] = np.sum(window * W[f])
    return Y


def convolution2D_backward_filter(
    out_grad: np.ndarray, X: np.ndarray, W: np.ndarray, stride: Pair, padding: Pair = (0, 0)
) -> np.ndarray:
    """``dW[f, c, i, j] = sum_{n, oh, ow} dY[n, f, oh, ow] * Xp[n, c, oh*sh + i, ow*sw + j]``."""
    X, W, (sh, sw), padding, (OH, OW) = check_conv_args(X, W, stride, padding)
    N = X.shape[0]
    F, _, FH, FW = W.shape
    dY = check_grad_shape(out_grad, (N, F, OH, OW), "out_grad")
    Xp = zero_padding(X, padding)
    dW = np.zeros(W.shape, dtype=float_dtype(dY, X, W))
    for n in range(N):
        for f in range(F):
            for oh in range(OH):
                for ow in range(OW):
                    window = Xp[n, :, oh * sh : oh * sh + FH, ow * sw : ow * sw + FW]
                    dW[f] += dY[n, f, oh, ow] * window
    return dW


def convolution2D_backward_input(
    out_grad: np.ndarray, X: np.ndarray, W: np.ndarray, stride: Pair, padding: Pair = (0, 0)
) -> np.ndarray:
    """``dXp[n, c, oh*sh + i, ow*sw + j] += dY[n, f, oh, ow] * W[f, c, i, j]``, then the padding is cut off."""
    X, W, (sh, sw), (ph, pw), (OH, OW) = check_conv_args(X, W, stride, padding)
    N, C, IH, IW = X.shape
    F, _, FH, FW = W.shape
    dY = check_grad_shape(out_grad, (N, F, OH, OW), "out_grad")
    dXp = np.zeros((N, C, IH + 2 * ph, IW + 2 * pw), dtype=float_dtype(dY, X, W))
    for n in range(N):
        for f in range(F):
            for oh in range(OH):
                for ow in range(OW):
                    dXp[n, :, oh * sh : oh * sh + FH, ow * sw : ow * sw + FW] += dY[n, f, oh, ow] * W[f]
    return dXp[:, :, ph : ph + IH, pw : pw + IW].copy()


def pool_forward(X: np.ndarray, f: int, s: int) -> np.ndarray:
    """``Y[n, c, oh, ow] = max_{0 <= i, j < f} X[n, c, oh*s + i, ow*s + j]``."""
    X, (OH, OW) = check_pool_args(X, f, s)
    N, C = X.shape[:2]
    Y = np.zeros((N, C, OH, OW), dtype=X.dtype)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    Y[n, c, oh, ow] = np.max(X[n, c, oh * s : oh * s + f, ow * s : ow * s + f])
    return Y


def pool_back(grad_pool: np.ndarray, X: np.ndarray, f: int, s: int) -> np.ndarray:
    """``dX[n, c, oh*s + i*, ow*s + j*] += dY[n, c, oh, ow]``, ``(i*, j*)`` the window's first argmax (row-major)."""
    X, (OH, OW) = check_pool_args(X, f, s)
    N, C = X.shape[:2]
    dY = check_grad_shape(grad_pool, (N, C, OH, OW), "grad_pool")
    dX = np.zeros(X.shape, dtype=float_dtype(dY, X))
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    window = X[n, c, oh * s : oh * s + f, ow * s : ow * s + f]
                    i, j = np.unravel_index(np.argmax(window), (f, f))
                    dX[n, c, oh * s + i, ow * s + j] += dY[n, c, oh, ow]
    return dX
