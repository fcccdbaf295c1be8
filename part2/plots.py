"""Figures of part 2: the text model's training curves and the palindrome sweep.

The trainer passes its per-step values to ``plot_training_curves`` (no log files are re-read); a
finished or running results folder is redrawn from its ``metrics.json``::

    python -m part2.plots --results_dir results/part2/grimm

``metrics.json`` of ``part2.train``: ``epochs`` (one entry per finished epoch with ``epoch``,
``loss``, ``accuracy``, ``steps``), ``steps`` (``{"loss": [...], "accuracy": [...]}``, one value
per optimisation step in order) and ``config``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common.cli import make_parser, run_cli  # noqa: E402
from common.io import read_json  # noqa: E402
from common.runs import ensure_writable  # noqa: E402
from common.runtime import UserError  # noqa: E402

RUNNING_MEAN_STEPS = 20
MODEL_COLORS = {"rnn": "tab:blue", "lstm": "tab:orange"}
CHANCE = 0.1  # ten digits


def running_mean(values: Sequence[float], window: int) -> np.ndarray:
    """Mean of the last ``window`` values at every position (fewer at the start)."""
    values = np.asarray(values, dtype=float)
    sums = np.cumsum(np.concatenate([[0.0], values]))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(0, ends - window)
    return (sums[ends] - sums[starts]) / (ends - starts)


StepCurves = dict[str, tuple[Sequence[int], Sequence[float]]]


def plot_training_curves(
    epochs: Sequence[dict[str, Any]],
    path: str | os.PathLike,
    title: str = "",
    step_curves: StepCurves | None = None,
    steps_per_epoch: int | None = None,
) -> Path:
    """Save the text model's training loss and accuracy as a PNG; returns ``path``.

    Args:
        epochs: per-epoch entries with ``epoch``, ``loss``, ``accuracy`` (markers at the end of each epoch).
        path: output file.
        title: figure title.
        step_curves: per-step values ``{"loss": (steps, values), "accuracy": (steps, values)}`` (0-based global
            steps; step ``s`` ends at epoch ``(s + 1) / steps_per_epoch``), drawn as a running mean of
            ``RUNNING_MEAN_STEPS`` steps.
        steps_per_epoch: to place the steps on the epoch axis (default: ``epochs[0]["steps"]``; without
            either, the x axis counts steps and the epoch markers are left out).
    """
    if steps_per_epoch is None and epochs:
        steps_per_epoch = epochs[0].get("steps")
    step_curves = step_curves or {}
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, name, color in zip(axes, ("loss", "accuracy"), ("tab:blue", "tab:green")):
        steps, values = step_curves.get(name, ((), ()))
        if len(values):
            x = (np.asarray(steps) + 1) / (steps_per_epoch or 1)
            label = f"per step (running mean of {RUNNING_MEAN_STEPS})"
            ax.plot(x, running_mean(values, RUNNING_MEAN_STEPS), color=color, alpha=0.5, lw=1, label=label)
        if epochs and steps_per_epoch:
            ax.plot([e["epoch"] for e in epochs], [e[name] for e in epochs], "o", color=color, label="epoch mean")
        ax.set_xlabel("epoch" if steps_per_epoch else "step")
        ax.set_ylabel("cross-entropy loss (train)" if name == "loss" else "next-character accuracy (train)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def _run_title(config: dict[str, Any]) -> str:
    try:
        return (
            f"{Path(config['txt_file']).name}: LSTM {config['lstm_num_layers']}x{config['lstm_hidden_dim']}, "
            f"embedding {config['embedding_size']}"
        )
    except (KeyError, TypeError):
        return ""


def plot_results_dir(results_dir: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """Redraw the curves of a ``part2.train`` results folder from its ``metrics.json``; returns the PNG path."""
    results_dir = Path(results_dir)
    metrics_path = results_dir / "metrics.json"
    if not metrics_path.is_file():
        raise UserError(f"no metrics.json in {results_dir}; pass the --results_dir of a part2.train run")
    metrics = read_json(metrics_path, kind="part2.train metrics")
    if not isinstance(metrics, dict):
        raise UserError(
            f"{metrics_path} is not a part2.train metrics file; pass the --results_dir of a part2.train run"
        )
    epochs = metrics.get("epochs") or []
    per_step = metrics.get("steps") or {}
    if not epochs and not per_step.get("loss"):
        raise UserError(f"{metrics_path} holds no training steps yet; plot it after the first steps are logged")
    output = Path(output) if output is not None else results_dir / "curves.png"
    ensure_writable(output.parent)
    step_curves = {name: (range(len(values)), values) for name, values in per_step.items()}
    return plot_training_curves(epochs, output, _run_title(metrics.get("config") or {}), step_curves)


def curve_label(model: str, config: dict[str, Any]) -> str:
    """Legend label of one model's palindrome curve, naming the initialisation of its sweep."""
    if model == "rnn":
        return f"vanilla RNN, {config.get('rnn_init', 'orthogonal')} init"
    if model == "lstm":
        return f"LSTM, forget-gate bias {config['lstm_forget_bias']:g}"
    return model


