"""The LSTM recurrence over a whole sequence, with a hand-written backward pass through time.

Autograd could differentiate the time loop of ``part2.model.LSTM`` by itself, but it would record a
dozen small nodes per step and accumulate the weight gradients one step at a time. ``LSTMSequence``
saves the gate activations instead and runs the recurrence backwards once, writing the gradients of
the gate pre-activations of all steps ``dA [T, B, 4H]`` over them; the gradients of the weights are
then one product, and that of the input another::

    [dW_x, dW_h] = dA^T [4H, T*B] @ [x, h_{0..T-1}] [T*B, E+H]      dx = dA [T*B, 4H] @ W_x [4H, E]
    db           = sum of dA over T and B

Each forward step is one product ``[x_t, h_{t-1}] @ [W_x, W_h]^T + b``: inputs and hidden states share
one buffer ``xh [T+1, B, E+H]``, so no input projection of all steps is written out and read back.

Gate blocks of the stacked parameters are in the order ``GATE_ORDER``: the three sigmoid gates, then
the tanh candidate ``g``, a contiguous block of columns each. ``g`` is computed as ``2 sigmoid(2x) - 1``
(= tanh), so one ``sigmoid`` call activates all four gates.

Precision: under ``torch.autocast`` the matrix products run in the autocast dtype (bf16/fp16) while the
gates, the cell state and all elementwise work stay in float32, as cuDNN and oneDNN do for their LSTMs.
On CPU the per-step products use oneDNN with the weight packed once per sequence (``_gates_product``,
``_step_linear``); in the backward pass the addition of the output gradient is fused into the product.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.autograd.function import once_differentiable

GATE_ORDER = ("i", "f", "o", "g")

# oneDNN's linear with a pre-packed weight (the kernel torch.compile uses for frozen CPU linears):
# the per-step products are small (B x H times H x 4H) and packing the weight once pays for T steps.
# Packing costs about as much as one product, so it pays only over several steps (sampling runs T = 1).
# The same bound decides when the forward pass copies [W_x, W_h] into one weight for one product per step.
USE_ONEDNN_PACKING = True
PACKING_MIN_STEPS = 8


def lstm_sequence_reference(
    x: torch.Tensor,
    h0: torch.Tensor,
    c0: torch.Tensor,
    weight_x: torch.Tensor,
    weight_h: torch.Tensor,
    bias: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Straightforward LSTM loop differentiated by autograd (the reference for tests).

    Shapes: ``x [T, B, E]``, ``h0, c0 [B, H]``, ``weight_x [4H, E]``, ``weight_h [4H, H]``, ``bias [4H]``.
    Returns ``(outputs [T, B, H], h_T, c_T)``.
    """
    h, c = h0, c0
    outputs = []
    for x_t in x.unbind(0):
        i, f, o, g = (x_t @ weight_x.t() + h @ weight_h.t() + bias).chunk(4, dim=1)
        i, f, o, g = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o), torch.tanh(g)
        c = g * i + c * f
        h = torch.tanh(c) * o
        outputs.append(h)
    return torch.stack(outputs), h, c


def onednn_packing_usable(weight: torch.Tensor, steps: int) -> bool:
    """Whether to pack ``weight`` for ``steps`` products (CPU, fp32/bf16, the op present in this torch build)."""
    return (
        USE_ONEDNN_PACKING
        and steps >= PACKING_MIN_STEPS
        and weight.device.type == "cpu"
        and weight.dtype in (torch.float32, torch.bfloat16)
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    )


