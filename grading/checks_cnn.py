"""Question 1.1: the six NumPy CNN functions against PyTorch (float64), element by element.

Each function is graded on its own: while it runs, the other five names in its
globals are replaced by the references below, so a bug in ``zero_padding``
costs only ``zero_padding``'s checks even when ``convolution2D`` calls it.
Errors are element-wise maxima (a sum of differences lets a convolution that
scrambles its output positions pass); gradients come from random output
gradients (all-ones gradients hide transposed or misplaced terms).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from grading.failures import CheckFailed, call_student
from grading.student import CNN_FUNCTIONS

Case = tuple  # the positional arguments of one call


# --------------------------------------------------------------------------- references (PyTorch, float64)
def _pair(value) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    first, second = value
    return int(first), int(second)


def ref_zero_padding(X, padding):
    ph, pw = _pair(padding)
    return np.pad(np.asarray(X), ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def ref_convolution2D(X, W, stride, padding):
    out = F.conv2d(
        torch.as_tensor(np.asarray(X, dtype=np.float64)),
        torch.as_tensor(np.asarray(W, dtype=np.float64)),
        stride=_pair(stride),
        padding=_pair(padding),
    )
    return out.numpy()


def _conv_grads(out_grad, X, W, stride, padding=(0, 0)):
    x = torch.tensor(np.asarray(X, dtype=np.float64), requires_grad=True)
    w = torch.tensor(np.asarray(W, dtype=np.float64), requires_grad=True)
    out = F.conv2d(x, w, stride=_pair(stride), padding=_pair(padding))
    out.backward(torch.as_tensor(np.asarray(out_grad, dtype=np.float64)))
    return x.grad.numpy(), w.grad.numpy()


def ref_convolution2D_backward_filter(out_grad, X, W, stride, padding=(0, 0)):
    return _conv_grads(out_grad, X, W, stride, padding)[1]


def ref_convolution2D_backward_input(out_grad, X, W, stride, padding=(0, 0)):
    return _conv_grads(out_grad, X, W, stride, padding)[0]


def ref_pool_forward(X, f, s):
    return F.max_pool2d(torch.as_tensor(np.asarray(X, dtype=np.float64)), int(f), int(s)).numpy()


def ref_pool_back(grad_pool, X, f, s):
    x = torch.tensor(np.asarray(X, dtype=np.float64), requires_grad=True)
    F.max_pool2d(x, int(f), int(s)).backward(torch.as_tensor(np.asarray(grad_pool, dtype=np.float64)))
    return x.grad.numpy()


REFERENCES: dict[str, Callable] = {
    "zero_padding": ref_zero_padding,
    "convolution2D": ref_convolution2D,
    "convolution2D_backward_filter": ref_convolution2D_backward_filter,
    "convolution2D_backward_input": ref_convolution2D_backward_input,
    "pool_forward": ref_pool_forward,
    "pool_back": ref_pool_back,
}


# --------------------------------------------------------------------------- cases
def _rand(*shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def _conv_case(x_shape, w_shape, stride, padding, seed) -> Case:
    return _rand(*x_shape, seed=seed), _rand(*w_shape, seed=seed + 1), stride, padding


def _backward_case(x_shape, w_shape, stride, seed) -> Case:
    X, W = _rand(*x_shape, seed=seed), _rand(*w_shape, seed=seed + 1)
    out_shape = ref_convolution2D(X, W, stride, (0, 0)).shape
    return _rand(*out_shape, seed=seed + 2), X, W, stride


def _pool_case(x_shape, f, s, seed) -> Case:
    return _rand(*x_shape, seed=seed), f, s


def _pool_back_case(x_shape, f, s, seed, ties: bool = False) -> Case:
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 3, x_shape).astype(np.float64) if ties else rng.standard_normal(x_shape)
    grad = rng.uniform(0.5, 1.5, ref_pool_forward(X, f, s).shape)
    return grad, X, f, s


CASES: dict[str, list[Case]] = {
    "zero_padding.values": [
        (_rand(2, 3, 4, 4, seed=1), (3, 2)),
        (_rand(1, 1, 3, 5, seed=2), (1, 2)),
        (_rand(2, 2, 5, 3, seed=3), (2, 2)),
    ],
    "zero_padding.zero": [
        (_rand(2, 3, 4, 5, seed=4), (0, 0)),
        (_rand(1, 2, 3, 3, seed=5), (0, 2)),
        (_rand(2, 1, 4, 2, seed=6), (3, 0)),
    ],
    "conv2d.basic": [
        _conv_case((2, 3, 8, 8), (4, 3, 3, 3), (1, 1), (0, 0), 10),
        _conv_case((2, 2, 9, 9), (3, 2, 3, 3), (2, 2), (0, 0), 11),
    ],
    "conv2d.padding": [
        _conv_case((2, 3, 7, 7), (2, 3, 3, 3), (1, 1), (1, 1), 12),
        _conv_case((1, 2, 6, 6), (3, 2, 3, 3), (1, 1), (2, 1), 13),
        _conv_case((2, 2, 5, 5), (2, 2, 2, 2), (1, 1), (0, 2), 14),
        _conv_case((2, 3, 23, 20), (7, 3, 6, 6), (3, 6), (2, 3), 15),
    ],
    "conv2d.stride": [
        _conv_case((1, 3, 9, 9), (2, 3, 3, 3), (2, 1), (0, 0), 16),
        _conv_case((2, 2, 8, 8), (3, 2, 2, 2), (1, 3), (0, 0), 17),
        _conv_case((2, 2, 9, 9), (2, 2, 2, 2), (3, 3), (0, 0), 18),
        _conv_case((1, 2, 11, 10), (1, 2, 2, 2), (4, 3), (1, 1), 19),
    ],
    "conv2d.shapes": [
        _conv_case((2, 3, 7, 5), (4, 3, 3, 2), (2, 1), (0, 0), 20),
        _conv_case((1, 1, 5, 9), (1, 1, 1, 4), (1, 2), (0, 1), 21),
        _conv_case((3, 2, 9, 7), (5, 2, 5, 3), (1, 1), (2, 1), 22),
    ],
    "backward_filter.basic": [
        _backward_case((2, 3, 10, 10), (7, 3, 4, 4), (2, 2), 30),
        _backward_case((2, 2, 6, 6), (3, 2, 3, 3), (1, 1), 31),
    ],
    "backward_filter.stride": [
        _backward_case((2, 3, 9, 9), (2, 3, 3, 3), (2, 1), 32),
        _backward_case((1, 2, 8, 10), (3, 2, 2, 2), (1, 3), 33),
    ],
    "backward_filter.skip": [
        _backward_case((2, 2, 9, 9), (2, 2, 2, 2), (3, 3), 34),
        _backward_case((1, 2, 11, 10), (1, 2, 2, 2), (4, 3), 35),
    ],
    "backward_filter.shapes": [
        _backward_case((1, 1, 7, 5), (2, 1, 3, 2), (1, 1), 36),
        _backward_case((2, 3, 9, 6), (1, 3, 2, 3), (2, 1), 37),
        _backward_case((3, 2, 6, 11), (4, 2, 3, 5), (1, 1), 38),
    ],
    "backward_input.basic": [
        _backward_case((2, 3, 6, 6), (4, 3, 3, 3), (1, 1), 40),
        _backward_case((2, 2, 8, 8), (3, 2, 2, 2), (2, 2), 41),
    ],
    "backward_input.stride": [
        _backward_case((2, 3, 9, 9), (2, 3, 3, 3), (2, 1), 42),
        _backward_case((1, 2, 8, 10), (3, 2, 2, 2), (1, 3), 43),
        _backward_case((5, 3, 6, 6), (2, 3, 2, 2), (3, 3), 44),
    ],
    "backward_input.shapes": [
        _backward_case((1, 1, 7, 5), (2, 1, 3, 2), (1, 1), 45),
        _backward_case((2, 3, 9, 6), (1, 3, 2, 3), (2, 1), 46),
        _backward_case((3, 2, 6, 11), (4, 2, 3, 5), (1, 2), 47),
    ],
    "pool_forward.basic": [_pool_case((2, 3, 8, 8), 2, 2, 50), _pool_case((1, 2, 9, 9), 3, 3, 51)],
    "pool_forward.stride": [
        _pool_case((2, 2, 9, 9), 3, 1, 52),
        _pool_case((1, 3, 9, 9), 3, 2, 53),
        _pool_case((2, 2, 10, 10), 2, 3, 54),
        _pool_case((2, 3, 23, 23), 2, 11, 55),
    ],
    "pool_forward.shapes": [_pool_case((2, 3, 7, 10), 2, 2, 56), _pool_case((1, 1, 5, 8), 3, 2, 57)],
    "pool_back.basic": [_pool_back_case((2, 3, 8, 8), 2, 2, 60), _pool_back_case((1, 2, 9, 9), 3, 3, 61)],
    "pool_back.stride": [
        _pool_back_case((2, 3, 10, 10), 2, 1, 62),
        _pool_back_case((2, 2, 9, 9), 3, 2, 63),
        _pool_back_case((2, 2, 10, 10), 2, 3, 64),
        _pool_back_case((1, 1, 7, 10), 3, 2, 65),
    ],
    "pool_back.ties": [
        _pool_back_case((2, 2, 6, 6), 2, 2, 66, ties=True),
        _pool_back_case((1, 3, 9, 9), 3, 3, 67, ties=True),
        _pool_back_case((2, 1, 8, 7), 2, 3, 68, ties=True),
    ],
}
FUNCTION_OF = {
    "zero_padding": "zero_padding",
    "conv2d": "convolution2D",
    "backward_filter": "convolution2D_backward_filter",
    "backward_input": "convolution2D_backward_input",
    "pool_forward": "pool_forward",
    "pool_back": "pool_back",
}
ARGUMENT_NAMES = {
    "zero_padding": ("X", "padding"),
    "convolution2D": ("X", "W", "stride", "padding"),
    "convolution2D_backward_filter": ("out_grad", "X", "W", "stride"),
    "convolution2D_backward_input": ("out_grad", "X", "W", "stride"),
    "pool_forward": ("X", "f", "s"),
    "pool_back": ("grad_pool", "X", "f", "s"),
}


# --------------------------------------------------------------------------- helpers
def describe_call(function: str, args: Case) -> str:
    """``convolution2D(X (2, 3, 7, 5), W (4, 3, 3, 2), stride (2, 1), padding (0, 0))``."""
    parts = [
        f"{name} {tuple(value.shape) if isinstance(value, np.ndarray) else value}"
        for name, value in zip(ARGUMENT_NAMES[function], args)
    ]
    return f"{function}({', '.join(parts)})"


@contextlib.contextmanager
def graded_alone(function: Callable) -> Iterator[None]:
    """While grading ``function``, the other five graded names in its globals are the references."""
    namespace = getattr(function, "__globals__", {})
    saved = {name: namespace[name] for name in CNN_FUNCTIONS if name in namespace}
    try:
        for name in saved:
            if namespace[name] is not function:
                namespace[name] = REFERENCES[name]
        yield
    finally:
        namespace.update(saved)


def as_array(result, call: str) -> np.ndarray:
    """The student's result as a float array, or :class:`CheckFailed` naming what came back instead."""
    if result is None:
        raise CheckFailed(f"{call} returned None (not implemented?)")
    if isinstance(result, torch.Tensor):
        result = result.detach().cpu().numpy()
    try:
        array = np.asarray(result, dtype=np.float64)
    except (TypeError, ValueError):
        raise CheckFailed(f"{call} returned {type(result).__name__}, expected a NumPy array") from None
    return array


