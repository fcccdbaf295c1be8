"""Train a CNN on CIFAR-10 and test it on the clean and the 20 corrupted test sets (Question 1.2).

    python -m part1.train --model_name resnet18 --data_dir data/          # the assignment's protocol
    python -m part1.train --model_name debug --epochs 1 --train_subset 2000 --test_subset 500

Writes ``<results_dir>/<model_name>.json`` (accuracies, settings, per-epoch history), the checkpoints
``<results_dir>/checkpoints/<model_name>.pt`` (best validation weights) and ``<model_name>.last.pt`` (the
training state after the last epoch), and TensorBoard logs in ``<results_dir>/tensorboard/<model_name>``.
The same command again resumes an interrupted run and only reports a finished one; a run with other settings
is refused (``--overwrite`` moves the old run aside).
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from common.cli import add_run_args, make_parser, nonnegative_int, positive_float, positive_int, run_cli
from common.io import load_checkpoint as load_torch_file
from common.io import read_json, save_torch, write_json
from common.runs import claim_run, ensure_writable, settings_diff
from common.runtime import (
    UserError,
    autocast,
    device_name,
    grad_scaler,
    resolve_device,
    resolve_precision,
    set_seed,
    set_threads,
    start_line,
)
from part1.data import indices_of_test_set, load_cifar10, make_loader, train_val_indices
from part1.evaluate import accuracy_on_test_sets, evaluate, to_device
from part1.model import MODEL_NAMES, get_model

__all__ = ["get_model", "train_model", "evaluate_model", "test_model", "main"]

CHECKPOINT_KIND = "part 1 training"


@dataclass(frozen=True)
class Settings:
    """Everything that changes a run's result: a results folder resumes a run only with identical settings."""

    model_name: str = "debug"
    lr: float = 0.01
    batch_size: int = 128
    epochs: int = 150
    seed: int = 42
    train_subset: int | None = None
    val_subset: int | None = None
    test_subset: int | None = None
    precision: str = "fp32"
    channels_last: bool = False

    def training(self) -> dict[str, Any]:
        """The settings that shape the trained weights (recorded in the checkpoints)."""
        return {k: v for k, v in asdict(self).items() if k not in ("model_name", "test_subset")}


@dataclass(frozen=True)
class RunFiles:
    """Where one model's run lives in a results folder."""

    folder: Path
    model_name: str

    @property
    def results(self) -> Path:
        return self.folder / f"{self.model_name}.json"

    @property
    def checkpoint(self) -> Path:
        return self.folder / "checkpoints" / f"{self.model_name}.pt"

    @property
    def tensorboard(self) -> Path:
        return self.folder / "tensorboard" / self.model_name

    def owned(self) -> list[str]:
        """The run's files, relative to the folder (moved aside together by ``--overwrite``)."""
        paths = (self.results, self.checkpoint, resume_path(self.checkpoint), self.tensorboard)
        return [str(path.relative_to(self.folder)) for path in paths]


# --------------------------------------------------------------------------- one epoch
def make_optimizer(model: nn.Module, lr: float, epochs: int) -> tuple[torch.optim.Optimizer, Any]:
    """SGD (momentum 0.9, weight decay 5e-4); lr / 10 after 60 % and after 90 % of the epochs, stepped once per
    epoch: the template's milestones [90, 135] of 150 epochs, scaled to ``epochs``."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    milestones = [m for m in (int(0.6 * epochs), int(0.9 * epochs)) if m > 0]
    return optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)


def train_step(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    precision: str = "fp32",
    channels_last: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step on a batch; forward and cross-entropy under autocast (weights stay fp32), backward through the
    gradient scaler (active for fp16 only). Returns the detached ``(loss, logits)``."""
    y = y.to(device, non_blocking=True)
    with autocast(device, precision):
        logits = model(to_device(x, device, channels_last))
        loss = nn.functional.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach(), logits.detach()


