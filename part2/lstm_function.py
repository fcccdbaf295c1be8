"""The LSTM recurrence over a whole sequence, with a hand-written backward pass through time.

``torch.autograd`` could differentiate the time loop of ``part2.model.LSTM``
by itself, but then every time step records a dozen small nodes and the
weight gradients are accumulated one time step at a time. ``LSTMSequence``
instead saves the gate activations of the forward pass and, in the backward
pass, runs the recurrence backwards once, collecting the gradients of the gate
pre-activations of all time steps ``dA [T, B, 4H]``; the weight gradients are
then one large matrix product each::

    dW_h = dA^T [4H, T*B] @ h_{0..T-1} [T*B, H]
    dW_x = dA^T [4H, T*B] @ x          [T*B, E]
    db   = sum over T and B of dA
    dx   = dA [T*B, 4H] @ W_x [4H, E]

Gate blocks of the stacked parameters are in the order ``GATE_ORDER``:
the three sigmoid gates first, then the tanh candidate ``g``, so each
nonlinearity is one call on a contiguous block of columns.

The products can optionally run on oneDNN's linear primitive (``use_mkldnn``;
float32 on CPU only), a kernel that beats the BLAS ``mm`` on some CPUs (not on
the 2-core machine of the benchmark in ``part2/README.md``). Everywhere else,
and on GPU, the plain matrix products run; both paths compute the same function.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
from torch.autograd.function import once_differentiable

GATE_ORDER = ("i", "f", "o", "g")


def lstm_sequence_reference(
    x: torch.Tensor,
    h0: torch.Tensor,
    c0: torch.Tensor,
    weight_x: torch.Tensor,
    weight_h: torch.Tensor,
    bias: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Straightforward LSTM loop differentiated by autograd (the reference for tests).

    Shapes: ``x [T, B, E]``, ``h0, c0 [B, H]``, ``weight_x [4H, E]``,
    ``weight_h [4H, H]``, ``bias [4H]``. Returns ``(outputs [T, B, H], h_T, c_T)``.
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


# The elementwise operations of one time step act on [B, H] blocks (128 x 1024
# in the text model), too small to gain from a second thread, while every
# parallel region ends in a synchronisation of all threads that, on a busy
# machine, waits for whichever thread the OS has descheduled. Measured on 2
# threads: 26 % less CPU time and 7 % less wall time for the LSTM's training step.
SERIAL_ELEMENTWISE = True


@contextlib.contextmanager
def _serial_on_cpu(x: torch.Tensor) -> Iterator[None]:
    """Run the enclosed small elementwise CPU operations on one thread (the matrix products stay multi-threaded)."""
    threads = torch.get_num_threads()
    if not SERIAL_ELEMENTWISE or threads == 1 or x.device.type != "cpu":
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def mkldnn_usable(x: torch.Tensor) -> bool:
    """Whether the oneDNN path can run for this input (float32 on CPU with oneDNN available)."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.is_available()


