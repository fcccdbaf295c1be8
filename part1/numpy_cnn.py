"""Convolution and max-pooling in NumPy, forward and backward, vectorised.

These are the course template's building blocks of a CNN. Shapes follow PyTorch:
images are ``(N, C, H, W)`` (batch, channels, height, width) and filters are
``(F, C, FH, FW)`` (output channels, input channels, filter height, filter width).
The convolution is a cross-correlation, exactly like ``torch.nn.functional.conv2d``,
and the pooling is ``torch.nn.functional.max_pool2d`` without padding.

The convolution lowers to one matrix product per call ("im2col"): the
``C * FH * FW`` values under each window are laid out as one column of a matrix
of shape ``(C * FH * FW, N * OH * OW)`` (a strided view from
``sliding_window_view``, copied once so that BLAS gets a contiguous operand),
and the filters as a ``(F, C * FH * FW)`` matrix. The gradient with respect to
the input is again a convolution (of the stride-dilated output gradient with the
flipped filters), so it reuses the same kernel. The plain-loop reference
implementation with the same names lives in :mod:`part1.numpy_cnn_loops`.

The validation helpers below are shared by both implementations; invalid
arguments raise ``ValueError`` with a message saying what is wrong.
"""
from __future__ import annotations

from numbers import Integral
from typing import Sequence, Union

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "zero_padding",
    "convolution2D",
    "convolution2D_backward_filter",
    "convolution2D_backward_input",
    "pool_forward",
    "pool_back",
]

Pair = Union[int, Sequence[int]]


# --------------------------------------------------------------------------- #
# Argument validation (shared with part1.numpy_cnn_loops)
# --------------------------------------------------------------------------- #
def as_pair(value: Pair, name: str, minimum: int) -> tuple[int, int]:
    """Return ``value`` as a pair of ints ``>= minimum``; an int ``v`` means ``(v, v)``."""
    if isinstance(value, Integral) and not isinstance(value, bool):
        pair = (int(value), int(value))
    else:
        try:
            items = tuple(value)
        except TypeError:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}") from None
        if len(items) != 2 or not all(
            isinstance(v, Integral) and not isinstance(v, bool) for v in items
        ):
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        pair = (int(items[0]), int(items[1]))
    if min(pair) < minimum:
        kind = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{name} must be {kind}, got {pair}")
    return pair


def as_image_batch(X: np.ndarray, name: str = "X") -> np.ndarray:
    """Return ``X`` as an array of shape ``(N, C, H, W)`` or raise ``ValueError``."""
    X = np.asarray(X)
    if X.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got an array of shape {X.shape}")
    return X


def float_dtype(*arrays: np.ndarray) -> np.dtype:
    """Floating dtype of a result: float32 stays float32, integers become float64."""
    return np.result_type(*(a.dtype for a in arrays), 1.0)


