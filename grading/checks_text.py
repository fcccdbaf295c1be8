"""Questions 2.4 (a) and (c): the student's TextGenerationModel, its logits and its sampling.

Sampling is checked against the student's own ``forward``: a greedy sample must
be the argmax of a full forward pass over the prefix it produced, and for a
temperature T the next characters must follow ``softmax(logits / T)``, which is
tested by fitting T by maximum likelihood to a few thousand sampled characters.
The model's parameters are redrawn from N(0, 1) first, so that its logits are
far from uniform and temperatures are told apart.
"""

from __future__ import annotations

from argparse import Namespace

import numpy as np
import torch
from torch import nn

from grading.failures import CheckFailed, call_student

MODEL = "part2/model.py"
VOCABULARY, EMBEDDING, HIDDEN = 10, 8, 16
FIT_GRID = np.exp(np.linspace(np.log(0.05), np.log(20.0), 601))
FIT_TOLERANCE = 0.15  # on log(temperature); the fit's spread is about 0.03 with 5000 sampled characters


def _args() -> Namespace:
    """The template's command-line arguments (train.py), with a small model."""
    return Namespace(
        vocabulary_size=VOCABULARY,
        embedding_size=EMBEDDING,
        lstm_hidden_dim=HIDDEN,
        device=torch.device("cpu"),
        txt_file="book.txt",
        input_seq_length=30,
        batch_size=128,
        lr=1e-3,
        num_epochs=20,
        clip_grad_norm=5.0,
        seed=0,
        lstm_num_layers=1,
    )


def _model(ctx, spread: bool = False) -> nn.Module:
    """A fresh model (``args`` as above); ``spread`` redraws every parameter from N(0, 1)."""
    cls = ctx.code.attribute(MODEL, "TextGenerationModel")
    model = call_student(
        f"TextGenerationModel(args with vocabulary_size={VOCABULARY}, embedding_size={EMBEDDING}, "
        f"lstm_hidden_dim={HIDDEN})",
        cls,
        _args(),
    )
    if not isinstance(model, nn.Module):
        raise CheckFailed(f"TextGenerationModel(args) made a {type(model).__name__}, not an nn.Module")
    if spread:
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=generator))
    return model