def _step_linear(weight: torch.Tensor, rows: int, steps: int) -> Callable[..., torch.Tensor]:
    """``(y, other=None) -> y @ weight^T (+ other)`` for ``[rows, in]`` inputs, ``steps`` steps, ``weight [out, in]``.

    The result has the dtype of ``other`` when it is given. When ``other`` has the product's dtype, the addition
    happens in the product's epilogue (one pass over ``[rows, out]`` and one allocation fewer per step).
    """
    if onednn_packing_usable(weight, steps):
        packed = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), rows)

        def product(y: torch.Tensor) -> torch.Tensor:
            return torch.ops.mkldnn._linear_pointwise(y, packed, None, "none", [], "")

        def product_add(y: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
            return torch.ops.mkldnn._linear_pointwise.binary(y, other.contiguous(), packed, None, "add")
    else:
        weight_t = weight.t()

        def product(y: torch.Tensor) -> torch.Tensor:
            return torch.mm(y, weight_t)

        def product_add(y: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
            return torch.addmm(other, y, weight_t)

    def step_product(y: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
        if other is None:
            return product(y)
        if other.dtype == y.dtype:
            return product_add(y, other)
        return product(y).to(other.dtype).add_(other)

    return step_product


def _affine(y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``y @ weight^T (+ bias)`` with a plain matrix product."""
    return torch.mm(y, weight.t()) if bias is None else torch.addmm(bias, y, weight.t())


def _gates_product(weight_x, weight_h, bias, rows: int, steps: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """``xh_t [rows, E+H] -> xh_t @ [W_x, W_h]^T (+ bias)``: a step's gate pre-activations from ``[x_t, h_{t-1}]``.

    Over many steps, one product with the concatenated weight (packed once for oneDNN where it can be);
    over a few (sampling), two products that need no concatenated copy of the weights. ``bias`` None: none added.
    """
    if steps >= PACKING_MIN_STEPS:
        weight = torch.cat([weight_x, weight_h], 1)
        if onednn_packing_usable(weight, steps):
            packed = torch.ops.mkldnn._reorder_linear_weight(weight, rows)
            return lambda xh_t: torch.ops.mkldnn._linear_pointwise(xh_t, packed, bias, "none", [], "")
        return lambda xh_t: _affine(xh_t, weight, bias)
    E = weight_x.size(1)
    return lambda xh_t: _affine(xh_t[:, :E], weight_x, bias).addmm_(xh_t[:, E:], weight_h.t())


def _tanh(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``tanh(x) = 2 sigmoid(2x) - 1`` into ``out``: on CPU, faster than ``torch.tanh`` (``part2.benchmarks.lstm``)."""
    return torch.sigmoid(torch.mul(x, 2.0, out=out), out=out).mul_(2.0).sub_(1.0)


# The gate buffer [T, B, 4H] of the last finished backward pass, kept for the next forward pass of the same shape:
# a buffer this large is mapped afresh by the memory allocator on every allocation, and the kernel then zeroes it
# page by page on its first write (part2/README.md, "Speed"). Nothing else references it once backward is done.
_spare_gates: list[torch.Tensor] = []


def _gates_buffer(like: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised ``shape``/``dtype`` buffer on ``like``'s device: the spare gate buffer when it fits."""
    try:
        spare = _spare_gates.pop()
    except IndexError:
        spare = None
    if spare is not None and spare.shape == shape and spare.dtype == dtype and spare.device == like.device:
        return spare
    return like.new_empty(shape, dtype=dtype)


def _forward_loop(x, h0, c0, weight_x, weight_h, bias, zero_state):
    """Forward recurrence in the accumulation dtype of ``c0`` with products in the dtype of the weights.

    Each step is one product ``[x_t, h_{t-1}] @ [W_x, W_h]^T``: the inputs and hidden states share one buffer
    ``xh [T+1, B, E+H]`` (in the product dtype), so no ``[T, B, 4H]`` input projection is written and read back.
    Returns ``gates [T, B, 4H]`` (the activated gates of every step), ``xh`` (``xh[t] = [x_t, h_t]``, ``h_0`` in
    ``xh[0]``), ``hs [T+1, B, H]`` (the hidden states in the accumulation dtype: a view of ``xh`` when the dtypes
    agree), ``cs [T+1, B, H]`` and ``tanh_cs [T, B, H]``.
    """
    T, B, E = x.shape
    H = h0.size(1)
    acc, mm = c0.dtype, weight_h.dtype
    xh = x.new_empty(T + 1, B, E + H)
    xh[:T, :, :E], xh[0, :, E:] = x, h0
    separate_hs = mm != acc  # the hidden states in float32 for the cell, and in the product dtype in xh
    hs = x.new_empty(T + 1, B, H, dtype=acc) if separate_hs else xh[:, :, E:]
    gates = _gates_buffer(x, (T, B, 4 * H), acc)
    cs, tanh_cs = x.new_empty(T + 1, B, H, dtype=acc), x.new_empty(T, B, H, dtype=acc)
    hs[0], cs[0] = h0, c0
    fused_bias = bias if mm == acc else None  # else added in float32 after the product
    step = _gates_product(weight_x, weight_h, fused_bias, B, T)
    for t in range(T):
        if t == 0 and zero_state:  # h_0 = 0: only the input's share of the product
            pre = _affine(x[0], weight_x, fused_bias)
        else:
            pre = step(xh[t])
        if fused_bias is None:
            pre = pre.to(acc).add_(bias)
        pre[:, 3 * H :].mul_(2.0)  # tanh(x) = 2 sigmoid(2x) - 1: all four gates in one sigmoid call
        i, f, o, g = torch.sigmoid(pre, out=gates[t]).split(H, dim=1)
        g.mul_(2.0).sub_(1.0)
        c = torch.mul(f, cs[t], out=cs[t + 1])
        c.addcmul_(i, g)
        torch.mul(o, _tanh(c, out=tanh_cs[t]), out=hs[t + 1])
        if separate_hs:
            xh[t + 1, :, E:].copy_(hs[t + 1])
    return gates, xh, hs, cs, tanh_cs


def _backward_step(a, dh, dc, c_prev, tanh_c, scratch):
    """Overwrite the step's activated gates ``a = [i, f, o, g]`` with the gradient of their pre-activations and
    update ``dc`` to ``dc_{t-1}`` in place.

    With ``dh, dc`` reaching ``h_t, c_t``: ``do = dh tanh(c_t)``, ``dc += dh (1 - tanh(c_t)^2) o``,
    ``di = dc g``, ``df = dc c_{t-1}``, ``dg = dc i (1 - g^2)``; then sigmoid' = s(1-s) on ``di, df, do``;
    finally ``dc_{t-1} = dc f``. ``scratch [B, 3H]`` is reused by every step (no allocation in the loop).
    """
    H = dh.size(1)
    i, f, o, g = a.split(H, dim=1)
    di, df, do = scratch.split(H, dim=1)  # the gradients reaching the sigmoid gates' outputs
    torch.mul(dh, tanh_c, out=do)
    torch.addcmul(dh, do, tanh_c, value=-1.0, out=df)  # dh (1 - tanh(c)^2), df as a temporary
    dc.addcmul_(df, o)
    torch.mul(dc, g, out=di)
    torch.mul(dc, i, out=df)  # the gradient reaching g, df as a temporary
    g.square_()
    torch.addcmul(df, df, g, value=-1.0, out=g)  # dc i (1 - g^2)
    torch.mul(dc, c_prev, out=df)
    dc.mul_(f)
    sigmoids = a[:, : 3 * H]
    sigmoids.addcmul_(sigmoids, sigmoids, value=-1.0).mul_(scratch)  # s (1 - s) times the gradient reaching s


class LSTMSequence(torch.autograd.Function):
    """``(x, h0, c0, W_x, W_h, b) -> (outputs [T, B, H], h_T, c_T)`` with a hand-written backward through time.

    ``x`` and the weights may be in a lower precision than ``h0, c0, b`` (see ``lstm_sequence``); outputs,
    states and the bias gradient are in the dtype of ``c0``.
    """

    @staticmethod
    def forward(ctx, x, h0, c0, weight_x, weight_h, bias, zero_state=False):  # type: ignore[override]
        gates, xh, hs, cs, tanh_cs = _forward_loop(x, h0, c0, weight_x, weight_h, bias, zero_state)
        ctx.save_for_backward(xh, weight_x, weight_h, bias, cs, tanh_cs)
        ctx.gates, ctx.zero_state = gates, zero_state  # gates: overwritten by the backward pass, so not saved
        return hs[1:], hs[-1].clone(), cs[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_outputs, grad_h_last, grad_c_last):  # type: ignore[override]
        xh, weight_x, weight_h, bias, cs, tanh_cs = ctx.saved_tensors
        T, B, H = tanh_cs.shape
        E = xh.size(2) - H
        x = xh[:T, :, :E]
        # The loop below overwrites the gates with dA [T, B, 4H]; another backward pass through the same graph
        # (retain_graph=True, gradcheck) recomputes them from the saved inputs.
        gates = ctx.gates
        if gates is None:
            gates = _forward_loop(x, xh[0, :, E:].to(cs.dtype), cs[0], weight_x, weight_h, bias, ctx.zero_state)[0]
        ctx.gates = None
        acc, mm = cs.dtype, weight_h.dtype
        if grad_outputs is None:
            grad_outputs = cs.new_zeros(T, B, H)
        dh = grad_outputs[T - 1] if grad_h_last is None else grad_outputs[T - 1] + grad_h_last
        dc = cs.new_zeros(B, H) if grad_c_last is None else grad_c_last.to(acc, copy=True)
        # dA [T, B, 4H] in the product dtype: the weight gradients need it so
        d_gates = gates if mm == acc else x.new_empty(T, B, 4 * H, dtype=mm)
        grad_bias = cs.new_zeros(4 * H)
        scratch = cs.new_empty(B, 3 * H)
        recurrent_t = _step_linear(weight_h.t(), B, T)  # dh_{t-1} = dA_t @ W_h
        for t in range(T - 1, -1, -1):
            da = gates[t]
            _backward_step(da, dh, dc, cs[t], tanh_cs[t], scratch)
            grad_bias.add_(da.sum(0))  # while da is in cache: one pass over dA [T, B, 4H] fewer
            if d_gates is not gates:
                d_gates[t].copy_(da)
            if t > 0:
                dh = recurrent_t(d_gates[t], grad_outputs[t - 1])
            elif ctx.needs_input_grad[1]:
                dh = recurrent_t(d_gates[0]).to(acc)
        needs = ctx.needs_input_grad
        grad_x = _step_linear(weight_x.t(), T * B, T)(d_gates.view(T * B, 4 * H)).view(T, B, E) if needs[0] else None
        grad_wx, grad_wh = _weight_grads(d_gates, xh, E, ctx.zero_state) if needs[3] or needs[4] else (None, None)
        _spare_gates[:] = [gates]  # dA is no longer needed: the next forward pass may write its gates there
        return (
            grad_x,
            dh if needs[1] else None,
            dc if needs[2] else None,
            grad_wx if needs[3] else None,
            grad_wh if needs[4] else None,
            grad_bias if needs[5] else None,
            None,
        )


def _weight_grads(d_gates, xh, E, zero_state):
    """``[dW_x, dW_h] = dA^T @ [x, h_{t-1}]`` over all steps, one product; with a zero ``h_0`` the first step's
    rows are left out of it (they add nothing to ``dW_h``) and added to ``dW_x`` alone."""
    T, B, _ = d_gates.shape
    first = 1 if zero_state else 0
    grad_w = torch.mm(d_gates[first:].flatten(0, 1).t(), xh[first:T].flatten(0, 1))
    if zero_state:
        grad_w[:, :E].addmm_(d_gates[0].t(), xh[0, :, :E])
    return grad_w[:, :E], grad_w[:, E:]


def lstm_sequence(
    x: torch.Tensor,
    h0: torch.Tensor,
    c0: torch.Tensor,
    weight_x: torch.Tensor,
    weight_h: torch.Tensor,
    bias: torch.Tensor,
    zero_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the LSTM over ``x [T, B, E]`` from ``(h0, c0)``; returns ``(outputs [T, B, H], h_T, c_T)``.

    Under ``torch.autocast`` the input and weights are cast to the autocast dtype for the products (the
    casts are differentiable, so fp32 master weights get fp32 gradients); state and gates stay float32.
    ``zero_state`` says ``h0`` is all zeros, which skips the first recurrent product.
    """
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
        with torch.autocast(device_type, enabled=False):
            return LSTMSequence.apply(
                x.to(dtype), h0.float(), c0.float(), weight_x.to(dtype), weight_h.to(dtype), bias.float(), zero_state
            )
    return LSTMSequence.apply(x, h0, c0, weight_x, weight_h, bias, zero_state)
