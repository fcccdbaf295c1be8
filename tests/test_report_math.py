"""Checks of the mathematical claims in REPORT.md (questions 2.1, 2.2, 3.1-3.5).

Everything runs in float64 on tiny sizes; the whole file takes a few seconds.
"""
from __future__ import annotations

import json
import math
from argparse import Namespace

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from part2.rnn_gradients import (
    RNNParams,
    autograd_gradients,
    expanded_gradient,
    expanded_gradient_t3,
    expanded_gradient_terms,
    hidden_jacobian,
    jacobian_product_norms,
    main as rnn_gradients_main,
    output_weight_gradient,
    random_rnn_params,
    rnn_forward,
    scale_to_spectral_radius,
    spectral_radius,
)
from part3.graph_attention import GraphAttentionLayer
from part3.spectral import (
    circulant,
    circulant_eigenvalues,
    dft_matrix,
    gcn_normalized_adjacency,
    ring_adjacency,
    ring_message_passing,
    shift_matrix,
)

DTYPE = torch.float64
SIZES = [1, 2, 3, 5, 8, 13, 32]


def make_rnn(seed: int, hidden: int = 6, inputs: int = 4, outputs: int = 5, steps: int = 3):
    generator = torch.Generator().manual_seed(seed)
    params = random_rnn_params(inputs, hidden, outputs, generator)
    xs = torch.randn(steps, inputs, generator=generator, dtype=DTYPE)
    h0 = torch.randn(hidden, generator=generator, dtype=DTYPE)
    target = int(torch.randint(outputs, (1,), generator=generator))
    return params, xs, h0, target


# ---------------------------------------------------------------- question 2.1 (a)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("zero_h0", [False, True])
def test_autograd_equals_expanded_sum_t3(seed: int, zero_h0: bool) -> None:
    params, xs, h0, target = make_rnn(seed)
    if zero_h0:
        h0 = torch.zeros_like(h0)
    grad_hh, _ = autograd_gradients(params, xs, h0, target, t=3)
    expanded = expanded_gradient_t3(params, xs, h0, target)
    torch.testing.assert_close(expanded, grad_hh, rtol=0, atol=1e-12)


def test_every_term_of_the_t3_sum_matters_and_k1_vanishes_for_zero_h0() -> None:
    params, xs, h0, target = make_rnn(0)
    grad_hh, _ = autograd_gradients(params, xs, h0, target, t=3)
    terms = expanded_gradient_terms(params, xs, h0, target, t=3)
    assert len(terms) == 3
    for k in range(3):
        partial = sum(term for i, term in enumerate(terms) if i != k)
        assert (partial - grad_hh).abs().max() > 1e-6, f"dropping term k={k + 1} should change the gradient"
    # d+h^(1)/dW_hh is proportional to h^(0): with the usual h^(0) = 0 the k = 1 term is exactly zero.
    zero_terms = expanded_gradient_terms(params, xs, torch.zeros_like(h0), target, t=3)
    assert torch.count_nonzero(zero_terms[0]) == 0
    assert zero_terms[1].abs().max() > 0 and zero_terms[2].abs().max() > 0


@pytest.mark.parametrize("t", [1, 2, 5])
def test_expanded_sum_holds_for_other_t(t: int) -> None:
    params, xs, h0, target = make_rnn(7, steps=5)
    grad_hh, _ = autograd_gradients(params, xs, h0, target, t=t)
    torch.testing.assert_close(expanded_gradient(params, xs, h0, target, t=t), grad_hh, rtol=0, atol=1e-12)


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


# ---------------------------------------------------------------- question 2.1 (b)


def test_linear_regime_norms_follow_the_spectral_radius() -> None:
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(16, 16, generator=generator, dtype=DTYPE)
    steps = 200
    for radius in (0.5, 0.9, 1.1, 1.5):
        W = scale_to_spectral_radius(base, radius)
        assert spectral_radius(W) == pytest.approx(radius, rel=1e-12)
        norms = jacobian_product_norms(W, num_steps=steps)
        # Gelfand: ||W^n||^(1/n) -> rho(W).
        assert norms[-1].item() ** (1 / steps) == pytest.approx(radius, rel=0.05)
        if radius < 1:
            assert norms[-1] < 1e-4 * norms[0]
        else:
            assert norms[-1] > 1e4 * norms[0]


def test_tanh_regime_is_bounded_by_the_linear_regime_and_vanishes_for_small_radius() -> None:
    generator = torch.Generator().manual_seed(1)
    hidden = 16
    base = torch.randn(hidden, hidden, generator=generator, dtype=DTYPE)
    xs = torch.randn(60, hidden, generator=generator, dtype=DTYPE)
    W_hx = torch.randn(hidden, hidden, generator=generator, dtype=DTYPE) / math.sqrt(hidden)
    zeros = torch.zeros(hidden, dtype=DTYPE)
    for radius in (0.9, 1.1):
        W = scale_to_spectral_radius(base, radius)
        params = RNNParams(W_hx, W, zeros, zeros.unsqueeze(0), zeros[:1])
        hs, _ = rnn_forward(params, xs, zeros)
        norms = jacobian_product_norms(W, hs)
        steps = torch.arange(1, norms.numel() + 1, dtype=DTYPE)
        # 0 < tanh' <= 1, so ||prod diag(1 - h^2) W|| <= ||W||_2^n.
        assert torch.all(norms <= torch.linalg.matrix_norm(W, ord=2) ** steps * (1 + 1e-12))
        # Saturation shrinks the factors: even rho = 1.1 vanishes over 60 steps with these inputs.
        assert norms[-1] < 1e-3 * norms[0]


