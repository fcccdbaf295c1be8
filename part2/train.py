"""Train the character-level LSTM text model on one book.

Example (the assignment's settings are the defaults)::

    python -m part2.train --txt_file data/book_EN_grimms_fairy_tails.txt --results_dir results/part2/grimm

Writes to ``--results_dir``: ``checkpoint.pt`` (after every epoch, atomically), ``metrics.json`` (loss and
accuracy per epoch and per step), ``curves.png``, ``samples.md`` / ``samples.json`` (greedy and temperature
samples at the ``--sample_epochs``) and TensorBoard logs under ``tensorboard/``. Rerunning the same command
resumes the run; a folder holding a run with other settings is refused (``--overwrite`` moves it aside).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from common.cli import add_run_args, make_parser, nonnegative_float, positive_float, positive_int, run_cli
from common.io import load_checkpoint, save_torch, write_json, write_text
from common.runs import claim_run
from common.runtime import (
    UserError,
    autocast,
    grad_scaler,
    resolve_device,
    resolve_precision,
    set_seed,
    set_threads,
    start_line,
)
from part2.dataset import TextDataset, samples_to_strings, text_collate_fn
from part2.model import TextGenerationModel
from part2.plots import plot_training_curves

SAMPLE_TEMPERATURES = (0.5, 1.0, 2.0)
NUM_SAMPLES = 5
MODEL_KEYS = ("vocabulary_size", "embedding_size", "lstm_hidden_dim", "lstm_num_layers")
# Settings that change the result: a run in --results_dir resumes only if these are equal.
# (--epochs is not among them: the learning rate is constant, so a run can be extended.)
RUN_KEYS = (
    "book_sha256",
    "input_seq_length",
    "embedding_size",
    "lstm_hidden_dim",
    "lstm_num_layers",
    "batch_size",
    "lr",
    "clip_grad_norm",
    "max_steps_per_epoch",
    "seed",
    "precision",
)
OUTPUTS = ("checkpoint.pt", "metrics.json", "curves.png", "samples.json", "samples.md", "tensorboard")


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("python -m part2.train", __doc__)
    parser.add_argument("--txt_file", required=True, help="text file to train on (UTF-8 or Latin-1, any extension)")
    parser.add_argument("--input_seq_length", type=positive_int, default=30, help="characters per training sequence")
    parser.add_argument(
        "--lstm_hidden_dim", type=positive_int, default=1024, help="hidden state size of each LSTM layer"
    )
    parser.add_argument("--embedding_size", type=positive_int, default=256, help="size of the character embeddings")
    parser.add_argument("--lstm_num_layers", type=positive_int, default=1, help="number of stacked LSTM layers")
    parser.add_argument("--batch_size", type=positive_int, default=128, help="sequences per batch")
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--epochs", "--num_epochs", type=positive_int, default=20, help="passes over the book")
    parser.add_argument(
        "--clip_grad_norm", type=nonnegative_float, default=5.0, help="maximum global gradient norm (0: no clipping)"
    )
    parser.add_argument(
        "--max_steps_per_epoch",
        type=positive_int,
        default=None,
        help="cap on batches per epoch, for smoke runs (default: the whole book)",
    )
    parser.add_argument(
        "--sample_epochs",
        type=positive_int,
        nargs="*",
        default=None,
        help="epochs after which to write samples (default: 1, 5 and the last)",
    )
    parser.add_argument(
        "--long_sample_length",
        type=positive_int,
        default=200,
        help="length of the long greedy samples and of the temperature samples",
    )
    parser.add_argument("--data_dir", default="data/", help="folder where a --txt_file given by name only is looked up")
    parser.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)  # resuming is automatic now
    add_run_args(parser, results_dir="results/part2", seed=0)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def train_step(model, inputs, targets, optimizer, criterion, clip: float, precision: str, scaler) -> tuple[float, int]:
    """One optimisation step on ``inputs, targets [T, B]``; returns ``(loss, correct predictions)``.

    Forward and loss under autocast (``precision``), gradients of the fp32 weights clipped to a global
    norm of ``clip`` (0: not clipped), then one optimiser step (through ``scaler`` for fp16).
    """
    with autocast(inputs.device, precision):
        logits = model(inputs)
        loss = criterion(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if clip > 0:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), clip)
    scaler.step(optimizer)
    scaler.update()
    return loss.item(), (logits.detach().argmax(-1) == targets).sum().item()


def train_one_epoch(model, loader, optimizer, criterion, args, scaler, desc: str) -> dict:
    """One pass (at most ``args.max_steps_per_epoch`` batches); returns the epoch's means and per-step values."""
    model.train()
    steps = len(loader) if args.max_steps_per_epoch is None else min(len(loader), args.max_steps_per_epoch)
    step_loss, step_accuracy = [], []
    started = time.perf_counter()
    progress = tqdm(total=steps, desc=desc, disable=None, leave=False)
    for inputs, targets in loader:
        if len(step_loss) == steps:
            break
        inputs, targets = inputs.to(args.device), targets.to(args.device)
        loss, correct = train_step(
            model, inputs, targets, optimizer, criterion, args.clip_grad_norm, args.precision, scaler
        )
        step_loss.append(loss)
        step_accuracy.append(correct / targets.numel())
        progress.update()
        progress.set_postfix(loss=f"{loss:.3f}")
    progress.close()
    return {
        "loss": float(np.mean(step_loss)),
        "accuracy": float(np.mean(step_accuracy)),
        "steps": steps,
        "seconds": time.perf_counter() - started,
        "step_loss": step_loss,
        "step_accuracy": step_accuracy,
    }