def compare(got: np.ndarray, expected: np.ndarray, call: str) -> None:
    """Element-wise comparison; the message names the worst element."""
    if got.shape != expected.shape:
        raise CheckFailed(f"{call}: output shape {got.shape}, expected {expected.shape}")
    if not np.all(np.isfinite(got)):
        raise CheckFailed(f"{call}: output has NaN or infinite values")
    error = np.abs(got - expected)
    tolerance = 1e-6 * max(1.0, float(np.abs(expected).max(initial=0.0)))
    if error.size and error.max() > tolerance:
        index = np.unravel_index(int(error.argmax()), error.shape)
        wrong = int((error > tolerance).sum())
        raise CheckFailed(
            f"{call}: wrong values, max error {error.max():.3g} at index {tuple(int(i) for i in index)} "
            f"(expected {expected[index]:.4g}, got {got[index]:.4g}; {wrong} of {error.size} elements wrong)"
        )


def _run(ctx, function_name: str, args: Case):
    function = ctx.code.cnn_function(function_name)
    call = describe_call(function_name, args)
    copies = tuple(a.copy() if isinstance(a, np.ndarray) else a for a in args)
    with graded_alone(function):
        result = call_student(call, function, *copies)
    return as_array(result, call), copies, call


def check_cases(ctx, check: str) -> None:
    """Every case of ``check`` must give the reference's values."""
    function_name = FUNCTION_OF[check.split(".")[0]]
    for args in CASES[check]:
        got, _, call = _run(ctx, function_name, args)
        compare(got, REFERENCES[function_name](*args), call)


