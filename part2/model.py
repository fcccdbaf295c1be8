"""Neural network modules of part 2: a hand-written LSTM and the character-level text model.

The LSTM follows the equations of the assignment (all gates from the input
``x_t`` and the previous hidden state ``h_{t-1}``)::

    g_t = tanh(W_gx x_t + W_gh h_{t-1} + b_g)
    i_t = sigmoid(W_ix x_t + W_ih h_{t-1} + b_i)
    f_t = sigmoid(W_fx x_t + W_fh h_{t-1} + b_f)
    o_t = sigmoid(W_ox x_t + W_oh h_{t-1} + b_o)
    c_t = g_t * i_t + c_{t-1} * f_t
    h_t = tanh(c_t) * o_t
"""

from __future__ import annotations

import math
from argparse import Namespace

import torch
from torch import nn

from part2.lstm_function import GATE_ORDER, lstm_sequence

State = tuple[torch.Tensor, torch.Tensor]


class LSTM(nn.Module):
    """A single-layer LSTM written with ``nn.Parameter`` and tensor operations only.

    The four gates share one weight matrix per input so that the input of all
    time steps is projected with one matrix product and each time step needs a
    single recurrent product for all gates. The blocks of ``4 * H`` rows are in
    the order ``(i, f, o, g)`` (``GATE_ORDER``; ``gate_slice`` picks one): the
    sigmoid gates first, then the tanh candidate::

        weight_x = [W_ix; W_fx; W_ox; W_gx]   # [4H, E]
        weight_h = [W_ih; W_fh; W_oh; W_gh]   # [4H, H]
        bias     = [b_i;  b_f;  b_o;  b_g ]   # [4H]

    The backward pass through time is hand-written (``part2.lstm_function``).

    Args:
        lstm_hidden_dim: hidden (and cell) state size ``H``.
        embedding_size: input size ``E``.
    """

    def __init__(self, lstm_hidden_dim: int, embedding_size: int) -> None:
        super().__init__()
        self.hidden_dim = lstm_hidden_dim
        self.embed_dim = embedding_size
        self.weight_x = nn.Parameter(torch.empty(4 * lstm_hidden_dim, embedding_size))
        self.weight_h = nn.Parameter(torch.empty(4 * lstm_hidden_dim, lstm_hidden_dim))
        self.bias = nn.Parameter(torch.empty(4 * lstm_hidden_dim))
        self.init_parameters()

    def init_parameters(self) -> None:
        """Every weight and bias uniform in [-1/sqrt(H), 1/sqrt(H)], then +1 on the forget-gate bias.

        The +1 keeps the forget gate open at the start of training, so the
        cell state (and its gradient) survives many time steps.
        """
        bound = 1.0 / math.sqrt(self.hidden_dim)
        with torch.no_grad():
            for parameter in (self.weight_x, self.weight_h, self.bias):
                parameter.uniform_(-bound, bound)
            self.gate_slice(self.bias, "f").add_(1.0)

    def gate_slice(self, tensor: torch.Tensor, gate: str) -> torch.Tensor:
        """The rows of a stacked ``[4H, ...]`` parameter (or its gradient) of ``gate`` (in ``GATE_ORDER``)."""
        k = GATE_ORDER.index(gate)
        return tensor.narrow(0, k * self.hidden_dim, self.hidden_dim)

    def forward(
        self,
        embeds: torch.Tensor,
        state: State | None = None,
        return_state: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, State]:
        """Run the LSTM over a sequence.

        Args:
            embeds: inputs ``[T, B, E]``.
            state: optional initial ``(h_0, c_0)``, each ``[B, H]``; zeros when omitted.
            return_state: also return the final ``(h_T, c_T)``.

        Returns:
            All hidden states ``[T, B, H]``, or ``(outputs, (h_T, c_T))`` when
            ``return_state`` is true.
        """
        if embeds.dim() != 3 or embeds.size(-1) != self.embed_dim:
            raise ValueError(f"expected embeds of shape [T, B, {self.embed_dim}], got {tuple(embeds.shape)}")
        zero_state = state is None
        if zero_state:
            zeros = embeds.new_zeros(embeds.size(1), self.hidden_dim, dtype=self.bias.dtype)
            state = (zeros, zeros)
        h0, c0 = state
        outputs, h_last, c_last = lstm_sequence(embeds, h0, c0, self.weight_x, self.weight_h, self.bias, zero_state)
        if return_state:
            return outputs, (h_last, c_last)
        return outputs


