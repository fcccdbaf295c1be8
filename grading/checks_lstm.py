"""Question 2.3: the student's LSTM module (``LSTM(lstm_hidden_dim, embedding_size)``, ``forward`` on ``[T, B, E]``)."""

from __future__ import annotations

import ast
import inspect
import math
import textwrap

import numpy as np
import torch
from torch import nn

from grading.failures import CheckFailed, call_student
from grading.lstm_roles import Role, probe_roles, reference_lstm, run_student

MODEL = "part2/model.py"
# Gate roles are probed on a small LSTM; the initialisation statistics need a larger one.
PROBE_HIDDEN, PROBE_INPUTS = 8, 3
INIT_HIDDEN, INIT_INPUTS = 64, 16
FORBIDDEN_MODULES = (nn.RNNBase, nn.RNNCellBase, nn.Linear)
FORBIDDEN_NAMES = {
    "LSTM",
    "LSTMCell",
    "RNN",
    "RNNCell",
    "GRU",
    "GRUCell",
    "Linear",
    "lstm",
    "lstm_cell",
    "gru",
    "gru_cell",
    "rnn_tanh",
    "rnn_relu",
    "rnn_tanh_cell",
    "rnn_relu_cell",
}


def _lstm_class(ctx):
    return ctx.code.attribute(MODEL, "LSTM")


def _make(ctx, hidden: int, inputs: int) -> nn.Module:
    lstm = call_student(f"LSTM(lstm_hidden_dim={hidden}, embedding_size={inputs})", _lstm_class(ctx), hidden, inputs)
    if not isinstance(lstm, nn.Module):
        raise CheckFailed(f"LSTM(...) made a {type(lstm).__name__}, not an nn.Module")
    return lstm


