"""Question 2.1: backpropagation through time in a vanilla RNN, checked by computation.

The vanilla RNN of the assignment, for one sequence (no batch), steps ``t = 1 .. T`` from a
constant initial state ``h^(0)``::

    h^(t)    = tanh(W_hx x^(t) + W_hh h^(t-1) + b_h)      # [H]
    p^(t)    = W_ph h^(t) + b_p                           # [K], logits
    yhat^(t) = softmax(p^(t))
    L^(t)    = -sum_k y_k^(t) log yhat_k^(t)              # y^(t) one-hot

What REPORT.md 2.1 writes, computed in float64 so that tests can compare it with autograd:

(a) ``dL^(3)/dW_hh`` as the three written terms ``t' = 1, 2, 3`` built from the written factors
    (``written_expansion_t3``) and as ``delta^(1) h^(0)T + delta^(2) h^(1)T + delta^(3) h^(2)T``
    (``delta_form_t3``); ``dL^(t)/dW_ph = (yhat^(t) - y^(t)) h^(t)T`` (``output_weight_gradient``).
(b) the norm of ``dh^(T)/dh^(T-n) = prod_j diag(1 - h^(j)^2) W_hh`` for one ``W_hh`` rescaled to
    several spectral radii (``norm_experiment``).

``python -m part2.analysis.rnn_gradients --results_dir assets/part2`` writes ``gradient_norms.json``
and ``gradient_norms.png``. It is tiny and exact in float64 on the CPU: no ``--device``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

from common.cli import make_parser, positive_float, positive_int, run_cli
from common.io import write_json
from common.runs import ensure_writable

DTYPE = torch.float64
DEFAULT_RADII = (0.5, 0.9, 1.0, 1.1, 1.5, 3.0)


@dataclass
class RNNParams:
    """Weights of the vanilla RNN: ``W_hx [H, D]``, ``W_hh [H, H]``, ``b_h [H]``, ``W_ph [K, H]``, ``b_p [K]``."""

    W_hx: torch.Tensor
    W_hh: torch.Tensor
    b_h: torch.Tensor
    W_ph: torch.Tensor
    b_p: torch.Tensor

    def as_leaves(self) -> RNNParams:
        """Copies of all weights that are leaves of a new autograd graph."""
        return RNNParams(*(p.detach().clone().requires_grad_(True) for p in self.as_tuple()))

    def as_tuple(self) -> tuple[torch.Tensor, ...]:
        return (self.W_hx, self.W_hh, self.b_h, self.W_ph, self.b_p)


def random_rnn_params(
    input_dim: int,
    hidden_dim: int,
    output_dim: int,
    generator: torch.Generator,
) -> RNNParams:
    """Gaussian weights and biases with variance ``1 / fan_in``, float64."""

    def gaussian(*shape: int, fan_in: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=DTYPE) / math.sqrt(fan_in)

    return RNNParams(
        W_hx=gaussian(hidden_dim, input_dim, fan_in=input_dim),
        W_hh=gaussian(hidden_dim, hidden_dim, fan_in=hidden_dim),
        b_h=gaussian(hidden_dim, fan_in=hidden_dim),
        W_ph=gaussian(output_dim, hidden_dim, fan_in=hidden_dim),
        b_p=gaussian(output_dim, fan_in=hidden_dim),
    )


def rnn_forward(params: RNNParams, xs: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the RNN over ``xs [T, D]`` from ``h0 [H]``.

    Returns:
        ``hs [T + 1, H]`` with ``hs[t] = h^(t)`` (``hs[0] = h^(0)``, so the
        tensor index equals the time index of the equations), and the logits
        ``ps [T + 1, K]`` with ``ps[t] = p^(t)`` (``ps[0]`` is unused and zero).
    """
    hs = [h0]
    for x in xs.unbind(0):
        hs.append(torch.tanh(params.W_hx @ x + params.W_hh @ hs[-1] + params.b_h))
    h = torch.stack(hs)
    ps = h @ params.W_ph.T + params.b_p
    return h, torch.cat([torch.zeros_like(ps[:1]), ps[1:]])


def loss_at(params: RNNParams, xs: torch.Tensor, h0: torch.Tensor, target: int, t: int) -> torch.Tensor:
    """``L^(t)``, the cross-entropy of ``softmax(p^(t))`` against the one-hot target class ``target``."""
    _, ps = rnn_forward(params, xs[:t], h0)
    return F.cross_entropy(ps[t].unsqueeze(0), torch.tensor([target]))


