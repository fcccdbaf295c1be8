"""Which role each parameter of a student's LSTM plays, found by probing it as a black box.

The assignment's LSTM (equations 8-13)::

    g_t = tanh(W_gx x_t + W_gh h_{t-1} + b_g)      i_t = sigmoid(W_ix x_t + W_ih h_{t-1} + b_i)
    f_t = sigmoid(W_fx x_t + W_fh h_{t-1} + b_f)   o_t = sigmoid(W_ox x_t + W_oh h_{t-1} + b_o)
    c_t = g_t * i_t + c_{t-1} * f_t                h_t = tanh(c_t) * o_t

Every scalar of every parameter should act as exactly one *role*: an entry of
one gate's input weights, recurrent weights or bias. Students store them in any
layout (four matrices per input, one stacked ``[4H, E]`` matrix in any gate
order, transposed, two bias vectors per gate), so the roles are found by
experiment, with all parameters zero except one scalar set to :data:`PROBE`,
and compared with a float64 reference of every possible role:

1. From zero, only ``g``'s bias and input weights change the output (with
   ``g = 0`` the cell stays empty); each is identified by its output.
2. Then with ``g``'s biases set to distinct values per unit (so the state is
   not zero and the units differ), every other scalar is identified the same way.

A scalar that matches no role, or a role no scalar plays, means the equations
are not 8-13; the first such mismatch is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from grading.failures import CheckFailed

GATES = ("g", "i", "f", "o")
PROBE = 2.0
# float32 student code is off by ~1e-7; the closest two roles of the probe LSTM differ by > 2e-4.
MATCH_TOLERANCE = 5e-6


@dataclass(frozen=True)
class Role:
    gate: str
    kind: str  # "bias", "input" (W_.x) or "recurrent" (W_.h)
    unit: int
    source: int = -1  # input or hidden index for weights

    def __str__(self) -> str:
        if self.kind == "bias":
            return f"b_{self.gate}[{self.unit}]"
        return f"W_{self.gate}{'x' if self.kind == 'input' else 'h'}[{self.unit}, {self.source}]"


def all_roles(num_inputs: int, hidden: int) -> list[Role]:
    roles = []
    for gate in GATES:
        for unit in range(hidden):
            roles.append(Role(gate, "bias", unit))
            roles += [Role(gate, "input", unit, k) for k in range(num_inputs)]
            roles += [Role(gate, "recurrent", unit, k) for k in range(hidden)]
    return roles


@dataclass
class Canonical:
    """Reference parameters ``W_x [4, H, E]``, ``W_h [4, H, H]``, ``b [4, H]`` (gates in :data:`GATES` order)."""

    w_x: np.ndarray
    w_h: np.ndarray
    b: np.ndarray

    @classmethod
    def zeros(cls, num_inputs: int, hidden: int) -> Canonical:
        return cls(np.zeros((4, hidden, num_inputs)), np.zeros((4, hidden, hidden)), np.zeros((4, hidden)))

    def add(self, role: Role, value: float) -> None:
        gate = GATES.index(role.gate)
        if role.kind == "bias":
            self.b[gate, role.unit] += value
        elif role.kind == "input":
            self.w_x[gate, role.unit, role.source] += value
        else:
            self.w_h[gate, role.unit, role.source] += value


def reference_lstm(x: np.ndarray, w_x: np.ndarray, w_h: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Equations 8-13 for a batch of parameter sets: ``x [T, B, E]``, ``w_x [R, 4, H, E]`` ... -> ``h [R, T, B, H]``."""
    x = torch.as_tensor(x, dtype=torch.float64)
    w_x, w_h, b = (torch.as_tensor(a, dtype=torch.float64) for a in (w_x, w_h, b))
    sets, _, hidden, _ = w_x.shape
    h = torch.zeros(sets, x.shape[1], hidden, dtype=torch.float64)
    c = torch.zeros_like(h)
    outputs = []
    for x_t in x:
        pre = torch.einsum("rghe,be->rbgh", w_x, x_t) + torch.einsum("rghk,rbk->rbgh", w_h, h) + b[:, None]
        g, i, f, o = torch.tanh(pre[:, :, 0]), *torch.sigmoid(pre[:, :, 1:]).unbind(2)
        c = g * i + c * f
        h = torch.tanh(c) * o
        outputs.append(h)
    return torch.stack(outputs, dim=1).numpy()


def _hypotheses(x: np.ndarray, base: Canonical, roles: list[Role]) -> np.ndarray:
    """Reference outputs ``[len(roles), T*B*H]`` of ``base`` plus :data:`PROBE` in each role."""
    count = len(roles)
    w_x, w_h, b = (np.repeat(a[None], count, axis=0) for a in (base.w_x, base.w_h, base.b))
    for r, role in enumerate(roles):
        one = Canonical(w_x[r], w_h[r], b[r])
        one.add(role, PROBE)
    return reference_lstm(x, w_x, w_h, b).reshape(count, -1)


@dataclass
class Scalar:
    """One scalar of a student parameter."""

    name: str
    tensor: torch.Tensor
    index: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.name}[{', '.join(map(str, self.index))}]"

    def set(self, value: float) -> None:
        self.tensor.data[self.index] = value


