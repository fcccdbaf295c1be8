"""Corruption Error (CE) and Relative CE (RCE), normalised by ResNet-18.

With ``E`` the top-1 error (1 - accuracy) and severities ``s = 1..5``::

    CE_c^f  = sum_s E_{s,c}^f / sum_s E_{s,c}^{ResNet-18}
    RCE_c^f = sum_s (E_{s,c}^f - E_clean^f) / sum_s (E_{s,c}^{ResNet-18} - E_clean^{ResNet-18})

mCE and relative mCE are their means over the corruptions ``c``. A ratio whose
denominator is zero (e.g. a corruption that does not change ResNet-18's error
at all) is reported as NaN.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BASELINE = "resnet18"
RESULT_KEYS = ("model_name", "clean_accuracy", "corrupted_accuracy")


def load_results(results_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read every ``<model>.json`` written by ``part1.train`` in ``results_dir`` (other JSON files are skipped).

    Returns:
        ``{model_name: results}``, sorted by model name.
    """
    folder = Path(results_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"results folder {folder} does not exist; run python -m part1.train first")
    results = {}
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and all(k in data for k in RESULT_KEYS):
            results[data["model_name"]] = data
    if not results:
        raise FileNotFoundError(f"no model results (<model>.json from python -m part1.train) in {folder}")
    return results


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator != 0 else math.nan


def corruption_error(errors: Sequence[float], baseline_errors: Sequence[float]) -> float:
    """``sum_s E_s / sum_s E_s^base`` for the errors of one corruption at every severity."""
    return _ratio(sum(errors), sum(baseline_errors))


def relative_corruption_error(errors: Sequence[float], clean_error: float, baseline_errors: Sequence[float],
                              baseline_clean_error: float) -> float:
    """``sum_s (E_s - E_clean) / sum_s (E_s^base - E_clean^base)``."""
    return _ratio(sum(e - clean_error for e in errors), sum(e - baseline_clean_error for e in baseline_errors))


def compute_ce_rce(results: dict[str, dict[str, Any]], baseline: str = BASELINE) -> dict[str, dict[str, Any]]:
    """CE, RCE, mCE and relative mCE of every model in ``results`` (as from :func:`load_results`).

    Raises:
        ValueError: the baseline's results are missing, or models were tested on different test sets.

    Returns:
        ``{model: {"clean_accuracy", "ce": {corruption: CE}, "rce": {corruption: RCE}, "mce", "relative_mce"}}``.
    """
    if baseline not in results:
        raise ValueError(
            f"results of the normalising model {baseline!r} are missing (found: {', '.join(sorted(results))}); "
            f"CE and RCE are relative to it, so run python -m part1.train --model_name {baseline} with the "
            f"same settings first"
        )
    base = results[baseline]
    base_subset = base.get("config", {}).get("test_subset")
    base_clean = 1.0 - base["clean_accuracy"]
    table = {}
    for name, res in results.items():
        subset = res.get("config", {}).get("test_subset")
        if subset != base_subset:
            raise ValueError(
                f"{name} was tested with test_subset={subset} but {baseline} with test_subset={base_subset}; "
                f"CE/RCE need the same test images"
            )
        clean = 1.0 - res["clean_accuracy"]
        ce, rce = {}, {}
        for corruption, accuracies in base["corrupted_accuracy"].items():
            if corruption not in res["corrupted_accuracy"]:
                raise ValueError(f"{name} has no results for corruption {corruption!r}")
            errors = [1.0 - a for a in res["corrupted_accuracy"][corruption]]
            base_errors = [1.0 - a for a in accuracies]
            ce[corruption] = corruption_error(errors, base_errors)
            rce[corruption] = relative_corruption_error(errors, clean, base_errors, base_clean)
        table[name] = {
            "clean_accuracy": res["clean_accuracy"],
            "ce": ce,
            "rce": rce,
            "mce": sum(ce.values()) / len(ce),
            "relative_mce": sum(rce.values()) / len(rce),
        }
    return table