def train_one_epoch(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    precision: str = "fp32",
    channels_last: bool = False,
    desc: str = "training",
) -> tuple[float, float]:
    """One pass over ``loader``; returns (mean cross-entropy, accuracy) over its images."""
    model.train()
    total_loss, correct, count = 0.0, 0, 0
    for x, y in tqdm(loader, desc=desc, leave=False, disable=None):
        loss, logits = train_step(model, x, y, optimizer, scaler, device, precision, channels_last)
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(dim=1).cpu() == y).sum().item()
        count += len(y)
    return total_loss / count, correct / count


# --------------------------------------------------------------------------- checkpoints
def resume_path(checkpoint: str | os.PathLike) -> Path:
    """The per-epoch training state beside the best-weights checkpoint (``x.pt`` -> ``x.last.pt``)."""
    path = Path(checkpoint)
    return path.with_name(f"{path.stem}.last{path.suffix or '.pt'}")


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Save a checkpoint dict atomically (a crash never leaves half a file)."""
    save_torch(state, path)


def load_checkpoint(path: str | os.PathLike, required_keys: tuple[str, ...] = ("model_state",)) -> dict[str, Any]:
    """Load a checkpoint dict; a truncated or foreign file is one line saying to delete it."""
    return load_torch_file(path, CHECKPOINT_KIND, required_keys=required_keys)


@dataclass
class Progress:
    """Where training stands: epochs done, the best validation result so far and the per-epoch history."""

    epoch: int = 0
    best_epoch: int = 0
    best_val_accuracy: float = -1.0
    best_state: dict[str, torch.Tensor] | None = None
    train_seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)

    def summary(self, settings: dict[str, Any], finished: bool) -> dict[str, Any]:
        """The best-weights checkpoint."""
        return {
            "model_state": self.best_state,
            "epoch": self.best_epoch,
            "val_accuracy": self.best_val_accuracy,
            "finished": finished,
            "settings": settings,
            "train_seconds": self.train_seconds,
            "history": self.history,
        }

    def record(self, model: nn.Module, row: dict[str, float]) -> bool:
        """Add one epoch's row; keep the weights if validation improved (returns whether it did)."""
        self.epoch, self.train_seconds = int(row["epoch"]), self.train_seconds + row["seconds"]
        self.history.append(row)
        if row["val_accuracy"] <= self.best_val_accuracy:
            return False
        self.best_epoch, self.best_val_accuracy = self.epoch, row["val_accuracy"]
        self.best_state = copy.deepcopy(model.state_dict())
        return True