@dataclass
class RoleMap:
    """The result of probing: the role of every scalar, or why no consistent assignment exists."""

    roles: dict[int, Role] = field(default_factory=dict)  # scalar number -> role
    scalars: list[Scalar] = field(default_factory=list)
    unused: list[int] = field(default_factory=list)
    problem: str = ""

    def canonical(self, num_inputs: int, hidden: int) -> Canonical:
        """The reference parameters equivalent to the student's current parameter values."""
        params = Canonical.zeros(num_inputs, hidden)
        for number, role in self.roles.items():
            params.add(role, float(self.scalars[number].tensor.data[self.scalars[number].index]))
        return params

    def scalars_of(self, role: Role) -> list[Scalar]:
        return [self.scalars[n] for n, r in self.roles.items() if r == role]


def run_student(lstm: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """The student's outputs ``[T, B, H]`` (the first element if ``forward`` returns a tuple) as float64."""
    with torch.no_grad():
        out = lstm(torch.as_tensor(x, dtype=torch.float32))
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise CheckFailed(f"LSTM.forward returned {type(out).__name__}, expected a tensor [T, B, H]")
    return out.detach().double().numpy()


def _match(output: np.ndarray, hypotheses: np.ndarray, candidates: list[Role]) -> tuple[Role, float, float]:
    distance = np.abs(hypotheses - output[None]).max(axis=1)
    order = np.argsort(distance)
    second = distance[order[1]] if len(order) > 1 else np.inf
    return candidates[order[0]], float(distance[order[0]]), float(second)


def probe_roles(lstm: torch.nn.Module, num_inputs: int, hidden: int) -> RoleMap:
    """Find the role of every parameter scalar of ``lstm`` (its parameters are overwritten)."""
    x = np.random.default_rng(0).standard_normal((3, 2, num_inputs))
    roles = all_roles(num_inputs, hidden)
    result = RoleMap(
        scalars=[
            Scalar(name, p, tuple(int(i) for i in idx))
            for name, p in lstm.named_parameters()
            for idx in np.ndindex(*p.shape)
        ]
    )
    for p in lstm.parameters():
        p.data.zero_()
    zero_output = run_student(lstm, x)
    if np.abs(zero_output).max() > 1e-6:
        result.problem = (
            f"with every parameter 0 the output should be 0 (g = tanh(0) = 0 keeps the cell empty), "
            f"got values up to {np.abs(zero_output).max():.3g}: is g squashed with tanh and c_0 = 0?"
        )
        return result
    first = [r for r in roles if r.gate == "g" and r.kind != "recurrent"]
    deferred = _assign(
        result, lstm, x, Canonical.zeros(num_inputs, hidden), first, range(len(result.scalars)), zero_output
    )
    base = Canonical.zeros(num_inputs, hidden)
    for unit in range(hidden):
        bias = result.scalars_of(Role("g", "bias", unit))
        if not bias:
            result.problem = result.problem or f"no parameter acts as the bias b_g[{unit}] of the candidate gate g"
            return result
        value = _base_bias(unit, hidden)
        bias[0].set(value)
        base.add(Role("g", "bias", unit), value)
    rest = [r for r in roles if r not in first]
    _assign(result, lstm, x, base, rest, deferred, run_student(lstm, x))
    if not result.problem:
        result.problem = _coverage_problem(result, roles)
    return result


def _base_bias(unit: int, hidden: int) -> float:
    """Distinct, non-zero g biases, 0.5 to 1.5 in size and alternating in sign (they separate the roles)."""
    return (-1) ** unit * (0.5 + unit / max(hidden - 1, 1))


def _assign(
    result: RoleMap,
    lstm: torch.nn.Module,
    x: np.ndarray,
    base: Canonical,
    candidates: list[Role],
    numbers,
    base_output: np.ndarray,
) -> list[int]:
    """Identify the scalars ``numbers`` against ``candidates``; returns those without effect (to try later)."""
    hypotheses = _hypotheses(x, base, candidates)
    without_effect = []
    for number in numbers:
        scalar = result.scalars[number]
        scalar.set(PROBE)
        output = run_student(lstm, x)
        scalar.set(0.0)
        if np.abs(output - base_output).max() < 1e-7:
            without_effect.append(number)
            continue
        role, distance, second = _match(output.reshape(-1), hypotheses, candidates)
        if distance <= MATCH_TOLERANCE and second > 10 * MATCH_TOLERANCE:
            result.roles[number] = role
        elif not result.problem:
            result.problem = (
                f"parameter {scalar} changes the output like no term of equations 8-13 does "
                f"(closest: {role}, off by {distance:.2g})"
            )
    result.unused = without_effect
    return without_effect


def _coverage_problem(result: RoleMap, roles: list[Role]) -> str:
    counts: dict[Role, int] = {}
    for role in result.roles.values():
        counts[role] = counts.get(role, 0) + 1
    for role in roles:
        count = counts.get(role, 0)
        if count == 0:
            return f"no parameter acts as {role}"
        if role.kind != "bias" and count > 1:
            return f"{count} parameters act as {role}"
        if count > 2:
            return f"{count} parameters act as the bias {role}"
    return ""
