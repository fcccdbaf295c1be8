"""The NumPy CNN blocks (part1.numpy_cnn, part1.numpy_cnn.loops) against PyTorch, float64.

Every case checks the forward pass against ``F.conv2d`` / ``F.max_pool2d`` and the
backward passes against autograd, for the vectorised implementation on all shapes
and for the loop implementation on the small ones.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import part1
from part1 import numpy_cnn
from part1.numpy_cnn import loops as numpy_cnn_loops

IMPLEMENTATIONS = [pytest.param(numpy_cnn, id="vectorised"), pytest.param(numpy_cnn_loops, id="loops")]
TOL = dict(rtol=1e-10, atol=1e-10)

# (N, C, IH, IW, F, FH, FW, stride, padding): odd sizes, batch 1, one channel,
# unequal strides and paddings, 1x1 and non-square filters, strides larger than
# the filter (skipped pixels), a filter as large as the padded input.
CONV_CASES = [
    (2, 3, 7, 7, 4, 3, 3, (1, 1), (0, 0)),
    (2, 3, 7, 7, 4, 3, 3, (2, 1), (1, 2)),
    (1, 1, 5, 6, 1, 2, 3, (1, 2), (0, 1)),
    (1, 2, 9, 5, 3, 3, 2, (3, 2), (2, 0)),
    (3, 2, 6, 6, 2, 1, 1, (2, 2), (0, 0)),
    (2, 1, 8, 7, 3, 2, 2, (3, 3), (0, 0)),
    (1, 3, 5, 5, 2, 7, 5, (1, 1), (1, 0)),
    (2, 2, 4, 4, 2, 5, 5, (2, 3), (2, 2)),
    (1, 2, 3, 11, 2, 3, 4, (1, 4), (1, 3)),
]


def _conv_case(case, seed):
    N, C, IH, IW, Fo, FH, FW, stride, padding = case
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, C, IH, IW))
    W = rng.standard_normal((Fo, C, FH, FW))
    Xt = torch.tensor(X, requires_grad=True)
    Wt = torch.tensor(W, requires_grad=True)
    Y = F.conv2d(Xt, Wt, stride=stride, padding=padding)
    dY = torch.from_numpy(rng.standard_normal(tuple(Y.shape)))
    Y.backward(dY)
    ref = {"Y": Y.detach().numpy(), "dX": Xt.grad.numpy(), "dW": Wt.grad.numpy()}
    return X, W, dY.numpy(), stride, padding, ref


def _check_conv(module, X, W, dY, stride, padding, ref):
    Y = module.convolution2D(X, W, stride, padding)
    assert Y.shape == ref["Y"].shape
    np.testing.assert_allclose(Y, ref["Y"], **TOL)
    dW = module.convolution2D_backward_filter(dY, X, W, stride, padding=padding)
    assert dW.shape == W.shape
    np.testing.assert_allclose(dW, ref["dW"], **TOL)
    dX = module.convolution2D_backward_input(dY, X, W, stride, padding=padding)
    assert dX.shape == X.shape
    np.testing.assert_allclose(dX, ref["dX"], **TOL)


@pytest.mark.parametrize("module", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv_matches_torch(module, case):
    _check_conv(module, *_conv_case(case, seed=CONV_CASES.index(case)))


def _random_conv_case(seed):
    rng = np.random.default_rng(seed)
    N, C, Fo = rng.integers(1, 5, size=3)
    FH, FW = rng.integers(1, 6, size=2)
    stride = tuple(int(v) for v in rng.integers(1, 4, size=2))
    padding = tuple(int(v) for v in rng.integers(0, 3, size=2))
    IH = int(rng.integers(max(1, FH - 2 * padding[0]), 20))
    IW = int(rng.integers(max(1, FW - 2 * padding[1]), 20))
    return (int(N), int(C), IH, IW, int(Fo), int(FH), int(FW), stride, padding)


@pytest.mark.parametrize("seed", range(40))
def test_conv_random_shapes_match_torch(seed):
    _check_conv(numpy_cnn, *_conv_case(_random_conv_case(seed), seed))


@pytest.mark.parametrize("seed", range(8))
def test_loops_agree_with_vectorised_on_random_shapes(seed):
    case = _random_conv_case(100 + seed)
    X, W, dY, stride, padding, _ = _conv_case(case, seed)
    for name, args in [
        ("convolution2D", (X, W, stride, padding)),
        ("convolution2D_backward_filter", (dY, X, W, stride, padding)),
        ("convolution2D_backward_input", (dY, X, W, stride, padding)),
    ]:
        np.testing.assert_allclose(getattr(numpy_cnn_loops, name)(*args), getattr(numpy_cnn, name)(*args), **TOL)


def test_conv_resnet_like_layer_matches_torch():
    _check_conv(numpy_cnn, *_conv_case((4, 16, 16, 16, 8, 3, 3, (1, 1), (1, 1)), seed=0))


def test_conv_float32_stays_float32():
    X = np.ones((1, 2, 5, 5), dtype=np.float32)
    W = np.ones((3, 2, 3, 3), dtype=np.float32)
    Y = numpy_cnn.convolution2D(X, W, (1, 1), (1, 1))
    assert Y.dtype == np.float32
    assert numpy_cnn.convolution2D_backward_input(Y, X, W, (1, 1), padding=(1, 1)).dtype == np.float32
    assert numpy_cnn.convolution2D_backward_filter(Y, X, W, (1, 1), padding=(1, 1)).dtype == np.float32


def test_zero_padding():
    X = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    padded = part1.zero_padding(X, (2, 1))
    assert padded.shape == (2, 3, 8, 7)
    np.testing.assert_array_equal(padded, np.pad(X, ((0, 0), (0, 0), (2, 2), (1, 1))))
    unpadded = part1.zero_padding(X, (0, 0))
    np.testing.assert_array_equal(unpadded, X)
    assert unpadded is not X


# (N, C, IH, IW, f, s): overlapping (s < f), skipping (s > f), tiling, f = 1,
# window as large as the input, odd sizes, batch 1, one channel.
POOL_CASES = [
    (2, 3, 8, 8, 2, 2),
    (2, 3, 7, 9, 3, 2),
    (1, 1, 7, 7, 3, 1),
    (2, 2, 9, 8, 2, 3),
    (1, 2, 10, 7, 2, 4),
    (3, 1, 5, 5, 1, 1),
    (1, 3, 6, 5, 5, 2),
    (2, 2, 4, 4, 4, 1),
    (2, 3, 9, 7, 2, 2),
    (1, 2, 10, 11, 3, 3),
]


def _torch_pool(X, dY, f, s):
    Xt = torch.tensor(X, requires_grad=True)
    Y = F.max_pool2d(Xt, f, s)
    Y.backward(torch.from_numpy(dY))
    return Y.detach().numpy(), Xt.grad.numpy()


def _check_pool(module, X, f, s, seed):
    N, C, IH, IW = X.shape
    dY = np.random.default_rng(seed).standard_normal((N, C, 1 + (IH - f) // s, 1 + (IW - f) // s))
    Y_ref, dX_ref = _torch_pool(X, dY, f, s)
    Y = module.pool_forward(X, f, s)
    assert Y.shape == Y_ref.shape
    np.testing.assert_array_equal(Y, Y_ref)
    dX = module.pool_back(dY, X, f, s)
    assert dX.shape == X.shape
    np.testing.assert_allclose(dX, dX_ref, **TOL)


@pytest.mark.parametrize("module", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_pool_matches_torch(module, case):
    N, C, IH, IW, f, s = case
    X = np.random.default_rng(sum(case)).standard_normal((N, C, IH, IW))
    _check_pool(module, X, f, s, seed=sum(case))


@pytest.mark.parametrize("module", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_pool_ties_match_torch(module, case):
    """Inputs from {0, 1, 2}: most windows have several maxima; the first in row-major order wins."""
    N, C, IH, IW, f, s = case
    X = np.random.default_rng(sum(case)).integers(0, 3, size=(N, C, IH, IW)).astype(np.float64)
    _check_pool(module, X, f, s, seed=sum(case) + 1)


@pytest.mark.parametrize("module", IMPLEMENTATIONS)
def test_pool_constant_input_routes_to_first_pixel_of_each_window(module):
    X = np.full((1, 1, 5, 5), 3.0)
    dY = np.arange(1.0, 5.0).reshape(1, 1, 2, 2)
    dX = module.pool_back(dY, X, 3, 2)
    expected = np.zeros((1, 1, 5, 5))
    expected[0, 0, [0, 0, 2, 2], [0, 2, 0, 2]] = [1.0, 2.0, 3.0, 4.0]
    np.testing.assert_array_equal(dX, expected)
    np.testing.assert_array_equal(dX, _torch_pool(X, dY, 3, 2)[1])


@pytest.mark.parametrize("module", IMPLEMENTATIONS)
def test_pool_overlapping_windows_accumulate(module):
    # The centre pixel is the maximum of all four overlapping 2x2 windows.
    X = np.zeros((1, 1, 3, 3))
    X[0, 0, 1, 1] = 1.0
    dY = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    dX = module.pool_back(dY, X, 2, 1)
    assert dX[0, 0, 1, 1] == 10.0
    assert np.count_nonzero(dX) == 1


@pytest.mark.parametrize("relu", [False, True], ids=["distinct", "relu_ties"])
def test_tiled_pool_back_on_a_resnet_like_layer(relu):
    """s == f takes the fast tiled path without ties; ReLU-like zeros (ties) take the general path: both exact."""
    X = np.random.default_rng(3).standard_normal((4, 16, 16, 16))
    _check_pool(numpy_cnn, np.maximum(X, 0) if relu else X, 2, 2, seed=4)


def test_pool_back_sends_a_nan_window_to_its_first_nan():
    X = np.array([[[[1.0, np.nan], [np.nan, 0.0]]]])
    for module in (numpy_cnn, numpy_cnn_loops):
        np.testing.assert_array_equal(module.pool_back(np.ones((1, 1, 1, 1)), X, 2, 2).ravel(), [0, 1, 0, 0])


def test_pool_float32_stays_float32():
    X = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    for f, s in ((2, 2), (3, 2)):
        dY = np.ones(numpy_cnn.pool_forward(X, f, s).shape, dtype=np.float32)
        assert numpy_cnn.pool_back(dY, X, f, s).dtype == np.float32


def test_loops_agree_with_vectorised_on_random_pools():
    rng = np.random.default_rng(7)
    for _ in range(10):
        f, s = (int(v) for v in rng.integers(1, 4, size=2))
        X = rng.integers(0, 4, size=(2, 2, int(rng.integers(f, 10)), int(rng.integers(f, 10))))
        X = X.astype(np.float64)
        dY = rng.standard_normal(numpy_cnn.pool_forward(X, f, s).shape)
        np.testing.assert_array_equal(numpy_cnn_loops.pool_forward(X, f, s), numpy_cnn.pool_forward(X, f, s))
        np.testing.assert_allclose(numpy_cnn_loops.pool_back(dY, X, f, s), numpy_cnn.pool_back(dY, X, f, s), **TOL)


def test_template_names_importable_from_part1():
    for name in numpy_cnn.__all__:
        assert getattr(part1, name) is getattr(numpy_cnn, name)
        assert callable(getattr(numpy_cnn_loops, name))


X4 = np.zeros((2, 3, 6, 6))
W4 = np.zeros((4, 3, 3, 3))
Y4 = np.zeros((2, 4, 4, 4))


@pytest.mark.parametrize("module", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: m.zero_padding(np.zeros((3, 6, 6)), (1, 1)), r"shape \(N, C, H, W\)"),
        (lambda m: m.zero_padding(X4, (1, -1)), "padding must be >= 0"),
        (lambda m: m.zero_padding(X4, (1, 1, 1)), "pair of ints"),
        (lambda m: m.convolution2D(X4, np.zeros((4, 2, 3, 3)), (1, 1), (0, 0)), "channel mismatch"),
        (lambda m: m.convolution2D(X4, np.zeros((4, 3, 3)), (1, 1), (0, 0)), r"W must have shape"),
        (lambda m: m.convolution2D(X4, np.zeros((4, 3, 9, 3)), (1, 1), (1, 1)), "larger than the padded input"),
        (lambda m: m.convolution2D(X4, W4, (0, 1), (0, 0)), "stride must be positive"),
        (lambda m: m.convolution2D(X4, W4, (1, 1.5), (0, 0)), "pair of ints"),
        (lambda m: m.convolution2D_backward_filter(np.zeros((2, 4, 3, 4)), X4, W4, (1, 1)), "out_grad has shape"),
        (lambda m: m.convolution2D_backward_input(Y4, X4, W4, (1, 1), padding=(1, 1)), "out_grad has shape"),
        (lambda m: m.convolution2D_backward_input(Y4, X4, W4, (1, -1)), "stride must be positive"),
        (lambda m: m.pool_forward(X4, 7, 1), "larger than the input"),
        (lambda m: m.pool_forward(X4, 2, 0), "s must be a positive int"),
        (lambda m: m.pool_forward(X4, 2.0, 2), "f must be a positive int"),
        (lambda m: m.pool_back(np.zeros((2, 3, 2, 2)), X4, 2, 2), "grad_pool has shape"),
    ],
)
def test_invalid_arguments_raise_value_error(module, call, match):
    with pytest.raises(ValueError, match=match):
        call(module)