def _forward(lstm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``lstm(x)`` (first element if it returns a tuple), with a clear failure for anything that is not a tensor."""
    with torch.no_grad():
        out = call_student(f"LSTM.forward(embeds of shape {tuple(x.shape)})", lstm, x)
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise CheckFailed(
            f"LSTM.forward(embeds of shape {tuple(x.shape)}) returned {type(out).__name__}, expected a tensor [T, B, H]"
        )
    return out


def _inputs(T: int, B: int, E: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(T, B, E, generator=torch.Generator().manual_seed(seed))


def check_shape(ctx) -> None:
    """Output ``[T, B, H]`` with the input's dtype, for several T and B."""
    hidden, inputs = 12, 5
    lstm = _make(ctx, hidden, inputs)
    for T, B in ((1, 1), (4, 3), (7, 2)):
        out = _forward(lstm, _inputs(T, B, inputs))
        if tuple(out.shape) != (T, B, hidden):
            raise CheckFailed(
                f"LSTM(lstm_hidden_dim={hidden}, embedding_size={inputs}) on embeds [T={T}, B={B}, "
                f"E={inputs}] gave shape {tuple(out.shape)}, expected ({T}, {B}, {hidden})"
            )
        if out.dtype != torch.float32 or not torch.isfinite(out).all():
            raise CheckFailed(f"LSTM output for T={T}, B={B} is {out.dtype} with non-finite values or the wrong dtype")


def _dotted(node: ast.AST) -> str:
    """``torch.nn.LSTM`` for the expression ``torch.nn.LSTM`` ('' for anything but names and attributes)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _forbidden_in_source(cls) -> list[str]:
    """Torch RNN/Linear layers or functions named in the class's code (``nn.LSTM``, ``F.lstm``, imported ``LSTM``)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return []
    namespace = vars(inspect.getmodule(cls)) if inspect.getmodule(cls) else {}
    found = set()
    for node in ast.walk(tree):
        name = _dotted(node) if isinstance(node, (ast.Attribute, ast.Name)) else ""
        parts = name.split(".")
        if not name or parts[-1] not in FORBIDDEN_NAMES:
            continue
        if len(parts) > 1 and parts[0] in {"torch", "nn", "F", "functional", "_VF"}:
            found.add(name)
        elif len(parts) == 1 and getattr(namespace.get(name), "__module__", "").startswith("torch"):
            found.add(name)
    return sorted(found)


def check_no_builtin(ctx) -> None:
    """No ``nn.LSTM``/``LSTMCell``/``RNN``/``GRU``/``Linear`` submodules, and no such names in the class's source."""
    lstm = _make(ctx, PROBE_HIDDEN, PROBE_INPUTS)
    modules = [
        f"{name or 'self'} ({type(m).__name__})" for name, m in lstm.named_modules() if isinstance(m, FORBIDDEN_MODULES)
    ]
    if modules:
        raise CheckFailed(
            f"the LSTM uses torch's built-in layers: {', '.join(modules)}; write the gates with "
            "nn.Parameter and tensor operations"
        )
    names = _forbidden_in_source(_lstm_class(ctx))
    if names:
        raise CheckFailed(f"the LSTM class's code uses {', '.join(names)}; write the gates with nn.Parameter")


def check_parameter_count(ctx) -> None:
    """4 gates x (E*H + H*H + H), or with a second bias per gate 4 x (E*H + H*H + 2H)."""
    H, E = INIT_HIDDEN, INIT_INPUTS
    count = sum(p.numel() for p in _make(ctx, H, E).parameters())
    single, double = 4 * (E * H + H * H + H), 4 * (E * H + H * H + 2 * H)
    if count not in (single, double):
        raise CheckFailed(
            f"LSTM(lstm_hidden_dim={H}, embedding_size={E}) has {count} parameters; equations 8-13 "
            f"need 4(EH + HH + H) = {single} (or {double} with two bias vectors per gate)"
        )


def check_init_bounds(ctx) -> None:
    """Every scalar uniform in ``[-1/sqrt(H), 1/sqrt(H)]`` (forget-gate biases shifted by +1 allowed)."""
    H, E = INIT_HIDDEN, INIT_INPUTS
    parameters = list(_make(ctx, H, E).parameters())
    if not parameters:
        raise CheckFailed("the LSTM has no parameters")
    values = torch.cat([p.detach().flatten() for p in parameters]).double().numpy()
    bound = 1 / math.sqrt(H)
    near_zero = values[np.abs(values) <= bound * (1 + 1e-6)]
    outside = values.size - near_zero.size - int((np.abs(values - 1) <= bound * (1 + 1e-6)).sum())
    if outside:
        raise CheckFailed(
            f"LSTM(lstm_hidden_dim={H}, ...): {outside} of {values.size} initial values lie outside "
            f"[-1/sqrt(H), 1/sqrt(H)] = [-{bound:.3g}, {bound:.3g}] (and are no forget bias near +1)"
        )
    spread, mean_size = np.abs(near_zero).max(), np.abs(near_zero).mean()
    if spread < 0.9 * bound or not 0.4 * bound < mean_size < 0.6 * bound:
        raise CheckFailed(
            f"LSTM(lstm_hidden_dim={H}, ...): initial values span +-{spread:.3g} with mean size "
            f"{mean_size:.3g}; U(-1/sqrt(H), 1/sqrt(H)) spans +-{bound:.3g} with mean size {bound / 2:.3g}"
        )


def _roles(ctx):
    """Probe a fresh LSTM(8, 3) once per process; returns ``(lstm, role map, initial value of each scalar)``.

    A failure (the LSTM cannot be built or run) is remembered, so that both checks using the roles report it.
    """
    if "roles" not in ctx.cache:
        try:
            ctx.cache["roles"] = _probe(ctx)
        except CheckFailed as failure:
            ctx.cache["roles"] = failure
    if isinstance(ctx.cache["roles"], CheckFailed):
        raise ctx.cache["roles"]
    return ctx.cache["roles"]


def _probe(ctx):
    lstm = _make(ctx, PROBE_HIDDEN, PROBE_INPUTS)
    initial = [p.detach().clone() for p in lstm.parameters()]
    role_map = call_student("probing the LSTM's gates", probe_roles, lstm, PROBE_INPUTS, PROBE_HIDDEN)
    for p, value in zip(lstm.parameters(), initial):
        p.data.copy_(value)  # probing overwrote them
    return lstm, role_map, [float(s.tensor.data[s.index]) for s in role_map.scalars]


def check_forget_bias(ctx) -> str | None:
    """At initialisation the forget gate's bias is near +1 and no other gate's bias is."""
    lstm, role_map, init_values = _roles(ctx)
    bound = 1 / math.sqrt(PROBE_HIDDEN)
    if role_map.problem:
        # Roles unknown: at least the right number of biases must start near +1.
        shifted = sum(abs(v - 1) <= bound * (1 + 1e-6) for v in init_values)
        if shifted != PROBE_HIDDEN:
            raise CheckFailed(
                f"LSTM(lstm_hidden_dim={PROBE_HIDDEN}, ...) starts {shifted} values near +1; "
                f"the forget-gate bias (H = {PROBE_HIDDEN} values) should be U(-1/sqrt(H), 1/sqrt(H)) + 1"
            )
        return "gate roles could not be identified; checked that H initial values lie near +1"
    numbers = {id(s): n for n, s in enumerate(role_map.scalars)}
    for gate in ("f", "g", "i", "o"):
        for unit in range(PROBE_HIDDEN):
            scalars = role_map.scalars_of(Role(gate, "bias", unit))
            total = sum(init_values[numbers[id(s)]] for s in scalars)
            target = 1.0 if gate == "f" else 0.0
            if abs(total - target) > len(scalars) * bound * (1 + 1e-6):
                which = (
                    "the forget gate's bias should start near +1"
                    if gate == "f"
                    else (f"only the forget gate's bias gets +1, not {gate}'s")
                )
                raise CheckFailed(
                    f"b_{gate}[{unit}] starts at {total:.3g}: {which} "
                    f"(U(-1/sqrt(H), 1/sqrt(H)) + 1 for f, H = {PROBE_HIDDEN})"
                )


def check_causal(ctx) -> None:
    """Changing the input at t = 4 leaves the outputs before t = 4 unchanged and changes the later ones."""
    lstm = _make(ctx, PROBE_HIDDEN, PROBE_INPUTS)
    x = _inputs(6, 2, PROBE_INPUTS)
    changed = x.clone()
    changed[4] += 1.0
    before, after = _forward(lstm, x), _forward(lstm, changed)
    if (before[:4] - after[:4]).abs().max() > 1e-6:
        t = int((before - after).abs().amax(dim=(1, 2)).gt(1e-6).nonzero()[0])
        raise CheckFailed(f"changing embeds[4] (T=6) changes the output at t={t}: the LSTM reads the future")
    if (before[4:] - after[4:]).abs().max() < 1e-6:
        raise CheckFailed("changing embeds[4] (T=6) does not change the output at t=4")


def check_state_carry(ctx) -> None:
    """Changing the input at t = 0 changes the output at t = 3: the state is carried over time steps."""
    lstm = _make(ctx, PROBE_HIDDEN, PROBE_INPUTS)
    x = _inputs(6, 2, PROBE_INPUTS)
    changed = x.clone()
    changed[0] += 1.0
    difference = (_forward(lstm, x)[3] - _forward(lstm, changed)[3]).abs().max()
    if difference < 1e-5:
        raise CheckFailed(
            "changing embeds[0] (T=6) does not change the output at t=3: the hidden and cell states "
            "are not carried from one time step to the next"
        )


def check_equations(ctx) -> None:
    """With random parameters, the output equals equations 8-13 for the roles found by probing."""
    lstm, role_map, _ = _roles(ctx)
    if role_map.problem:
        raise CheckFailed(f"LSTM(lstm_hidden_dim={PROBE_HIDDEN}, embedding_size={PROBE_INPUTS}): {role_map.problem}")
    generator = torch.Generator().manual_seed(1)
    for p in lstm.parameters():
        p.data.copy_(torch.rand(p.shape, generator=generator) - 0.5)
    x = np.random.default_rng(2).standard_normal((5, 3, PROBE_INPUTS))
    reference = role_map.canonical(PROBE_INPUTS, PROBE_HIDDEN)
    expected = reference_lstm(x, reference.w_x[None], reference.w_h[None], reference.b[None])[0]
    got = call_student("LSTM.forward with random parameters", run_student, lstm, x)
    error = np.abs(got - expected).max()
    if error > 1e-4:
        t = int(np.abs(got - expected).max(axis=(1, 2)).argmax())
        raise CheckFailed(
            f"with random parameters the output differs from equations 8-13 by up to {error:.3g} "
            f"(first at t={t}), although each parameter alone acts like one term of them"
        )
