"""Figures of Question 1.2: accuracy against severity (with 95 % intervals), CE and RCE bars per model."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from part1.corruptions import SEVERITIES  # noqa: E402
from part1.model import MODEL_NAMES  # noqa: E402

LABELS = {"gaussian_noise": "Gaussian noise", "gaussian_blur": "Gaussian blur", "contrast": "contrast", "jpeg": "JPEG"}


def model_order(names: Iterable[str]) -> list[str]:
    """The assignment's model order, unknown names last."""
    names = list(names)
    known = [n for n in MODEL_NAMES if n in names]
    return known + sorted(n for n in names if n not in known)


def _severity_axes(ax: plt.Axes, result: dict[str, Any], score: dict[str, Any], title: str) -> None:
    for corruption, accuracies in result["corrupted_accuracy"].items():
        intervals = score["corrupted_interval"][corruption]
        low = [100 * (a - lo) for a, (lo, _) in zip(accuracies, intervals)]
        high = [100 * (hi - a) for a, (_, hi) in zip(accuracies, intervals)]
        values = [100 * a for a in accuracies]
        ax.errorbar(
            SEVERITIES, values, yerr=[low, high], marker="o", capsize=3, label=LABELS.get(corruption, corruption)
        )
    lo, hi = score["clean_interval"]
    ax.axhline(100 * result["clean_accuracy"], color="black", linestyle="--", label="clean")
    ax.axhspan(100 * lo, 100 * hi, color="black", alpha=0.1)
    ax.set(title=title, xlabel="severity", ylabel="test accuracy (%)", xticks=SEVERITIES)
    ax.grid(alpha=0.3)


def plot_severity(result: dict[str, Any], score: dict[str, Any], path: Path) -> None:
    """Question 1.2(a): one model's accuracy against severity, one line per corruption, 95 % intervals."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    _severity_axes(ax, result, score, f"{result['model_name']}: accuracy under corruption")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_severity_grid(results: dict[str, dict[str, Any]], scores: dict[str, dict[str, Any]], path: Path) -> None:
    """The severity plot of every model, side by side on one y scale."""
    models = model_order(results)
    cols = min(3, len(models))
    rows = math.ceil(len(models) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False, sharey=True)
    for ax, model in zip(axes.flat, models):
        _severity_axes(ax, results[model], scores[model], model)
    for ax in list(axes.flat)[len(models) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels))
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_ce_rce(scores: dict[str, dict[str, Any]], path: Path) -> None:
    """Grouped bars of CE (left) and RCE (right) per corruption and their mean; unreliable ratios hatched."""
    models = model_order(scores)
    corruptions = list(next(iter(scores.values()))["ce"])
    groups = [LABELS.get(c, c) for c in corruptions] + ["mean"]
    width = 0.8 / len(models)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    for ax, key, total, title in ((axes[0], "ce", "mce", "CE"), (axes[1], "rce", "relative_mce", "RCE")):
        reliable = [scores[models[0]]["reliable"][key][c] for c in corruptions]
        reliable.append(all(reliable))
        for i, model in enumerate(models):
            values = [scores[model][key][c] for c in corruptions] + [scores[model][total]]
            x = [g + (i - (len(models) - 1) / 2) * width for g in range(len(groups))]
            bars = ax.bar(x, values, width, label=model)
            for bar, ok in zip(bars, reliable):
                bar.set_hatch("" if ok else "//")
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        ax.set(title=f"{title} (ResNet-18 = 1; hatched: denominator too small)", xticks=range(len(groups)))
        ax.set_xticklabels(groups)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(models))
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
