"""Training curves of the text model: per-step loss and accuracy (from TensorBoard) with the per-epoch means.

``part2.train`` redraws ``curves.png`` after every epoch; to redraw it from a
results folder, e.g. while a run is still going (the per-step curves then
include the unfinished epoch)::

    python -m part2.curves --results_dir results/part2/grimm
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Optional, Sequence

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

StepCurves = dict[str, tuple[np.ndarray, np.ndarray]]


def read_step_scalars(tensorboard_dir: str | os.PathLike) -> StepCurves:
    """The per-step ``train/loss_step`` and ``train/accuracy_step`` scalars as ``{name: (steps, values)}``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(tensorboard_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    curves = {}
    for name in ("loss", "accuracy"):
        tag = f"train/{name}_step"
        if tag in accumulator.Tags()["scalars"]:
            events = accumulator.Scalars(tag)
            curves[name] = (np.array([e.step for e in events]), np.array([e.value for e in events]))
    return curves


def _running_mean(values: np.ndarray, window: int) -> np.ndarray:
    window = max(1, min(window, len(values)))
    kernel = np.ones(window) / window
    head = np.cumsum(values[: window - 1]) / np.arange(1, window)
    return np.concatenate([head, np.convolve(values, kernel, mode="valid")])


def plot_training_curves(
    history: list[dict],
    path: str | os.PathLike,
    title: str = "",
    step_curves: Optional[StepCurves] = None,
    steps_per_epoch: Optional[int] = None,
) -> None:
    """Save loss and accuracy against epochs as a PNG.

    Args:
        history: per-epoch entries with ``epoch``, ``loss``, ``accuracy`` (drawn as markers at the end of each epoch).
        path: output file.
        title: figure title.
        step_curves: optional per-step values ``{"loss": (steps, values), "accuracy": ...}``,
            drawn as a running mean over 20 steps; needs ``steps_per_epoch``.
        steps_per_epoch: to place the steps on the epoch axis.
    """
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, name, color in zip(axes, ("loss", "accuracy"), ("tab:blue", "tab:green")):
        if step_curves and name in step_curves and steps_per_epoch:
            steps, values = step_curves[name]
            ax.plot((steps + 1) / steps_per_epoch, _running_mean(values, 20), color=color, alpha=0.5, lw=1,
                    label="per step (running mean of 20)")
        if history:
            ax.plot([e["epoch"] for e in history], [e[name] for e in history], "o", color=color, label="mean over the epoch (at its end)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("cross-entropy loss (train)" if name == "loss" else "next-character accuracy (train)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_results_dir(results_dir: str | os.PathLike, output: Optional[str | os.PathLike] = None) -> Path:
    """Redraw the curves of a ``part2.train`` results folder (``metrics.json`` and ``tensorboard/``); returns the PNG path."""
    results_dir = Path(results_dir)
    metrics_path = results_dir / "metrics.json"
    history, steps_per_epoch, title = [], None, ""
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        history = metrics["epochs"]
        steps_per_epoch = history[0]["steps"] if history else None
        config = metrics["config"]
        title = (f"{Path(config['txt_file']).name}: LSTM {config['lstm_num_layers']}x{config['lstm_hidden_dim']}, "
                 f"embedding {config['embedding_size']}")
    step_curves = read_step_scalars(results_dir / "tensorboard")
    if not history and not step_curves:
        raise FileNotFoundError(f"no metrics.json or TensorBoard logs in {results_dir}; is it a part2.train results folder?")
    if steps_per_epoch is None:
        raise ValueError(f"{metrics_path} is missing: the number of steps per epoch is unknown until epoch 1 has ended")
    output = Path(output) if output is not None else results_dir / "curves.png"
    plot_training_curves(history, output, title, step_curves, steps_per_epoch)
    return output


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results_dir", type=str, default="results/part2")
    parser.add_argument("--output", type=str, default=None, help="default: <results_dir>/curves.png")
    args = parser.parse_args(argv)
    try:
        print(plot_results_dir(args.results_dir, args.output))
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
