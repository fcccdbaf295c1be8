"""Corruption Error (CE) and Relative CE (RCE) normalised by ResNet-18 (Hendrycks & Dietterich, ICLR 2019).

With ``E`` the top-1 error (1 - accuracy), severities ``s = 1..5``, corruption ``c`` and model ``f``::

    CE_c^f  = sum_s E_{s,c}^f / sum_s E_{s,c}^{ResNet-18}
    RCE_c^f = sum_s (E_{s,c}^f - E_clean^f) / sum_s (E_{s,c}^{ResNet-18} - E_clean^{ResNet-18})

mCE and relative mCE are their means over the corruptions. Every accuracy gets a 95 % Wilson interval
(binomial over the test images). A CE or RCE is flagged unreliable when the standard error of its denominator
exceeds a quarter of it, i.e. the denominator's 95 % interval is wider than about +-50 % (a zero denominator
gives NaN). The standard error treats the errors as independent binomials, which overstates it a little:
errors measured on the same images are positively correlated.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.io import read_json
from common.runtime import UserError

BASELINE = "resnet18"
RESULT_KEYS = ("model_name", "clean_accuracy", "corrupted_accuracy", "num_test_images")
Z_95 = 1.959963984540054
MIN_DENOMINATOR_TO_SE = 4.0


def load_results(results_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """``{model_name: results}`` of every ``<model>.json`` written by ``part1.train`` in ``results_dir``."""
    folder = Path(results_dir)
    if not folder.is_dir():
        raise UserError(f"results folder {folder} does not exist; run python -m part1.train first")
    results = {}
    for path in sorted(folder.glob("*.json")):
        data = read_json(path, kind="results")
        if isinstance(data, dict) and all(key in data for key in RESULT_KEYS):
            results[data["model_name"]] = data
    if not results:
        raise UserError(f"no model results (<model>.json from python -m part1.train) in {folder}")
    return results


def wilson_interval(accuracy: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion ``accuracy`` measured on ``n`` images."""
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator != 0 else math.nan


def corruption_error(errors: Sequence[float], baseline_errors: Sequence[float]) -> float:
    """``sum_s E_s / sum_s E_s^base`` for one corruption's errors at every severity."""
    return _ratio(sum(errors), sum(baseline_errors))


def relative_corruption_error(
    errors: Sequence[float], clean_error: float, baseline_errors: Sequence[float], baseline_clean_error: float
) -> float:
    """``sum_s (E_s - E_clean) / sum_s (E_s^base - E_clean^base)``."""
    return _ratio(sum(e - clean_error for e in errors), sum(e - baseline_clean_error for e in baseline_errors))


def is_reliable(denominator: float, variance: float) -> bool:
    """Whether a ratio's denominator is at least ``MIN_DENOMINATOR_TO_SE`` standard errors away from zero."""
    return abs(denominator) >= MIN_DENOMINATOR_TO_SE * math.sqrt(variance)


def reliable_denominators(baseline: dict[str, Any]) -> dict[str, dict[str, bool]]:
    """``{"ce": {corruption: ok}, "rce": {...}}`` from the baseline's errors and binomial variances."""
    n = baseline["num_test_images"]
    clean = 1.0 - baseline["clean_accuracy"]
    out: dict[str, dict[str, bool]] = {"ce": {}, "rce": {}}
    for corruption, accuracies in baseline["corrupted_accuracy"].items():
        errors = [1.0 - a for a in accuracies]
        variance = sum(e * (1 - e) for e in errors) / n
        out["ce"][corruption] = is_reliable(sum(errors), variance)
        rce_variance = variance + len(errors) ** 2 * clean * (1 - clean) / n
        out["rce"][corruption] = is_reliable(sum(e - clean for e in errors), rce_variance)
    return out


def _check_comparable(results: dict[str, dict[str, Any]], baseline: str) -> None:
    if baseline not in results:
        raise UserError(
            f"results of the normalising model {baseline!r} are missing (found: {', '.join(sorted(results))}); "
            f"CE and RCE are relative to it, so run python -m part1.train --model_name {baseline} with the same "
            "settings first"
        )
    base = results[baseline]
    for name, res in results.items():
        mine, theirs = res.get("config", {}).get("test_subset"), base.get("config", {}).get("test_subset")
        if mine != theirs:
            raise UserError(
                f"{name} was tested with test_subset={mine} but {baseline} with test_subset={theirs}; "
                "CE/RCE need the same test images"
            )
        missing = set(base["corrupted_accuracy"]) - set(res["corrupted_accuracy"])
        if missing:
            raise UserError(f"{name} has no results for {', '.join(sorted(missing))}")


def compute_ce_rce(results: dict[str, dict[str, Any]], baseline: str = BASELINE) -> dict[str, dict[str, Any]]:
    """``{model: {"clean_accuracy", "clean_interval", "corrupted_interval", "ce", "rce", "mce", "relative_mce",
    "reliable"}}`` for every model of ``results`` (as from :func:`load_results`)."""
    _check_comparable(results, baseline)
    base = results[baseline]
    base_clean = 1.0 - base["clean_accuracy"]
    reliable = reliable_denominators(base)
    table = {}
    for name, res in results.items():
        n, clean = res["num_test_images"], 1.0 - res["clean_accuracy"]
        ce, rce = {}, {}
        for corruption, base_accuracies in base["corrupted_accuracy"].items():
            errors = [1.0 - a for a in res["corrupted_accuracy"][corruption]]
            base_errors = [1.0 - a for a in base_accuracies]
            ce[corruption] = corruption_error(errors, base_errors)
            rce[corruption] = relative_corruption_error(errors, clean, base_errors, base_clean)
        table[name] = {
            "clean_accuracy": res["clean_accuracy"],
            "clean_interval": wilson_interval(res["clean_accuracy"], n),
            "corrupted_interval": {
                c: [wilson_interval(a, n) for a in accs] for c, accs in res["corrupted_accuracy"].items()
            },
            "ce": ce,
            "rce": rce,
            "mce": sum(ce.values()) / len(ce),
            "relative_mce": sum(rce.values()) / len(rce),
            "reliable": reliable,
        }
    return table