def check_conv_args(
    X: np.ndarray, W: np.ndarray, stride: Pair, padding: Pair
) -> tuple[np.ndarray, np.ndarray, tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Validate the arguments of a convolution.

    Returns:
        ``(X, W, stride, padding, (OH, OW))`` with ``X`` and ``W`` as arrays,
        ``stride`` and ``padding`` as pairs and the output size
        ``OH = 1 + (IH + 2 ph - FH) // sh``, ``OW = 1 + (IW + 2 pw - FW) // sw``.
    """
    X = as_image_batch(X, "X")
    W = np.asarray(W)
    if W.ndim != 4:
        raise ValueError(f"W must have shape (F, C, FH, FW), got an array of shape {W.shape}")
    sh, sw = as_pair(stride, "stride", minimum=1)
    ph, pw = as_pair(padding, "padding", minimum=0)
    _, C, IH, IW = X.shape
    F, WC, FH, FW = W.shape
    if WC != C:
        raise ValueError(
            f"channel mismatch: X has {C} channels (shape {X.shape}) "
            f"but W expects {WC} (shape {W.shape})"
        )
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
    """Return ``grad`` as an array, or raise ``ValueError`` if its shape is not ``expected``."""
    grad = np.asarray(grad)
    if grad.shape != tuple(expected):
        raise ValueError(
            f"{name} has shape {grad.shape}, but the forward pass gives {tuple(expected)}"
        )
    return grad


def check_pool_args(X: np.ndarray, f: int, s: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Validate the arguments of a max-pool.

    Returns:
        ``(X, (OH, OW))`` with ``OH = 1 + (IH - f) // s`` and ``OW = 1 + (IW - f) // s``.
    """
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


# --------------------------------------------------------------------------- #
# Padding and the im2col kernel
# --------------------------------------------------------------------------- #
def zero_padding(X: np.ndarray, padding: Pair) -> np.ndarray:
    """Pad the two spatial dimensions of ``X`` with zeros.

    Args:
        X: images, shape ``(N, C, IH, IW)``.
        padding: ``(ph, pw)``, the number of zero rows added at the top and at the
            bottom, and of zero columns added at the left and at the right.

    Returns:
        Array of shape ``(N, C, IH + 2 ph, IW + 2 pw)`` with ``X`` in the middle.
    """
    X = as_image_batch(X, "X")
    ph, pw = as_pair(padding, "padding", minimum=0)
    N, C, IH, IW = X.shape
    padded = np.zeros((N, C, IH + 2 * ph, IW + 2 * pw), dtype=X.dtype)
    padded[:, :, ph : ph + IH, pw : pw + IW] = X
    return padded


def _im2col(Xp: np.ndarray, FH: int, FW: int, stride: tuple[int, int]) -> np.ndarray:
    """Lay the windows of ``Xp`` out as columns.

    Args:
        Xp: (already padded) images, shape ``(N, C, H, W)``.
        FH, FW: window size.
        stride: ``(sh, sw)``.

    Returns:
        Contiguous array ``cols`` of shape ``(C * FH * FW, N * OH * OW)`` with
        ``cols[(c, i, j), (n, oh, ow)] = Xp[n, c, oh * sh + i, ow * sw + j]``.
        Putting the window offsets first and the output positions last keeps the
        innermost copy loop running along image rows, and lets BLAS use ``cols``
        without another copy both in the forward product ``W @ cols`` and, as a
        transposed operand, in the filter gradient ``grad @ cols.T``.
    """
    sh, sw = stride
    # (N, C, OH, OW, FH, FW) view: windows[n, c, oh, ow, i, j] = Xp[n, c, oh*sh + i, ow*sw + j]
    windows = sliding_window_view(Xp, (FH, FW), axis=(2, 3))[:, :, ::sh, ::sw]
    N, C, OH, OW = windows.shape[:4]
    cols = np.ascontiguousarray(windows.transpose(1, 4, 5, 0, 2, 3))
    return cols.reshape(C * FH * FW, N * OH * OW)


def _correlate(Xp: np.ndarray, W: np.ndarray, stride: tuple[int, int]) -> np.ndarray:
    """Cross-correlate padded images ``Xp`` ``(N, C, H, W)`` with ``W`` ``(F, C, FH, FW)``.

    ``out[n, f, oh, ow] = sum_{c, i, j} W[f, c, i, j] * Xp[n, c, oh*sh + i, ow*sw + j]``,
    computed as the matrix product ``W.reshape(F, C*FH*FW) @ im2col(Xp)``.
    """
    F, _, FH, FW = W.shape
    N, _, H, Wd = Xp.shape
    OH, OW = 1 + (H - FH) // stride[0], 1 + (Wd - FW) // stride[1]
    out = W.reshape(F, -1) @ _im2col(Xp, FH, FW, stride)  # (F, N * OH * OW)
    return np.ascontiguousarray(out.reshape(F, N, OH, OW).transpose(1, 0, 2, 3))


# --------------------------------------------------------------------------- #
# Convolution
# --------------------------------------------------------------------------- #
def convolution2D(X: np.ndarray, W: np.ndarray, stride: Pair, padding: Pair) -> np.ndarray:
    """2-D convolution (cross-correlation, as ``torch.nn.functional.conv2d`` without bias).

    With ``Xp = zero_padding(X, padding)``::

        Y[n, f, oh, ow] = sum_{c, i, j} W[f, c, i, j] * Xp[n, c, oh*sh + i, ow*sw + j]

    Args:
        X: images, shape ``(N, C, IH, IW)``.
        W: filters, shape ``(F, C, FH, FW)``.
        stride: ``(sh, sw)``, positive.
        padding: ``(ph, pw)``, non-negative.

    Returns:
        ``Y`` of shape ``(N, F, OH, OW)`` with ``OH = 1 + (IH + 2 ph - FH) // sh``
        and ``OW = 1 + (IW + 2 pw - FW) // sw``.
    """
    X, W, stride, padding, _ = check_conv_args(X, W, stride, padding)
    dtype = float_dtype(X, W)
    Xp = zero_padding(X.astype(dtype, copy=False), padding)
    return _correlate(Xp, W.astype(dtype, copy=False), stride)


def convolution2D_backward_filter(
    out_grad: np.ndarray,
    X: np.ndarray,
    W: np.ndarray,
    stride: Pair,
    padding: Pair = (0, 0),
) -> np.ndarray:
    """Gradient of a loss with respect to the filters of :func:`convolution2D`.

    ``dW[f, c, i, j] = sum_{n, oh, ow} dY[n, f, oh, ow] * Xp[n, c, oh*sh + i, ow*sw + j]``

    Args:
        out_grad: ``dY``, gradient of the loss with respect to the output,
            shape ``(N, F, OH, OW)``.
        X: the forward pass's input, shape ``(N, C, IH, IW)``.
        W: the forward pass's filters, shape ``(F, C, FH, FW)`` (only its shape is used).
        stride: the forward pass's ``(sh, sw)``.
        padding: the forward pass's ``(ph, pw)``; default no padding.

    Returns:
        ``dW``, shape ``(F, C, FH, FW)``.
    """
    X, W, stride, padding, (OH, OW) = check_conv_args(X, W, stride, padding)
    F, C, FH, FW = W.shape
    dY = check_grad_shape(out_grad, (X.shape[0], F, OH, OW), "out_grad")
    dtype = float_dtype(dY, X, W)
    cols = _im2col(zero_padding(X.astype(dtype, copy=False), padding), FH, FW, stride)
    dY_rows = dY.astype(dtype, copy=False).transpose(1, 0, 2, 3).reshape(F, -1)  # (F, N*OH*OW)
    return (dY_rows @ cols.T).reshape(F, C, FH, FW)


def convolution2D_backward_input(
    out_grad: np.ndarray,
    X: np.ndarray,
    W: np.ndarray,
    stride: Pair,
    padding: Pair = (0, 0),
) -> np.ndarray:
    """Gradient of a loss with respect to the input of :func:`convolution2D`.

    ``dXp[n, c, y, x] = sum_{f, oh, ow} dY[n, f, oh, ow] * W[f, c, y - oh*sh, x - ow*sw]``
    (terms with a filter index outside the filter are zero), and ``dX`` is
    ``dXp`` without its padding border. This is a stride-1 cross-correlation of
    ``dY`` dilated by the stride (``sh - 1`` zeros between rows, ``sw - 1``
    between columns) and zero-padded by ``FH - 1``, ``FW - 1``, with the filters
    flipped in both spatial directions and with their two channel axes swapped.

    Args:
        out_grad: ``dY``, gradient of the loss with respect to the output,
            shape ``(N, F, OH, OW)``.
        X: the forward pass's input, shape ``(N, C, IH, IW)`` (only its shape is used).
        W: the forward pass's filters, shape ``(F, C, FH, FW)``.
        stride: the forward pass's ``(sh, sw)``.
        padding: the forward pass's ``(ph, pw)``; default no padding.

    Returns:
        ``dX``, shape ``(N, C, IH, IW)``. Input pixels that no window reaches
        (the last rows or columns when the stride skips them) get zero gradient.
    """
    X, W, (sh, sw), (ph, pw), (OH, OW) = check_conv_args(X, W, stride, padding)
    N, C, IH, IW = X.shape
    F, _, FH, FW = W.shape
    dY = check_grad_shape(out_grad, (N, F, OH, OW), "out_grad")
    dtype = float_dtype(dY, X, W)
    # Dilated, padded gradient D with D[FH-1 + oh*sh, FW-1 + ow*sw] = dY[oh, ow]; its
    # correlation with the flipped filters is dXp, of height IH + 2ph. Only rows
    # ph .. ph+IH-1 (and likewise columns) of dXp are needed, which the slice of D
    # below selects, so the padding border is never computed. (With a stride > 1
    # most entries of D are zeros: this costs as much as a stride-1 convolution.)
    dilated = np.zeros((N, F, IH + 2 * ph + FH - 1, IW + 2 * pw + FW - 1), dtype=dtype)
    dilated[:, :, FH - 1 : FH - 1 + OH * sh : sh, FW - 1 : FW - 1 + OW * sw : sw] = dY
    flipped = W.astype(dtype, copy=False).transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
    needed = dilated[:, :, ph : ph + IH + FH - 1, pw : pw + IW + FW - 1]
    return _correlate(needed, flipped, (1, 1))


# --------------------------------------------------------------------------- #
# Max-pooling
# --------------------------------------------------------------------------- #
def _window_offset(offset: int, f: int, s: int, OH: int, OW: int) -> tuple:
    """Index of the pixels at offset ``(i, j) = divmod(offset, f)`` in every pooling window.

    ``X[idx][n, c, oh, ow] = X[n, c, oh*s + i, ow*s + j]``: a strided view of
    shape ``(N, C, OH, OW)``, one element per window.
    """
    i, j = divmod(offset, f)
    return ..., slice(i, i + (OH - 1) * s + 1, s), slice(j, j + (OW - 1) * s + 1, s)


def pool_forward(X: np.ndarray, f: int, s: int) -> np.ndarray:
    """Max-pooling with an ``f x f`` window and stride ``s`` (no padding).

    ``Y[n, c, oh, ow] = max_{0 <= i, j < f} X[n, c, oh*s + i, ow*s + j]``,
    computed as an element-wise maximum over the ``f * f`` strided views
    ``X[:, :, i::s, j::s]`` (one vectorised step per window offset).

    Args:
        X: images, shape ``(N, C, IH, IW)``.
        f: window size.
        s: stride; ``s < f`` gives overlapping windows, ``s > f`` skips pixels.

    Returns:
        ``Y`` of shape ``(N, C, 1 + (IH - f) // s, 1 + (IW - f) // s)``.
    """
    X, (OH, OW) = check_pool_args(X, f, s)
    Y = X[_window_offset(0, f, s, OH, OW)].copy()
    for offset in range(1, f * f):
        np.maximum(Y, X[_window_offset(offset, f, s, OH, OW)], out=Y)
    return Y


def pool_back(grad_pool: np.ndarray, X: np.ndarray, f: int, s: int) -> np.ndarray:
    """Gradient of a loss with respect to the input of :func:`pool_forward`.

    Each window passes its output gradient to the position of its maximum; where
    a window has several equal maxima, the first one in row-major order gets it
    (the rule of ``torch.nn.functional.max_pool2d``). Where windows overlap, a
    pixel sums the gradients of all windows whose maximum it is. (A window whose
    maximum is NaN passes no gradient; PyTorch sends it to the NaN.)

    Args:
        grad_pool: gradient of the loss with respect to the pooled output,
            shape ``(N, C, OH, OW)``.
        X: the forward pass's input, shape ``(N, C, IH, IW)``.
        f: window size of the forward pass.
        s: stride of the forward pass.

    Returns:
        ``dX``, shape ``(N, C, IH, IW)``.
    """
    X, (OH, OW) = check_pool_args(X, f, s)
    dY = check_grad_shape(grad_pool, X.shape[:2] + (OH, OW), "grad_pool")
    Y = pool_forward(X, f, s)
    dX = np.zeros(X.shape, dtype=float_dtype(dY, X))
    # Visit the window offsets in row-major order; a window routes its gradient at
    # the first offset that holds its maximum. Within one offset the target pixels
    # of different windows are distinct, so `+=` never collides, and overlapping
    # windows accumulate over the offsets.
    unrouted = np.ones(Y.shape, dtype=bool)
    for offset in range(f * f):
        index = _window_offset(offset, f, s, OH, OW)
        first_max = unrouted & (X[index] == Y)
        dX[index] += np.where(first_max, dY, 0)
        unrouted &= ~first_max
    return dX
