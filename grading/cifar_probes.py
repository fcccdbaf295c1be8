"""Question 1.2 (a): a tiny synthetic CIFAR-10 and spy models that record how the student's code trains and tests.

Every synthetic image is one flat colour: red encodes the label, green and blue
the image's id. Flips, crops and resizes keep a flat image flat and
normalisation is invertible, so a model can read label and id from any image
the student's pipeline hands it. :class:`SpyNet` uses that to

- count passes over the training images (a pass starts when an id repeats),
  and store the pass number in its parameter, so that a saved or returned
  model says which epoch it comes from;
- predict the right label for a chosen fraction of the validation images that
  depends on that epoch (:data:`ACCURACY_BY_EPOCH`), so that the best epoch is
  known in advance.

Optimizer steps, learning rates and scheduler steps are recorded through
global hooks while :data:`LOG` is active.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

CIFAR_MEAN = (0.491, 0.482, 0.447)
CIFAR_STD = (0.247, 0.243, 0.262)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Validation accuracy of a model trained for e epochs (index e); the best of 3 epochs is epoch 2.
ACCURACY_BY_EPOCH = (0.05, 0.3, 0.9, 0.6, 0.2, 0.1)
SPY_SHAPE = (7, 13)  # a parameter shape no real network has: identifies the spy's weights in any checkpoint


# --------------------------------------------------------------------------- data
def flat_images(ids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(N, 3, 32, 32)`` uint8 images: red ``10 + 24 * label``, green ``id % 256``, blue ``id // 256``."""
    colours = np.stack([10 + 24 * labels, ids % 256, ids // 256], axis=1).astype(np.uint8)
    return np.broadcast_to(colours[:, :, None, None], (len(ids), 3, 32, 32)).copy()


def decode(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and ids of normalised images ``(B, 3, H, W)`` from their mean colour."""
    mean = torch.tensor(CIFAR_MEAN, dtype=images.dtype, device=images.device)
    std = torch.tensor(CIFAR_STD, dtype=images.dtype, device=images.device)
    colour = ((images.detach().float().mean(dim=(2, 3)) * std + mean) * 255).round().long().cpu()
    labels = ((colour[:, 0] - 10) // 24).clamp(0, 9)
    return labels, colour[:, 1] + 256 * colour[:, 2]


def is_correct(ids: torch.Tensor, accuracy: float) -> torch.Tensor:
    """Whether the spy predicts image ``id`` right: a fixed pseudo-random fraction ``accuracy`` of the ids."""
    return ((ids * 7919) % 1000).float() / 1000 < accuracy


@dataclass(frozen=True)
class SyntheticCifar:
    """Sizes of the synthetic CIFAR-10 written for one layout."""

    num_train: int  # images in the training files (train + validation split)
    num_test: int


def _labels(n: int) -> np.ndarray:
    return np.arange(n) % 10


def write_template_cifar(folder: Path, data: SyntheticCifar) -> None:
    """torchvision's ``cifar-10-batches-py`` format (what the template's ``CIFAR10(data_dir)`` reads)."""
    base = folder / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    train_ids = np.arange(data.num_train)
    test_ids = np.arange(data.num_test) + 60000
    batches = {"data_batch_1": (train_ids, _labels(data.num_train)), "test_batch": (test_ids, _labels(data.num_test))}
    for name in ("data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"):
        batches[name] = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    for name, (ids, labels) in batches.items():
        entry = {"data": flat_images(ids, labels).reshape(len(ids), 3072), "labels": labels.tolist()}
        with open(base / name, "wb") as f:
            pickle.dump(entry, f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(CLASSES)}, f)


def write_image_folder_cifar(folder: Path, data: SyntheticCifar) -> None:
    """An image folder ``train/<class>/<id>.png``, ``test/<class>/<id>.png`` (what this repository's loader reads)."""
    for split, ids in (("train", np.arange(data.num_train)), ("test", np.arange(data.num_test) + 60000)):
        labels = _labels(len(ids))
        for image, label, image_id in zip(flat_images(ids, labels), labels, ids):
            path = folder / split / f"class{label}" / f"{image_id:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.transpose(1, 2, 0)).save(path)


# --------------------------------------------------------------------------- recording
@dataclass
class Log:
    """What happened during one spied call of the student's code."""

    active: bool = False
    steps: int = 0
    learning_rates: list[float] = field(default_factory=list)  # per optimizer step
    scheduler_steps: list[int] = field(default_factory=list)  # optimizer steps done at each scheduler.step()
    training_ids: list[torch.Tensor] = field(default_factory=list)
    evaluations: list[tuple[int, int]] = field(default_factory=list)  # (optimizer steps done, images)

    def reset(self) -> None:
        self.__init__(active=True)


LOG = Log()


def _before_optimizer_step(optimizer, args, kwargs) -> None:
    if LOG.active:
        LOG.learning_rates.append(float(optimizer.param_groups[0]["lr"]))


def _after_optimizer_step(optimizer, args, kwargs) -> None:
    if LOG.active:
        LOG.steps += 1


def _spy_scheduler_step(original):
    def step(self, *args, **kwargs):
        # The constructor's own initial step happens with _step_count == 0; only the student's calls count.
        if LOG.active and getattr(self, "_step_count", 1) > 0:
            LOG.scheduler_steps.append(LOG.steps)
        return original(self, *args, **kwargs)

    step._grading_spy = True
    return step


def install_hooks() -> None:
    """Global optimizer hooks and scheduler wrappers (once per process)."""
    from torch.optim import lr_scheduler
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    if getattr(lr_scheduler.LRScheduler.step, "_grading_spy", False):
        return
    register_optimizer_step_pre_hook(_before_optimizer_step)
    register_optimizer_step_post_hook(_after_optimizer_step)
    for cls in {lr_scheduler.LRScheduler, lr_scheduler.ReduceLROnPlateau}:
        if "step" in cls.__dict__:
            cls.step = _spy_scheduler_step(cls.__dict__["step"])


# --------------------------------------------------------------------------- models
class SpyNet(nn.Module):
    """A 'network' whose validation accuracy depends only on how many training passes it has had."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(SPY_SHAPE))
        self._seen: set[int] = set()
        self._passes = 0

    @property
    def epoch(self) -> int:
        return int(round(float(self.weight.detach()[0, 0])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        labels, ids = decode(x)
        training = self.training and torch.is_grad_enabled()
        if training:
            id_set = set(ids.tolist())
            if self._passes == 0 or id_set & self._seen:
                self._passes += 1
                self._seen = set()
            self._seen |= id_set
            with torch.no_grad():
                self.weight[0, 0] = self._passes
            if LOG.active:
                LOG.training_ids.append(ids)
        elif LOG.active:
            LOG.evaluations.append((LOG.steps, len(ids)))
        accuracy = ACCURACY_BY_EPOCH[min(self.epoch, len(ACCURACY_BY_EPOCH) - 1)]
        predicted = torch.where(is_correct(ids, accuracy), labels, (labels + 1) % 10)
        logits = 10.0 * nn.functional.one_hot(predicted, 10).float().to(x.device)
        return logits + 0.0 * self.weight.sum()  # connected to the parameter, so backward() works


class LabelProbe(nn.Module):
    """Predicts ``round(x[:, 0, 0, 0])``; with ``mode_sensitive`` it predicts wrong in training mode (like dropout)."""

    def __init__(self, mode_sensitive: bool = False) -> None:
        super().__init__()
        self.mode_sensitive = mode_sensitive
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        predicted = x[:, 0, 0, 0].round().long().clamp(0, 9)
        if self.mode_sensitive and self.training:
            predicted = (predicted + 1) % 10
        return self.scale * 10.0 * nn.functional.one_hot(predicted, 10).float()


def find_spy_weight(obj, depth: int = 0) -> torch.Tensor | None:
    """The spy's ``SPY_SHAPE`` parameter anywhere in a module, state dict or nested checkpoint dict."""
    if depth > 4:
        return None
    if isinstance(obj, torch.Tensor):
        return obj if tuple(obj.shape) == SPY_SHAPE else None
    if isinstance(obj, nn.Module):
        return find_spy_weight(obj.state_dict(), depth + 1)
    values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else ()
    for value in values:
        found = find_spy_weight(value, depth + 1)
        if found is not None:
            return found
    return None