def check_unchanged(ctx, prefix: str) -> None:
    """The function must leave its input arrays as they were (checked on every case of its value checks)."""
    function_name = FUNCTION_OF[prefix]
    for check, cases in CASES.items():
        if not check.startswith(prefix + "."):
            continue
        for args in cases:
            try:
                _, copies, call = _run(ctx, function_name, args)
            except CheckFailed:
                continue  # wrong results cost their own checks; here only modified inputs count
            for name, before, after in zip(ARGUMENT_NAMES[function_name], args, copies):
                if isinstance(before, np.ndarray) and not np.array_equal(before, after):
                    change = float(np.abs(np.asarray(after, dtype=np.float64) - before).max())
                    raise CheckFailed(f"{call} modified its input {name} in place (max change {change:.3g})")


def check_ties(ctx) -> None:
    """Non-overlapping windows with tied maxima: each window's gradient goes to its maxima exactly once.

    Any split among the tied maxima is a valid (sub)gradient; giving every tied
    maximum the full gradient is not (the window's gradient would count twice).
    """
    for grad, X, f, s in CASES["pool_back.ties"]:
        got, _, call = _run(ctx, "pool_back", (grad, X, f, s))
        if got.shape != X.shape:
            raise CheckFailed(f"{call}: output shape {got.shape}, expected {X.shape}")
        covered = np.zeros(X.shape, dtype=bool)
        for oh in range(grad.shape[2]):
            for ow in range(grad.shape[3]):
                window = (slice(None), slice(None), slice(oh * s, oh * s + f), slice(ow * s, ow * s + f))
                covered[window] = True
                values, routed = X[window], got[window]
                is_max = values == values.max(axis=(2, 3), keepdims=True)
                off_max = np.abs(np.where(is_max, 0, routed)).max()
                total, wanted = routed.sum(axis=(2, 3)), grad[:, :, oh, ow]
                if off_max > 1e-9:
                    raise CheckFailed(f"{call}: gradient at a position that is not the maximum of window ({oh}, {ow})")
                if np.abs(total - wanted).max() > 1e-9:
                    n, c = np.unravel_index(int(np.abs(total - wanted).argmax()), wanted.shape)
                    ties = int(is_max[n, c].sum())
                    raise CheckFailed(
                        f"{call}: window ({oh}, {ow}) of image {n}, channel {c} has {ties} tied maxima and passes "
                        f"{total[n, c]:.3g} in total instead of its gradient {wanted[n, c]:.3g} "
                        f"(route it to one maximum, as torch does)"
                    )
        if np.abs(got[~covered]).max(initial=0.0) > 1e-9:
            raise CheckFailed(f"{call}: gradient at pixels that no pooling window covers")


# --------------------------------------------------------------------------- the checks (see grading/questions.py)
def _value_check(name: str):
    def check(ctx) -> None:
        check_cases(ctx, name)

    check.__name__ = check.__doc__ = f"check_{name.replace('.', '_')}"
    return check


def _unchanged_check(prefix: str):
    def check(ctx) -> None:
        check_unchanged(ctx, prefix)

    check.__name__ = check.__doc__ = f"check_{prefix}_unchanged"
    return check


for _name in CASES:
    if _name != "pool_back.ties":
        globals()[f"check_{_name.replace('.', '_')}"] = _value_check(_name)
for _prefix in FUNCTION_OF:
    globals()[f"check_{_prefix}_unchanged"] = _unchanged_check(_prefix)
check_pool_back_ties = check_ties
