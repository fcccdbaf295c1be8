"""The six CNNs compared in Question 1.2 (randomly initialised, CIFAR-10 sized outputs)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn
from torchvision import models

MODEL_NAMES = ("debug", "vgg11", "vgg11_bn", "resnet18", "resnet34", "densenet121")


def _debug(num_classes: int) -> nn.Module:
    """Flatten + one linear layer on ``(N, 3, 32, 32)`` inputs: fast runs and tests."""
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, num_classes))


_BUILDERS: dict[str, Callable[[int], nn.Module]] = {
    "debug": _debug,
    "vgg11": lambda k: models.vgg11(weights=None, num_classes=k),
    "vgg11_bn": lambda k: models.vgg11_bn(weights=None, num_classes=k),
    "resnet18": lambda k: models.resnet18(weights=None, num_classes=k),
    "resnet34": lambda k: models.resnet34(weights=None, num_classes=k),
    "densenet121": lambda k: models.densenet121(weights=None, num_classes=k),
}


def get_model(model_name: str, num_classes: int = 10) -> nn.Module:
    """Build an untrained network mapping ``(N, 3, 32, 32)`` images to ``(N, num_classes)`` logits.

    The torchvision architectures are used unchanged (ImageNet stems and, for
    VGG, the 7x7 adaptive pooling before the classifier), as in the assignment.

    Raises:
        ValueError: ``model_name`` is not one of :data:`MODEL_NAMES`.
    """
    if model_name not in _BUILDERS:
        raise ValueError(f"unknown model_name {model_name!r}; choose one of: {', '.join(MODEL_NAMES)}")
    return _BUILDERS[model_name](num_classes)