def autograd_gradients(
    params: RNNParams, xs: torch.Tensor, h0: torch.Tensor, target: int, t: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dL^(t)/dW_hh, dL^(t)/dW_ph)`` computed by autograd."""
    leaves = params.as_leaves()
    loss = loss_at(leaves, xs, h0, target, t)
    grad_hh, grad_ph = torch.autograd.grad(loss, (leaves.W_hh, leaves.W_ph))
    return grad_hh, grad_ph


def hidden_jacobian(W_hh: torch.Tensor, h_j: torch.Tensor) -> torch.Tensor:
    """``dh^(j)/dh^(j-1) = diag(1 - h^(j)^2) W_hh``, an ``[H, H]`` matrix (tanh' = 1 - tanh^2)."""
    return torch.diag(1.0 - h_j**2) @ W_hh


def immediate_jacobian_wrt_W_hh(h_k: torch.Tensor, h_prev: torch.Tensor) -> torch.Tensor:
    """``d+h^(k)/dW_hh``: the derivative with ``h^(k-1)`` held fixed, an ``[H, H, H]`` tensor.

    Entry ``[a, b, c]`` is ``dh_a^(k)/d(W_hh)_bc = delta_ab (1 - h_a^(k)^2) h_c^(k-1)``.
    """
    eye = torch.eye(h_k.numel(), dtype=h_k.dtype)
    return torch.einsum("ab,a,c->abc", eye, 1.0 - h_k**2, h_prev)


def loss_grad_wrt_yhat(yhat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``dL/dyhat = -(y_1 / yhat_1, .., y_K / yhat_K)``, the row vector ``[K]`` of the cross-entropy."""
    return -y / yhat


def softmax_jacobian(yhat: torch.Tensor) -> torch.Tensor:
    """``dyhat/dp = diag(yhat) - yhat yhat^T``, ``[K, K]``, for ``yhat = softmax(p)``."""
    return torch.diag(yhat) - torch.outer(yhat, yhat)


def loss_grad_wrt_hidden(params: RNNParams, h_t: torch.Tensor, target: int) -> torch.Tensor:
    """``dL^(t)/dh^(t) = W_ph^T (yhat^(t) - y^(t))``, ``[H]``: the simplified product of the three factors."""
    yhat = torch.softmax(params.W_ph @ h_t + params.b_p, dim=0)
    y = F.one_hot(torch.tensor(target), yhat.numel()).to(yhat.dtype)
    return params.W_ph.T @ (yhat - y)


def expanded_gradient_terms(
    params: RNNParams, xs: torch.Tensor, h0: torch.Tensor, target: int, t: int = 3
) -> list[torch.Tensor]:
    """The terms ``t' = 1 .. t`` of ``dL^(t)/dW_hh`` (eq. 7), each ``[H, H]``, for any ``t``.

    Term ``t'`` is ``dL^(t)/dh^(t) (prod_{j=t'+1}^{t} dh^(j)/dh^(j-1)) d+h^(t')/dW_hh``, the
    product ordered ``j = t, .., t'+1`` from left to right. The ``t' = 0`` term of eq. 7 is zero:
    ``h^(0)`` is a constant, so ``dh^(0)/dW_hh = 0``.
    """
    with torch.no_grad():
        hs, _ = rnn_forward(params, xs[:t], h0)
        upstream = loss_grad_wrt_hidden(params, hs[t], target)
        terms = []
        for k in range(1, t + 1):
            chain = upstream
            for j in range(t, k, -1):
                chain = chain @ hidden_jacobian(params.W_hh, hs[j])
            terms.append(torch.einsum("a,abc->bc", chain, immediate_jacobian_wrt_W_hh(hs[k], hs[k - 1])))
    return terms


def expanded_gradient(params: RNNParams, xs: torch.Tensor, h0: torch.Tensor, target: int, t: int = 3) -> torch.Tensor:
    """``dL^(t)/dW_hh`` as the sum over ``t' = 1 .. t`` of ``expanded_gradient_terms``."""
    return torch.stack(expanded_gradient_terms(params, xs, h0, target, t)).sum(0)


def _states_and_target(
    params: RNNParams, xs: torch.Tensor, h0: torch.Tensor, target: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``hs [4, H]`` (``h^(0) .. h^(3)``), ``yhat^(3)`` and the one-hot ``y^(3)``."""
    hs, ps = rnn_forward(params, xs[:3], h0)
    yhat = torch.softmax(ps[3], dim=0)
    return hs, yhat, F.one_hot(torch.tensor(target), yhat.numel()).to(yhat.dtype)


def written_expansion_t3(params: RNNParams, xs: torch.Tensor, h0: torch.Tensor, target: int) -> list[torch.Tensor]:
    """The three terms ``t' = 1, 2, 3`` of ``dL^(3)/dW_hh`` exactly as REPORT.md 2.1 (a) writes them.

    Term ``t'`` is ``dL/dyhat^(3) . dyhat^(3)/dp^(3) . W_ph . J_3 .. J_{t'+1} . d+h^(t')/dW_hh`` with
    ``dL/dyhat = -y/yhat``, ``dyhat/dp = diag(yhat) - yhat yhat^T`` and ``J_j = diag(1 - h^(j)^2) W_hh``.
    """
    with torch.no_grad():
        hs, yhat, y = _states_and_target(params, xs, h0, target)
        dL_dh3 = loss_grad_wrt_yhat(yhat, y) @ softmax_jacobian(yhat) @ params.W_ph
        J3, J2 = hidden_jacobian(params.W_hh, hs[3]), hidden_jacobian(params.W_hh, hs[2])
        rows = {1: dL_dh3 @ J3 @ J2, 2: dL_dh3 @ J3, 3: dL_dh3}
        return [torch.einsum("a,abc->bc", rows[k], immediate_jacobian_wrt_W_hh(hs[k], hs[k - 1])) for k in (1, 2, 3)]


def delta_form_t3(params: RNNParams, xs: torch.Tensor, h0: torch.Tensor, target: int) -> list[torch.Tensor]:
    """The terms ``delta^(t') h^(t'-1)T`` for ``t' = 1, 2, 3`` (outer-product form of REPORT.md 2.1 a).

    ``delta^(3) = (1 - h^(3)^2) * W_ph^T (yhat^(3) - y^(3))`` and
    ``delta^(j) = (1 - h^(j)^2) * W_hh^T delta^(j+1)`` for ``j = 2, 1``.
    """
    with torch.no_grad():
        hs, yhat, y = _states_and_target(params, xs, h0, target)
        delta3 = (1 - hs[3] ** 2) * (params.W_ph.T @ (yhat - y))
        delta2 = (1 - hs[2] ** 2) * (params.W_hh.T @ delta3)
        delta1 = (1 - hs[1] ** 2) * (params.W_hh.T @ delta2)
        return [torch.outer(delta1, hs[0]), torch.outer(delta2, hs[1]), torch.outer(delta3, hs[2])]


def output_weight_gradient(params: RNNParams, xs: torch.Tensor, h0: torch.Tensor, target: int, t: int) -> torch.Tensor:
    """``dL^(t)/dW_ph = (yhat^(t) - y^(t)) h^(t)^T``, ``[K, H]``: no sum over time."""
    with torch.no_grad():
        hs, ps = rnn_forward(params, xs[:t], h0)
        yhat = torch.softmax(ps[t], dim=0)
        y = F.one_hot(torch.tensor(target), yhat.numel()).to(yhat.dtype)
    return torch.outer(yhat - y, hs[t])


def spectral_radius(matrix: torch.Tensor) -> float:
    """``max |lambda|`` over the eigenvalues of a square matrix."""
    return torch.linalg.eigvals(matrix).abs().max().item()


def scale_to_spectral_radius(matrix: torch.Tensor, radius: float) -> torch.Tensor:
    """``matrix`` rescaled so that its spectral radius is ``radius``."""
    return matrix * (radius / spectral_radius(matrix))


def jacobian_product_norms(
    W_hh: torch.Tensor, hidden_states: torch.Tensor | None = None, num_steps: int | None = None
) -> torch.Tensor:
    """Spectral norms of ``dh^(T)/dh^(T-n)`` for ``n = 1 .. num_steps``.

    ``dh^(T)/dh^(T-n) = J_T J_{T-1} .. J_{T-n+1}`` with ``J_j = diag(1 - h^(j)^2) W_hh``.

    Args:
        W_hh: recurrent weights ``[H, H]``.
        hidden_states: ``[T + 1, H]`` states ``h^(0) .. h^(T)`` of a forward pass
            (the tanh regime); ``None`` for the linear regime around ``h = 0``,
            where every ``J_j = W_hh`` and the product is ``W_hh^n``.
        num_steps: number of factors (default ``T``; required in the linear regime).

    Returns:
        ``[num_steps]`` tensor, entry ``n - 1`` holding ``||dh^(T)/dh^(T-n)||_2``.
    """
    if hidden_states is None:
        if num_steps is None:
            raise ValueError("num_steps is required in the linear regime (hidden_states=None)")
        jacobians = [W_hh] * num_steps
    else:
        T = hidden_states.size(0) - 1
        num_steps = T if num_steps is None else num_steps
        if not 1 <= num_steps <= T:
            raise ValueError(f"num_steps must be in 1..{T} for {T} time steps, got {num_steps}")
        jacobians = [hidden_jacobian(W_hh, hidden_states[j]) for j in range(T, T - num_steps, -1)]
    product = torch.eye(W_hh.size(0), dtype=W_hh.dtype)
    norms = []
    for jacobian in jacobians:
        product = product @ jacobian
        norms.append(torch.linalg.matrix_norm(product, ord=2))
    return torch.stack(norms)


def gradient_check(seed: int, hidden_dim: int = 8, input_dim: int = 5, output_dim: int = 4) -> dict:
    """Autograd against the written ``t = 3`` expansion and its delta form, for a random and a zero ``h^(0)``."""
    generator = torch.Generator().manual_seed(seed)
    params = random_rnn_params(input_dim, hidden_dim, output_dim, generator)
    xs = torch.randn(3, input_dim, generator=generator, dtype=DTYPE)
    target = int(torch.randint(output_dim, (1,), generator=generator))
    initial_states = {
        "random_h0": 0.5 * torch.randn(hidden_dim, generator=generator, dtype=DTYPE),
        "zero_h0": torch.zeros(hidden_dim, dtype=DTYPE),
    }
    results = {"sizes": {"H": hidden_dim, "D": input_dim, "K": output_dim}}
    for name, h0 in initial_states.items():
        grad_hh, grad_ph = autograd_gradients(params, xs, h0, target, t=3)
        terms = written_expansion_t3(params, xs, h0, target)
        delta_terms = delta_form_t3(params, xs, h0, target)
        results[name] = {
            "max_abs_diff_W_hh": (grad_hh - torch.stack(terms).sum(0)).abs().max().item(),
            "max_abs_diff_W_hh_delta_form": (grad_hh - torch.stack(delta_terms).sum(0)).abs().max().item(),
            "max_abs_grad_W_hh": grad_hh.abs().max().item(),
            "term_norms_t1_t2_t3": [term.norm().item() for term in terms],
            "max_abs_diff_W_ph": (grad_ph - output_weight_gradient(params, xs, h0, target, t=3)).abs().max().item(),
        }
    return results


def norm_experiment(seed: int, radii: Sequence[float], hidden_dim: int, num_steps: int, input_scale: float) -> dict:
    """Jacobian-product norms for one base ``W_hh`` rescaled to each spectral radius.

    Linear regime: ``||W_hh^n||``. Tanh regime: the RNN is driven by Gaussian
    inputs ``x^(t) ~ N(0, I)`` through ``W_hx`` (entries ``N(0, input_scale^2 / H)``)
    from ``h^(0) = 0`` and the product uses the visited states.
    """
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(hidden_dim, hidden_dim, generator=generator, dtype=DTYPE)
    W_hx = input_scale * torch.randn(hidden_dim, hidden_dim, generator=generator, dtype=DTYPE) / math.sqrt(hidden_dim)
    xs = torch.randn(num_steps, hidden_dim, generator=generator, dtype=DTYPE)
    zeros = torch.zeros(hidden_dim, dtype=DTYPE)
    results: dict = {"linear": {}, "tanh": {}}
    for radius in radii:
        W_hh = scale_to_spectral_radius(base, radius)
        params = RNNParams(W_hx, W_hh, zeros, torch.zeros(1, hidden_dim, dtype=DTYPE), torch.zeros(1, dtype=DTYPE))
        hs, _ = rnn_forward(params, xs, zeros)
        for regime, states in (("linear", None), ("tanh", hs)):
            norms = jacobian_product_norms(W_hh, states, num_steps)
            results[regime][str(radius)] = {
                "norms": norms.tolist(),
                # ||prod||^(1/n) at the last n: the geometric growth factor per time step.
                "per_step_factor": norms[-1].item() ** (1.0 / num_steps),
                "mean_tanh_derivative": (1.0 - hs[1:] ** 2).mean().item() if regime == "tanh" else 1.0,
            }
    return results


def plot_norms(results: dict, path: Path) -> None:
    """Two log-scale panels (linear and tanh regime), one line per spectral radius."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    titles = {
        "linear": "linear regime ($h \\approx 0$): $\\|W_{hh}^{n}\\|_2$ (dashed: $\\rho^n$)",
        "tanh": "tanh regime: $\\|J_T \\cdots J_{T-n+1}\\|_2$, $J_j = \\mathrm{diag}(1-h_j^2)\\,W_{hh}$",
    }
    for ax, regime in zip(axes, ("linear", "tanh")):
        for radius, entry in results[regime].items():
            steps = torch.arange(1, len(entry["norms"]) + 1)
            line = ax.semilogy(steps, entry["norms"], label=f"$\\rho(W_{{hh}})$ = {radius}")[0]
            if regime == "linear":
                ax.semilogy(steps, float(radius) ** steps.double(), "--", color=line.get_color(), linewidth=0.8)
        ax.set_title(titles[regime], fontsize=10)
        ax.set_xlabel("n = T - t' (time steps back)")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("$\\|\\partial h^{(T)} / \\partial h^{(T-n)}\\|_2$")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("python -m part2.analysis.rnn_gradients", __doc__)
    parser.add_argument("--results_dir", default="results/part2", help="where gradient_norms.json and .png go")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the weights and inputs")
    parser.add_argument(
        "--radii", type=positive_float, nargs="+", default=list(DEFAULT_RADII), help="spectral radii of W_hh"
    )
    parser.add_argument("--hidden_dim", type=positive_int, default=64, help="size H of the square W_hh")
    parser.add_argument("--num_steps", type=positive_int, default=100, help="length of the Jacobian products")
    parser.add_argument("--input_scale", type=positive_float, default=1.0, help="input strength in the tanh regime")
    return parser


def print_summary(check: dict, norms: dict) -> None:
    """One line per gradient check and per (regime, spectral radius)."""
    for name in ("random_h0", "zero_h0"):
        entry = check[name]
        print(
            f"t = 3, {name}: max |autograd - written sum| for W_hh = {entry['max_abs_diff_W_hh']:.2e}, "
            f"delta form {entry['max_abs_diff_W_hh_delta_form']:.2e} (max |grad| {entry['max_abs_grad_W_hh']:.2e}; "
            "term norms t'=1,2,3: "
            + ", ".join(f"{v:.3e}" for v in entry["term_norms_t1_t2_t3"])
            + f"), for W_ph = {entry['max_abs_diff_W_ph']:.2e}"
        )
    for regime in ("linear", "tanh"):
        for radius, entry in norms[regime].items():
            n = entry["norms"]
            print(
                f"{regime:6s} rho = {radius:>4s}: ||dh(T)/dh(T-n)|| n=1: {n[0]:.3e}  "
                f"n=10: {n[min(9, len(n) - 1)]:.3e}  n={len(n)}: {n[-1]:.3e}  "
                f"per-step factor {entry['per_step_factor']:.3f}"
            )


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    results_dir = ensure_writable(args.results_dir)
    check = gradient_check(args.seed)
    norms = norm_experiment(args.seed, args.radii, args.hidden_dim, args.num_steps, args.input_scale)
    print_summary(check, norms)
    summary = {
        "args": {key: value for key, value in vars(args).items() if key != "results_dir"},
        "gradient_check_t3": check,
        "jacobian_product_norms": norms,
    }
    json_path = write_json(summary, results_dir / "gradient_norms.json")
    png_path = results_dir / "gradient_norms.png"
    plot_norms(norms, png_path)
    print(f"wrote {json_path} and {png_path}")


if __name__ == "__main__":
    run_cli(main)
