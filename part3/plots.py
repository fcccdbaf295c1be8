"""Figures and table of the QM9 comparison: validation curves, test versus permuted-test loss."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import MaxNLocator  # noqa: E402

_LABELS = {"mlp": "MLP", "gnn": "GNN"}


def plot_validation_curves(results: Mapping[str, Mapping[str, Any]], path: str | Path) -> None:
    """Validation MSE (z-units, log scale) after each epoch, one line per model.

    Args:
        results: per model name, a dict with ``val_losses`` (one value per epoch).
        path: PNG file to write.
    """
    figure, axis = plt.subplots(figsize=(5.5, 3.8))
    for name, result in results.items():
        losses = result["val_losses"]
        axis.plot(range(1, len(losses) + 1), losses, marker="o", label=_LABELS.get(name, name))
    axis.set_xlabel("epoch")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_ylabel("validation MSE (z-scored target)")
    axis.set_yscale("log")
    axis.set_title("QM9 validation loss")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_test_vs_permuted(results: Mapping[str, Mapping[str, Any]], path: str | Path) -> None:
    """Grouped bars of test MSE on the original and on atom-permuted molecules (log scale), per model.

    Args:
        results: per model name, a dict with ``test_loss`` and ``permuted_test_loss``.
        path: PNG file to write.
    """
    names = list(results)
    width = 0.38
    figure, axis = plt.subplots(figsize=(5.5, 3.8))
    for offset, key, label in ((-width / 2, "test_loss", "test"), (width / 2, "permuted_test_loss", "permuted test")):
        values = [results[name][key] for name in names]
        bars = axis.bar([i + offset for i in range(len(names))], values, width, label=label)
        axis.bar_label(bars, labels=[f"{v:.3g}" for v in values], fontsize=8)
    axis.set_xticks(range(len(names)), [_LABELS.get(name, name) for name in names])
    axis.set_ylabel("test MSE (z-scored target)")
    axis.set_yscale("log")
    axis.set_title("Atom permutation: test loss")
    axis.margins(y=0.15)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def results_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown table of test and permuted-test MSE (z-units) and MAE (eV), one row per model."""
    lines = [
        "| model | parameters | best epoch | test MSE (z) | permuted test MSE (z) "
        "| test MAE (eV) | permuted test MAE (eV) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {_LABELS.get(name, name)} | {r['num_parameters']:,} | {r['best_epoch']} | {r['test_loss']:.5f} "
            f"| {r['permuted_test_loss']:.5f} | {r['test_mae_ev']:.4f} | {r['permuted_test_mae_ev']:.4f} |"
        )
    return "\n".join(lines) + "\n"
