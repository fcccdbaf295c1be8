"""Sequence classifiers for the palindrome experiment: a vanilla RNN and an LSTM.

Both read the first ``L - 1`` digits of a palindrome of length ``L`` and
predict the last digit, which equals the first one: the model must carry one
digit through ``L - 2`` distracting time steps. Inputs are digit indices
``[B, T]`` (one-hot encoded inside the model) or ready-made vectors
``[B, T, input_dim]``; outputs are logits ``[B, num_classes]`` computed from the
last hidden state only, ``p = W_ph h_T + b_p``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from part2.model import LSTM
from part2.palindromes.data import NUM_DIGITS

MODEL_LABELS = {"rnn": "vanilla RNN", "lstm": "LSTM"}
RNN_INITS = ("orthogonal", "uniform")
# Initial forget-gate bias of the LSTM classifier: with the LSTM's own +1 it stays at chance at L = 50
# within the sweep's budget, with 3 it learns L = 50 (see PalindromeLSTM and assets/part2/README_palindromes.md).
DEFAULT_LSTM_FORGET_BIAS = 3.0


def one_hot_inputs(x: torch.Tensor, input_dim: int, dtype: torch.dtype) -> torch.Tensor:
    """Digits ``[B, T]`` to one-hot ``[B, T, input_dim]`` of ``dtype``; floats ``[B, T, input_dim]`` pass through."""
    if x.dim() == 2 and not x.is_floating_point():
        return F.one_hot(x, input_dim).to(dtype)
    if x.dim() == 3 and x.size(-1) == input_dim:
        return x
    raise ValueError(
        f"expected digit indices [B, T] (integer) or inputs [B, T, {input_dim}], got {tuple(x.shape)} ({x.dtype})"
    )


class VanillaRNN(nn.Module):
    """Elman RNN with a linear read-out of the last hidden state, written with ``nn.Parameter`` only.

    For inputs ``x_1 .. x_T`` (``[B, input_dim]`` each) and ``h_0 = 0``::

        h_t = tanh(W_hx x_t + W_hh h_{t-1} + b_h)      # [B, num_hidden]
        p   = W_ph h_T + b_p                           # [B, num_classes], logits

    Parameters: ``W_hx [H, D]``, ``W_hh [H, H]``, ``b_h [H]``, ``W_ph [C, H]``, ``b_p [C]``.

    Initialisation (``init="orthogonal"``, the default): ``W_hh`` orthogonal,
    because all its singular values are 1, so at initialisation (where tanh is
    near-linear) a signal or gradient carried through ``t`` steps is neither
    amplified nor shrunk by ``W_hh^t``; this gives the vanilla RNN its best
    chance on long sequences, so that the comparison with the LSTM is fair.
    ``W_hx`` and ``W_ph`` Xavier-uniform (unit-variance activations for the
    one-hot input and the logits), biases zero. ``init="uniform"`` instead
    draws every parameter from ``U(-1/sqrt(H), 1/sqrt(H))``, the default of
    ``torch.nn.RNN``: the singular values of ``W_hh`` then lie between 0 and
    about 2/sqrt(3), most of them below 1, so the gradient through many steps vanishes.

    Args:
        seq_length: length ``T`` of the input sequences of the course template;
            the forward pass accepts any ``T``.
        input_dim: size ``D`` of one input vector (10 for one-hot digits).
        num_hidden: hidden state size ``H``.
        num_classes: number of output classes ``C``.
        init: ``"orthogonal"`` or ``"uniform"`` (see above).
    """

    def __init__(
        self, seq_length: int, input_dim: int, num_hidden: int, num_classes: int, init: str = "orthogonal"
    ) -> None:
        super().__init__()
        if init not in RNN_INITS:
            raise ValueError(f"unknown init {init!r}; choose orthogonal or uniform")
        self.init = init
        self.seq_length = seq_length
        self.input_dim = input_dim
        self.num_hidden = num_hidden
        self.num_classes = num_classes
        self.W_hx = nn.Parameter(torch.empty(num_hidden, input_dim))
        self.W_hh = nn.Parameter(torch.empty(num_hidden, num_hidden))
        self.b_h = nn.Parameter(torch.empty(num_hidden))
        self.W_ph = nn.Parameter(torch.empty(num_classes, num_hidden))
        self.b_p = nn.Parameter(torch.empty(num_classes))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise as chosen by ``init`` (see the class docstring)."""
        if self.init == "uniform":
            bound = 1.0 / self.num_hidden**0.5
            for parameter in self.parameters():
                nn.init.uniform_(parameter, -bound, bound)
            return
        nn.init.xavier_uniform_(self.W_hx)
        nn.init.orthogonal_(self.W_hh)
        nn.init.zeros_(self.b_h)
        nn.init.xavier_uniform_(self.W_ph)
        nn.init.zeros_(self.b_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]`` for digits ``[B, T]`` or inputs ``[B, T, input_dim]``."""
        inputs = one_hot_inputs(x, self.input_dim, self.W_ph.dtype)
        # The input term of all time steps in one matrix product, outside the loop: [T, B, H].
        projected = torch.matmul(inputs.transpose(0, 1), self.W_hx.t()) + self.b_h
        h = inputs.new_zeros(inputs.size(0), self.num_hidden)
        weight_hh_t = self.W_hh.t()
        # unbind rather than indexing: indexing makes every backward step build a full-size zero gradient.
        for projected_t in projected.unbind(0):
            h = torch.tanh(projected_t + h @ weight_hh_t)
        return h @ self.W_ph.t() + self.b_p


class PalindromeLSTM(nn.Module):
    """The hand-written :class:`part2.model.LSTM` with a linear read-out of the last hidden state.

    For inputs ``x_1 .. x_T`` and ``(h_0, c_0) = 0``, the LSTM of ``part2.model``
    gives ``h_1 .. h_T`` (``[B, num_hidden]`` each) and::

        p = W_ph h_T + b_p                             # [B, num_classes], logits

    ``W_ph [C, H]`` Xavier-uniform and ``b_p [C]`` zero, as in :class:`VanillaRNN`,
    so the two models differ only in their recurrence.

    ``forget_bias`` shifts the LSTM's initial forget-gate bias (uniform in
    ``[-1/sqrt(H), 1/sqrt(H)]`` plus 1) so that it is centred on ``forget_bias``
    instead of 1. A cell keeps a fraction ``f ~ sigmoid(b_f)`` of its content
    per step, so the first digit (and its gradient) crosses ``T - 1`` steps
    scaled by about ``f^(T-1)``. For ``T = 49`` (``L = 50``) that is
    ``0.73^48 ~ 3e-7`` for ``b_f = 1`` but ``0.95^48 ~ 0.1`` for ``b_f = 3``,
    which is what makes long palindromes learnable in a few hundred steps (a
    larger forget-gate bias for long time lags: Gers et al. 2000; Tallec &
    Ollivier 2018).

    Args:
        seq_length: length ``T`` of the input sequences of the course template;
            the forward pass accepts any ``T``.
        input_dim: size ``D`` of one input vector (10 for one-hot digits).
        num_hidden: hidden and cell state size ``H``.
        num_classes: number of output classes ``C``.
        forget_bias: centre of the initial forget-gate bias (1 keeps the LSTM's own initialisation).
    """

    def __init__(
        self, seq_length: int, input_dim: int, num_hidden: int, num_classes: int, forget_bias: float = 1.0
    ) -> None:
        super().__init__()
        self.seq_length = seq_length
        self.input_dim = input_dim
        self.num_hidden = num_hidden
        self.num_classes = num_classes
        self.lstm = LSTM(num_hidden, input_dim)
        with torch.no_grad():
            self.lstm.gate_slice(self.lstm.bias, "f").add_(forget_bias - 1.0)
        self.W_ph = nn.Parameter(torch.empty(num_classes, num_hidden))
        self.b_p = nn.Parameter(torch.empty(num_classes))
        nn.init.xavier_uniform_(self.W_ph)
        nn.init.zeros_(self.b_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]`` for digits ``[B, T]`` or inputs ``[B, T, input_dim]``."""
        inputs = one_hot_inputs(x, self.input_dim, self.W_ph.dtype)
        _, (h_last, _) = self.lstm(inputs.transpose(0, 1), return_state=True)
        return h_last @ self.W_ph.t() + self.b_p


def build_model(
    name: str,
    seq_length: int,
    num_hidden: int,
    rnn_init: str = "orthogonal",
    lstm_forget_bias: float = DEFAULT_LSTM_FORGET_BIAS,
) -> nn.Module:
    """A palindrome classifier (``"rnn"`` or ``"lstm"``) over one-hot digits with ``num_hidden`` units."""
    if name == "rnn":
        return VanillaRNN(seq_length - 1, NUM_DIGITS, num_hidden, NUM_DIGITS, init=rnn_init)
    if name == "lstm":
        return PalindromeLSTM(seq_length - 1, NUM_DIGITS, num_hidden, NUM_DIGITS, forget_bias=lstm_forget_bias)
    raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODEL_LABELS)}")