def save_training_state(path: Path, progress: Progress, settings: dict, model, optimizer, scheduler, scaler) -> None:
    """Everything needed to continue after this epoch exactly as an uninterrupted run would."""
    state = {
        "epoch": progress.epoch,
        "best_epoch": progress.best_epoch,
        "best_val_accuracy": progress.best_val_accuracy,
        "train_seconds": progress.train_seconds,
        "history": progress.history,
        "settings": settings,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    save_checkpoint(state, path)


def resume_training(checkpoint: Path, settings: dict, model, optimizer, scheduler, scaler) -> Progress:
    """Load the training state after the last finished epoch, if any; refuse one made with other settings."""
    path = resume_path(checkpoint)
    if not path.is_file():
        return Progress(best_state=copy.deepcopy(model.state_dict()))
    state = load_checkpoint(path, ("settings", "model", "optimizer", "scheduler", "epoch", "history"))
    if state["settings"] != settings:
        diff = "; ".join(settings_diff(state["settings"], settings))
        raise UserError(f"{path} was made with other settings ({diff}); delete it or choose another --results_dir")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng_cpu"].cpu())
    if state["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in state["rng_cuda"]])
    progress = Progress(
        **{k: state[k] for k in ("epoch", "best_epoch", "best_val_accuracy", "train_seconds", "history")}
    )
    progress.best_state = load_checkpoint(checkpoint)["model_state"]
    print(
        f"resuming {checkpoint} after epoch {progress.epoch} "
        f"(best validation accuracy {progress.best_val_accuracy:.4f})"
    )
    return progress


# --------------------------------------------------------------------------- the training loop
def run_epoch(
    model: nn.Module, loaders: tuple, optimizer, scheduler, scaler, device: torch.device, settings: dict, epoch: int
) -> dict[str, float]:
    """Epoch ``epoch`` (0-based): train, validate, then step the learning-rate schedule once; returns its row."""
    tic, (train_loader, val_loader) = time.perf_counter(), loaders
    precision, channels_last = settings["precision"], settings["channels_last"]
    train_loader.dataset.set_epoch(epoch)
    desc = f"epoch {epoch + 1}/{settings['epochs']}"
    loss, train_acc = train_one_epoch(model, train_loader, optimizer, scaler, device, precision, channels_last, desc)
    val_acc = evaluate(model, val_loader, device, precision, channels_last)
    lr = optimizer.param_groups[0]["lr"]
    scheduler.step()
    seconds = time.perf_counter() - tic
    return {"epoch": epoch + 1, "loss": loss, "train_accuracy": train_acc, "val_accuracy": val_acc, "lr": lr,
            "seconds": seconds}  # fmt: skip


def fit(
    model: nn.Module,
    train_loader: torch.utils.data.DataLoader,
    val_loader: torch.utils.data.DataLoader,
    settings: dict[str, Any],
    checkpoint: Path,
    device: torch.device,
    log_dir: str | os.PathLike | None = None,
) -> tuple[nn.Module, Progress]:
    """Train for ``settings["epochs"]`` epochs, validating after each; return the model with its best-validation
    weights loaded. Best weights go to ``checkpoint`` whenever validation improves, the full training state to
    :func:`resume_path` after every epoch (removed at the end), so a rerun continues an interrupted run."""
    optimizer, scheduler = make_optimizer(model, settings["lr"], settings["epochs"])
    scaler = grad_scaler(device, settings["precision"])
    progress = resume_training(checkpoint, settings, model, optimizer, scheduler, scaler)
    writer = tensorboard_writer(log_dir)
    try:
        for epoch in range(progress.epoch, settings["epochs"]):
            row = run_epoch(model, (train_loader, val_loader), optimizer, scheduler, scaler, device, settings, epoch)
            if progress.record(model, row):
                save_checkpoint(progress.summary(settings, finished=False), checkpoint)
            save_training_state(resume_path(checkpoint), progress, settings, model, optimizer, scheduler, scaler)
            log_epoch(row, settings["epochs"], writer)
    finally:
        if writer is not None:
            writer.close()
    save_checkpoint(progress.summary(settings, finished=True), checkpoint)
    resume_path(checkpoint).unlink(missing_ok=True)
    model.load_state_dict(progress.best_state)
    return model, progress


def tensorboard_writer(log_dir: str | os.PathLike | None) -> Any:
    """A TensorBoard ``SummaryWriter`` for ``log_dir`` (None: no logging)."""
    if log_dir is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(log_dir))


def log_epoch(row: dict[str, float], epochs: int, writer: Any = None) -> None:
    """One progress line per epoch, and the same numbers to TensorBoard."""
    print(
        f"epoch {row['epoch']}/{epochs}: loss {row['loss']:.4f}, train acc {row['train_accuracy']:.4f}, "
        f"val acc {row['val_accuracy']:.4f}, lr {row['lr']:.2g}, {row['seconds']:.0f} s",
        flush=True,
    )
    if writer is not None:
        for key in ("loss", "train_accuracy", "val_accuracy", "lr"):
            writer.add_scalar(key, row[key], row["epoch"])


# --------------------------------------------------------------------------- the template's functions
def train_model(
    model: nn.Module,
    lr: float,
    batch_size: int,
    epochs: int,
    data_dir: str | os.PathLike,
    checkpoint_name: str | os.PathLike,
    device: torch.device | str,
    *,
    seed: int = 42,
    train_subset: int | None = None,
    val_subset: int | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
    num_workers: int = 0,
    log_dir: str | os.PathLike | None = None,
) -> nn.Module:
    """The template's ``train_model``: train on the 45,000 training images (or a fixed class-balanced subset),
    validate on the 5,000 held out, return the model with its best-validation weights (saved in
    ``checkpoint_name``). ``seed`` drives shuffling, augmentation and dropout."""
    device = torch.device(device)
    settings = Settings(
        lr=lr,
        batch_size=batch_size,
        epochs=epochs,
        seed=seed,
        train_subset=train_subset,
        val_subset=val_subset,
        precision=precision,
        channels_last=channels_last,
    ).training()
    data = load_cifar10(data_dir)
    train_idx, val_idx = train_val_indices(data["train_y"], train_subset, val_subset)
    train_loader = make_loader(
        data["train_x"][train_idx],
        data["train_y"][train_idx],
        batch_size,
        train=True,
        seed=seed,
        num_workers=num_workers,
    )
    val_loader = make_loader(data["train_x"][val_idx], data["train_y"][val_idx], batch_size, num_workers=num_workers)
    memory_format = torch.channels_last if channels_last else torch.preserve_format
    model.to(device, memory_format=memory_format)
    checkpoint = Path(checkpoint_name)
    log_dir = log_dir or checkpoint.parent / "tensorboard" / checkpoint.stem
    return fit(model, train_loader, val_loader, settings, checkpoint, device, log_dir)[0]


def evaluate_model(model: nn.Module, data_loader, device: torch.device | str) -> float:
    """The template's ``evaluate_model``: top-1 accuracy over every image of ``data_loader``."""
    return evaluate(model, data_loader, device)


def test_model(
    model: nn.Module,
    batch_size: int,
    data_dir: str | os.PathLike,
    device: torch.device | str,
    seed: int,
    *,
    test_subset: int | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
) -> dict[str, Any]:
    """The template's ``test_model``: ``{"clean": acc, "gaussian_noise": [acc_s1, ..., acc_s5], ...}`` on the
    10,000 test images (or a fixed class-balanced subset); ``seed`` fixes the noise of the corrupted sets."""
    device = torch.device(device)
    data = load_cifar10(data_dir)
    idx = indices_of_test_set(data["test_y"], test_subset)
    images, labels = data["test_x"][idx].to(device), data["test_y"][idx].to(device)
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format).eval()
    return accuracy_on_test_sets(model, images, labels, batch_size, seed, precision, channels_last)


