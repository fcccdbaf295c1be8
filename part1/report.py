"""Tables and figures of Question 1.2 from the results JSON files of any set of models.

Usage::

    python -m part1.report --results_dir results/part1 [--out_dir results/part1]

Writes into ``out_dir``:

* ``ce_rce_table.md`` / ``ce_rce_table.json``: clean accuracy, CE and RCE per model and corruption,
  mCE and relative mCE (ResNet-18 = 1 by definition), and the accuracies per severity;
* ``resnet18_accuracy_vs_severity.png``: Question 1.2(a), ResNet-18's accuracy against severity,
  one line per corruption, clean accuracy as a dashed reference;
* ``accuracy_vs_severity_grid.png``: the same plot for every model;
* ``ce_rce_bars.png``: CE and RCE per corruption, one bar per model.
"""
from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from part1.corruptions import SEVERITIES  # noqa: E402
from part1.metrics import BASELINE, compute_ce_rce, load_results  # noqa: E402
from part1.model import MODEL_NAMES  # noqa: E402

LABELS = {"gaussian_noise": "Gaussian noise", "gaussian_blur": "Gaussian blur", "contrast": "contrast",
          "jpeg": "JPEG"}


def _order(names) -> list[str]:
    known = [n for n in MODEL_NAMES if n in names]
    return known + sorted(n for n in names if n not in known)


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def markdown_table(results: dict[str, dict[str, Any]], scores: dict[str, dict[str, Any]]) -> str:
    """The CE/RCE tables and the accuracy-per-severity table as Markdown."""
    models = _order(scores)
    corruptions = list(next(iter(scores.values()))["ce"])
    sizes = sorted({r.get("num_test_images") for r in results.values()}, key=str)
    lines = [f"CE and RCE are normalised by ResNet-18 (= 1.000); lower is more robust. "
             f"Test images per set: {', '.join(map(str, sizes))}.", ""]
    for key, total, title in (("ce", "mce", "mCE"), ("rce", "relative_mce", "relative mCE")):
        header = ["model", "clean acc. (%)"] + [f"{key.upper()} {LABELS.get(c, c)}" for c in corruptions] + [title]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for m in models:
            s = scores[m]
            row = [m, f"{100 * s['clean_accuracy']:.1f}"] + [_fmt(s[key][c]) for c in corruptions] + [_fmt(s[total])]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    header = ["model", "corruption"] + [f"s={s}" for s in SEVERITIES]
    lines += ["Accuracy (%) per severity:", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in models:
        for c in corruptions:
            accs = [f"{100 * a:.1f}" for a in results[m]["corrupted_accuracy"][c]]
            lines.append("| " + " | ".join([m, LABELS.get(c, c)] + accs) + " |")
    return "\n".join(lines) + "\n"


def _severity_axes(ax, result: dict[str, Any], title: str) -> None:
    for c, accs in result["corrupted_accuracy"].items():
        ax.plot(SEVERITIES, [100 * a for a in accs], marker="o", label=LABELS.get(c, c))
    ax.axhline(100 * result["clean_accuracy"], color="black", linestyle="--", label="clean")
    ax.set(title=title, xlabel="severity", ylabel="test accuracy (%)", xticks=SEVERITIES)
    ax.grid(alpha=0.3)


def plot_severity(result: dict[str, Any], path: Path) -> None:
    """Question 1.2(a): one model's accuracy against severity, one line per corruption."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    _severity_axes(ax, result, f"{result['model_name']}: accuracy under corruption")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_severity_grid(results: dict[str, dict[str, Any]], path: Path) -> None:
    models = _order(results)
    cols = min(3, len(models))
    rows = math.ceil(len(models) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False, sharey=True)
    for ax, m in zip(axes.flat, models):
        _severity_axes(ax, results[m], m)
    for ax in list(axes.flat)[len(models):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels))
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_ce_rce(scores: dict[str, dict[str, Any]], path: Path) -> None:
    """Grouped bars: CE (left) and RCE (right) per corruption plus the mean, one bar per model."""
    models = _order(scores)
    corruptions = list(next(iter(scores.values()))["ce"])
    groups = [LABELS.get(c, c) for c in corruptions] + ["mean"]
    width = 0.8 / len(models)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    for ax, key, total, title in ((axes[0], "ce", "mce", "CE"), (axes[1], "rce", "relative_mce", "RCE")):
        for i, m in enumerate(models):
            values = [scores[m][key][c] for c in corruptions] + [scores[m][total]]
            ax.bar([g + (i - (len(models) - 1) / 2) * width for g in range(len(groups))], values, width, label=m)
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        ax.set(title=f"{title} (ResNet-18 = 1)", xticks=range(len(groups)), xticklabels=groups)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(models))
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(results_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """Compute CE/RCE for every model in ``results_dir`` and write the table and figures to ``out_dir``.

    Returns:
        The scores of :func:`part1.metrics.compute_ce_rce`.
    """
    results = load_results(results_dir)
    scores = compute_ce_rce(results)
    out = Path(out_dir or results_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ce_rce_table.md").write_text(markdown_table(results, scores))
    summary = {m: {**scores[m], "corrupted_accuracy": results[m]["corrupted_accuracy"],
                   "num_test_images": results[m].get("num_test_images"), "config": results[m].get("config")}
               for m in _order(scores)}
    (out / "ce_rce_table.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_severity(results[BASELINE], out / "resnet18_accuracy_vs_severity.png")
    plot_severity_grid(results, out / "accuracy_vs_severity_grid.png")
    plot_ce_rce(scores, out / "ce_rce_bars.png")
    print(f"wrote the CE/RCE table and figures for {', '.join(_order(scores))} to {out}")
    return scores


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="CE/RCE table and plots from part1.train results.")
    parser.add_argument("--results_dir", default="results/part1", help="folder with <model>.json files")
    parser.add_argument("--out_dir", default=None, help="where to write the table and figures (default: results_dir)")
    args = parser.parse_args(argv)
    try:
        main(args.results_dir, args.out_dir)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    cli()