def generate_samples(
    model: TextGenerationModel, chars: Sequence[str], generator: torch.Generator, long_length: int
) -> list[dict]:
    """Greedy samples of length 30 and ``long_length``, and temperature samples of ``long_length``, 5 each."""
    settings = [(0.0, 30), (0.0, long_length)] + [(tau, long_length) for tau in SAMPLE_TEMPERATURES]
    model.eval()
    records = [
        {
            "temperature": tau,
            "length": length,
            "texts": samples_to_strings(model.sample(NUM_SAMPLES, length, tau, generator=generator), chars),
        }
        for tau, length in settings
    ]
    model.train()
    return records


def samples_markdown(samples: list[dict], title: str) -> str:
    """The samples of all epochs as Markdown; a newline inside a sample is shown as ``↵``."""
    lines = [f"# {title}", ""]
    for entry in samples:
        lines += [f"## After epoch {entry['epoch']}", ""]
        for record in entry["records"]:
            kind = "greedy" if record["temperature"] == 0 else f"temperature {record['temperature']}"
            lines += [f"**{kind}, length {record['length']}**", "", "```"]
            lines += [text.replace("\n", "↵") for text in record["texts"]] + ["```", ""]
    return "\n".join(lines)


def save_checkpoint(
    path: Path,
    epoch: int,
    model,
    optimizer,
    scaler,
    dataset,
    loader_generator,
    args,
    history: list[dict],
    samples: list[dict],
) -> None:
    """Everything needed to continue bit-for-bit after ``epoch`` (weights, optimiser, every RNG)."""
    save_torch(
        {
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "model_config": {key: getattr(args, key) for key in MODEL_KEYS},
            "chars": dataset.chars,
            "history": history,
            "samples": samples,
            "dataset_rng": dataset.rng.bit_generator.state,
            "loader_rng": loader_generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        },
        path,
    )


def restore_checkpoint(path: Path, model, optimizer, scaler, dataset, loader_generator) -> tuple[int, list, list]:
    """Load a ``save_checkpoint`` file into the objects; returns ``(epoch, history, samples)``."""
    keys = ("epoch", "model", "optimizer", "chars", "history", "samples", "dataset_rng", "loader_rng", "torch_rng")
    checkpoint = load_checkpoint(path, "part2 text-model", keys, weights_only=False)
    if checkpoint["chars"] != dataset.chars:
        raise UserError(f"{path} was trained on another text; choose another --results_dir")
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    if "scaler" in checkpoint:
        scaler.load_state_dict(checkpoint["scaler"])
    dataset.rng.bit_generator.state = checkpoint["dataset_rng"]
    loader_generator.set_state(checkpoint["loader_rng"])
    torch.set_rng_state(checkpoint["torch_rng"])
    return checkpoint["epoch"], checkpoint["history"], checkpoint["samples"]


