"""``python -m part2.benchmarks.lstm`` at tiny sizes: every variant and precision timed, ratios to nn.LSTM, JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from part2.benchmarks import lstm as benchmark

TINY = ["--batch_size", "2", "--seq_length", "9", "--embedding_size", "4", "--hidden_dim", "8"]
TINY += ["--vocabulary_size", "5", "--repeats", "1", "--sample_length", "4", "--num_samples", "2", "--threads", "1"]


def test_benchmark_times_every_variant_and_precision(tmp_path: Path, capsys) -> None:
    out = tmp_path / "lstm.json"
    result = benchmark.main([*TINY, "--out", str(out)])
    rows = {(row["variant"], row["precision"]): row for row in result["training_step"]}
    assert set(rows) == {(v, p) for v in benchmark.VARIANTS for p in ("fp32", "bf16")}
    for (_, precision), row in rows.items():
        base = rows[("nn.LSTM", precision)]["wall_ms"]
        assert row["wall_ms"] > 0 and row["ratio_to_nn_lstm"] == pytest.approx(row["wall_ms"] / base)
        assert row["page_faults"] >= 0
    assert set(result["generation_ms"]) == {"cached", "recomputed"}
    assert set(result["activation_us"]) == {"sigmoid", "tanh", "tanh as 2 sigmoid(2x) - 1"}
    assert json.loads(out.read_text()) == result
    printed = capsys.readouterr().out
    assert "ours     fp32" in printed and "nn.LSTM  bf16" in printed and "greedy generation" in printed
    assert "gate nonlinearity on one [B, H] block: sigmoid" in printed


def test_benchmark_rejects_a_bad_size_in_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(["--hidden_dim", "0"])
    assert exit_info.value.code == 2
    assert "argument --hidden_dim: expected a positive integer, got 0" in capsys.readouterr().err


def test_readme_speed_table_is_the_committed_benchmark() -> None:
    """Every row of part2/README.md's speed table is read back from assets/part2/benchmark_lstm_*.json."""
    root = Path(__file__).resolve().parents[1]
    readme = (root / "part2/README.md").read_text(encoding="utf-8")
    quoted = re.findall(
        r"^\| (\d) \| (fp32|bf16) \| (ours|ours-mm|nn\.LSTM) \| (\d+) \| ([\d.]+) \| (\d+) \|$", readme, re.M
    )
    measured = []
    for name in ("benchmark_lstm_1thread.json", "benchmark_lstm_2threads.json"):
        result = json.loads((root / "assets/part2" / name).read_text(encoding="utf-8"))
        for row in result["training_step"]:
            cells = (row["wall_ms"], row["ratio_to_nn_lstm"], row["page_faults"])
            measured.append((str(result["threads"]), row["precision"], row["variant"], *cells))
    expected = [(t, p, v, f"{ms:.0f}", f"{ratio:.2f}", f"{faults:.0f}") for t, p, v, ms, ratio, faults in measured]
    assert sorted(quoted) == sorted(expected)
