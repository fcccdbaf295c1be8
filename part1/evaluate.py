"""Accuracy of a trained CNN: on a loader (validation), and on the clean and the 20 corrupted test sets.

Test images stay uint8 on the model's device; every corruption runs on whole batches there, on images in
[0, 1] *before* normalisation (as the template's ``Compose([ToTensor(), corruption, Normalize])``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from common.runtime import autocast
from part1.corruptions import CORRUPTIONS, SEVERITIES
from part1.data import normalize, to_float

TEST_SETS = [(name, severity) for name in CORRUPTIONS for severity in SEVERITIES]


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """``x`` on ``device``, in channels-last memory order if asked (4-D image batches only)."""
    memory_format = torch.channels_last if channels_last and x.dim() == 4 else torch.preserve_format
    return x.to(device, non_blocking=True, memory_format=memory_format)


def predict(
    model: nn.Module, x: torch.Tensor, device: torch.device, precision: str = "fp32", channels_last: bool = False
) -> torch.Tensor:
    """Logits ``(N, classes)`` of normalised images ``(N, 3, H, W)``, forward pass under autocast(``precision``)."""
    with autocast(device, precision):
        return model(to_device(x, device, channels_last))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device | str,
    precision: str = "fp32",
    channels_last: bool = False,
) -> float:
    """Top-1 accuracy over every image of ``batches`` (an iterable of normalised ``(x, y)``), in eval mode."""
    device = torch.device(device)
    model.eval()
    correct, count = 0, 0
    for x, y in batches:
        logits = predict(model, x, device, precision, channels_last)
        correct += (logits.argmax(dim=1).cpu() == y.cpu()).sum().item()
        count += len(y)
    return correct / count


def corruption_generator(seed: int, index: int) -> torch.Generator:
    """The noise generator of test set ``TEST_SETS[index]``: the same noisy images for every model of a seed."""
    return torch.Generator().manual_seed(seed * 1000 + index)


@torch.no_grad()
def accuracy_under(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    corruption: Callable[..., torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
) -> float:
    """Accuracy on uint8 ``images`` ``(N, 3, H, W)``: model input ``normalize(corruption(to_float(batch)))``."""
    device = images.device
    model.eval()
    correct = 0
    for x, y in zip(images.split(batch_size), labels.split(batch_size)):
        x = to_float(x)
        if corruption is not None:
            x = corruption(x, generator)
        correct += (predict(model, normalize(x), device, precision, channels_last).argmax(dim=1) == y).sum().item()
    return correct / len(labels)


def accuracy_on_test_sets(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    seed: int,
    precision: str = "fp32",
    channels_last: bool = False,
) -> dict[str, Any]:
    """``{"clean": acc, "gaussian_noise": [acc_s1, ..., acc_s5], "gaussian_blur": [...], "contrast": [...],
    "jpeg": [...]}`` on uint8 ``images`` and ``labels`` that live on the model's device."""
    options = {"precision": precision, "channels_last": channels_last}
    results: dict[str, Any] = {"clean": accuracy_under(model, images, labels, batch_size, **options)}
    for index, (name, severity) in enumerate(tqdm(TEST_SETS, desc="corrupted test sets", leave=False, disable=None)):
        corruption, generator = CORRUPTIONS[name](severity), corruption_generator(seed, index)
        results.setdefault(name, []).append(
            accuracy_under(model, images, labels, batch_size, corruption, generator, **options)
        )
    return results