def _mkldnn_linear(x: torch.Tensor, weight_mkldnn: torch.Tensor, bias_mkldnn: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``x @ weight^T (+ bias)`` for a dense ``x [N, in]`` and a weight ``[out, in]`` already in oneDNN layout."""
    return torch._C._nn.mkldnn_linear(x.contiguous().to_mkldnn(), weight_mkldnn, bias_mkldnn).to_dense()


def _forward_loop(
    x: torch.Tensor,
    h0: torch.Tensor,
    c0: torch.Tensor,
    weight_x: torch.Tensor,
    weight_h: torch.Tensor,
    bias: torch.Tensor,
    use_mkldnn: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward recurrence; returns ``gates [T, B, 4H]`` (activated), ``hs, cs [T+1, B, H]``, ``tanh_cs [T, B, H]``.

    ``hs[0], cs[0]`` are the initial state and ``hs[t+1], cs[t+1]`` the state after step ``t``.
    """
    T, B, E = x.shape
    H = h0.size(1)
    # One product projects the inputs of all time steps; the buffer is then
    # overwritten in place, step by step, with the activated gates.
    if use_mkldnn:
        gates = _mkldnn_linear(x.reshape(T * B, E), weight_x.to_mkldnn(), bias.to_mkldnn()).view(T, B, 4 * H)
        weight_h_mkldnn = weight_h.to_mkldnn()
    else:
        gates = torch.addmm(bias, x.reshape(T * B, E), weight_x.t()).view(T, B, 4 * H)
    hs = x.new_empty(T + 1, B, H)
    cs = x.new_empty(T + 1, B, H)
    tanh_cs = x.new_empty(T, B, H)
    hs[0] = h0
    cs[0] = c0
    weight_h_t = weight_h.t()
    for t, a in enumerate(gates.unbind(0)):
        if use_mkldnn:
            a.add_(_mkldnn_linear(hs[t], weight_h_mkldnn))
        else:
            a.addmm_(hs[t], weight_h_t)
        with _serial_on_cpu(x):
            a[:, : 3 * H].sigmoid_()
            a[:, 3 * H :].tanh_()
            i, f, o, g = a.split(H, dim=1)
            c = torch.mul(f, cs[t], out=cs[t + 1])
            c.addcmul_(i, g)
            torch.mul(o, torch.tanh(c, out=tanh_cs[t]), out=hs[t + 1])
    return gates, hs, cs, tanh_cs


class LSTMSequence(torch.autograd.Function):
    """``(x, h0, c0, W_x, W_h, b) -> (outputs [T, B, H], h_T, c_T)`` with a hand-written backward through time."""

    @staticmethod
    def forward(ctx, x, h0, c0, weight_x, weight_h, bias, use_mkldnn=False):  # type: ignore[override]
        ctx.use_mkldnn = use_mkldnn and mkldnn_usable(x)
        gates, hs, cs, tanh_cs = _forward_loop(x, h0, c0, weight_x, weight_h, bias, ctx.use_mkldnn)
        ctx.save_for_backward(x, weight_x, weight_h, gates, hs, cs, tanh_cs)
        outputs = hs[1:]
        return outputs, hs[-1].clone(), cs[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_outputs, grad_h_last, grad_c_last):  # type: ignore[override]
        x, weight_x, weight_h, gates, hs, cs, tanh_cs = ctx.saved_tensors
        T, B, E = x.shape
        H = hs.size(2)
        if grad_outputs is None:
            grad_outputs = x.new_zeros(T, B, H)
        dh = grad_outputs[T - 1] if grad_h_last is None else grad_outputs[T - 1] + grad_h_last
        dc = x.new_zeros(B, H) if grad_c_last is None else grad_c_last.clone()
        d_gates = x.new_empty(T, B, 4 * H)
        if ctx.use_mkldnn:
            # oneDNN's weight layout is [out, in]: here out = H, in = 4H.
            weight_h_mkldnn = weight_h.t().contiguous().to_mkldnn()
        # Everything of one step stays in [B, H] blocks that fit in the cache;
        # computing the step-independent factors for all steps at once instead
        # measured slower (it streams several [T, B, H] tensors through memory).
        for t in range(T - 1, -1, -1):
            a = gates[t]
            i, f, o, g = a.split(H, dim=1)
            tanh_c = tanh_cs[t]
            da = d_gates[t]
            di, df, do, dg = da.split(H, dim=1)
            # With dh, dc the gradients reaching h_t and c_t:
            #   do = dh * tanh(c_t),  dc += dh * o * (1 - tanh(c_t)^2),
            #   di = dc * g,  df = dc * c_{t-1},  dg = dc * i,  then through the
            #   nonlinearities (sigmoid' = s (1 - s), tanh' = 1 - tanh^2) to dA_t;
            #   dc_{t-1} = dc * f and dh_{t-1} = (gradient of the output h_{t-1}) + dA_t @ W_h.
            with _serial_on_cpu(x):
                torch.mul(dh, tanh_c, out=do)
                dc.addcmul_(dh * o, 1.0 - tanh_c * tanh_c)
                torch.mul(dc, i, out=dg)
                dg.mul_(1.0 - g * g)
                torch.mul(dc, g, out=di)
                torch.mul(dc, cs[t], out=df)
                sigmoids = a[:, : 3 * H]
                da[:, : 3 * H].mul_(sigmoids - sigmoids * sigmoids)
                dc.mul_(f)
            if t > 0:
                dh = _mkldnn_linear(da, weight_h_mkldnn) if ctx.use_mkldnn else torch.mm(da, weight_h)
                with _serial_on_cpu(x):
                    dh.add_(grad_outputs[t - 1])
            elif ctx.needs_input_grad[1]:
                dh = _mkldnn_linear(da, weight_h_mkldnn) if ctx.use_mkldnn else torch.mm(da, weight_h)
        flat = d_gates.view(T * B, 4 * H)
        grad_x = grad_h0 = grad_c0 = grad_wx = grad_wh = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.mm(flat, weight_x).view(T, B, E)
        if ctx.needs_input_grad[1]:
            grad_h0 = dh
        if ctx.needs_input_grad[2]:
            grad_c0 = dc
        if ctx.needs_input_grad[3]:
            grad_wx = torch.mm(flat.t(), x.reshape(T * B, E))
        if ctx.needs_input_grad[4]:
            grad_wh = torch.mm(flat.t(), hs[:T].reshape(T * B, H))
        if ctx.needs_input_grad[5]:
            grad_b = flat.sum(0)
        return grad_x, grad_h0, grad_c0, grad_wx, grad_wh, grad_b, None


def lstm_sequence(
    x: torch.Tensor,
    h0: torch.Tensor,
    c0: torch.Tensor,
    weight_x: torch.Tensor,
    weight_h: torch.Tensor,
    bias: torch.Tensor,
    use_mkldnn: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the LSTM over ``x [T, B, E]`` from ``(h0, c0)``; returns ``(outputs [T, B, H], h_T, c_T)``.

    ``use_mkldnn`` selects the oneDNN products where they can run (see ``mkldnn_usable``).
    """
    return LSTMSequence.apply(x, h0, c0, weight_x, weight_h, bias, use_mkldnn)
