"""Tables and figures of Question 1.2 from the results JSON files of any set of models.

    python -m part1.report --results_dir results/part1 [--out_dir results/part1]

Writes into ``out_dir``: ``ce_rce_table.md`` / ``.json`` (clean accuracy with its 95 % interval, CE, RCE, mCE,
relative mCE, accuracy per severity with intervals; ratios with a too-small denominator marked),
``resnet18_accuracy_vs_severity.png`` (Question 1.2(a)), ``accuracy_vs_severity_grid.png`` (every model) and
``ce_rce_bars.png``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from common.cli import make_parser, run_cli
from common.io import write_json, write_text
from common.runs import ensure_writable
from part1.analysis.metrics import BASELINE, MIN_DENOMINATOR_TO_SE, compute_ce_rce, load_results
from part1.corruptions import SEVERITIES
from part1.plots import LABELS, model_order, plot_ce_rce, plot_severity, plot_severity_grid

UNRELIABLE = "†"
FORMULAS = (
    "E is the top-1 error, s = 1..5 the severity (Hendrycks & Dietterich, 2019): "
    "CE_c = sum_s E_{s,c} / sum_s E_{s,c}^{ResNet-18}; "
    "RCE_c = sum_s (E_{s,c} - E_clean) / sum_s (E_{s,c}^{ResNet-18} - E_clean^{ResNet-18}). "
    "mCE and relative mCE are their means over the corruptions."
)


def _ratio(value: float, reliable: bool) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}{'' if reliable else UNRELIABLE}"


def _accuracy(accuracy: float, interval: tuple[float, float]) -> str:
    return f"{100 * accuracy:.1f} [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"


def _ratio_tables(scores: dict[str, dict[str, Any]], corruptions: list[str]) -> list[str]:
    lines = []
    for key, total, title in (("ce", "mce", "mCE"), ("rce", "relative_mce", "relative mCE")):
        header = ["model", "clean acc. (%) [95 % CI]"] + [f"{key.upper()} {LABELS.get(c, c)}" for c in corruptions]
        lines += ["| " + " | ".join(header + [title]) + " |", "|" + "---|" * (len(header) + 1)]
        for model in model_order(scores):
            score = scores[model]
            reliable = score["reliable"][key]
            row = [model, _accuracy(score["clean_accuracy"], score["clean_interval"])]
            row += [_ratio(score[key][c], reliable[c]) for c in corruptions]
            row.append(_ratio(score[total], all(reliable.values())))
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return lines


def _runs_table(results: dict[str, dict[str, Any]], scores: dict[str, dict[str, Any]]) -> list[str]:
    """One row per model: how it was trained (epochs, minutes, precision) and its headline numbers."""
    header = "| model | epochs | training (min) | precision | clean acc. (%) [95 % CI] | mCE | relative mCE |"
    lines = [header, "|---|---:|---:|---|---|---:|---:|"]
    for model in model_order(scores):
        run, score = results[model], scores[model]
        reliable = all(score["reliable"]["ce"].values()), all(score["reliable"]["rce"].values())
        minutes = run.get("train_seconds")
        cells = [
            model,
            str(run.get("config", {}).get("epochs", "?")),
            "?" if minutes is None else f"{minutes / 60:.1f}",
            str(run.get("precision", "?")),
            _accuracy(score["clean_accuracy"], score["clean_interval"]),
            _ratio(score["mce"], reliable[0]),
            _ratio(score["relative_mce"], reliable[1]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def markdown_table(results: dict[str, dict[str, Any]], scores: dict[str, dict[str, Any]]) -> str:
    """The CE and RCE tables and the accuracy-per-severity table, as Markdown."""
    corruptions = list(next(iter(scores.values()))["ce"])
    sizes = ", ".join(sorted({str(r["num_test_images"]) for r in results.values()}))
    lines = [
        f"CE and RCE are normalised by ResNet-18 (= 1.000); lower is more robust. {FORMULAS}",
        "",
        f"Accuracies in % with 95 % Wilson intervals over {sizes} test images per set. {UNRELIABLE} marks a CE/RCE "
        f"(and its mean) whose ResNet-18 denominator is less than {MIN_DENOMINATOR_TO_SE:g} standard errors from "
        "zero: too small to be meaningful.",
        "",
        *_runs_table(results, scores),
        *_ratio_tables(scores, corruptions),
    ]
    header = ["model", "corruption"] + [f"s={s}" for s in SEVERITIES]
    lines += ["Accuracy (%) [95 % CI] per severity:", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in model_order(scores):
        for c in corruptions:
            cells = map(_accuracy, results[model]["corrupted_accuracy"][c], scores[model]["corrupted_interval"][c])
            lines.append("| " + " | ".join([model, LABELS.get(c, c), *cells]) + " |")
    return "\n".join(lines) + "\n"


def main(results_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """Compute CE/RCE for every model in ``results_dir``, write the table and figures to ``out_dir``."""
    results = load_results(results_dir)
    out = ensure_writable(out_dir or results_dir)
    scores = compute_ce_rce(results)
    write_text(markdown_table(results, scores), out / "ce_rce_table.md")
    summary = {
        m: scores[m]
        | {
            k: results[m].get(k)
            for k in ("corrupted_accuracy", "num_test_images", "precision", "config", "train_seconds")
        }
        for m in model_order(scores)
    }
    write_json(summary, out / "ce_rce_table.json")
    plot_severity(results[BASELINE], scores[BASELINE], out / "resnet18_accuracy_vs_severity.png")
    plot_severity_grid(results, scores, out / "accuracy_vs_severity_grid.png")
    plot_ce_rce(scores, out / "ce_rce_bars.png")
    print(f"wrote the CE/RCE table and figures for {', '.join(model_order(scores))} to {out}")
    print(FORMULAS)
    return scores


def cli(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Entry point of ``python -m part1.report``."""
    parser = make_parser("python -m part1.report", __doc__)
    parser.add_argument("--results_dir", default="results/part1", help="folder with the <model>.json files")
    parser.add_argument("--out_dir", default=None, help="folder for the table and figures, --results_dir if not given")
    args = parser.parse_args(argv)
    return run_cli(lambda: main(Path(args.results_dir), args.out_dir))


if __name__ == "__main__":
    cli()
