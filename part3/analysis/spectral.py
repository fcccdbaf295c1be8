"""Questions 3.1-3.4: graph convolutions on a ring, circulant matrices and the graph Fourier transform.

Conventions (used by the written answers and the tests, all 0-based, indices mod ``n``):

* ``circulant(theta)``: ``C(theta)[i, j] = theta[(j - i) % n]``; its first row is ``theta``
  and every row is the previous one shifted right by one, so
  ``(C(theta) h)_i = sum_k theta_k h_{(i + k) % n}`` (a circular cross-correlation).
* ``ring_layer_phi``: the layer of equation 23, ``phi(h_i, N_i) = w_{-1} h_{i-1} + w_0 h_i + w_1 h_{i+1}``,
  which is ``C(theta)`` with ``theta = (w_0, w_1, 0, .., 0, w_{-1})``.
* ``shift_matrix(n) = C((0, 1, 0, .., 0))``: ``(S h)_i = h_{(i + 1) % n}``.
* ``dft_matrix(n)``: ``F[j, k] = exp(-2 pi i j k / n)``, so ``F @ x == torch.fft.fft(x)``.
* ``fourier_basis(n)``: the unitary ``Phi`` of question 3.4 (columns: Fourier modes), with
  ``x_hat = Phi^* x``. Equation 24 then holds as ``C(theta) x = sqrt(n) Phi(reflect(theta_hat) * x_hat)``.
"""

from __future__ import annotations

import math

import torch


def _as_vector(theta: torch.Tensor | list[float]) -> torch.Tensor:
    if not isinstance(theta, torch.Tensor):
        theta = torch.tensor(theta)
        theta = theta.to(torch.complex128 if theta.is_complex() else torch.float64)
    elif not theta.is_floating_point() and not theta.is_complex():
        theta = theta.to(torch.float64)
    if theta.dim() != 1 or theta.numel() == 0:
        raise ValueError(f"theta must be a non-empty 1-D vector, got shape {tuple(theta.shape)}")
    return theta


def circulant(theta: torch.Tensor | list[float]) -> torch.Tensor:
    """The circulant matrix ``C(theta)`` ``[n, n]`` with first row ``theta`` (``C[i, j] = theta[(j - i) % n]``)."""
    theta = _as_vector(theta)
    n = theta.numel()
    index = torch.arange(n)
    return theta[(index.unsqueeze(0) - index.unsqueeze(1)) % n]