def _plot_seeds(ax: Any, lengths: list[int], per_seed: list[list[float | None]], style: dict[str, Any]) -> None:
    """Mean over the seeds (line), their minimum-maximum (band) and every seed (faint dots); None is left out."""
    present = [[value for value in values if value is not None] for values in per_seed]
    means = [float(np.mean(values)) if values else np.nan for values in present]
    lows = [min(values) if values else np.nan for values in present]
    highs = [max(values) if values else np.nan for values in present]
    ax.plot(lengths, means, marker="o", markersize=3, **style)
    ax.fill_between(lengths, lows, highs, color=style["color"], alpha=0.15, linewidth=0)
    dots = [(length, value) for length, values in zip(lengths, present) for value in values]
    if dots:
        ax.scatter(*zip(*dots), s=14, color=style["color"], alpha=0.4, linewidths=0)


def plot_palindrome_sweeps(sweeps: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Held-out accuracy (top) and steps to 99 % training accuracy (bottom) against L, saved as PNG at ``path``.

    ``sweeps`` are ``results.json`` contents of ``part2.palindromes``: the first drawn solid, the others
    (comparisons with the same budget) dashed. Each curve is the mean over the seeds with a min-max band
    and a faint dot per seed; below, ``k/n`` marks lengths where only k of n seeds reached 99 %.
    """
    config = sweeps[0]["config"]
    fig, (ax_acc, ax_steps) = plt.subplots(2, 1, figsize=(6.4, 7.0), sharex=True, height_ratios=(3, 2))
    for index, sweep in enumerate(sweeps):
        for model, per_length in sweep["summary"].items():
            lengths = sorted(int(length) for length in per_length)
            entries = [per_length[str(length)] for length in lengths]
            style = {"color": MODEL_COLORS.get(model), "linestyle": "-" if index == 0 else "--"}
            num_seeds = max(len(entry["seeds"]) for entry in entries)
            label = f"{curve_label(model, sweep['config'])} ({num_seeds} seed{'s' * (num_seeds > 1)})"
            _plot_seeds(ax_acc, lengths, [entry["accuracy"] for entry in entries], {**style, "label": label})
            _plot_seeds(ax_steps, lengths, [entry["steps_to_99"] for entry in entries], style)
            for length, entry in zip(lengths, entries):
                if entry["steps_to_99_reached"] < len(entry["seeds"]):
                    y = entry["steps_to_99_mean"] or 0.92 * config["train_steps"]
                    text = f"{entry['steps_to_99_reached']}/{len(entry['seeds'])}"
                    ax_steps.annotate(text, (length, y), textcoords="offset points", xytext=(3, 4), fontsize=7,
                                      color=style["color"])  # fmt: skip
    ax_acc.axhline(CHANCE, color="gray", linestyle=":", linewidth=1, label="chance")
    ax_acc.set_ylabel("accuracy on held-out palindromes")
    ax_acc.set_ylim(0.0, 1.05)
    ax_acc.set_title(
        f"{config['train_steps']} steps of batch {config['batch_size']} per model, L and seed, "
        f"{config['optimizer']} lr {config['lr']:g}, {config['num_hidden']} hidden units\n"
        "line: mean over seeds, band: min to max, dots: single seeds",
        fontsize=9,
    )
    ax_acc.legend(fontsize=8)
    ax_steps.set_ylabel("steps to 99 % train accuracy")
    ax_steps.set_ylim(0, config["train_steps"])
    ax_steps.set_xlabel("palindrome length L (the model reads L - 1 digits)")
    for ax in (ax_acc, ax_steps):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def build_parser() -> argparse.ArgumentParser:
    """Options of ``python -m part2.plots``."""
    parser = make_parser("python -m part2.plots", __doc__)
    parser.add_argument("--results_dir", default="results/part2", help="results folder of a part2.train run")
    parser.add_argument("--output", default=None, help="PNG to write (default: <results_dir>/curves.png)")
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    """Redraw ``curves.png`` of a ``part2.train`` results folder (e.g. while the run is going)."""
    args = build_parser().parse_args(argv)
    path = plot_results_dir(args.results_dir, args.output)
    print(path)
    return path


if __name__ == "__main__":
    run_cli(main)