def _characters(T: int, B: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(VOCABULARY, (T, B), generator=torch.Generator().manual_seed(seed))


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = call_student(f"TextGenerationModel.forward(x of shape {tuple(x.shape)})", model, x)
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        out = out[0]
    T, B = x.shape
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (T, B, VOCABULARY):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise CheckFailed(
            f"TextGenerationModel.forward(x [T={T}, B={B}]) returned {shape}, expected "
            f"[{T}, {B}, vocabulary_size={VOCABULARY}]"
        )
    return out.float()


def check_shape(ctx) -> None:
    """``forward`` on ``[T, B]`` indices gives float ``[T, B, V]`` for several T and B."""
    model = _model(ctx)
    for T, B in ((1, 1), (5, 3), (9, 2)):
        out = _logits(model, _characters(T, B))
        if not torch.isfinite(out).all():
            raise CheckFailed(f"TextGenerationModel.forward(x [T={T}, B={B}]) has non-finite values")


def check_logits(ctx) -> None:
    """Outputs are logits: not all in [0, 1] summing to 1 over the vocabulary."""
    out = _logits(_model(ctx, spread=True), _characters(6, 4))
    sums = out.sum(dim=-1)
    if out.min() >= 0 and out.max() <= 1 and (sums - 1).abs().max() < 1e-4:
        raise CheckFailed(
            "forward returns probabilities (each position sums to 1 over the vocabulary); return the "
            "logits: CrossEntropyLoss and sampling apply the softmax themselves"
        )


def check_own_lstm(ctx) -> None:
    """The model contains the student's LSTM and no torch RNN module."""
    lstm_class = ctx.code.attribute(MODEL, "LSTM")
    model = _model(ctx)
    builtin = [type(m).__name__ for m in model.modules() if isinstance(m, (nn.RNNBase, nn.RNNCellBase))]
    if builtin:
        raise CheckFailed(f"TextGenerationModel uses torch's {', '.join(builtin)}; use your own LSTM class")
    if not any(isinstance(m, lstm_class) for m in model.modules()):
        raise CheckFailed("TextGenerationModel contains no instance of your LSTM class")


def check_causal(ctx) -> None:
    """Changing the character at t = 4 leaves the logits before t = 4 unchanged."""
    model = _model(ctx, spread=True)
    x = _characters(6, 2)
    changed = x.clone()
    changed[4] = (changed[4] + 1) % VOCABULARY
    before, after = _logits(model, x), _logits(model, changed)
    if (before[:4] - after[:4]).abs().max() > 1e-5:
        raise CheckFailed("changing the character at t=4 (T=6) changes earlier logits: the model reads the future")
    if (before[4:] - after[4:]).abs().max() < 1e-6:
        raise CheckFailed("changing the character at t=4 (T=6) does not change the logits at t=4")


def _sample(model: nn.Module, batch: int, length: int, temperature: float, seed: int) -> torch.Tensor:
    """``model.sample(...)`` as a ``[length, batch]`` index tensor (``[batch, length]`` results are transposed)."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    call = f"sample(batch_size={batch}, sample_length={length}, temperature={temperature})"
    with torch.no_grad():
        out = call_student(call, model.sample, batch_size=batch, sample_length=length, temperature=temperature)
    try:
        seq = torch.as_tensor(np.asarray(out.cpu() if isinstance(out, torch.Tensor) else out))
    except (TypeError, ValueError):
        raise CheckFailed(f"{call} returned {type(out).__name__}, expected a tensor of character indices") from None
    if seq.dim() == 3 and seq.shape[-1] == 1:
        seq = seq[..., 0]
    if tuple(seq.shape) == (batch, length):
        seq = seq.t()
    if tuple(seq.shape) != (length, batch):
        raise CheckFailed(
            f"{call} returned shape {tuple(seq.shape)}, expected ({length}, {batch}) or ({batch}, {length})"
        )
    if seq.is_floating_point() and not torch.equal(seq, seq.round()):
        raise CheckFailed(f"{call} returned non-integer values, expected character indices")
    seq = seq.long()
    if seq.min() < 0 or seq.max() >= VOCABULARY:
        raise CheckFailed(
            f"{call} returned indices from {int(seq.min())} to {int(seq.max())}, outside [0, {VOCABULARY - 1}]"
        )
    return seq


def check_sample_shape(ctx) -> None:
    """``sample(batch_size=5, sample_length=7, temperature=0)`` gives 7 x 5 indices in range."""
    _sample(_model(ctx), 5, 7, 0.0, seed=0)


def check_greedy(ctx) -> None:
    """Each greedy character is the argmax of the logits of a full forward pass over the characters before it."""
    model = _model(ctx, spread=True)
    seq = _sample(model, 6, 8, 0.0, seed=0)
    logits = _logits(model, seq[:-1])
    top2 = logits.topk(2, dim=-1).values
    wrong = (logits.argmax(-1) != seq[1:]) & (top2[..., 0] - top2[..., 1] > 1e-4)
    if wrong.any():
        t, b = (int(i) for i in wrong.nonzero()[0])
        raise CheckFailed(
            f"greedy sample {b}: character {t + 1} is {int(seq[t + 1, b])}, but a forward pass over "
            f"the {t + 1} characters before it gives argmax {int(logits[t, b].argmax())}"
        )


def check_temperature_valid(ctx) -> None:
    """``sample(temperature=1)`` gives valid indices and different samples for different seeds."""
    model = _model(ctx, spread=True)
    first, second = _sample(model, 50, 10, 1.0, seed=0), _sample(model, 50, 10, 1.0, seed=1)
    if torch.equal(first[1:], second[1:]):
        raise CheckFailed(
            "sample(temperature=1.0) gives the same characters for different random seeds: it does not sample"
        )


def fitted_temperature(logits: torch.Tensor, following: torch.Tensor) -> float:
    """Maximum-likelihood T such that ``following ~ softmax(logits / T)``: ``logits [N, V]``, ``following [N]``."""
    scaled = logits.double()[None] / torch.as_tensor(FIT_GRID)[:, None, None]
    likelihood = torch.log_softmax(scaled, dim=-1).gather(2, following[None, :, None].expand(len(FIT_GRID), -1, 1))
    return float(FIT_GRID[int(likelihood.sum(dim=(1, 2)).argmax())])


def _check_temperature(ctx, temperature: float) -> None:
    model = _model(ctx, spread=True)
    seq = _sample(model, 1000, 6, temperature, seed=0)
    logits = _logits(model, seq[:-1]).reshape(-1, VOCABULARY)
    fitted = fitted_temperature(logits, seq[1:].reshape(-1))
    if abs(np.log(fitted) - np.log(temperature)) > FIT_TOLERANCE:
        hint = " (the temperature is ignored)" if abs(np.log(fitted)) < FIT_TOLERANCE else ""
        raise CheckFailed(
            f"sample(temperature={temperature}) draws characters as if from softmax(logits / "
            f"{fitted:.2g}){hint}; expected softmax(logits / {temperature}) (fitted on 5000 characters)"
        )


def check_temperature_low(ctx) -> None:
    """Temperature 0.5 sharpens the distribution exactly as ``softmax(logits / 0.5)``."""
    _check_temperature(ctx, 0.5)


def check_temperature_high(ctx) -> None:
    """Temperature 2 flattens the distribution exactly as ``softmax(logits / 2)``."""
    _check_temperature(ctx, 2.0)
