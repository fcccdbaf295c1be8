"""Train one palindrome classifier for a fixed budget, then measure it on held-out palindromes.

Every step draws a fresh batch from the training stream, minimises the mean
cross-entropy of the last digit and clips the gradient norm. The final accuracy
is measured on ``eval_batches`` batches of the evaluation stream, which has its
own generator (see ``part2.palindromes.data.stream_seed``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from common.runtime import set_seed
from part2.palindromes.data import EVAL_STREAM, TRAIN_STREAM, PalindromeDataset
from part2.palindromes.models import DEFAULT_LSTM_FORGET_BIAS, build_model

OPTIMIZERS = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}
HISTORY_POINTS = 50  # the training curve is kept as means over this many windows
TAIL_STEPS = 100  # train_loss / train_accuracy are means over the last steps


@dataclass(frozen=True)
class TrainingSettings:
    """Everything besides (model, L, seed) that changes the result of one training run."""

    train_steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    num_hidden: int = 64
    clip_grad_norm: float = 10.0
    eval_batches: int = 20
    rnn_init: str = "orthogonal"
    lstm_forget_bias: float = DEFAULT_LSTM_FORGET_BIAS


def train_one_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor, targets: torch.Tensor, clip: float
) -> tuple[float, float]:
    """One Adam/RMSprop step on a batch; returns its loss and accuracy (before the update)."""
    logits = model(inputs)
    loss = F.cross_entropy(logits, targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return loss.item(), (logits.argmax(-1) == targets).float().mean().item()


@torch.no_grad()
def evaluate(
    model: nn.Module, dataset: PalindromeDataset, num_batches: int, batch_size: int, device: torch.device
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on the next ``num_batches`` batches of ``dataset``."""
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for _ in range(num_batches):
        inputs, targets = (t.to(device) for t in dataset.batch(batch_size))
        logits = model(inputs)
        total_loss += F.cross_entropy(logits, targets, reduction="sum").item()
        correct += (logits.argmax(-1) == targets).sum().item()
        count += targets.numel()
    model.train()
    return total_loss / count, correct / count


def windowed_history(losses: Sequence[float], accuracies: Sequence[float]) -> list[list[float]]:
    """``[step, mean loss, mean accuracy]`` over consecutive windows of ``len / HISTORY_POINTS`` steps."""
    window = max(1, len(losses) // HISTORY_POINTS)
    ends = list(range(window, len(losses) + 1, window))
    if not ends or ends[-1] != len(losses):
        ends.append(len(losses))
    history = []
    for end in ends:
        start = max(0, end - window)
        count = end - start
        history.append([end, sum(losses[start:end]) / count, sum(accuracies[start:end]) / count])
    return history


def steps_to_accuracy(history: Iterable[Sequence[float]], threshold: float = 0.99) -> int | None:
    """First logged step whose windowed training accuracy reaches ``threshold`` (``None`` if it never does)."""
    return next((int(step) for step, _, accuracy in history if accuracy >= threshold), None)


def train_palindrome(
    model_name: str,
    seq_length: int,
    seed: int = 0,
    settings: TrainingSettings | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``model_name`` on palindromes of length ``seq_length`` and evaluate it on held-out ones.

    Returns ``accuracy``/``loss`` on the held-out batches, ``train_loss``/``train_accuracy`` (means over
    the last steps), ``steps_to_99`` (first history step at 99 % training accuracy, or None),
    ``seconds``, ``device`` and ``history`` (see ``windowed_history``).
    """
    settings = settings or TrainingSettings()
    device = torch.device(device)
    set_seed(seed)
    model = build_model(model_name, seq_length, settings.num_hidden, settings.rnn_init, settings.lstm_forget_bias)
    model.to(device).train()
    optimizer = OPTIMIZERS[settings.optimizer](model.parameters(), lr=settings.lr)
    train_data = PalindromeDataset(seq_length, seed, TRAIN_STREAM)
    started = time.perf_counter()
    losses, accuracies = [], []
    description = f"{model_name} L={seq_length} seed {seed}"
    for _ in tqdm(range(settings.train_steps), desc=description, leave=False, disable=None if progress else True):
        inputs, targets = (t.to(device) for t in train_data.batch(settings.batch_size))
        loss, accuracy = train_one_step(model, optimizer, inputs, targets, settings.clip_grad_norm)
        losses.append(loss)
        accuracies.append(accuracy)
    eval_data = PalindromeDataset(seq_length, seed, EVAL_STREAM)
    eval_loss, eval_accuracy = evaluate(model, eval_data, settings.eval_batches, settings.batch_size, device)
    history = windowed_history(losses, accuracies)
    tail = min(TAIL_STEPS, len(losses))
    return {
        "accuracy": eval_accuracy,
        "loss": eval_loss,
        "train_loss": sum(losses[-tail:]) / tail,
        "train_accuracy": sum(accuracies[-tail:]) / tail,
        "steps_to_99": steps_to_accuracy(history),
        "seconds": time.perf_counter() - started,
        "device": str(device),
        "history": history,
    }
