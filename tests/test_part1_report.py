"""CE / RCE / mCE on hand-computed numbers, the binomial intervals, the reliability marks and the report files."""

from __future__ import annotations

import json
import math

import pytest

from common.io import write_json
from common.runtime import UserError
from part1 import report
from part1.analysis import metrics


def _result(name: str, clean: float, corrupted: dict[str, list[float]], subset=None, n: int = 100) -> dict:
    return {"model_name": name, "clean_accuracy": clean, "corrupted_accuracy": corrupted,
            "config": {"test_subset": subset}, "num_test_images": n}  # fmt: skip


def test_ce_rce_hand_computed():
    base = _result("resnet18", 0.9, {"noise": [0.8, 0.7, 0.6, 0.5, 0.4], "blur": [0.9, 0.85, 0.8, 0.75, 0.7]})
    other = _result("vgg11", 0.8, {"noise": [0.8, 0.6, 0.6, 0.4, 0.4], "blur": [0.8, 0.8, 0.8, 0.8, 0.8]})
    scores = metrics.compute_ce_rce({"resnet18": base, "vgg11": other})
    # noise: errors vgg 0.2+0.4+0.4+0.6+0.6 = 2.2, resnet 0.2+0.3+0.4+0.5+0.6 = 2.0
    # RCE noise: (2.2 - 5*0.2) / (2.0 - 5*0.1) = 1.2 / 1.5; blur: CE 1.0 / 1.0, RCE (1.0 - 1.0) / (1.0 - 0.5)
    assert scores["vgg11"]["ce"] == pytest.approx({"noise": 1.1, "blur": 1.0})
    assert scores["vgg11"]["rce"] == pytest.approx({"noise": 0.8, "blur": 0.0})
    assert scores["vgg11"]["mce"] == pytest.approx(1.05) and scores["vgg11"]["relative_mce"] == pytest.approx(0.4)
    assert scores["resnet18"]["mce"] == pytest.approx(1.0) and scores["resnet18"]["relative_mce"] == pytest.approx(1.0)


def test_wilson_interval_hand_computed():
    # p = 0.8, n = 100, z = 1.96: centre (0.8 + 0.0192073) / 1.0384146 = 0.788902;
    # half 1.96 / 1.0384146 * sqrt(0.0016 + 0.0000960365) = 0.077731
    low, high = metrics.wilson_interval(0.8, 100)
    assert (low, high) == pytest.approx((0.711171, 0.866633), abs=2e-6)
    assert metrics.wilson_interval(1.0, 10_000)[1] == 1.0 and metrics.wilson_interval(0.0, 10)[0] == 0.0
    assert metrics.wilson_interval(0.5, 10_000) == pytest.approx((0.4902, 0.5098), abs=1e-4)


def test_small_denominators_are_marked_unreliable():
    # ResNet-18 errors under "flat": 0.20, 0.21, 0.20, 0.21, 0.22 around a clean error of 0.2:
    # RCE denominator 0.04, its standard error sqrt(sum E(1-E)/n + 25 * 0.16/n) ~ 0.02 at n = 10,000.
    flat, steep = [0.8, 0.79, 0.8, 0.79, 0.78], [0.7, 0.6, 0.5, 0.4, 0.3]
    scores = metrics.compute_ce_rce({"resnet18": _result("resnet18", 0.8, {"flat": flat, "steep": steep}, n=10_000)})
    assert scores["resnet18"]["reliable"] == {
        "ce": {"flat": True, "steep": True},
        "rce": {"flat": False, "steep": True},
    }
    denominator, variance = 0.04, (sum((1 - a) * a for a in flat) + 25 * 0.16) / 10_000
    assert denominator < metrics.MIN_DENOMINATOR_TO_SE * math.sqrt(variance)


def test_metrics_need_resnet18_and_the_same_test_set():
    corrupted = {"noise": [0.5] * 5}
    with pytest.raises(UserError, match="resnet18"):
        metrics.compute_ce_rce({"vgg11": _result("vgg11", 0.6, corrupted)})
    with pytest.raises(UserError, match="test_subset"):
        metrics.compute_ce_rce(
            {"resnet18": _result("resnet18", 0.6, corrupted), "vgg11": _result("vgg11", 0.6, corrupted, subset=500)}
        )


def test_report_files_state_formulas_intervals_and_marks(tmp_path):
    flat, steep = [0.8, 0.79, 0.8, 0.79, 0.78], [0.7, 0.6, 0.5, 0.4, 0.3]
    write_json(
        _result("resnet18", 0.8, {"gaussian_noise": flat, "contrast": steep}, n=10_000), tmp_path / "resnet18.json"
    )
    vgg = _result("vgg11", 0.7, {"gaussian_noise": steep, "contrast": flat}, n=10_000)
    vgg |= {"config": {"test_subset": None, "epochs": 5}, "train_seconds": 2430.0, "precision": "bf16"}
    write_json(vgg, tmp_path / "vgg11.json")
    write_json({"lr": 0.01}, tmp_path / "vgg11.config.json")  # other JSON files are not results
    report.main(tmp_path)
    table = (tmp_path / "ce_rce_table.md").read_text()
    assert "RCE_c = sum_s (E_{s,c} - E_clean) / sum_s (E_{s,c}^{ResNet-18} - E_clean^{ResNet-18})" in table
    assert "| resnet18 | 80.0 [79.2, 80.8] |" in table
    vgg_rows = [line for line in table.splitlines() if line.startswith("| vgg11 |")]
    assert vgg_rows[0].startswith("| vgg11 | 5 | 40.5 | bf16 | 70.0 [69.1, 70.9] |")  # the runs table comes first
    rce_row = next(line for line in vgg_rows[1:] if "†" in line)
    assert rce_row.count("†") == 2  # RCE Gaussian noise and the relative mCE built from it
    summary = json.loads((tmp_path / "ce_rce_table.json").read_text())
    assert sorted(summary) == ["resnet18", "vgg11"] and summary["vgg11"]["reliable"]["rce"]["gaussian_noise"] is False
    for figure in ("resnet18_accuracy_vs_severity.png", "accuracy_vs_severity_grid.png", "ce_rce_bars.png"):
        assert (tmp_path / figure).stat().st_size > 10_000