def resolve_book(args: argparse.Namespace) -> str:
    """The path of ``--txt_file`` (as given, or inside ``--data_dir``) and its content hash."""
    path = args.txt_file
    if not os.path.isfile(path) and os.path.isfile(os.path.join(args.data_dir, path)):
        path = os.path.join(args.data_dir, path)
    if not os.path.isfile(path):
        raise UserError(
            f"text file {args.txt_file!r} not found; pass an existing file with --txt_file "
            "(a path, or a name inside --data_dir)"
        )
    args.txt_file = path
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def write_outputs(results_dir: Path, args, history: list[dict], samples: list[dict], title: str) -> None:
    """metrics.json (per epoch and per step), curves.png and the samples, all rewritten after every epoch."""
    settings = {key: value for key, value in vars(args).items() if key not in ("device", "resume")}
    epochs = [{key: value for key, value in entry.items() if not key.startswith("step_")} for entry in history]
    steps = {
        "loss": [v for e in history for v in e["step_loss"]],
        "accuracy": [v for e in history for v in e["step_accuracy"]],
    }
    write_json(
        {"config": {**settings, "device": str(args.device)}, "epochs": epochs, "steps": steps},
        results_dir / "metrics.json",
    )
    step_curves = {name: (np.arange(len(values)), np.array(values)) for name, values in steps.items()}
    plot_training_curves(epochs, results_dir / "curves.png", title, step_curves, history[-1]["steps"])
    if samples:
        write_json(samples, results_dir / "samples.json")
        write_text(samples_markdown(samples, f"Samples: {title}"), results_dir / "samples.md")


def make_data(args: argparse.Namespace) -> tuple[TextDataset, DataLoader, torch.Generator]:
    """The book's dataset and a shuffling loader whose generator is checkpointed with the run."""
    dataset = TextDataset(args.txt_file, args.input_seq_length, seed=args.seed)
    loader_generator = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=text_collate_fn,
        generator=loader_generator,
    )
    if len(loader) == 0:
        raise UserError(
            f"the text gives {len(dataset)} sequences, fewer than one batch of {args.batch_size}; "
            "use a smaller --batch_size"
        )
    return dataset, loader, loader_generator


def train(args: argparse.Namespace) -> list[dict]:
    """Train (or resume) and return the per-epoch history (the template's ``train(args)``)."""
    args.device = resolve_device(args.device)
    args.precision = resolve_precision(args.precision, args.device)
    set_threads(args.threads)
    args.book_sha256 = resolve_book(args)
    results_dir = Path(args.results_dir)
    resuming = claim_run(results_dir, {key: getattr(args, key) for key in RUN_KEYS}, args.overwrite, owned=OUTPUTS)
    start_line("part2.train", args.device, args.precision, results_dir)

    set_seed(args.seed)
    dataset, loader, loader_generator = make_data(args)
    args.vocabulary_size = dataset.vocabulary_size
    model = TextGenerationModel(args).to(args.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scaler = grad_scaler(args.device, args.precision)
    state = (model, optimizer, scaler, dataset, loader_generator)
    checkpoint_path = results_dir / "checkpoint.pt"
    done, history, samples = 0, [], []
    if resuming and checkpoint_path.exists():
        done, history, samples = restore_checkpoint(checkpoint_path, *state)
        print(f"resuming after epoch {done}", flush=True)

    criterion = nn.CrossEntropyLoss()
    sample_epochs = set(args.sample_epochs if args.sample_epochs is not None else (1, 5, args.epochs))
    title = f"{Path(args.txt_file).name}: LSTM {args.lstm_num_layers}x{args.lstm_hidden_dim}"
    with SummaryWriter(log_dir=str(results_dir / "tensorboard"), purge_step=done + 1) as writer:
        for epoch in range(done + 1, args.epochs + 1):
            entry = train_one_epoch(model, loader, optimizer, criterion, args, scaler, f"epoch {epoch}/{args.epochs}")
            history.append({"epoch": epoch, **entry})
            for name in ("loss", "accuracy"):
                writer.add_scalar(f"train/{name}", entry[name], epoch)
            print(
                f"epoch {epoch}/{args.epochs}: loss {entry['loss']:.4f}, accuracy {entry['accuracy']:.4f} "
                f"({entry['seconds']:.0f} s)",
                flush=True,
            )
            if epoch in sample_epochs:
                generator = torch.Generator().manual_seed(args.seed * 1000 + epoch)
                records = generate_samples(model, dataset.chars, generator, args.long_sample_length)
                samples.append({"epoch": epoch, "records": records})
            save_checkpoint(checkpoint_path, epoch, *state, args, history, samples)
            write_outputs(results_dir, args, history, samples, f"{title}, embedding {args.embedding_size}")
    return history


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    run_cli(lambda: train(args))
    print(f"results in {args.results_dir}")


if __name__ == "__main__":
    main()
