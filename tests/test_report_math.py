"""Checks of the mathematical claims in REPORT.md (questions 2.1, 2.2, 3.1-3.5), at the sizes the report states.

Everything runs in float64 on small sizes; the whole file takes a few seconds. The numbers quoted in the
report's prose are compared with these computations by ``tests/test_report_consistency.py``.
"""

from __future__ import annotations

import json
import math
from argparse import Namespace

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from part2.analysis.rnn_gradients import (
    DEFAULT_RADII,
    RNNParams,
    autograd_gradients,
    build_parser,
    delta_form_t3,
    expanded_gradient,
    expanded_gradient_terms,
    hidden_jacobian,
    jacobian_product_norms,
    loss_grad_wrt_yhat,
    norm_experiment,
    output_weight_gradient,
    random_rnn_params,
    rnn_forward,
    scale_to_spectral_radius,
    softmax_jacobian,
    spectral_radius,
    written_expansion_t3,
)
from part2.analysis.rnn_gradients import main as rnn_gradients_main
from part3.analysis.graph_attention import GraphAttentionLayer
from part3.analysis.spectral import (
    circulant,
    circulant_eigenvalues,
    dft_matrix,
    fourier_basis,
    gcn_normalized_adjacency,
    real_fourier_basis,
    reflect,
    ring_adjacency,
    ring_laplacian,
    ring_layer_phi,
    ring_message_passing,
    ring_theta,
    shift_matrix,
)

DTYPE = torch.float64
SIZES = [1, 2, 3, 5, 8, 13, 32]  # ring sizes n of the 3.4 checks (as REPORT.md states)
SHIFT_SIZES = [n for n in SIZES if n >= 2]  # a shift needs two nodes
RING_SIZES = [n for n in SIZES if n >= 3]  # a ring (cycle graph) needs three
LINEAR_REGIME_TOLERANCE = 0.011  # REPORT.md 2.1 (b): per-step factor within 1.1 % of rho


def make_rnn(seed: int, hidden: int = 6, inputs: int = 4, outputs: int = 5, steps: int = 3):
    generator = torch.Generator().manual_seed(seed)
    params = random_rnn_params(inputs, hidden, outputs, generator)
    xs = torch.randn(steps, inputs, generator=generator, dtype=DTYPE)
    h0 = torch.randn(hidden, generator=generator, dtype=DTYPE)
    target = int(torch.randint(outputs, (1,), generator=generator))
    return params, xs, h0, target


# ---------------------------------------------------------------- question 2.1 (a)


