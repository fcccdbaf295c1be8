"""Train the character-level LSTM text model on one book.

Example (the defaults of the assignment)::

    python -m part2.train --txt_file data/book_EN_grimms_fairy_tails.txt --results_dir results/part2/grimm

Writes to ``--results_dir``: ``checkpoint.pt`` (after every epoch, atomically;
``--resume`` continues from it), ``metrics.json`` (loss and accuracy per
epoch), ``curves.png``, ``samples.md`` / ``samples.json`` (greedy and
temperature samples at the ``--sample_epochs``) and TensorBoard logs under
``tensorboard/``.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from part2.curves import plot_results_dir
from part2.dataset import TextDataset, samples_to_strings, text_collate_fn
from part2.model import TextGenerationModel

SAMPLE_TEMPERATURES = (0.5, 1.0, 2.0)
NUM_SAMPLES = 5
MODEL_KEYS = ("vocabulary_size", "embedding_size", "lstm_hidden_dim", "lstm_num_layers")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--txt_file", type=str, required=True, help="text file to train on (any extension, UTF-8 or Latin-1)")
    parser.add_argument("--input_seq_length", type=int, default=30, help="characters per training sequence")
    parser.add_argument("--lstm_hidden_dim", type=int, default=1024, help="hidden state size of each LSTM layer")
    parser.add_argument("--embedding_size", type=int, default=256, help="size of the character embeddings")
    parser.add_argument("--lstm_num_layers", type=int, default=1, help="number of stacked LSTM layers")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--num_epochs", type=int, default=20)
    parser.add_argument("--clip_grad_norm", type=float, default=5.0, help="maximum global gradient norm")
    parser.add_argument("--max_steps_per_epoch", type=int, default=None, help="cap on batches per epoch (smoke runs)")
    parser.add_argument("--sample_epochs", type=int, nargs="*", default=None,
                        help="epochs after which to write samples (default: 1, 5 and the last)")
    parser.add_argument("--long_sample_length", type=int, default=200,
                        help="length of the long greedy samples and of the temperature samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", type=str, default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--data_dir", type=str, default="data/",
                        help="folder where a --txt_file given by name only is looked up")
    parser.add_argument("--results_dir", type=str, default="results/part2")
    parser.add_argument("--resume", action="store_true", help="continue from <results_dir>/checkpoint.pt if it exists")
    return parser.parse_args(argv)


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_write_text(text: str, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def generate_samples(
    model: TextGenerationModel,
    chars: Sequence[str],
    generator: torch.Generator,
    long_length: int,
) -> list[dict]:
    """Greedy samples of length 30 and ``long_length`` and temperature samples of ``long_length``, 5 each."""
    settings = [(0.0, 30), (0.0, long_length)] + [(tau, long_length) for tau in SAMPLE_TEMPERATURES]
    records = []
    model.eval()
    for temperature, length in settings:
        indices = model.sample(NUM_SAMPLES, length, temperature, generator=generator)
        records.append({"temperature": temperature, "length": length, "texts": samples_to_strings(indices, chars)})
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
            lines += [text.replace("\n", "↵") for text in record["texts"]]
            lines += ["```", ""]
    return "\n".join(lines)


def train(args: argparse.Namespace) -> list[dict]:
    """Train (or resume) and return the per-epoch history."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = results_dir / "checkpoint.pt"

    if not os.path.isfile(args.txt_file) and os.path.isfile(os.path.join(args.data_dir, args.txt_file)):
        args.txt_file = os.path.join(args.data_dir, args.txt_file)
    torch.manual_seed(args.seed)
    dataset = TextDataset(args.txt_file, args.input_seq_length, seed=args.seed)
    args.vocabulary_size = dataset.vocabulary_size
    model = TextGenerationModel(args).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loader_generator = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True,
                        collate_fn=text_collate_fn, generator=loader_generator)
    if len(loader) == 0:
        raise ValueError(f"the text gives {len(dataset)} sequences, fewer than one batch of {args.batch_size}; "
                         "use a smaller --batch_size")
    criterion = nn.CrossEntropyLoss()

    history: list[dict] = []
    samples: list[dict] = []
    start_epoch = 1
    if args.resume and checkpoint_path.exists():
        checkpoint = torch.load(checkpoint_path, map_location=device, weights_only=False)
        saved = checkpoint["model_config"]
        wanted = {key: getattr(args, key) for key in MODEL_KEYS}
        if saved != wanted or checkpoint["chars"] != dataset.chars:
            raise ValueError(f"{checkpoint_path} holds a model {saved} for another text or size than {wanted}; "
                             "use another --results_dir or the same settings")
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        dataset.rng.bit_generator.state = checkpoint["dataset_rng"]
        loader_generator.set_state(checkpoint["loader_rng"])
        torch.set_rng_state(checkpoint["torch_rng"])
        history, samples = checkpoint["history"], checkpoint["samples"]
        start_epoch = checkpoint["epoch"] + 1
        print(f"resuming from {checkpoint_path} after epoch {checkpoint['epoch']}")

    sample_epochs = set(args.sample_epochs if args.sample_epochs is not None else (1, 5, args.num_epochs))
    steps_per_epoch = len(loader) if args.max_steps_per_epoch is None else min(len(loader), args.max_steps_per_epoch)
    writer = SummaryWriter(log_dir=str(results_dir / "tensorboard"), purge_step=(start_epoch - 1) * steps_per_epoch)
    title = f"{Path(args.txt_file).name}: LSTM {args.lstm_num_layers}x{args.lstm_hidden_dim}, embedding {args.embedding_size}"
    model.train()
    for epoch in range(start_epoch, args.num_epochs + 1):
        started = time.perf_counter()
        loss_sum, correct, count = 0.0, 0, 0
        progress = tqdm(loader, total=steps_per_epoch, desc=f"epoch {epoch}/{args.num_epochs}", disable=None, leave=False)
        for step, (inputs, targets) in enumerate(progress):
            if step == steps_per_epoch:
                break
            inputs, targets = inputs.to(device), targets.to(device)
            logits = model(inputs)
            loss = criterion(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad_norm)
            optimizer.step()

            batch_correct = (logits.detach().argmax(-1) == targets).sum().item()
            loss_sum += loss.item() * targets.numel()
            correct += batch_correct
            count += targets.numel()
            global_step = (epoch - 1) * steps_per_epoch + step
            writer.add_scalar("train/loss_step", loss.item(), global_step)
            writer.add_scalar("train/accuracy_step", batch_correct / targets.numel(), global_step)
            progress.set_postfix(loss=f"{loss.item():.3f}")
        progress.close()
        entry = {"epoch": epoch, "loss": loss_sum / count, "accuracy": correct / count,
                 "steps": steps_per_epoch, "seconds": time.perf_counter() - started}
        history.append(entry)
        writer.add_scalar("train/loss", entry["loss"], epoch)
        writer.add_scalar("train/accuracy", entry["accuracy"], epoch)
        print(f"epoch {epoch}/{args.num_epochs}: loss {entry['loss']:.4f}, accuracy {entry['accuracy']:.4f} "
              f"({entry['seconds']:.0f} s)", flush=True)

        if epoch in sample_epochs:
            sample_generator = torch.Generator().manual_seed(args.seed * 1000 + epoch)
            records = generate_samples(model, dataset.chars, sample_generator, args.long_sample_length)
            samples.append({"epoch": epoch, "records": records})
            _atomic_write_text(json.dumps(samples, indent=1, ensure_ascii=False), results_dir / "samples.json")
            _atomic_write_text(samples_markdown(samples, f"Samples: {title}"), results_dir / "samples.md")

        _atomic_save({
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "model_config": {key: getattr(args, key) for key in MODEL_KEYS},
            "chars": dataset.chars,
            "args": vars(args),
            "history": history,
            "samples": samples,
            "dataset_rng": dataset.rng.bit_generator.state,
            "loader_rng": loader_generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }, checkpoint_path)
        metrics = {"config": {key: value for key, value in vars(args).items()}, "epochs": history}
        _atomic_write_text(json.dumps(metrics, indent=1), results_dir / "metrics.json")
        writer.flush()
        plot_results_dir(results_dir)
    writer.close()
    return history


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    try:
        train(args)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    print(f"results in {args.results_dir}")


if __name__ == "__main__":
    main()
