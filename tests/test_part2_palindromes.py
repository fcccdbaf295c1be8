"""Tests of the palindrome experiment: data streams, vanilla RNN, LSTM classifier, training and the seeded sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from common.runtime import UserError
from part2.model import LSTM
from part2.palindromes.cli import main
from part2.palindromes.data import PalindromeDataset, generate_palindromes
from part2.palindromes.models import PalindromeLSTM, VanillaRNN
from part2.palindromes.sweep import summarise_seeds
from part2.palindromes.train import TrainingSettings, steps_to_accuracy, train_palindrome, windowed_history

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float) -> None:
    # torch.allclose rather than torch.testing.assert_close, whose first call takes seconds of lazy imports.
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    assert torch.allclose(actual, expected, rtol=rtol, atol=atol), (actual - expected).abs().max()


@pytest.mark.parametrize("length", [2, 5, 6, 17])
def test_generate_palindromes_are_palindromes(length: int) -> None:
    batch = generate_palindromes(64, length, torch.Generator().manual_seed(0))
    assert batch.shape == (64, length) and batch.dtype == torch.int64
    assert torch.equal(batch, batch.flip(1))
    assert batch.min() >= 0 and batch.max() <= 9
    # The free half is random: the first digits are not all equal.
    assert batch[:, 0].unique().numel() > 1


@pytest.mark.parametrize("length", [5, 10])
def test_dataset_batches(length: int) -> None:
    inputs, targets = PalindromeDataset(length, seed=3).batch(32)
    assert inputs.shape == (32, length - 1) and targets.shape == (32,)
    full = torch.cat([inputs, targets[:, None]], dim=1)
    assert torch.equal(full, full.flip(1))
    assert torch.equal(targets, inputs[:, 0])


def test_dataset_seeding() -> None:
    a, b, c = PalindromeDataset(9, seed=1), PalindromeDataset(9, seed=1), PalindromeDataset(9, seed=2)
    first_a, first_b, first_c = a.batch(16), b.batch(16), c.batch(16)
    assert torch.equal(first_a[0], first_b[0]) and torch.equal(first_a[1], first_b[1])
    assert not torch.equal(first_a[0], first_c[0])
    # The stream moves on: the next batch is a new one.
    assert not torch.equal(a.batch(16)[0], first_a[0])


def as_rows(batches: list[torch.Tensor]) -> set[tuple[int, ...]]:
    return {tuple(row.tolist()) for batch in batches for row in batch}


@pytest.mark.parametrize("seed", [0, 1, 5, 2**32])
def test_train_and_eval_streams_are_different_generators(seed: int) -> None:
    # L = 30 has 10 ** 15 palindromes: two independent streams share none of these 640 by chance.
    train_data, eval_data = PalindromeDataset(30, seed, "train"), PalindromeDataset(30, seed, "eval")
    train = as_rows([train_data.batch(64)[0] for _ in range(5)])
    held_out = as_rows([eval_data.batch(64)[0] for _ in range(5)])
    assert len(train) == len(held_out) == 320
    assert not train & held_out
    # seed + 2**32 is another experiment, not the same stream (torch keeps only 32 bits of a seed).
    assert not train & as_rows([PalindromeDataset(30, seed + 2**32, "train").batch(64)[0]])


@pytest.mark.parametrize("seed", [0, 1, 3])
def test_training_evaluates_on_palindromes_it_never_trained_on(seed: int, monkeypatch) -> None:
    drawn: list[torch.Tensor] = []
    draw = PalindromeDataset.batch

    def recording_batch(self: PalindromeDataset, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = draw(self, batch_size)
        drawn.append(inputs)
        return inputs, targets

    monkeypatch.setattr(PalindromeDataset, "batch", recording_batch)
    settings = TrainingSettings(train_steps=6, batch_size=32, num_hidden=4, eval_batches=3)
    train_palindrome("rnn", 30, seed, settings, progress=False)
    assert len(drawn) == 6 + 3  # the training batches, then the held-out ones
    assert not as_rows(drawn[:6]) & as_rows(drawn[6:])


def test_dataset_rejects_too_short_length() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        PalindromeDataset(1)


def test_vanilla_rnn_matches_its_equations() -> None:
    torch.manual_seed(0)
    model = VanillaRNN(seq_length=6, input_dim=10, num_hidden=7, num_classes=10).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.5)
    digits = torch.randint(0, 10, (3, 6))
    x = F.one_hot(digits, 10).double()
    h = torch.zeros(3, 7, dtype=torch.float64)
    for t in range(6):
        h = torch.tanh(x[:, t] @ model.W_hx.T + h @ model.W_hh.T + model.b_h)
    expected = h @ model.W_ph.T + model.b_p
    assert_close(model(x), expected, rtol=1e-12, atol=1e-12)
    # Digit indices are one-hot encoded inside the model.
    assert_close(model(digits), expected, rtol=1e-12, atol=1e-12)


def test_vanilla_rnn_initialisation() -> None:
    torch.manual_seed(0)
    model = VanillaRNN(seq_length=10, input_dim=10, num_hidden=32, num_classes=10)
    assert_close(model.W_hh @ model.W_hh.T, torch.eye(32), rtol=0, atol=1e-5)
    assert torch.all(model.b_h == 0) and torch.all(model.b_p == 0)
    bound = (6 / (10 + 32)) ** 0.5
    assert model.W_hx.abs().max() <= bound


def test_vanilla_rnn_uniform_initialisation() -> None:
    torch.manual_seed(0)
    model = VanillaRNN(seq_length=10, input_dim=10, num_hidden=16, num_classes=10, init="uniform")
    for name, parameter in model.named_parameters():
        assert parameter.abs().max() <= 0.25, name
        assert parameter.abs().max() > 0.2, name
    with pytest.raises(ValueError, match="unknown init"):
        VanillaRNN(10, 10, 16, 10, init="zeros")


def test_palindrome_lstm_uses_the_hand_written_lstm() -> None:
    torch.manual_seed(0)
    model = PalindromeLSTM(seq_length=9, input_dim=10, num_hidden=16, num_classes=10)
    assert isinstance(model.lstm, LSTM)
    digits = torch.randint(0, 10, (4, 9))
    outputs = model.lstm(F.one_hot(digits, 10).float().transpose(0, 1))
    assert_close(model(digits), outputs[-1] @ model.W_ph.T + model.b_p, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("forget_bias", [1.0, 3.0])
def test_palindrome_lstm_forget_bias(forget_bias: float) -> None:
    torch.manual_seed(0)
    model = PalindromeLSTM(seq_length=9, input_dim=10, num_hidden=16, num_classes=10, forget_bias=forget_bias)
    bound = 1 / 16**0.5
    forget = model.lstm.gate_slice(model.lstm.bias, "f")
    assert torch.all((forget - forget_bias).abs() <= bound)
    others = [model.lstm.gate_slice(model.lstm.bias, gate) for gate in ("i", "o", "g")]
    assert torch.all(torch.cat(others).abs() <= bound)


@pytest.mark.parametrize("model_cls", [VanillaRNN, PalindromeLSTM])
@pytest.mark.parametrize("batch,length", [(1, 3), (5, 12)])
def test_shapes_and_gradients_flow(model_cls: type, batch: int, length: int) -> None:
    torch.manual_seed(0)
    model = model_cls(length, 10, 16, 10)
    x = F.one_hot(torch.randint(0, 10, (batch, length)), 10).float().requires_grad_()
    logits = model(x)
    assert logits.shape == (batch, 10)
    logits.logsumexp(-1).sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name
    # The first input reaches the output: the gradient flows back through all time steps.
    assert x.grad[:, 0].abs().sum() > 0


def test_bad_inputs_give_a_clear_error() -> None:
    model = VanillaRNN(4, 10, 8, 10)
    with pytest.raises(ValueError, match="expected digit indices"):
        model(torch.zeros(2, 4, 3))


@pytest.mark.parametrize("model_name", ["rnn", "lstm"])
def test_short_training_solves_length_5(model_name: str) -> None:
    settings = TrainingSettings(train_steps=150, batch_size=64, lr=1e-2, num_hidden=32, eval_batches=4)
    result = train_palindrome(model_name, 5, settings=settings, progress=False)
    assert result["accuracy"] >= 0.97
    assert result["loss"] < 0.2
    assert result["history"][-1][1] < result["history"][0][1]
    assert result["steps_to_99"] == steps_to_accuracy(result["history"]) is not None


def test_training_is_seeded() -> None:
    settings = TrainingSettings(train_steps=5, batch_size=16, num_hidden=8, eval_batches=1)
    first = train_palindrome("rnn", 6, 4, settings, progress=False)
    second = train_palindrome("rnn", 6, 4, settings, progress=False)
    third = train_palindrome("rnn", 6, 5, settings, progress=False)
    assert first["history"] == second["history"] and first["loss"] == second["loss"]
    assert first["history"] != third["history"]


def test_training_clips_the_gradient_norm(monkeypatch) -> None:
    norms: list[float] = []
    step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    settings = TrainingSettings(train_steps=4, batch_size=16, num_hidden=8, eval_batches=1, clip_grad_norm=1e-3)
    train_palindrome("lstm", 8, settings=settings, progress=False)
    assert len(norms) == 4 and max(norms) <= 1e-3 * (1 + 1e-4)


def test_windowed_history_and_steps_to_accuracy() -> None:
    history = windowed_history([4.0, 2.0, 1.0, 1.0, 0.5], [0.0, 0.5, 1.0, 1.0, 1.0])
    assert history == [[1, 4.0, 0.0], [2, 2.0, 0.5], [3, 1.0, 1.0], [4, 1.0, 1.0], [5, 0.5, 1.0]]
    history = windowed_history([1.0] * 100 + [0.0] * 20, [0.0] * 100 + [1.0] * 20)
    assert [entry[0] for entry in history] == list(range(2, 121, 2))  # windows of 120 // 50 = 2 steps
    assert steps_to_accuracy(history) == 102
    history = [[10, 2.3, 0.1], [20, 0.4, 0.95], [30, 0.05, 0.995], [40, 0.01, 1.0]]
    assert steps_to_accuracy(history) == 30
    assert steps_to_accuracy(history, threshold=0.9) == 20
    assert steps_to_accuracy(history[:2]) is None


def test_summary_over_seeds() -> None:
    cells = [
        {"accuracy": 1.0, "steps_to_99": 100},
        {"accuracy": 0.1, "steps_to_99": None},
        {"accuracy": 0.7, "steps_to_99": 300},
    ]
    summary = summarise_seeds(cells, [0, 1, 2])
    assert summary["accuracy"] == [1.0, 0.1, 0.7] and summary["seeds"] == [0, 1, 2]
    assert summary["accuracy_mean"] == pytest.approx(0.6)
    assert (summary["accuracy_min"], summary["accuracy_max"]) == (0.1, 1.0)
    # Steps to 99 %: every seed listed; mean, min and max over the seeds that got there.
    assert summary["steps_to_99"] == [100, None, 300] and summary["steps_to_99_reached"] == 2
    assert (summary["steps_to_99_mean"], summary["steps_to_99_min"], summary["steps_to_99_max"]) == (200, 100, 300)
    never = summarise_seeds([{"accuracy": 0.1, "steps_to_99": None}], [4])
    assert never["steps_to_99_reached"] == 0 and never["steps_to_99_mean"] is None


TINY = ["--train_steps", "3", "--batch_size", "8", "--num_hidden", "8", "--eval_batches", "1", "--device", "cpu"]


def tiny_sweep(results_dir: Path, *args: str) -> dict:
    return main([*TINY, "--results_dir", str(results_dir), *args])


def read_results(results_dir: Path) -> dict:
    return json.loads((results_dir / "results.json").read_text())


def test_sweep_runs_every_seed_and_summarises(tmp_path: Path, capsys) -> None:
    tiny_sweep(tmp_path, "--min_length", "3", "--max_length", "5", "--length_step", "2", "--seeds", "0", "1", "2")
    data = read_results(tmp_path)
    assert data["sweep"] == {"models": ["rnn", "lstm"], "lengths": [3, 5], "seeds": [0, 1, 2]}
    assert data["config"]["train_steps"] == 3 and "data_streams" in data["config"]
    for model in ("rnn", "lstm"):
        assert set(data["results"][model]) == {"3", "5"}
        for length in ("3", "5"):
            cells = data["results"][model][length]
            assert set(cells) == {"0", "1", "2"}
            for cell in cells.values():
                assert 0.0 <= cell["accuracy"] <= 1.0 and cell["device"] == "cpu"
                assert {"loss", "train_loss", "train_accuracy", "steps_to_99", "seconds", "history"} <= set(cell)
            summary = data["summary"][model][length]
            assert summary["accuracy"] == [cells[seed]["accuracy"] for seed in ("0", "1", "2")]
    # Different seeds give different runs (initialisation and data).
    assert len({json.dumps(cell["history"]) for cell in data["results"]["rnn"]["5"].values()}) == 3
    assert (tmp_path / "palindrome_accuracy.png").stat().st_size > 10_000
    out = capsys.readouterr().out
    assert out.startswith(f"part2.palindromes: device cpu, precision fp32, 1 thread(s), results in {tmp_path}\n")
    assert "mean [min, max] over seeds" in out


def test_sweep_resumes_skipping_finished_cells(tmp_path: Path, capsys, monkeypatch) -> None:
    lengths = ["--min_length", "3", "--max_length", "5", "--length_step", "2"]
    tiny_sweep(tmp_path, *lengths, "--models", "rnn", "--seeds", "0")
    first = read_results(tmp_path)
    capsys.readouterr()

    import part2.palindromes.sweep as sweep

    trained: list[tuple[str, int, int]] = []
    train = sweep.train_palindrome

    def recording_train(model, length, seed, *args, **kwargs):
        trained.append((model, length, seed))
        return train(model, length, seed, *args, **kwargs)

    monkeypatch.setattr(sweep, "train_palindrome", recording_train)
    # More seeds and a longer sweep: only the new cells are trained, the old ones are kept as they were.
    tiny_sweep(
        tmp_path, "--min_length", "3", "--max_length", "7", "--length_step", "2", "--models", "rnn", "--seeds", "0", "1"
    )
    assert "resuming: 2 of 6 (model, L, seed) cells" in capsys.readouterr().out
    assert sorted(trained) == [("rnn", 3, 1), ("rnn", 5, 1), ("rnn", 7, 0), ("rnn", 7, 1)]
    resumed = read_results(tmp_path)
    assert resumed["results"]["rnn"]["3"]["0"] == first["results"]["rnn"]["3"]["0"]
    assert resumed["summary"]["rnn"]["3"]["seeds"] == [0, 1]
    # The single-seed option of the SLURM job still works: a sweep of seed 1 only, all cells done.
    trained.clear()
    tiny_sweep(tmp_path, *lengths, "--models", "rnn", "--seed", "1")
    assert trained == [] and read_results(tmp_path)["summary"]["rnn"]["3"]["seeds"] == [1]


def test_sweep_with_other_settings_is_refused_and_overwrite_moves_it_aside(tmp_path: Path, capsys) -> None:
    args = ["--min_length", "3", "--max_length", "3", "--models", "rnn", "--seeds", "0"]
    tiny_sweep(tmp_path, *args)
    before = (tmp_path / "results.json").read_bytes()
    with pytest.raises(UserError, match="other settings .*lr: 0.001 -> 0.1.*--overwrite"):
        tiny_sweep(tmp_path, *args, "--lr", "0.1")
    assert (tmp_path / "results.json").read_bytes() == before
    tiny_sweep(tmp_path, *args, "--lr", "0.1", "--overwrite")
    moved = list(tmp_path.glob("superseded-*/results.json"))
    assert len(moved) == 1 and moved[0].read_bytes() == before
    assert read_results(tmp_path)["config"]["lr"] == 0.1


def test_sweep_made_before_the_stream_fix_is_not_resumed(tmp_path: Path) -> None:
    # An old sweep: results.json without the run-settings file (and its held-out set was the training stream).
    (tmp_path / "results.json").write_text(json.dumps({"config": {"seed": 0}, "results": {"rnn": {"3": {}}}}))
    with pytest.raises(UserError, match="settings are unknown"):
        tiny_sweep(tmp_path, "--min_length", "3", "--max_length", "3", "--seeds", "0")


def test_comparison_sweeps_share_the_budget(tmp_path: Path) -> None:
    base = tmp_path / "orthogonal"
    args = ["--min_length", "3", "--max_length", "3", "--models", "rnn", "--seeds", "0"]
    tiny_sweep(base, *args)
    other = tmp_path / "uniform"
    tiny_sweep(other, *args, "--rnn_init", "uniform", "--compare_dirs", str(base))
    assert read_results(other)["config"]["rnn_init"] == "uniform"
    assert (other / "palindrome_accuracy.png").stat().st_size > 10_000
    with pytest.raises(UserError, match="differs in train_steps"):
        tiny_sweep(tmp_path / "more", *args, "--compare_dirs", str(base), "--train_steps", "4")
    with pytest.raises(UserError, match="does not exist"):
        tiny_sweep(other, *args, "--rnn_init", "uniform", "--compare_dirs", str(tmp_path / "missing"))
    assert not (tmp_path / "more").exists()  # refused before any work


def test_figure_draws_the_mean_the_spread_and_every_seed(tmp_path: Path, monkeypatch) -> None:
    import part2.plots as plots

    figures = []
    monkeypatch.setattr(plots.plt, "close", figures.append)

    def cells(pairs: list[tuple[float, int | None]]) -> list[dict]:
        return [{"accuracy": accuracy, "steps_to_99": steps} for accuracy, steps in pairs]

    short = summarise_seeds(cells([(1.0, 100), (0.2, None), (0.9, 300)]), [0, 1, 2])
    summary = {"rnn": {"5": short, "9": summarise_seeds(cells([(0.1, None)] * 3), [0, 1, 2])}}
    config = {**TrainingSettings().__dict__, "train_steps": 400}
    plots.plot_palindrome_sweeps([{"config": config, "summary": summary}], tmp_path / "figure.png")
    assert (tmp_path / "figure.png").stat().st_size > 10_000
    ax_acc, ax_steps = figures[0].axes
    mean_line = ax_acc.lines[0]
    assert list(mean_line.get_xdata()) == [5, 9]
    assert list(mean_line.get_ydata()) == pytest.approx([0.7, 0.1])
    band = ax_acc.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(0.1) and band.max() == pytest.approx(1.0)
    dots = ax_acc.collections[1].get_offsets()
    assert sorted(map(tuple, dots.tolist())) == sorted([(5, 1.0), (5, 0.2), (5, 0.9), (9, 0.1), (9, 0.1), (9, 0.1)])
    # Steps to 99 %: the mean of the seeds that got there, and k/n where some did not.
    assert ax_steps.lines[0].get_ydata()[0] == pytest.approx(200)
    assert sorted(text.get_text() for text in ax_steps.texts) == ["0/3", "2/3"]
