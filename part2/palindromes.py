"""Palindromes: how far back can a vanilla RNN and an LSTM remember?

A palindrome of length ``L`` is made of ``ceil(L / 2)`` random digits followed
by their mirror image. The model reads the first ``L - 1`` digits and predicts
the last one, which equals the first: it has to keep one digit in memory over
``L - 2`` time steps. Both models are trained, for every ``L`` of a sweep, with
the same fixed budget, and their accuracy on fresh palindromes is plotted
against ``L``.

Run from the repository root::

    python -m part2.palindromes --min_length 5 --max_length 50 --length_step 5 \\
        --train_steps 1000 --num_hidden 64 --results_dir results/part2/palindromes

The sweep writes ``results.json`` (atomically, after every (model, L) pair, so
an interrupted sweep resumes where it stopped when run again with the same
arguments), TensorBoard logs and, at the end, ``palindrome_accuracy.png`` into
``--results_dir``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset
from tqdm import tqdm

from part2.palindrome_model import PalindromeLSTM, VanillaRNN

NUM_DIGITS = 10
MODEL_LABELS = {"rnn": "vanilla RNN", "lstm": "LSTM"}
MODEL_COLORS = {"rnn": "tab:blue", "lstm": "tab:orange"}
# Training and held-out palindromes come from two generator families, ``stream_seed(seed, stream)``.
# torch's CPU generator keeps only the low 32 bits of its seed, so an offset such as seed + 2**32
# silently gives the training stream back. (At short L, with only 10 ** ceil(L / 2) palindromes,
# most held-out palindromes also occur in training all the same.)
TRAIN_STREAM, EVAL_STREAM = "train", "eval"
_STREAM_IDS = {TRAIN_STREAM: 0, EVAL_STREAM: 1}
# Arguments that change the results: a resumed sweep must use the same ones.
CONFIG_KEYS = (
    "train_steps", "batch_size", "lr", "num_hidden", "rnn_init", "lstm_forget_bias", "seed", "clip_grad_norm",
    "optimizer", "eval_batches", "data_streams",
)
# Recorded in the config so that a sweep whose held-out set was the training stream is never resumed.
DATA_STREAMS = "SeedSequence((seed, stream))"
# Arguments that a comparison sweep drawn in the same figure must share.
BUDGET_KEYS = ("train_steps", "batch_size", "lr", "num_hidden", "clip_grad_norm", "optimizer", "eval_batches")
# Initial forget-gate bias of the LSTM classifier: with the LSTM's own +1 it
# stays at chance for L = 50 within 1500 steps, with 3 it reaches 99 % at
# L = 50 in about 700 (see PalindromeLSTM and assets/part2/README_palindromes.md).
DEFAULT_LSTM_FORGET_BIAS = 3.0


def generate_palindromes(
    batch_size: int,
    seq_length: int,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Random palindromes of digits 0-9, ``[batch_size, seq_length]`` (int64).

    The first ``ceil(L / 2)`` digits are uniform; the rest mirror the first
    ``floor(L / 2)`` of them, so for odd ``L`` the middle digit is not repeated.
    """
    if seq_length < 2:
        raise ValueError(f"palindrome length must be at least 2 (one input digit and the target), got {seq_length}")
    left = torch.randint(0, NUM_DIGITS, (batch_size, math.ceil(seq_length / 2)), generator=generator)
    right = left[:, : seq_length // 2].flip(1)
    return torch.cat([left, right], dim=1)


def stream_seed(seed: int, stream: str) -> int:
    """The 32-bit seed of data stream ``stream`` (``"train"`` or ``"eval"``) of experiment seed ``seed`` (>= 0).

    Hashed by ``numpy.random.SeedSequence``: the streams of one seed, and of different seeds, are distinct
    and independent of ``torch.manual_seed(seed)``, which initialises the model.
    """
    return int(np.random.SeedSequence([seed, _STREAM_IDS[stream]]).generate_state(1)[0])


class PalindromeDataset(Dataset):
    """Endless palindromes of length ``seq_length``, split into inputs (first ``L - 1`` digits) and target (last digit).

    ``dataset[idx]`` is a deterministic function of ``(seed, idx)`` and returns
    ``(inputs [L - 1], target [])`` as int64 tensors, for use with a
    ``DataLoader``. ``dataset.batch(batch_size)`` draws a whole batch
    ``(inputs [B, L - 1], targets [B])`` with one vectorised call from the
    dataset's own random stream (seeded by ``stream_seed(seed, stream)``), which is what training uses.

    Args:
        seq_length: full palindrome length ``L`` (the model sees ``L - 1`` digits).
        seed: experiment seed (>= 0).
        stream: ``"train"`` or ``"eval"``: the two streams of one seed come from different generators
            (they share palindromes only by chance, which is likely only at short ``L``).
    """

    def __init__(self, seq_length: int, seed: int = 0, stream: str = TRAIN_STREAM) -> None:
        if seq_length < 2:
            raise ValueError(f"palindrome length must be at least 2 (one input digit and the target), got {seq_length}")
        self.seq_length = seq_length
        self.seed = seed
        self.generator = torch.Generator().manual_seed(stream_seed(seed, stream))

    def __len__(self) -> int:
        # There are 10 ** ceil(L / 2) palindromes, more than any index type holds for long L.
        return sys.maxsize

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + idx)
        palindrome = generate_palindromes(1, self.seq_length, generator)[0]
        return palindrome[:-1], palindrome[-1]

    def generate_palindrome(self) -> torch.Tensor:
        """One palindrome ``[L]`` from the dataset's random stream."""
        return generate_palindromes(1, self.seq_length, self.generator)[0]

    def batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``batch_size`` palindromes of the stream: inputs ``[B, L - 1]``, targets ``[B]``."""
        palindromes = generate_palindromes(batch_size, self.seq_length, self.generator)
        return palindromes[:, :-1], palindromes[:, -1]


def build_model(
    name: str,
    seq_length: int,
    num_hidden: int,
    rnn_init: str = "orthogonal",
    lstm_forget_bias: float = DEFAULT_LSTM_FORGET_BIAS,
) -> nn.Module:
    """A palindrome classifier (``"rnn"`` or ``"lstm"``) over one-hot digits with ``num_hidden`` units."""
    if name == "rnn":
        return VanillaRNN(seq_length - 1, NUM_DIGITS, num_hidden, NUM_DIGITS, init=rnn_init)
    if name == "lstm":
        return PalindromeLSTM(seq_length - 1, NUM_DIGITS, num_hidden, NUM_DIGITS, forget_bias=lstm_forget_bias)
    raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODEL_LABELS)}")


@torch.no_grad()
def evaluate(
    model: nn.Module, dataset: PalindromeDataset, num_batches: int, batch_size: int, device: torch.device
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``num_batches`` fresh batches of ``dataset``."""
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for _ in range(num_batches):
        inputs, targets = (t.to(device) for t in dataset.batch(batch_size))
        logits = model(inputs)
        total_loss += F.cross_entropy(logits, targets, reduction="sum").item()
        correct += (logits.argmax(-1) == targets).sum().item()
        count += targets.numel()
    return total_loss / count, correct / count