class TextGenerationModel(nn.Module):
    """Character-level language model: ``nn.Embedding`` -> stacked ``LSTM`` layers -> linear layer to the vocabulary.

    Args:
        args: a namespace with ``vocabulary_size`` (``V``), ``embedding_size``
            (``E``), ``lstm_hidden_dim`` (``H``) and optionally
            ``lstm_num_layers`` (default 1).
    """

    def __init__(self, args: Namespace) -> None:
        super().__init__()
        self.vocabulary_size = args.vocabulary_size
        self.embedding_size = args.embedding_size
        self.lstm_hidden_dim = args.lstm_hidden_dim
        self.lstm_num_layers = getattr(args, "lstm_num_layers", 1)
        if self.lstm_num_layers < 1:
            raise ValueError(f"lstm_num_layers must be at least 1, got {self.lstm_num_layers}")
        self.embedding = nn.Embedding(self.vocabulary_size, self.embedding_size)
        self.lstm_layers = nn.ModuleList(
            LSTM(self.lstm_hidden_dim, self.embedding_size if layer == 0 else self.lstm_hidden_dim)
            for layer in range(self.lstm_num_layers)
        )
        self.output = nn.Linear(self.lstm_hidden_dim, self.vocabulary_size)

    def forward(
        self,
        x: torch.Tensor,
        state: list[State] | None = None,
        return_state: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[State]]:
        """Next-character logits for every position.

        Args:
            x: character indices ``[T, B]``.
            state: optional ``(h, c)`` per layer, each ``[B, H]``.
            return_state: also return the final ``(h, c)`` per layer.

        Returns:
            Logits ``[T, B, V]`` (and the final state per layer).
        """
        hidden = self.embedding(x)
        final_state = []
        for layer, lstm in enumerate(self.lstm_layers):
            hidden, layer_state = lstm(hidden, None if state is None else state[layer], return_state=True)
            final_state.append(layer_state)
        logits = self.output(hidden)
        if return_state:
            return logits, final_state
        return logits

    def _start_characters(
        self, batch_size: int, sample_length: int, prime: list[int] | None, generator: torch.Generator | None
    ) -> torch.Tensor:
        """``[P, B]``: the prime for every sample, else one random character each (all different while B <= V)."""
        if prime is not None and len(prime) > 0:
            if len(prime) > sample_length:
                raise ValueError(f"the prime has {len(prime)} characters, more than sample_length={sample_length}")
            return torch.tensor(prime, dtype=torch.long).unsqueeze(1).repeat(1, batch_size)
        if batch_size <= self.vocabulary_size:
            return torch.randperm(self.vocabulary_size, generator=generator)[:batch_size].unsqueeze(0)
        return torch.randint(self.vocabulary_size, (1, batch_size), generator=generator)

    @torch.no_grad()
    def sample(
        self,
        batch_size: int = 4,
        sample_length: int = 30,
        temperature: float = 0.0,
        prime: list[int] | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Generate character sequences, feeding each sampled character back in.

        The recurrent state is carried from step to step, so each new
        character costs one LSTM step (the prefix is never recomputed).

        Args:
            batch_size: number of samples ``B``.
            sample_length: characters per sample ``L``, the start characters included.
            temperature: 0 for greedy decoding (argmax); otherwise the next
                character is drawn from ``softmax(logits / temperature)``.
            prime: start every sample with these character indices; without
                it each sample starts from one random character, all different
                while ``B`` does not exceed the vocabulary size.
            generator: random generator for the start characters and sampling.

        Returns:
            Character indices ``[L, B]``.
        """
        if temperature < 0:
            raise ValueError(f"temperature must be non-negative, got {temperature}")
        device = self.output.weight.device
        start = self._start_characters(batch_size, sample_length, prime, generator)
        samples = torch.empty(sample_length, batch_size, dtype=torch.long)
        samples[: start.size(0)] = start
        if start.size(0) == sample_length:
            return samples
        logits, state = self(start.to(device), return_state=True)
        for t in range(start.size(0), sample_length):
            next_logits = logits[-1].float().cpu()
            if temperature == 0:
                next_char = next_logits.argmax(dim=-1)
            else:
                probabilities = torch.softmax(next_logits / temperature, dim=-1)
                next_char = torch.multinomial(probabilities, 1, generator=generator).squeeze(1)
            samples[t] = next_char
            if t + 1 < sample_length:
                logits, state = self(next_char.unsqueeze(0).to(device), state, return_state=True)
        return samples