def main(
    model_name: str,
    lr: float,
    batch_size: int,
    epochs: int,
    data_dir: str | os.PathLike,
    seed: int,
    *,
    train_subset: int | None = None,
    val_subset: int | None = None,
    test_subset: int | None = None,
    precision: str | None = None,
    channels_last: bool = False,
    device: str | None = None,
    threads: int | None = None,
    results_dir: str | os.PathLike = "results/part1",
    overwrite: bool = False,
    num_workers: int = 0,
) -> dict[str, Any]:
    """The template's ``main``: train (or resume, or reuse) ``model_name``, test it, write its results JSON."""
    device = resolve_device(device)
    set_threads(threads)
    settings = Settings(
        model_name,
        lr,
        batch_size,
        epochs,
        seed,
        train_subset,
        val_subset,
        test_subset,
        resolve_precision(precision, device),
        channels_last,
    )
    files = RunFiles(Path(results_dir), model_name)
    ensure_writable(files.folder)
    start_line("part1.train", device, settings.precision, files.folder)
    load_cifar10(data_dir)  # data problems surface before the run folder is claimed
    resumed = claim_run(files.folder, asdict(settings), overwrite, name=model_name, owned=files.owned())
    if resumed and files.results.is_file() and is_finished(files.checkpoint):
        print(f"{model_name}: this run has finished; its results are in {files.results}")
        return read_json(files.results, kind="results")
    model = trained_model(settings, data_dir, files, device, num_workers)
    return test_and_write(model, settings, data_dir, files, device)