def train_palindrome(
    model_name: str,
    seq_length: int,
    *,
    train_steps: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    num_hidden: int = 64,
    rnn_init: str = "orthogonal",
    lstm_forget_bias: float = DEFAULT_LSTM_FORGET_BIAS,
    seed: int = 0,
    device: str | torch.device = "cpu",
    clip_grad_norm: float = 10.0,
    optimizer: str = "adam",
    eval_batches: int = 20,
    log_dir: Optional[str | Path] = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train one model on palindromes of length ``seq_length`` for ``train_steps`` steps and evaluate it.

    Every step draws a fresh batch, minimises the mean cross-entropy of the
    last digit and clips the gradient norm to ``clip_grad_norm``. At the end
    the model is evaluated on ``eval_batches`` batches of a held-out stream.

    Returns:
        ``accuracy`` and ``loss`` on the held-out batches, ``train_loss`` and
        ``train_accuracy`` (means over the last 100 steps), ``steps``,
        ``seconds`` (wall time of training and evaluation) and ``history``
        (``[step, train_loss, train_accuracy]`` averaged over ~50 windows).
    """
    device = torch.device(device)
    torch.manual_seed(seed)
    model = build_model(model_name, seq_length, num_hidden, rnn_init, lstm_forget_bias).to(device)
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    elif optimizer == "rmsprop":
        opt = torch.optim.RMSprop(model.parameters(), lr=lr)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose adam or rmsprop")
    train_data = PalindromeDataset(seq_length, seed)
    eval_data = PalindromeDataset(seq_length, seed, EVAL_STREAM)
    writer = None
    if log_dir is not None:
        # Imported here: TensorBoard is slow to import and only the CLI writes logs.
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(log_dir))

    log_every = max(1, train_steps // 50)
    losses, accuracies, history = [], [], []
    start = time.perf_counter()
    model.train()
    steps = range(1, train_steps + 1)
    bar = tqdm(steps, desc=f"{model_name} L={seq_length}", leave=False, disable=not progress or None)
    for step in bar:
        inputs, targets = (t.to(device) for t in train_data.batch(batch_size))
        logits = model(inputs)
        loss = F.cross_entropy(logits, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        opt.step()
        losses.append(loss.item())
        accuracies.append((logits.argmax(-1) == targets).float().mean().item())
        if step % log_every == 0 or step == train_steps:
            window = slice(-min(log_every, len(losses)), None)
            mean_loss = sum(losses[window]) / len(losses[window])
            mean_acc = sum(accuracies[window]) / len(accuracies[window])
            history.append([step, mean_loss, mean_acc])
            bar.set_postfix(loss=f"{mean_loss:.3f}", acc=f"{mean_acc:.3f}")
            if writer is not None:
                writer.add_scalar("train/loss", mean_loss, step)
                writer.add_scalar("train/accuracy", mean_acc, step)
    eval_loss, eval_acc = evaluate(model, eval_data, eval_batches, batch_size, device)
    seconds = time.perf_counter() - start
    if writer is not None:
        writer.add_scalar("eval/loss", eval_loss, train_steps)
        writer.add_scalar("eval/accuracy", eval_acc, train_steps)
        writer.close()
    tail = min(100, len(losses))
    return {
        "accuracy": eval_acc,
        "loss": eval_loss,
        "train_loss": sum(losses[-tail:]) / tail,
        "train_accuracy": sum(accuracies[-tail:]) / tail,
        "steps": train_steps,
        "seconds": seconds,
        "history": history,
    }


def write_json_atomic(data: dict[str, Any], path: Path) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file in the same folder and ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        # mkstemp creates the file readable by its owner only; results are meant to be shared.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def steps_to_accuracy(history: Sequence[Sequence[float]], threshold: float = 0.99) -> Optional[int]:
    """First logged step whose windowed training accuracy reaches ``threshold`` (``None`` if it never does)."""
    return next((int(step) for step, _, accuracy in history if accuracy >= threshold), None)


def curve_label(name: str, config: dict[str, Any]) -> str:
    """Legend label of one model's curve, naming the initialisation that the sweep used."""
    if name == "rnn":
        return f"vanilla RNN, {config.get('rnn_init', 'orthogonal')} init"
    if name == "lstm":
        return f"LSTM, forget-gate bias {config['lstm_forget_bias']:g}"
    return name


def load_sweep(results_dir: str | Path) -> dict[str, Any]:
    """The ``results.json`` of a sweep folder."""
    path = Path(results_dir) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"no results.json in {results_dir}; run a sweep with --results_dir {results_dir} first")
    return json.loads(path.read_text())


