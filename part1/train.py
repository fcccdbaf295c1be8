"""Train a CNN on CIFAR-10 and test it on the clean and the 20 corrupted test sets.

Usage (the assignment's protocol is the default)::

    python -m part1.train --model_name resnet18 --data_dir data/
    python -m part1.train --model_name debug --epochs 1 --train_subset 2000 --test_subset 500

Writes ``<results_dir>/<model_name>.json`` (clean accuracy, accuracy per
corruption and severity, configuration), TensorBoard logs under
``<results_dir>/tensorboard/<model_name>`` and checkpoints under
``<results_dir>/checkpoints``. An interrupted run resumes from its last epoch;
a finished checkpoint is loaded instead of training again.
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from part1.checkpoint import save_atomic
from part1.corruptions import CORRUPTIONS, SEVERITIES
from part1.data import (
    SPLIT_SEED,
    TEST_SUBSET_SEED,
    iterate_batches,
    load_cifar10,
    make_loader,
    normalize,
    subset_indices,
    to_float,
    train_val_split,
)
from part1.model import MODEL_NAMES, get_model

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- helpers
def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def write_json_atomic(obj: Any, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def resume_path(checkpoint_name: str | os.PathLike) -> Path:
    """Where the per-epoch training state of ``checkpoint_name`` lives (``x.pt`` -> ``x.last.pt``)."""
    path = Path(checkpoint_name)
    return path.with_name(f"{path.stem}.last{path.suffix or '.pt'}")


def _check_config(saved: dict, wanted: dict, path: Path) -> None:
    diff = {k: (saved.get(k), v) for k, v in wanted.items() if saved.get(k) != v}
    if diff:
        details = ", ".join(f"{k}: saved {a!r} vs requested {b!r}" for k, (a, b) in diff.items())
        raise ValueError(
            f"checkpoint {path} was made with other settings ({details}); "
            f"delete it or choose another --checkpoint_dir"
        )


def _select_train_val(data: dict[str, torch.Tensor], train_subset: int | None, val_subset: int | None):
    train_idx, val_idx = train_val_split(len(data["train_y"]), seed=SPLIT_SEED)
    # Subsets are fixed (not tied to --seed) so that every model sees the same images.
    train_idx = train_idx[subset_indices(data["train_y"][train_idx], train_subset, SPLIT_SEED)]
    val_idx = val_idx[subset_indices(data["train_y"][val_idx], val_subset, SPLIT_SEED)]
    return train_idx, val_idx


# --------------------------------------------------------------------------- training
def _train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer, device: torch.device,
                     desc: str) -> tuple[float, float]:
    """One pass over ``loader``; returns (mean cross-entropy, accuracy) over its images."""
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    total_loss, correct, count = 0.0, 0, 0
    for x, y in tqdm(loader, desc=desc, leave=False, disable=None):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x)
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(dim=1) == y).sum().item()
        count += len(y)
    return total_loss / count, correct / count


def train_model(model: nn.Module, lr: float, batch_size: int, epochs: int, data_dir: str | os.PathLike,
                checkpoint_name: str | os.PathLike, device: torch.device | str, *, seed: int = 42,
                train_subset: int | None = None, val_subset: int | None = None, num_workers: int = 0,
                log_dir: str | os.PathLike | None = None) -> nn.Module:
    """Train ``model`` with SGD and return it with its best-validation weights loaded.

    SGD (momentum 0.9, weight decay 5e-4), learning rate divided by 10 after 60 %
    and 90 % of the epochs (``MultiStepLR``), cross-entropy loss, validation
    accuracy after every epoch on the 5,000 held-out training images.

    Checkpoints: the best weights go to ``checkpoint_name`` (with ``finished=True``
    once all epochs ran); the full training state (model, optimizer, scheduler,
    epoch, RNG) goes to :func:`resume_path` after every epoch and is removed at the
    end. Calling again after an interruption continues from the last completed
    epoch and gives the same result as an uninterrupted run on CPU.

    Args:
        model: network mapping ``(N, 3, 32, 32)`` normalised images to ``(N, 10)`` logits.
        lr, batch_size, epochs: optimisation settings.
        data_dir: CIFAR-10 location (see :mod:`part1.data`).
        checkpoint_name: path of the best-model checkpoint file.
        device: where to train.
        seed: seed of the shuffling, the augmentation and dropout.
        train_subset, val_subset: use only this many (class-balanced, fixed) training /
            validation images; ``None`` for all 45,000 / 5,000.
        num_workers: ``DataLoader`` worker processes preparing batches.
        log_dir: TensorBoard folder (default: ``tensorboard/<name>`` next to the checkpoint).
    """
    from torch.utils.tensorboard import SummaryWriter

    device = torch.device(device)
    best_path, last_path = Path(checkpoint_name), resume_path(checkpoint_name)
    config = {"lr": lr, "batch_size": batch_size, "epochs": epochs, "seed": seed,
              "train_subset": train_subset, "val_subset": val_subset}

    data = load_cifar10(data_dir)
    train_idx, val_idx = _select_train_val(data, train_subset, val_subset)
    train_loader = make_loader(data["train_x"][train_idx], data["train_y"][train_idx], batch_size,
                               train=True, seed=seed, num_workers=num_workers)
    val_loader = make_loader(data["train_x"][val_idx], data["train_y"][val_idx], batch_size,
                             num_workers=num_workers)

    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    milestones = [int(0.6 * epochs), int(0.9 * epochs)]
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)

    start_epoch, best_acc, best_epoch, train_seconds = 0, -1.0, -1, 0.0
    best_state = copy.deepcopy(model.state_dict())
    if last_path.is_file():
        state = torch.load(last_path, map_location=device, weights_only=True)
        _check_config(state["config"], config, last_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng_cpu"].cpu())
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([t.cpu() for t in state["rng_cuda"]])
        start_epoch, best_acc, best_epoch = state["epoch"], state["best_val_accuracy"], state["best_epoch"]
        train_seconds = state["train_seconds"]
        best_state = torch.load(best_path, map_location=device, weights_only=True)["model_state"]
        logger.info("resuming %s from epoch %d (best validation accuracy %.4f)", best_path, start_epoch, best_acc)

    writer = SummaryWriter(log_dir or best_path.parent / "tensorboard" / best_path.stem)
    for epoch in range(start_epoch, epochs):
        tic = time.perf_counter()
        train_loader.dataset.set_epoch(epoch)
        loss, train_acc = _train_one_epoch(model, train_loader, optimizer, device, f"epoch {epoch + 1}/{epochs}")
        val_acc = evaluate_model(model, val_loader, device)
        scheduler.step()
        train_seconds += time.perf_counter() - tic
        writer.add_scalar("train/loss", loss, epoch + 1)
        writer.add_scalar("train/accuracy", train_acc, epoch + 1)
        writer.add_scalar("val/accuracy", val_acc, epoch + 1)
        writer.add_scalar("lr", optimizer.param_groups[0]["lr"], epoch + 1)
        logger.info("epoch %d/%d: loss %.4f, train acc %.4f, val acc %.4f", epoch + 1, epochs, loss, train_acc,
                    val_acc)
        if val_acc > best_acc:
            best_acc, best_epoch = val_acc, epoch + 1
            best_state = copy.deepcopy(model.state_dict())
            save_atomic({"model_state": best_state, "epoch": best_epoch, "val_accuracy": best_acc,
                         "finished": False, "config": config, "train_seconds": train_seconds}, best_path)
        rng_cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "rng_cpu": torch.get_rng_state(), "rng_cuda": rng_cuda,
                     "epoch": epoch + 1, "best_val_accuracy": best_acc, "best_epoch": best_epoch, "config": config,
                     "train_seconds": train_seconds}, last_path)
    writer.close()

    save_atomic({"model_state": best_state, "epoch": best_epoch, "val_accuracy": best_acc, "finished": True,
                 "config": config, "train_seconds": train_seconds}, best_path)
    last_path.unlink(missing_ok=True)
    model.load_state_dict(best_state)
    return model


# --------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate_model(model: nn.Module, data_loader, device: torch.device | str) -> float:
    """Top-1 accuracy of ``model`` over every image of ``data_loader`` (an iterable of ``(x, y)``)."""
    model.eval()
    correct, count = 0, 0
    for x, y in data_loader:
        logits = model(x.to(device))
        correct += (logits.argmax(dim=1).cpu() == y).sum().item()
        count += len(y)
    return correct / count


@torch.no_grad()
def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
              corruption=None, generator: torch.Generator | None = None) -> float:
    """Accuracy on uint8 ``images`` (on the model's device), corrupted batch by batch before normalising."""
    correct = 0
    for start, x in zip(range(0, len(images), batch_size), iterate_batches(images, batch_size)):
        x = to_float(x)
        if corruption is not None:
            x = corruption(x, generator)
        pred = model(normalize(x)).argmax(dim=1)
        correct += (pred == labels[start : start + len(x)]).sum().item()
    return correct / len(images)


def test_model(model: nn.Module, batch_size: int, data_dir: str | os.PathLike, device: torch.device | str,
               seed: int, *, test_subset: int | None = None) -> dict[str, Any]:
    """Accuracy on the clean test set and on its 20 corrupted versions (4 corruptions x 5 severities).

    The decoded test set is moved to ``device`` once; every corruption runs there
    on whole batches. Gaussian noise comes from a generator seeded by ``seed``,
    the corruption and the severity, so the corrupted sets are identical for
    every model tested with the same seed.

    Args:
        test_subset: use a fixed, class-balanced subset of this many test images
            (the same for every model and seed); ``None`` for all 10,000.

    Returns:
        ``{"clean": acc, "gaussian_noise": [acc_s1, ..., acc_s5], "gaussian_blur": [...],
        "contrast": [...], "jpeg": [...]}`` with accuracies in [0, 1].
    """
    device = torch.device(device)
    model.to(device).eval()
    data = load_cifar10(data_dir)
    idx = subset_indices(data["test_y"], test_subset, TEST_SUBSET_SEED)
    images, labels = data["test_x"][idx].to(device), data["test_y"][idx].to(device)

    results: dict[str, Any] = {"clean": _accuracy(model, images, labels, batch_size)}
    steps = [(c, s) for c in CORRUPTIONS for s in SEVERITIES]
    for k, (name, severity) in enumerate(tqdm(steps, desc="corrupted test sets", leave=False, disable=None)):
        generator = torch.Generator().manual_seed(seed * 1000 + k)
        acc = _accuracy(model, images, labels, batch_size, CORRUPTIONS[name](severity), generator)
        results.setdefault(name, []).append(acc)
    return results


# --------------------------------------------------------------------------- entry point
def main(model_name: str, lr: float, batch_size: int, epochs: int, data_dir: str | os.PathLike, seed: int, *,
         train_subset: int | None = None, val_subset: int | None = None, test_subset: int | None = None,
         device: torch.device | str | None = None, results_dir: str | os.PathLike = "results/part1",
         checkpoint_dir: str | os.PathLike | None = None, num_workers: int = 0) -> dict[str, Any]:
    """Train (or load the finished checkpoint of) ``model_name``, test it, write ``<results_dir>/<model_name>.json``.

    Returns:
        The results dictionary written to the JSON file.
    """
    device = torch.device(device) if device is not None else default_device()
    results_dir = Path(results_dir)
    checkpoint = Path(checkpoint_dir or results_dir / "checkpoints") / f"{model_name}.pt"
    config = {"lr": lr, "batch_size": batch_size, "epochs": epochs, "seed": seed,
              "train_subset": train_subset, "val_subset": val_subset}

    set_seed(seed)
    model = get_model(model_name)
    saved = torch.load(checkpoint, map_location=device, weights_only=True) if checkpoint.is_file() else None
    if saved is not None and saved["finished"]:
        _check_config(saved["config"], config, checkpoint)
        logger.info("loading finished checkpoint %s instead of training", checkpoint)
        model.load_state_dict(saved["model_state"])
    else:
        model = train_model(model, lr, batch_size, epochs, data_dir, checkpoint, device, seed=seed,
                            train_subset=train_subset, val_subset=val_subset, num_workers=num_workers,
                            log_dir=results_dir / "tensorboard" / model_name)
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)

    tic = time.perf_counter()
    accuracies = test_model(model, batch_size, data_dir, device, seed, test_subset=test_subset)
    test_seconds = time.perf_counter() - tic
    num_test = len(subset_indices(load_cifar10(data_dir)["test_y"], test_subset, TEST_SUBSET_SEED))
    results = {
        "model_name": model_name,
        "config": {**config, "test_subset": test_subset, "device": str(device)},
        "num_test_images": num_test,
        "best_epoch": saved["epoch"],
        "best_val_accuracy": saved["val_accuracy"],
        "clean_accuracy": accuracies["clean"],
        "corrupted_accuracy": {name: accuracies[name] for name in CORRUPTIONS},
        "train_seconds": round(saved["train_seconds"], 1),
        "test_seconds": round(test_seconds, 1),
    }
    write_json_atomic(results, results_dir / f"{model_name}.json")
    logger.info("%s: clean accuracy %.4f; results in %s", model_name, results["clean_accuracy"],
                results_dir / f"{model_name}.json")
    return results


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model_name", default="debug", choices=MODEL_NAMES, help="network to train")
    parser.add_argument("--lr", type=float, default=0.01, help="initial SGD learning rate")
    parser.add_argument("--batch_size", type=_positive_int, default=128, help="minibatch size")
    parser.add_argument("--epochs", type=_positive_int, default=150, help="training epochs")
    parser.add_argument("--seed", type=int, default=42, help="seed of initialisation, batches and noise")
    parser.add_argument("--data_dir", default="data/", help="CIFAR-10 folder or archive (see part1/data.py)")
    parser.add_argument("--train_subset", type=_positive_int, default=None,
                        help="train on this many of the 45,000 training images (class-balanced, fixed)")
    parser.add_argument("--val_subset", type=_positive_int, default=None,
                        help="validate on this many of the 5,000 validation images (class-balanced, fixed)")
    parser.add_argument("--test_subset", type=_positive_int, default=None,
                        help="test on this many of the 10,000 test images (class-balanced, fixed)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--results_dir", default="results/part1", help="where JSON results and logs go")
    parser.add_argument("--checkpoint_dir", default=None, help="checkpoint folder (default: <results_dir>/checkpoints)")
    parser.add_argument("--num_workers", type=int, default=0, help="DataLoader worker processes")
    return parser


def cli(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        main(args.model_name, args.lr, args.batch_size, args.epochs, args.data_dir, args.seed,
             train_subset=args.train_subset, val_subset=args.val_subset, test_subset=args.test_subset,
             device=args.device, results_dir=args.results_dir, checkpoint_dir=args.checkpoint_dir,
             num_workers=args.num_workers)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    cli()