def is_finished(checkpoint: Path) -> bool:
    """Whether ``checkpoint`` holds the final best weights of a completed training run."""
    return checkpoint.is_file() and bool(load_checkpoint(checkpoint, ("finished",))["finished"])


def trained_model(settings: Settings, data_dir, files: RunFiles, device: torch.device, num_workers: int) -> nn.Module:
    """The model of a finished checkpoint, or one trained (or resumed) now."""
    set_seed(settings.seed)
    model = get_model(settings.model_name)
    saved = load_checkpoint(files.checkpoint, ("finished",)) if files.checkpoint.is_file() else {"finished": False}
    if saved["finished"]:
        print(f"loading the finished checkpoint {files.checkpoint} instead of training")
        model.load_state_dict(saved["model_state"])
        return model
    options = {k: v for k, v in settings.training().items() if k not in ("lr", "batch_size", "epochs")}
    return train_model(
        model,
        settings.lr,
        settings.batch_size,
        settings.epochs,
        data_dir,
        files.checkpoint,
        device,
        num_workers=num_workers,
        log_dir=files.tensorboard,
        **options,
    )


def test_and_write(model: nn.Module, settings: Settings, data_dir, files: RunFiles, device: torch.device) -> dict:
    """Test on the clean and corrupted sets and write ``<results_dir>/<model_name>.json``; returns its content."""
    tic = time.perf_counter()
    accuracies = test_model(
        model,
        settings.batch_size,
        data_dir,
        device,
        settings.seed,
        test_subset=settings.test_subset,
        precision=settings.precision,
        channels_last=settings.channels_last,
    )
    saved = load_checkpoint(files.checkpoint, ("epoch", "val_accuracy", "train_seconds", "history"))
    results = {
        "model_name": settings.model_name,
        "config": asdict(settings) | {"device": device_name(device), "threads": torch.get_num_threads()},
        "precision": settings.precision,
        "num_test_images": len(indices_of_test_set(load_cifar10(data_dir)["test_y"], settings.test_subset)),
        "best_epoch": saved["epoch"],
        "best_val_accuracy": saved["val_accuracy"],
        "clean_accuracy": accuracies.pop("clean"),
        "corrupted_accuracy": accuracies,
        "train_seconds": round(saved["train_seconds"], 1),
        "test_seconds": round(time.perf_counter() - tic, 1),
        "history": saved["history"],
    }
    write_json(results, files.results)
    print(f"{settings.model_name}: clean accuracy {results['clean_accuracy']:.4f}; results in {files.results}")
    return results


# --------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m part1.train`` (the template's options and the shared run options)."""
    parser = make_parser("python -m part1.train", __doc__)
    parser.add_argument("--model_name", default="debug", choices=MODEL_NAMES, help="network to train")
    parser.add_argument("--lr", type=positive_float, default=0.01, help="initial SGD learning rate")
    parser.add_argument("--batch_size", type=positive_int, default=128, help="minibatch size")
    parser.add_argument("--epochs", type=positive_int, default=150, help="training epochs")
    parser.add_argument("--data_dir", default="data/", help="CIFAR-10 folder or archive (see part1/data.py)")
    subset = "{} on a fixed, class-balanced subset of this many of the {} images, or on all if not given"
    parser.add_argument("--train_subset", type=positive_int, help=subset.format("train", "45,000 training"))
    parser.add_argument("--val_subset", type=positive_int, help=subset.format("validate", "5,000 validation"))
    parser.add_argument("--test_subset", type=positive_int, help=subset.format("test", "10,000 test"))
    parser.add_argument("--channels_last", action="store_true", help="channels-last memory format (model and input)")
    parser.add_argument("--num_workers", type=nonnegative_int, default=0, help="DataLoader processes making batches")
    add_run_args(parser, results_dir="results/part1", seed=42)
    return parser


def cli(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point: parse ``argv``, run :func:`main`; bad input is one ``error:`` line (exit 2)."""
    args = build_parser().parse_args(argv)
    return run_cli(lambda: main(**vars(args)))


if __name__ == "__main__":
    cli()