def test_rnn_gradients_cli_writes_json_and_figure(tmp_path) -> None:
    args = ["--results_dir", str(tmp_path), "--hidden_dim", "8", "--num_steps", "12", "--radii", "0.5", "2"]
    rnn_gradients_main(args)
    summary = json.loads((tmp_path / "gradient_norms.json").read_text())
    assert summary["gradient_check_t3"]["random_h0"]["max_abs_diff_W_hh"] < 1e-12
    assert len(summary["jacobian_product_norms"]["linear"]["2.0"]["norms"]) == 12
    assert (tmp_path / "gradient_norms.png").stat().st_size > 0


# ---------------------------------------------------------------- question 2.2 (b)


def lstm_parameter_formula(n_hidden: int, n_input: int, n_output: int) -> int:
    """4 gates x (W_x: N_h N_in, W_h: N_h^2, b: N_h) + output layer (W_ph: N_out N_h, b_p: N_out)."""
    return 4 * (n_hidden * n_input + n_hidden * n_hidden + n_hidden) + n_output * n_hidden + n_output


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@pytest.mark.parametrize("n_hidden,n_input,n_output", [(1, 1, 1), (3, 7, 2), (16, 8, 5), (64, 256, 87)])
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


@pytest.mark.parametrize("n", SIZES)
def test_convolution_theorem(n: int) -> None:
    theta, h = random_theta(n, seed=1), random_theta(n, seed=2)
    # C(theta)^T (first column theta) is circular convolution: (theta * h)_i = sum_k theta_k h_{i-k}.
    convolution = torch.stack([sum(theta[k] * h[(i - k) % n] for k in range(n)) for i in range(n)])
    torch.testing.assert_close(circulant(theta).T @ h, convolution, rtol=0, atol=1e-12)
    via_fft = torch.fft.ifft(torch.fft.fft(theta) * torch.fft.fft(h)).real
    torch.testing.assert_close(convolution, via_fft, rtol=0, atol=1e-10)
    # C(theta) itself is circular cross-correlation: (C h)_i = sum_k theta_k h_{i+k}.
    correlation = torch.stack([sum(theta[k] * h[(i + k) % n] for k in range(n)) for i in range(n)])
    torch.testing.assert_close(circulant(theta) @ h, correlation, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", [2, 3, 5, 8, 13, 32])
def test_circulants_commute_with_the_shift_and_each_other(n: int) -> None:
    theta, phi, h = random_theta(n, seed=3), random_theta(n, seed=4), random_theta(n, seed=5)
    C, D, S = circulant(theta), circulant(phi), shift_matrix(n)
    torch.testing.assert_close(C @ S, S @ C, rtol=0, atol=1e-12)
    torch.testing.assert_close(C @ D, D @ C, rtol=0, atol=1e-12)
    # Shift-equivariance: shifting then filtering equals filtering then shifting.
    torch.testing.assert_close(C @ torch.roll(h, -1), torch.roll(C @ h, -1), rtol=0, atol=1e-12)
    # A generic matrix does not commute with the shift, so the check above has teeth.
    generic = torch.randn(n, n, generator=torch.Generator().manual_seed(n), dtype=DTYPE)
    assert (generic @ S - S @ generic).abs().max() > 1e-3


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_only_circulants_commute_with_the_shift(n: int) -> None:
    S = shift_matrix(n)
    eye = torch.eye(n, dtype=DTYPE)
    # vec(X S - S X) = (S^T kron I - I kron S) vec(X) (column-major vec); its null space is {X : XS = SX}.
    commutator = torch.kron(S.T.contiguous(), eye) - torch.kron(eye, S)
    assert torch.linalg.matrix_rank(commutator).item() == n * n - n


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


@pytest.mark.parametrize("n", [3, 4, 7, 10])
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
def test_ring_message_passing_equals_circulant(n: int, features: int | None) -> None:
    generator = torch.Generator().manual_seed(n)
    h = torch.randn(n, *([features] if features else []), generator=generator, dtype=DTYPE)
    dense_theta = random_theta(n, seed=10 + n)
    torch.testing.assert_close(ring_message_passing(h, dense_theta), circulant(dense_theta) @ h, rtol=0, atol=1e-12)
    # Supported on the ring neighbourhood {0, 1, n-1}: a 3-tap 1-D convolution with circular padding.
    local = torch.zeros(n, dtype=DTYPE)
    local[0], local[1], local[-1] = 0.5, -1.0, 2.0
    signal = h.T.reshape(-1, 1, n) if features else h.view(1, 1, n)
    kernel = torch.stack([local[-1], local[0], local[1]]).view(1, 1, 3)
    conv = F.conv1d(F.pad(signal, (1, 1), mode="circular"), kernel)
    conv = conv.reshape(-1, n).T if features else conv.view(n)
    torch.testing.assert_close(ring_message_passing(h, local), conv, rtol=0, atol=1e-12)


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