def plot_accuracy(sweeps: Sequence[dict[str, Any]], path: Path) -> None:
    """Held-out accuracy (top) and steps to 99 % training accuracy (bottom) against L, saved as PNG at ``path``.

    ``sweeps`` are ``results.json`` contents: the first sweep is drawn with
    solid lines, the others (comparisons with the same budget) dashed; one
    line per model. The bottom panel leaves a gap where a model never reached 99 %.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config = sweeps[0]["config"]
    fig, (ax_acc, ax_steps) = plt.subplots(2, 1, figsize=(6.4, 6.8), sharex=True, height_ratios=(3, 2))
    for index, sweep in enumerate(sweeps):
        for name, per_length in sweep["results"].items():
            lengths = sorted(int(length) for length in per_length)
            runs = [per_length[str(length)] for length in lengths]
            label = curve_label(name, sweep["config"])
            if sweep["config"]["seed"] != config["seed"]:
                label += f", seed {sweep['config']['seed']}"
            style: dict[str, Any] = dict(marker="o", color=MODEL_COLORS.get(name), linestyle="-")
            if index > 0:
                style.update(linestyle="--", markerfacecolor="white")
            ax_acc.plot(lengths, [run["accuracy"] for run in runs], label=label, **style)
            steps = [steps_to_accuracy(run["history"]) for run in runs]
            ax_steps.plot(lengths, [math.nan if s is None else s for s in steps], **style)
    ax_acc.axhline(1.0 / NUM_DIGITS, color="gray", linestyle=":", linewidth=1, label="chance")
    ax_acc.set_ylabel("accuracy on held-out palindromes")
    ax_acc.set_ylim(0.0, 1.05)
    ax_acc.set_title(
        f"{config['train_steps']} steps of batch {config['batch_size']} per model and L, "
        f"{config['optimizer']} lr {config['lr']:g}, {config['num_hidden']} hidden units",
        fontsize=10,
    )
    ax_acc.legend(fontsize=9)
    ax_steps.set_ylabel("steps to 99 % train accuracy")
    ax_steps.set_ylim(0, config["train_steps"])
    ax_steps.set_xlabel("palindrome length L (the model reads L - 1 digits)")
    for ax in (ax_acc, ax_steps):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def sweep_lengths(min_length: int, max_length: int, length_step: int) -> list[int]:
    """The palindrome lengths ``min_length, min_length + length_step, ... <= max_length``."""
    if min_length < 2:
        raise ValueError(f"--min_length must be at least 2, got {min_length}")
    if max_length < min_length:
        raise ValueError(f"--max_length ({max_length}) must not be below --min_length ({min_length})")
    if length_step < 1:
        raise ValueError(f"--length_step must be at least 1, got {length_step}")
    return list(range(min_length, max_length + 1, length_step))


def run_sweep(args: argparse.Namespace) -> dict[str, Any]:
    """Train every model of ``args.models`` at every length of the sweep, skipping pairs already in results.json."""
    lengths = sweep_lengths(args.min_length, args.max_length, args.length_step)
    if args.train_steps < 1:
        raise ValueError(f"--train_steps must be at least 1, got {args.train_steps}")
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    results_path = results_dir / "results.json"
    config = {key: getattr(args, key) for key in CONFIG_KEYS if key != "data_streams"}
    config["data_streams"] = DATA_STREAMS
    data: dict[str, Any] = {"config": config, "results": {name: {} for name in args.models}}
    if results_path.exists():
        previous = json.loads(results_path.read_text())
        if previous.get("config") != config:
            raise ValueError(
                f"{results_path} holds a sweep with a different configuration ({previous.get('config')}); "
                "rerun with the same arguments to resume, or pass another --results_dir"
            )
        for name, per_length in previous["results"].items():
            data["results"].setdefault(name, {}).update(per_length)
    comparisons = [load_sweep(folder) for folder in args.compare_dirs]
    for folder, sweep in zip(args.compare_dirs, comparisons):
        if any(sweep["config"][key] != config[key] for key in BUDGET_KEYS):
            raise ValueError(
                f"the sweep in {folder} used another budget ({sweep['config']}); compare only sweeps with the same "
                + ", ".join(f"--{key}" for key in BUDGET_KEYS)
            )

    pairs = [(name, length) for length in lengths for name in args.models]
    todo = [pair for pair in pairs if str(pair[1]) not in data["results"][pair[0]]]
    if len(todo) < len(pairs):
        print(f"resuming: {len(pairs) - len(todo)} of {len(pairs)} (model, L) pairs already in {results_path}")
    bar = tqdm(todo, desc="sweep", disable=None)
    for name, length in bar:
        bar.set_postfix(model=name, L=length)
        result = train_palindrome(
            name,
            length,
            train_steps=args.train_steps,
            batch_size=args.batch_size,
            lr=args.lr,
            num_hidden=args.num_hidden,
            rnn_init=args.rnn_init,
            lstm_forget_bias=args.lstm_forget_bias,
            seed=args.seed,
            device=args.device,
            clip_grad_norm=args.clip_grad_norm,
            optimizer=args.optimizer,
            eval_batches=args.eval_batches,
            log_dir=results_dir / "tensorboard" / f"{name}_L{length}",
        )
        data["results"][name][str(length)] = result
        write_json_atomic(data, results_path)
        tqdm.write(
            f"{MODEL_LABELS[name]:>11} L={length:3d}: accuracy {result['accuracy']:.4f}, "
            f"loss {result['loss']:.4f}, {result['seconds']:.1f} s"
        )
    plot_accuracy([data, *comparisons], results_dir / "palindrome_accuracy.png")
    return data


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--min_length", type=int, default=5, help="shortest palindrome length L")
    parser.add_argument("--max_length", type=int, default=50, help="longest palindrome length L")
    parser.add_argument("--length_step", type=int, default=5, help="step between swept lengths")
    parser.add_argument(
        "--models", nargs="+", choices=sorted(MODEL_LABELS), default=["rnn", "lstm"], help="models to sweep"
    )
    parser.add_argument("--train_steps", type=int, default=1000, help="training steps per (model, L)")
    parser.add_argument("--batch_size", type=int, default=128, help="palindromes per training step")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    parser.add_argument("--optimizer", choices=["adam", "rmsprop"], default="adam", help="optimizer of both models")
    parser.add_argument("--num_hidden", type=int, default=64, help="hidden state size of both models")
    parser.add_argument(
        "--rnn_init",
        choices=["orthogonal", "uniform"],
        default="orthogonal",
        help="vanilla RNN initialisation: orthogonal W_hh, or U(-1/sqrt(H), 1/sqrt(H)) as torch.nn.RNN",
    )
    parser.add_argument(
        "--lstm_forget_bias",
        type=float,
        default=DEFAULT_LSTM_FORGET_BIAS,
        help="centre of the LSTM's initial forget-gate bias (1 is the LSTM's own initialisation)",
    )
    parser.add_argument("--clip_grad_norm", type=float, default=10.0, help="maximum gradient norm")
    parser.add_argument("--eval_batches", type=int, default=20, help="held-out batches for the final accuracy")
    parser.add_argument(
        "--compare_dirs",
        nargs="*",
        default=[],
        help="results folders of sweeps with the same budget (e.g. --rnn_init uniform) to draw dashed in the figure",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the initialisation and the data streams")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    parser.add_argument(
        "--results_dir",
        default="results/part2/palindromes",
        help="folder of results.json, the figure and TensorBoard logs",
    )
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    try:
        data = run_sweep(args)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    results_dir = Path(args.results_dir)
    print(f"results in {results_dir / 'results.json'} and {results_dir / 'palindrome_accuracy.png'}")
    for name, per_length in data["results"].items():
        lengths = sorted(per_length, key=int)
        curve = ", ".join(f"L={length}: {per_length[length]['accuracy']:.3f}" for length in lengths)
        print(f"{MODEL_LABELS.get(name, name)}: {curve}")


if __name__ == "__main__":
    main()