def shift_matrix(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``C(theta~)`` with ``theta~ = (0, 1, 0, .., 0)``: the cyclic shift ``(S h)_i = h_{(i + 1) % n}``."""
    if n < 2:
        raise ValueError(f"a shift needs n >= 2 nodes, got n = {n}")
    theta = torch.zeros(n, dtype=dtype)
    theta[1] = 1
    return circulant(theta)


def dft_matrix(n: int) -> torch.Tensor:
    """The DFT matrix ``F[j, k] = exp(-2 pi i j k / n)`` (complex128, unnormalised; ``F^{-1} = conj(F) / n``)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    index = torch.arange(n, dtype=torch.float64)
    # Reduce j*k mod n before scaling so the phases stay exact for large n.
    phase = (-2 * math.pi / n) * (torch.outer(index, index) % n)
    return torch.polar(torch.ones_like(phase), phase)


def circulant_eigenvalues(theta: torch.Tensor | list[float]) -> torch.Tensor:
    """Eigenvalues of ``C(theta)``, eigenvalue ``k`` belonging to the Fourier mode ``F[:, k]``: ``fft(theta)``."""
    return torch.fft.fft(_as_vector(theta))


def ring_adjacency(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Adjacency matrix of the cycle graph on ``n >= 3`` nodes: ``C((0, 1, 0, .., 0, 1)) = S + S^T``."""
    if n < 3:
        raise ValueError(f"a ring (cycle graph) needs n >= 3 nodes, got n = {n}")
    theta = torch.zeros(n, dtype=dtype)
    theta[1] = theta[-1] = 1
    return circulant(theta)


def ring_message_passing(h: torch.Tensor, theta: torch.Tensor | list[float]) -> torch.Tensor:
    """One message-passing layer on a ring whose messages are weighted by relative position.

    Node ``i`` receives a message from every node ``j != i`` at offset
    ``k = (j - i) % n`` with ``theta_k != 0`` (for ``theta`` supported on
    ``{0, 1, n - 1}`` these are exactly the two ring neighbours)::

        M(h_j, e_ij) = theta_{(j - i) % n} h_j        # message, e_ij = relative position
        m_i          = sum_{j in N(i)} M(h_j, e_ij)   # aggregation
        U(h_i, m_i)  = theta_0 h_i + m_i              # update

    Computed on an explicit edge list with scatter-add, so it checks (rather
    than assumes) that the layer equals ``C(theta) @ h``.

    Args:
        h: node features ``[n]`` or ``[n, d]``.
        theta: offset weights ``[n]``.

    Returns:
        Updated features, same shape as ``h``.
    """
    theta = _as_vector(theta)
    n = theta.numel()
    if h.size(0) != n:
        raise ValueError(f"h has {h.size(0)} nodes but theta has {n} entries")
    offsets = torch.nonzero(theta[1:]).flatten() + 1
    receivers = torch.arange(n).repeat_interleave(offsets.numel())
    relative_position = offsets.repeat(n)
    senders = (receivers + relative_position) % n
    weights = theta[relative_position].to(h.dtype)
    messages = weights.view(-1, *([1] * (h.dim() - 1))) * h[senders]
    aggregated = torch.zeros_like(h).index_add_(0, receivers, messages)
    return theta[0].to(h.dtype) * h + aggregated


def gcn_normalized_adjacency(adjacency: torch.Tensor) -> torch.Tensor:
    """Kipf & Welling's propagation matrix ``D~^{-1/2} (A + I) D~^{-1/2}`` with ``D~`` the degrees of ``A + I``."""
    if adjacency.dim() != 2 or adjacency.size(0) != adjacency.size(1):
        raise ValueError(f"adjacency must be a square matrix, got shape {tuple(adjacency.shape)}")
    with_loops = adjacency + torch.eye(adjacency.size(0), dtype=adjacency.dtype)
    inv_sqrt_degree = with_loops.sum(1).rsqrt()
    return inv_sqrt_degree.unsqueeze(1) * with_loops * inv_sqrt_degree.unsqueeze(0)


def ring_theta(w_minus: float, w_0: float, w_plus: float, n: int) -> torch.Tensor:
    """``theta = (w_0, w_1, 0, .., 0, w_{-1})`` ``[n]``, so that ``C(theta)`` is the layer of equation 23.

    Offsets that coincide on tiny rings (``i - 1 = i + 1`` for ``n = 2``) add up.
    """
    theta = torch.zeros(n, dtype=torch.float64)
    theta[0] += w_0
    theta[1 % n] += w_plus
    theta[-1 % n] += w_minus
    return theta


def ring_layer_phi(h: torch.Tensor, w_minus: float, w_0: float, w_plus: float) -> torch.Tensor:
    """Equation 23 node by node: ``phi(h_i, N_i) = w_{-1} h_{i-1} + w_0 h_i + w_1 h_{i+1}`` (indices mod n).

    ``h`` is ``[n]`` or ``[n, d]``; ``torch.roll(h, 1)[i] = h[i - 1]``.
    """
    return w_minus * torch.roll(h, 1, dims=0) + w_0 * h + w_plus * torch.roll(h, -1, dims=0)


def ring_laplacian(n: int) -> torch.Tensor:
    """``L = D - A = 2 I - A`` of the ring, eigenvalues ``2 - 2 cos(2 pi k / n)`` (equal for ``k`` and ``n - k``)."""
    return 2 * torch.eye(n, dtype=torch.float64) - ring_adjacency(n)


def fourier_basis(n: int, sign: int = 1) -> torch.Tensor:
    """The unitary DFT basis ``Phi[j, k] = exp(sign 2 pi i j k / n) / sqrt(n)`` (complex128, ``[n, n]``).

    Column ``k`` is the Fourier mode of frequency ``k``; with ``sign = 1``, ``Phi^* x = fft(x) / sqrt(n)``.
    Both signs are graph Fourier bases of the ring (eigenvectors of ``ring_laplacian``).
    """
    if sign not in (1, -1):
        raise ValueError(f"sign must be 1 or -1, got {sign}")
    F_n = dft_matrix(n)
    return (F_n.conj() if sign == 1 else F_n) / math.sqrt(n)


def reflect(v: torch.Tensor) -> torch.Tensor:
    """``v_{(-k) % n}``, i.e. ``(v_0, v_{n-1}, .., v_1)``; ``reflect(fft(theta)) = conj(fft(theta))`` for real theta."""
    return torch.roll(torch.flip(v, dims=[0]), 1, dims=0)


def real_fourier_basis(n: int) -> torch.Tensor:
    """An orthonormal real eigenbasis of ``ring_laplacian(n)`` ``[n, n]``: the constant, cos/sin pairs, (-1)^j.

    Another valid graph Fourier basis of the ring (its eigenvalues repeat), which diagonalises the symmetric
    circulants but not a general ``C(theta)``.
    """
    j = torch.arange(n, dtype=torch.float64)
    columns = [torch.full((n,), 1 / math.sqrt(n), dtype=torch.float64)]
    for k in range(1, (n - 1) // 2 + 1):
        angle = 2 * math.pi * j * k / n
        columns += [math.sqrt(2 / n) * torch.cos(angle), math.sqrt(2 / n) * torch.sin(angle)]
    if n % 2 == 0:
        columns.append(torch.cos(math.pi * j) / math.sqrt(n))
    return torch.stack(columns, dim=1)
