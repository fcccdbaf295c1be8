"""Convolution and max-pooling in NumPy, forward and backward, vectorised (Question 1.1).

Shapes follow PyTorch: images ``(N, C, H, W)``, filters ``(F, C, FH, FW)``; ``Xp`` is the zero-padded input.
The convolution is a cross-correlation, as ``torch.nn.functional.conv2d``, lowered to one matrix product
("im2col"); pooling is ``torch.nn.functional.max_pool2d`` without padding. The plain-loop reference with the
same names is :mod:`part1.numpy_cnn.loops`.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view

from part1.numpy_cnn.checks import (
    Pair,
    as_image_batch,
    as_pair,
    check_conv_args,
    check_grad_shape,
    check_pool_args,
    float_dtype,
)

__all__ = [
    "zero_padding",
    "convolution2D",
    "convolution2D_backward_filter",
    "convolution2D_backward_input",
    "pool_forward",
    "pool_back",
]


def zero_padding(X: np.ndarray, padding: Pair) -> np.ndarray:
    """``(N, C, IH, IW)`` -> ``(N, C, IH + 2 ph, IW + 2 pw)`` with ``ph`` zero rows above and below, ``pw`` columns
    left and right."""
    X = as_image_batch(X, "X")
    ph, pw = as_pair(padding, "padding", minimum=0)
    N, C, IH, IW = X.shape
    padded = np.zeros((N, C, IH + 2 * ph, IW + 2 * pw), dtype=X.dtype)
    padded[:, :, ph : ph + IH, pw : pw + IW] = X
    return padded


def _im2col(Xp: np.ndarray, FH: int, FW: int, stride: tuple[int, int]) -> np.ndarray:
    """``cols[(c, i, j), (n, oh, ow)] = Xp[n, c, oh*sh + i, ow*sw + j]``, contiguous, ``(C*FH*FW, N*OH*OW)``.

    Window offsets first and output positions last: the copy runs along image rows, and BLAS takes ``cols``
    without another copy both in ``W @ cols`` and, transposed, in ``dY @ cols.T``.
    """
    sh, sw = stride
    windows = sliding_window_view(Xp, (FH, FW), axis=(2, 3))[:, :, ::sh, ::sw]  # (N, C, OH, OW, FH, FW) view
    N, C, OH, OW = windows.shape[:4]
    return np.ascontiguousarray(windows.transpose(1, 4, 5, 0, 2, 3)).reshape(C * FH * FW, N * OH * OW)


def _correlate(Xp: np.ndarray, W: np.ndarray, stride: tuple[int, int]) -> np.ndarray:
    """``out[n, f, oh, ow] = sum_{c,i,j} W[f, c, i, j] Xp[n, c, oh*sh + i, ow*sw + j]`` as ``W (F, C*FH*FW) @ cols``."""
    F, _, FH, FW = W.shape
    N, _, H, Wd = Xp.shape
    OH, OW = 1 + (H - FH) // stride[0], 1 + (Wd - FW) // stride[1]
    out = W.reshape(F, -1) @ _im2col(Xp, FH, FW, stride)  # (F, N * OH * OW)
    return np.ascontiguousarray(out.reshape(F, N, OH, OW).transpose(1, 0, 2, 3))


def convolution2D(X: np.ndarray, W: np.ndarray, stride: Pair, padding: Pair) -> np.ndarray:
    """``Y[n, f, oh, ow] = sum_{c,i,j} W[f, c, i, j] Xp[n, c, oh*sh + i, ow*sw + j]`` (no bias).

    X ``(N, C, IH, IW)``, W ``(F, C, FH, FW)`` -> Y ``(N, F, 1 + (IH + 2ph - FH) // sh, 1 + (IW + 2pw - FW) // sw)``.
    """
    X, W, stride, padding, _ = check_conv_args(X, W, stride, padding)
    dtype = float_dtype(X, W)
    Xp = zero_padding(X.astype(dtype, copy=False), padding)
    return _correlate(Xp, W.astype(dtype, copy=False), stride)


def convolution2D_backward_filter(
    out_grad: np.ndarray, X: np.ndarray, W: np.ndarray, stride: Pair, padding: Pair = (0, 0)
) -> np.ndarray:
    """``dW[f, c, i, j] = sum_{n,oh,ow} dY[n, f, oh, ow] Xp[n, c, oh*sh + i, ow*sw + j]``, shape of ``W``.

    ``out_grad`` is ``dY`` ``(N, F, OH, OW)``; X, W, stride and padding are the forward pass's.
    """
    X, W, stride, padding, (OH, OW) = check_conv_args(X, W, stride, padding)
    F, C, FH, FW = W.shape
    dY = check_grad_shape(out_grad, (X.shape[0], F, OH, OW), "out_grad")
    dtype = float_dtype(dY, X, W)
    cols = _im2col(zero_padding(X.astype(dtype, copy=False), padding), FH, FW, stride)
    dY_rows = dY.astype(dtype, copy=False).transpose(1, 0, 2, 3).reshape(F, -1)  # (F, N*OH*OW)
    return (dY_rows @ cols.T).reshape(F, C, FH, FW)


def convolution2D_backward_input(
    out_grad: np.ndarray, X: np.ndarray, W: np.ndarray, stride: Pair, padding: Pair = (0, 0)
) -> np.ndarray:
    """``dXp[n, c, y, x] = sum_{f,oh,ow} dY[n, f, oh, ow] W[f, c, y - oh*sh, x - ow*sw]``, unpadded: shape of ``X``.

    That is a stride-1 correlation of ``dY`` dilated by the stride and padded by ``FH - 1, FW - 1`` with the
    flipped filters (channel axes swapped), so it reuses the forward kernel. Pixels no window reaches get 0.
    """
    X, W, (sh, sw), (ph, pw), (OH, OW) = check_conv_args(X, W, stride, padding)
    N, C, IH, IW = X.shape
    F, _, FH, FW = W.shape
    dY = check_grad_shape(out_grad, (N, F, OH, OW), "out_grad")
    dtype = float_dtype(dY, X, W)
    dilated = np.zeros((N, F, IH + 2 * ph + FH - 1, IW + 2 * pw + FW - 1), dtype=dtype)
    dilated[:, :, FH - 1 : FH - 1 + OH * sh : sh, FW - 1 : FW - 1 + OW * sw : sw] = dY
    flipped = W.astype(dtype, copy=False).transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
    # Only the unpadded rows/columns of dXp are needed: slicing the dilated gradient skips the border.
    needed = dilated[:, :, ph : ph + IH + FH - 1, pw : pw + IW + FW - 1]
    return _correlate(needed, flipped, (1, 1))


def _window_offset(offset: int, f: int, s: int, OH: int, OW: int) -> tuple:
    """Index of the pixel at ``(i, j) = divmod(offset, f)`` of every window: a strided ``(N, C, OH, OW)`` view."""
    i, j = divmod(offset, f)
    return ..., slice(i, i + (OH - 1) * s + 1, s), slice(j, j + (OW - 1) * s + 1, s)


def pool_forward(X: np.ndarray, f: int, s: int) -> np.ndarray:
    """``Y[n, c, oh, ow] = max_{0 <= i, j < f} X[n, c, oh*s + i, ow*s + j]``, one ``np.maximum`` per window offset.

    X ``(N, C, IH, IW)`` -> Y ``(N, C, 1 + (IH - f) // s, 1 + (IW - f) // s)``.
    """
    X, (OH, OW) = check_pool_args(X, f, s)
    Y = X[_window_offset(0, f, s, OH, OW)].copy()
    for offset in range(1, f * f):
        np.maximum(Y, X[_window_offset(offset, f, s, OH, OW)], out=Y)
    return Y


def pool_back(grad_pool: np.ndarray, X: np.ndarray, f: int, s: int) -> np.ndarray:
    """``dX``: each window's gradient goes to its maximum; overlapping windows add up.

    Ties go to the first maximum in row-major order (the rule of ``torch.nn.functional.max_pool2d``), a window
    holding NaN to its first NaN. grad_pool ``(N, C, OH, OW)``, X ``(N, C, IH, IW)`` -> dX of X's shape.
    """
    X, (OH, OW) = check_pool_args(X, f, s)
    dY = check_grad_shape(grad_pool, X.shape[:2] + (OH, OW), "grad_pool")
    dtype = float_dtype(dY, X)
    if f == s:
        dX = _tiled_pool_back(dY, X, f, dtype)
        if dX is not None:
            return dX
    return _pool_back_by_argmax(dY, X, f, s, dtype)


def _tiled_pool_back(dY: np.ndarray, X: np.ndarray, f: int, dtype: np.dtype) -> np.ndarray | None:
    """``pool_back`` for windows that tile the image (``s == f``) when no window has a tie or a NaN, else None.

    Works on the rows of window-rows, ``(N*C*OH, f, OW*f)``, so that every NumPy call runs along whole image
    rows: the window maxima, repeated ``f`` times along a row, are compared with ``X``, and the one pixel per
    window equal to its maximum receives the window's gradient.
    """
    N, C, IH, IW = X.shape
    OH, OW = IH // f, IW // f
    rows = np.ascontiguousarray(X[:, :, : OH * f, : OW * f]).reshape(N * C * OH, f, OW * f)
    column_max = rows[:, 0].copy()
    for i in range(1, f):
        np.maximum(column_max, rows[:, i], out=column_max)
    by_window = column_max.reshape(-1, OW, f)
    Y = by_window[..., 0].copy()
    for j in range(1, f):
        np.maximum(Y, by_window[..., j], out=Y)
    is_max = rows == np.repeat(Y, f, axis=1)[:, None, :]
    if np.count_nonzero(is_max) != Y.size or np.isnan(Y).any():
        return None  # a tie (several maxima) or a NaN in some window
    grad = np.multiply(is_max, np.repeat(dY.reshape(-1, OW), f, axis=1)[:, None, :], dtype=dtype)
    if (OH * f, OW * f) == (IH, IW):
        return grad.reshape(X.shape)
    dX = np.zeros(X.shape, dtype=dtype)
    dX[:, :, : OH * f, : OW * f] = grad.reshape(N, C, OH * f, OW * f)
    return dX


def _pool_back_by_argmax(dY: np.ndarray, X: np.ndarray, f: int, s: int, dtype: np.dtype) -> np.ndarray:
    """General ``pool_back``: each window's first argmax, then the gradients summed per target pixel (bincount)."""
    N, C, IH, IW = X.shape
    OH, OW = dY.shape[2:]
    sn, sc, sh, sw = X.strides
    windows = as_strided(X, (N, C, OH, OW, f, f), (sn, sc, sh * s, sw * s, sh, sw), writeable=False)
    first = windows.reshape(N, C, OH, OW, f * f).argmax(axis=-1)  # the first maximum (or NaN) in row-major order
    offset_in_window = (np.arange(f)[:, None] * IW + np.arange(f)).ravel()
    corner = (np.arange(N * C).reshape(N, C, 1, 1) * IH + s * np.arange(OH)[:, None]) * IW + s * np.arange(OW)
    target = corner + offset_in_window[first]  # flat index into X of each window's maximum
    dX = np.bincount(target.ravel(), weights=dY.ravel(), minlength=X.size)
    return dX.reshape(X.shape).astype(dtype, copy=False)