def random_softmax(seed: int, classes: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    p = torch.randn(classes, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)
    return p, torch.softmax(p, dim=0)


@pytest.mark.parametrize("target", [0, 3])
def test_loss_gradient_wrt_yhat_is_minus_y_over_yhat(target: int) -> None:
    _, yhat = random_softmax(target)
    yhat = yhat.clone().requires_grad_(True)
    y = F.one_hot(torch.tensor(target), 5).to(DTYPE)
    (grad,) = torch.autograd.grad(-(y * torch.log(yhat)).sum(), yhat)
    torch.testing.assert_close(loss_grad_wrt_yhat(yhat.detach(), y), grad, rtol=0, atol=1e-12)
    assert loss_grad_wrt_yhat(yhat.detach(), y)[target] < -1  # -1 / yhat_target, and zero elsewhere
    assert torch.count_nonzero(loss_grad_wrt_yhat(yhat.detach(), y)) == 1


@pytest.mark.parametrize("seed", range(3))
def test_softmax_jacobian_is_diag_yhat_minus_yhat_yhat_transpose(seed: int) -> None:
    p, yhat = random_softmax(seed)
    reference = torch.autograd.functional.jacobian(lambda logits: torch.softmax(logits, dim=0), p)
    torch.testing.assert_close(softmax_jacobian(yhat), reference, rtol=0, atol=1e-12)


def test_output_factors_multiply_to_yhat_minus_y_only_because_y_sums_to_one() -> None:
    params, xs, h0, target = make_rnn(2)
    hs, ps = rnn_forward(params, xs, h0)
    yhat = torch.softmax(ps[3], dim=0)
    y = F.one_hot(torch.tensor(target), yhat.numel()).to(DTYPE)
    product = loss_grad_wrt_yhat(yhat, y) @ softmax_jacobian(yhat) @ params.W_ph
    torch.testing.assert_close(product, (yhat - y) @ params.W_ph, rtol=0, atol=1e-12)
    # dL^(3)/dh^(3) by autograd, with h^(3) as the input.
    reference = torch.autograd.functional.jacobian(
        lambda h: F.cross_entropy((params.W_ph @ h + params.b_p).unsqueeze(0), torch.tensor([target])), hs[3]
    )
    torch.testing.assert_close(product, reference, rtol=0, atol=1e-12)
    # In general (-y/yhat)(diag(yhat) - yhat yhat^T) = (sum_k y_k) yhat - y: the simplification needs sum y = 1.
    unnormalised = 2 * y
    assert (loss_grad_wrt_yhat(yhat, unnormalised) @ softmax_jacobian(yhat) - (yhat - unnormalised)).abs().max() > 0.1


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("zero_h0", [False, True])
def test_autograd_equals_written_t3_expansion_and_its_delta_form(seed: int, zero_h0: bool) -> None:
    params, xs, h0, target = make_rnn(seed)
    if zero_h0:
        h0 = torch.zeros_like(h0)
    grad_hh, _ = autograd_gradients(params, xs, h0, target, t=3)
    written = written_expansion_t3(params, xs, h0, target)
    delta = delta_form_t3(params, xs, h0, target)
    torch.testing.assert_close(torch.stack(written).sum(0), grad_hh, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.stack(delta).sum(0), grad_hh, rtol=0, atol=1e-12)
    # Term by term: delta^(t') h^(t'-1)T is the contraction of the written term t'.
    for t_prime, (term, outer) in enumerate(zip(written, delta), start=1):
        torch.testing.assert_close(outer, term, rtol=0, atol=1e-12, msg=f"term t'={t_prime}")


def test_every_term_of_the_t3_sum_matters_and_t1_vanishes_for_zero_h0() -> None:
    params, xs, h0, target = make_rnn(0)
    grad_hh, _ = autograd_gradients(params, xs, h0, target, t=3)
    terms = written_expansion_t3(params, xs, h0, target)
    assert len(terms) == 3
    for k in range(3):
        partial = sum(term for i, term in enumerate(terms) if i != k)
        assert (partial - grad_hh).abs().max() > 1e-6, f"dropping term t'={k + 1} should change the gradient"
    # d+h^(1)/dW_hh is proportional to h^(0): with h^(0) = 0 the t' = 1 term is exactly zero.
    zero_terms = written_expansion_t3(params, xs, torch.zeros_like(h0), target)
    assert torch.count_nonzero(zero_terms[0]) == 0
    assert zero_terms[1].abs().max() > 0 and zero_terms[2].abs().max() > 0


@pytest.mark.parametrize("t", [1, 2, 5])
def test_expanded_sum_holds_for_other_t(t: int) -> None:
    params, xs, h0, target = make_rnn(7, steps=5)
    grad_hh, _ = autograd_gradients(params, xs, h0, target, t=t)
    torch.testing.assert_close(expanded_gradient(params, xs, h0, target, t=t), grad_hh, rtol=0, atol=1e-12)
    assert len(expanded_gradient_terms(params, xs, h0, target, t=t)) == t


@pytest.mark.parametrize("t", [1, 3, 5])
def test_output_weight_gradient_has_no_sum_over_time(t: int) -> None:
    params, xs, h0, target = make_rnn(3, steps=5)
    _, grad_ph = autograd_gradients(params, xs, h0, target, t=t)
    torch.testing.assert_close(output_weight_gradient(params, xs, h0, target, t), grad_ph, rtol=0, atol=1e-12)


def test_hidden_jacobian_product_matches_autograd() -> None:
    params, xs, h0, _ = make_rnn(1, steps=6)
    hs, _ = rnn_forward(params, xs, h0)
    k = 2

    def h_T_from_h_k(h_k: torch.Tensor) -> torch.Tensor:
        return rnn_forward(params, xs[k:], h_k)[0][-1]

    reference = torch.autograd.functional.jacobian(h_T_from_h_k, hs[k])
    product = torch.eye(h0.numel(), dtype=DTYPE)
    for j in range(6, k, -1):
        product = product @ hidden_jacobian(params.W_hh, hs[j])
    torch.testing.assert_close(product, reference, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- question 2.1 (b), at the report's sizes


@pytest.fixture(scope="module")
def report_norms() -> dict:
    """The experiment of REPORT.md 2.1 (b) with the CLI's defaults (64 x 64, T = 100, seed 0)."""
    args = build_parser().parse_args([])
    assert (args.hidden_dim, args.num_steps, tuple(args.radii)) == (64, 100, DEFAULT_RADII)
    return norm_experiment(args.seed, args.radii, args.hidden_dim, args.num_steps, args.input_scale)


def test_scaling_sets_the_spectral_radius() -> None:
    base = torch.randn(64, 64, generator=torch.Generator().manual_seed(0), dtype=DTYPE)
    for radius in DEFAULT_RADII:
        assert spectral_radius(scale_to_spectral_radius(base, radius)) == pytest.approx(radius, rel=1e-12)


def test_linear_regime_per_step_factor_is_the_spectral_radius(report_norms: dict) -> None:
    assert 1.0 in DEFAULT_RADII
    for radius in DEFAULT_RADII:
        factor = report_norms["linear"][str(radius)]["per_step_factor"]
        # Gelfand: ||W^n||^(1/n) -> rho(W); after 100 steps within 1.1 %.
        assert abs(factor / radius - 1) <= LINEAR_REGIME_TOLERANCE, (radius, factor)


def test_linear_regime_vanishes_below_and_explodes_above_radius_one(report_norms: dict) -> None:
    for radius in DEFAULT_RADII:
        last = report_norms["linear"][str(radius)]["norms"][-1]
        if radius < 1:
            assert last < 1e-4
        elif radius > 1:
            assert last > 1e4
        else:
            assert 0.1 < last < 10  # rho = 1: neither; the non-normal W_hh gives transient growth only


def test_tanh_regime_is_bounded_by_the_spectral_norm_power() -> None:
    generator = torch.Generator().manual_seed(1)
    hidden, steps = 64, 100
    base = torch.randn(hidden, hidden, generator=generator, dtype=DTYPE)
    xs = torch.randn(steps, hidden, generator=generator, dtype=DTYPE)
    W_hx = torch.randn(hidden, hidden, generator=generator, dtype=DTYPE) / math.sqrt(hidden)
    zeros = torch.zeros(hidden, dtype=DTYPE)
    for radius in DEFAULT_RADII:
        W = scale_to_spectral_radius(base, radius)
        hs, _ = rnn_forward(RNNParams(W_hx, W, zeros, zeros.unsqueeze(0), zeros[:1]), xs, zeros)
        norms = jacobian_product_norms(W, hs)
        n = torch.arange(1, steps + 1, dtype=DTYPE)
        # 0 < tanh' <= 1, so ||prod diag(1 - h^2) W|| <= ||W||_2^n.
        assert torch.all(norms <= torch.linalg.matrix_norm(W, ord=2) ** n * (1 + 1e-12))


def test_tanh_regime_vanishes_up_to_rho_1_5_and_explodes_at_rho_3(report_norms: dict) -> None:
    for radius in DEFAULT_RADII:
        entry = report_norms["tanh"][str(radius)]
        if radius <= 1.5:
            assert entry["per_step_factor"] < 1 and entry["norms"][-1] < 1e-6, radius
        else:
            assert entry["per_step_factor"] > 1 and entry["norms"][-1] > 1e6, radius
    # Saturation is what shrinks the factors: the tanh regime stays below the linear one at every radius.
    for radius in DEFAULT_RADII:
        assert (
            report_norms["tanh"][str(radius)]["per_step_factor"]
            < report_norms["linear"][str(radius)]["per_step_factor"]
        )


def test_mean_tanh_derivative_at_rho_3_is_0_29(report_norms: dict) -> None:
    assert round(report_norms["tanh"]["3.0"]["mean_tanh_derivative"], 2) == 0.29


def test_rnn_gradients_cli_reproduces_the_committed_json_and_figure(tmp_path, repo_root) -> None:
    rnn_gradients_main(["--results_dir", str(tmp_path)])
    written = json.loads((tmp_path / "gradient_norms.json").read_text())
    committed = json.loads((repo_root / "assets" / "part2" / "gradient_norms.json").read_text())
    assert written["args"] == committed["args"]
    assert_nested_close(written, committed)
    assert written["gradient_check_t3"]["random_h0"]["max_abs_diff_W_hh"] < 1e-12
    assert written["gradient_check_t3"]["zero_h0"]["term_norms_t1_t2_t3"][0] == 0
    assert (tmp_path / "gradient_norms.png").stat().st_size > 10_000


def assert_nested_close(actual, expected, path: str = "") -> None:
    """Equal structure; floats equal to 1e-9 relative (differences below 1e-15 count as equal)."""
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys(), path
        for key in expected:
            assert_nested_close(actual[key], expected[key], f"{path}/{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_nested_close(a, e, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=1e-9, abs=1e-15), path
    else:
        assert actual == expected, path


@pytest.mark.parametrize("bad", [["--num_steps", "0"], ["--hidden_dim", "-1"], ["--radii", "0"]])
def test_rnn_gradients_cli_rejects_bad_sizes(bad: list[str], tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        rnn_gradients_main(["--results_dir", str(tmp_path), *bad])
    assert exit_info.value.code == 2
    assert "expected a" in capsys.readouterr().err
    assert not (tmp_path / "gradient_norms.json").exists()


# ---------------------------------------------------------------- question 2.2 (b)


def lstm_parameter_formula(n_hidden: int, n_input: int, n_output: int) -> int:
    """4 gates x (W_x: N_h N_in, W_h: N_h^2, b: N_h) + output layer (W_ph: N_out N_h, b_p: N_out)."""
    return 4 * (n_hidden * n_input + n_hidden * n_hidden + n_hidden) + n_output * n_hidden + n_output


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@pytest.mark.parametrize("n_hidden,n_input,n_output", [(1, 1, 1), (3, 7, 2), (16, 8, 5), (1024, 256, 86)])
def test_lstm_parameter_count_formula(n_hidden: int, n_input: int, n_output: int) -> None:
    from part2.model import LSTM, TextGenerationModel

    lstm = LSTM(n_hidden, n_input)
    assert count(lstm) + count(nn.Linear(n_hidden, n_output)) == lstm_parameter_formula(n_hidden, n_input, n_output)

    # The project's text model: everything except the embedding table is LSTM + output layer.
    model = TextGenerationModel(
        Namespace(vocabulary_size=n_output, embedding_size=n_input, lstm_hidden_dim=n_hidden, lstm_num_layers=1)
    )
    embedding = sum(count(m) for m in model.modules() if isinstance(m, nn.Embedding))
    assert embedding == n_output * n_input
    assert count(model) - embedding == lstm_parameter_formula(n_hidden, n_input, n_output)

    # torch.nn.LSTM keeps two bias vectors per gate (b_ih and b_hh): 4 N_h more parameters.
    assert count(nn.LSTM(n_input, n_hidden)) == 4 * (n_hidden * n_input + n_hidden * n_hidden + 2 * n_hidden)


# ---------------------------------------------------------------- questions 3.2-3.4


def random_theta(n: int, seed: int, complex_valued: bool = False) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    theta = torch.randn(n, generator=generator, dtype=DTYPE)
    if complex_valued:
        theta = torch.complex(theta, torch.randn(n, generator=generator, dtype=DTYPE))
    return theta


def test_circulant_layout() -> None:
    C = circulant([1.0, 2.0, 3.0, 4.0])
    expected = torch.tensor([[1, 2, 3, 4], [4, 1, 2, 3], [3, 4, 1, 2], [2, 3, 4, 1]], dtype=DTYPE)
    torch.testing.assert_close(C, expected, rtol=0, atol=0)


@pytest.mark.parametrize("n", RING_SIZES)
def test_ring_adjacency(n: int) -> None:
    A = ring_adjacency(n)
    expected = torch.zeros(n, n, dtype=DTYPE)
    for i in range(n):
        expected[i, (i + 1) % n] = expected[i, (i - 1) % n] = 1
    torch.testing.assert_close(A, expected, rtol=0, atol=0)
    theta = torch.zeros(n, dtype=DTYPE)
    theta[1] = theta[-1] = 1
    torch.testing.assert_close(A, circulant(theta), rtol=0, atol=0)
    S = shift_matrix(n)
    torch.testing.assert_close(A, S + S.T, rtol=0, atol=0)
    eigenvalues = torch.linalg.eigvalsh(A)
    expected_eigenvalues = 2 * torch.cos(2 * math.pi * torch.arange(n, dtype=DTYPE) / n)
    torch.testing.assert_close(eigenvalues, expected_eigenvalues.sort().values, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="n >= 3"):
        ring_adjacency(2)


@pytest.mark.parametrize("n", [3, 5, 9])
@pytest.mark.parametrize("features", [None, 4])
def test_phi_of_equation_23_is_c_theta_with_theta_w0_w1_w_minus_1(n: int, features: int | None) -> None:
    generator = torch.Generator().manual_seed(n)
    h = torch.randn(n, *([features] if features else []), generator=generator, dtype=DTYPE)
    w_minus, w_0, w_plus = 2.0, 0.5, -1.0
    theta = ring_theta(w_minus, w_0, w_plus, n)
    assert theta[0] == w_0 and theta[1] == w_plus and theta[-1] == w_minus and torch.count_nonzero(theta) == 3
    phi = ring_layer_phi(h, w_minus, w_0, w_plus)
    for i in range(n):  # phi(h_i, N_i) = w_{-1} h_{i-1} + w_0 h_i + w_1 h_{i+1}, indices mod n
        torch.testing.assert_close(phi[i], w_minus * h[(i - 1) % n] + w_0 * h[i] + w_plus * h[(i + 1) % n])
    torch.testing.assert_close(phi, circulant(theta) @ h, rtol=0, atol=1e-12)
    torch.testing.assert_close(phi, ring_message_passing(h, theta), rtol=0, atol=1e-12)
    # A 3-tap 1-D convolution layer with circular padding (kernel order: offsets -1, 0, +1).
    signal = h.T.reshape(-1, 1, n) if features else h.view(1, 1, n)
    kernel = torch.tensor([w_minus, w_0, w_plus], dtype=DTYPE).view(1, 1, 3)
    conv = F.conv1d(F.pad(signal, (1, 1), mode="circular"), kernel)
    torch.testing.assert_close(phi, conv.reshape(-1, n).T if features else conv.view(n), rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", [3, 5, 9])
def test_ring_message_passing_equals_circulant_for_any_theta(n: int) -> None:
    h = torch.randn(n, 4, generator=torch.Generator().manual_seed(n), dtype=DTYPE)
    dense_theta = random_theta(n, seed=10 + n)
    torch.testing.assert_close(ring_message_passing(h, dense_theta), circulant(dense_theta) @ h, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", [2, 3, 6, 11])
def test_shift_matrix_is_c_theta_tilde_and_shifts_by_one(n: int) -> None:
    theta_tilde = torch.zeros(n, dtype=DTYPE)
    theta_tilde[1] = 1
    S = shift_matrix(n)
    torch.testing.assert_close(S, circulant(theta_tilde), rtol=0, atol=0)
    h = torch.arange(n, dtype=DTYPE)
    torch.testing.assert_close(S @ h, torch.roll(h, -1), rtol=0, atol=0)
    torch.testing.assert_close(torch.linalg.matrix_power(S, n), torch.eye(n, dtype=DTYPE), rtol=0, atol=0)
    # Its eigenvalues are the n-th roots of unity exp(-2 pi i k / n) (the DFT of theta~).
    roots = torch.polar(torch.ones(n, dtype=DTYPE), -2 * math.pi * torch.arange(n, dtype=DTYPE) / n)
    torch.testing.assert_close(circulant_eigenvalues(theta_tilde), roots, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", SIZES)
def test_dft_matrix_is_the_fft_and_its_inverse_is_the_conjugate(n: int) -> None:
    F_n = dft_matrix(n)
    eye = torch.eye(n, dtype=torch.complex128)
    torch.testing.assert_close(F_n, torch.fft.fft(eye, dim=0), rtol=0, atol=1e-12)
    torch.testing.assert_close(F_n @ F_n.conj() / n, eye, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("complex_valued", [False, True])
def test_circulant_is_diagonalised_by_the_dft_with_eigenvalues_fft_theta(n: int, complex_valued: bool) -> None:
    theta = random_theta(n, seed=n, complex_valued=complex_valued)
    C = circulant(theta).to(torch.complex128)
    F_n = dft_matrix(n)
    F_inv = F_n.conj() / n
    eigenvalues = circulant_eigenvalues(theta)
    torch.testing.assert_close(eigenvalues, F_n @ theta.to(torch.complex128), rtol=0, atol=1e-10)
    torch.testing.assert_close(F_inv @ C @ F_n, torch.diag(eigenvalues), rtol=0, atol=1e-10)
    torch.testing.assert_close(C, F_n @ torch.diag(eigenvalues) @ F_inv, rtol=0, atol=1e-10)
    # Each Fourier mode F[:, k] is an eigenvector with eigenvalue fft(theta)[k].
    torch.testing.assert_close(C @ F_n, F_n * eigenvalues, rtol=0, atol=1e-10)


def differs(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (a - b).abs().max().item() > 1e-6


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("sign", [1, -1])
def test_convolution_theorem_equation_24_in_the_assignment_notation(n: int, sign: int) -> None:
    Phi = fourier_basis(n, sign)
    torch.testing.assert_close(Phi.conj().T @ Phi, torch.eye(n, dtype=torch.complex128), rtol=0, atol=1e-12)
    theta, x = random_theta(n, seed=20 + n, complex_valued=True), random_theta(n, seed=40 + n, complex_valued=True)
    theta_hat, x_hat = Phi.conj().T @ theta, Phi.conj().T @ x
    C = circulant(theta)
    # What holds: C x = sqrt(n) Phi (reflect(theta_hat) * x_hat) and C^T x = sqrt(n) Phi (theta_hat * x_hat).
    torch.testing.assert_close(C @ x, math.sqrt(n) * Phi @ (reflect(theta_hat) * x_hat), rtol=0, atol=1e-10)
    torch.testing.assert_close(C.T @ x, math.sqrt(n) * Phi @ (theta_hat * x_hat), rtol=0, atol=1e-10)
    # The reflected theta_hat is Phi^T theta; for a real theta it is conj(theta_hat).
    torch.testing.assert_close(reflect(theta_hat), Phi.T @ theta, rtol=0, atol=1e-10)
    real_theta = theta.real.to(torch.complex128)
    torch.testing.assert_close(
        reflect(Phi.conj().T @ real_theta), (Phi.conj().T @ real_theta).conj(), rtol=0, atol=1e-10
    )
    # The factor sqrt(n) is needed from n = 2 on, the reflection from n = 3 on (-k = k mod 2).
    assert differs(C @ x, Phi @ (theta_hat * x_hat)) == (n >= 2)
    assert differs(C @ x, Phi @ (reflect(theta_hat) * x_hat)) == (n >= 2)
    assert differs(C @ x, math.sqrt(n) * Phi @ (theta_hat * x_hat)) == (n >= 3)


@pytest.mark.parametrize("n", SIZES)
def test_c_theta_transpose_is_circular_convolution_computed_by_the_fft(n: int) -> None:
    theta, h = random_theta(n, seed=1), random_theta(n, seed=2)
    # C(theta)^T (first column theta) is circular convolution: (theta * h)_i = sum_k theta_k h_{i-k}.
    convolution = torch.stack([sum(theta[k] * h[(i - k) % n] for k in range(n)) for i in range(n)])
    torch.testing.assert_close(circulant(theta).T @ h, convolution, rtol=0, atol=1e-12)
    via_fft = torch.fft.ifft(torch.fft.fft(theta) * torch.fft.fft(h)).real
    torch.testing.assert_close(convolution, via_fft, rtol=0, atol=1e-10)
    # C(theta) itself is circular cross-correlation: (C h)_i = sum_k theta_k h_{i+k}.
    correlation = torch.stack([sum(theta[k] * h[(i + k) % n] for k in range(n)) for i in range(n)])
    torch.testing.assert_close(circulant(theta) @ h, correlation, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", RING_SIZES)
def test_the_dft_is_one_of_many_graph_fourier_bases_of_the_ring(n: int) -> None:
    L = ring_laplacian(n)
    eigenvalues = 2 - 2 * torch.cos(2 * math.pi * torch.arange(n, dtype=DTYPE) / n)
    torch.testing.assert_close(eigenvalues[1:], eigenvalues[1:].flip(0), rtol=0, atol=1e-12)  # k and n - k repeat
    for basis in (fourier_basis(n, 1), fourier_basis(n, -1), real_fourier_basis(n).to(torch.complex128)):
        torch.testing.assert_close(basis.conj().T @ basis, torch.eye(n, dtype=torch.complex128), rtol=0, atol=1e-12)
        diagonal = basis.conj().T @ L.to(torch.complex128) @ basis
        torch.testing.assert_close(diagonal, torch.diag(torch.diagonal(diagonal)), rtol=0, atol=1e-12)
    # Only the complex Fourier modes diagonalise every circulant; the real basis leaves 2 x 2 blocks.
    C = circulant(random_theta(n, seed=n)).to(torch.complex128)
    for basis, diagonalises in ((fourier_basis(n), True), (real_fourier_basis(n).to(torch.complex128), False)):
        transformed = basis.conj().T @ C @ basis
        assert differs(transformed, torch.diag(torch.diagonal(transformed))) != diagonalises
    # ... with 2 x 2 blocks on the (cos_k, sin_k) pairs and zeros elsewhere.
    real = real_fourier_basis(n)
    blocks = torch.eye(n, dtype=torch.bool)
    for first in range(1, n - 1 - (n % 2 == 0) + 1, 2):
        blocks[first : first + 2, first : first + 2] = True
    torch.testing.assert_close(
        (real.T @ circulant(random_theta(n, seed=n)) @ real)[~blocks],
        torch.zeros((~blocks).sum(), dtype=DTYPE),
        rtol=0,
        atol=1e-10,
    )


@pytest.mark.parametrize("n", SHIFT_SIZES)
@pytest.mark.parametrize("complex_valued", [False, True])
def test_circulants_commute_with_the_shift_and_each_other(n: int, complex_valued: bool) -> None:
    theta, theta_2 = random_theta(n, 3, complex_valued), random_theta(n, 4, complex_valued)
    h = random_theta(n, 5, complex_valued)
    C, D = circulant(theta), circulant(theta_2)
    S = shift_matrix(n).to(C.dtype)
    torch.testing.assert_close(C @ S, S @ C, rtol=0, atol=1e-12)
    torch.testing.assert_close(C @ D, D @ C, rtol=0, atol=1e-12)
    # Shift-equivariance: shifting then filtering equals filtering then shifting.
    torch.testing.assert_close(C @ torch.roll(h, -1), torch.roll(C @ h, -1), rtol=0, atol=1e-12)
    # A generic matrix does not commute with the shift, so the check above has teeth.
    generic = torch.randn(n, n, generator=torch.Generator().manual_seed(n), dtype=DTYPE).to(C.dtype)
    assert differs(generic @ S, S @ generic)


@pytest.mark.parametrize("n", SHIFT_SIZES)
def test_only_circulants_commute_with_the_shift(n: int) -> None:
    S = shift_matrix(n)
    eye = torch.eye(n, dtype=DTYPE)
    # vec(X S - S X) = (S^T kron I - I kron S) vec(X) (column-major vec); its null space is {X : XS = SX}.
    commutator = torch.kron(S.T.contiguous(), eye) - torch.kron(eye, S)
    assert torch.linalg.matrix_rank(commutator).item() == n * n - n


# ---------------------------------------------------------------- question 3.1


def test_deep_gcn_propagation_oversmooths() -> None:
    n = 12
    A = ring_adjacency(n)
    A[0, 6] = A[6, 0] = A[2, 9] = A[9, 2] = 1  # chords make the degrees unequal
    A_hat = gcn_normalized_adjacency(A)
    torch.testing.assert_close(A_hat, A_hat.T, rtol=0, atol=0)
    eigenvalues = torch.linalg.eigvalsh(A_hat)
    assert eigenvalues.max().item() == pytest.approx(1.0, abs=1e-12)
    assert eigenvalues.min().item() > -1
    # A_hat^L -> v v^T with v ~ sqrt(degree): after many layers every node sees the same mix of inputs.
    v = (A + torch.eye(n, dtype=DTYPE)).sum(1).sqrt()
    v = v / v.norm()
    torch.testing.assert_close(torch.linalg.matrix_power(A_hat, 400), torch.outer(v, v), rtol=0, atol=1e-8)
    assert (torch.linalg.matrix_power(A_hat, 2) - torch.outer(v, v)).abs().max() > 0.1


# ---------------------------------------------------------------- question 3.5


def random_graph(num_nodes: int, num_edges: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    edges = torch.randint(num_nodes, (2, num_edges), generator=generator)
    ring = torch.stack([torch.arange(num_nodes), (torch.arange(num_nodes) + 1) % num_nodes])
    return torch.cat([ring, edges], dim=1)  # the ring gives every node at least one in-neighbour


@pytest.mark.parametrize("self_loops", [True, False])
def test_attention_weights_sum_to_one_over_each_neighbourhood(self_loops: bool) -> None:
    torch.manual_seed(0)
    layer = GraphAttentionLayer(5, 3, add_self_loops=self_loops).double()
    x = torch.randn(10, 5, dtype=DTYPE)
    out, (edge_index, alpha) = layer(x, random_graph(10, 25, seed=0), return_attention_weights=True)
    assert out.shape == (10, 3)
    assert torch.all(alpha > 0)
    sums = torch.zeros(10, dtype=DTYPE).index_add_(0, edge_index[1], alpha)
    torch.testing.assert_close(sums, torch.ones(10, dtype=DTYPE), rtol=0, atol=1e-12)
    if self_loops:
        assert torch.equal(edge_index[0, edge_index[0] == edge_index[1]].sort().values, torch.arange(10))
    # Not uniform: attention is data dependent.
    assert alpha.std() > 1e-3


def test_attention_with_zero_scores_is_the_neighbourhood_mean() -> None:
    layer = GraphAttentionLayer(4, 4, bias=False).double()
    with torch.no_grad():
        layer.att_src.zero_()
        layer.att_dst.zero_()
    x = torch.randn(6, 4, dtype=DTYPE)
    edge_index = random_graph(6, 10, seed=1)
    out, (used, alpha) = layer(x, edge_index, return_attention_weights=True)
    in_degree = torch.bincount(used[1], minlength=6).to(DTYPE)
    torch.testing.assert_close(alpha, 1 / in_degree[used[1]], rtol=0, atol=1e-12)
    mean = torch.zeros(6, 4, dtype=DTYPE).index_add_(0, used[1], (x @ layer.weight.T)[used[0]]) / in_degree[:, None]
    torch.testing.assert_close(out, mean, rtol=0, atol=1e-12)


def test_graph_attention_is_permutation_equivariant() -> None:
    torch.manual_seed(1)
    layer = GraphAttentionLayer(5, 3).double()
    x = torch.randn(9, 5, dtype=DTYPE)
    edge_index = random_graph(9, 20, seed=2)
    perm = torch.randperm(9)  # new node p holds old node perm[p]
    inverse = torch.argsort(perm)
    out = layer(x, edge_index)
    out_permuted = layer(x[perm], inverse[edge_index])
    torch.testing.assert_close(out_permuted, out[perm], rtol=0, atol=1e-12)
    # Relabelling the features without relabelling the edges gives a different graph and a different output.
    assert (layer(x[perm], edge_index) - out[perm]).abs().max() > 1e-3


def test_graph_attention_matches_pyg_gatconv() -> None:
    from torch_geometric.nn import GATConv

    torch.manual_seed(2)
    layer = GraphAttentionLayer(5, 3).double()
    reference = GATConv(5, 3, heads=1).double()
    with torch.no_grad():
        reference.lin.weight.copy_(layer.weight)
        reference.att_src.copy_(layer.att_src.view(1, 1, -1))
        reference.att_dst.copy_(layer.att_dst.view(1, 1, -1))
        layer.bias.normal_()
        reference.bias.copy_(layer.bias)
    x = torch.randn(8, 5, dtype=DTYPE)
    edge_index = random_graph(8, 15, seed=3)
    out, (used, alpha) = layer(x, edge_index, return_attention_weights=True)
    ref_out, (ref_used, ref_alpha) = reference(x, edge_index, return_attention_weights=True)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-12)
    order, ref_order = (used[1] * 8 + used[0]).argsort(), (ref_used[1] * 8 + ref_used[0]).argsort()
    torch.testing.assert_close(used[:, order], ref_used[:, ref_order], rtol=0, atol=0)
    torch.testing.assert_close(alpha[order], ref_alpha.view(-1)[ref_order], rtol=0, atol=1e-12)
