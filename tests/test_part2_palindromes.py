"""Tests of the palindrome experiment: dataset, vanilla RNN, LSTM classifier, training and the sweep CLI."""
from __future__ import annotations

import json

import pytest
import torch
from torch.nn import functional as F

from part2.model import LSTM
from part2.palindrome_model import PalindromeLSTM, VanillaRNN
import part2.palindromes as palindromes
from part2.palindromes import PalindromeDataset, generate_palindromes, main, steps_to_accuracy, train_palindrome


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
    train_palindrome("rnn", 30, train_steps=6, batch_size=32, num_hidden=4, eval_batches=3, seed=seed, progress=False)
    assert len(drawn) == 6 + 3  # the training batches, then the held-out ones
    assert not as_rows(drawn[:6]) & as_rows(drawn[6:])


def test_dataset_items_are_deterministic_palindromes() -> None:
    dataset = PalindromeDataset(8, seed=0)
    inputs, target = dataset[12345]
    again_inputs, again_target = PalindromeDataset(8, seed=0)[12345]
    assert inputs.shape == (7,) and target.shape == ()
    assert torch.equal(inputs, again_inputs) and torch.equal(target, again_target)
    full = torch.cat([inputs, target[None]])
    assert torch.equal(full, full.flip(0))
    assert dataset.generate_palindrome().shape == (8,)
    assert len(dataset) > 10**9


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
    result = train_palindrome(
        model_name, 5, train_steps=150, batch_size=64, lr=1e-2, num_hidden=32, eval_batches=4, progress=False
    )
    assert result["accuracy"] >= 0.97
    assert result["loss"] < 0.2
    assert result["history"][-1][1] < result["history"][0][1]


def test_training_is_seeded() -> None:
    kwargs = dict(train_steps=5, batch_size=16, num_hidden=8, eval_batches=1, progress=False)
    first = train_palindrome("rnn", 6, seed=4, **kwargs)
    second = train_palindrome("rnn", 6, seed=4, **kwargs)
    third = train_palindrome("rnn", 6, seed=5, **kwargs)
    assert first["history"] == second["history"] and first["loss"] == second["loss"]
    assert first["history"] != third["history"]


def test_steps_to_accuracy() -> None:
    history = [[10, 2.3, 0.1], [20, 0.4, 0.95], [30, 0.05, 0.995], [40, 0.01, 1.0]]
    assert steps_to_accuracy(history) == 30
    assert steps_to_accuracy(history, threshold=0.9) == 20
    assert steps_to_accuracy(history[:2]) is None


def test_sweep_cli_writes_results_and_resumes(tmp_path, capsys) -> None:
    base = ["--train_steps", "3", "--batch_size", "8", "--num_hidden", "8", "--eval_batches", "1"]
    base += ["--device", "cpu", "--results_dir", str(tmp_path)]
    main(["--min_length", "3", "--max_length", "5", "--length_step", "2", *base])
    data = json.loads((tmp_path / "results.json").read_text())
    assert set(data["results"]) == {"rnn", "lstm"}
    for per_length in data["results"].values():
        assert set(per_length) == {"3", "5"}
        for result in per_length.values():
            assert 0.0 <= result["accuracy"] <= 1.0 and result["steps"] == 3
            assert {"loss", "train_loss", "seconds", "history"} <= set(result)
    assert (tmp_path / "palindrome_accuracy.png").stat().st_size > 0

    # Resubmitting a longer sweep trains only the new lengths and keeps the old results as they were.
    main(["--min_length", "3", "--max_length", "7", "--length_step", "2", *base])
    assert "resuming: 4 of 6" in capsys.readouterr().out
    resumed = json.loads((tmp_path / "results.json").read_text())
    for name in ("rnn", "lstm"):
        assert set(resumed["results"][name]) == {"3", "5", "7"}
        assert resumed["results"][name]["3"] == data["results"][name]["3"]

    # A different budget in the same folder is refused with a one-line error.
    with pytest.raises(SystemExit, match="error: .*different configuration"):
        main(["--min_length", "3", "--max_length", "5", "--length_step", "2", *base, "--lr", "0.1"])

    # A second sweep (another initialisation) can draw the first one's curves in its figure, if the budget matches.
    other = tmp_path / "uniform"
    args = ["--min_length", "3", "--max_length", "3", "--models", "rnn", "--rnn_init", "uniform", *base]
    main([*args, "--results_dir", str(other), "--compare_dirs", str(tmp_path)])
    assert json.loads((other / "results.json").read_text())["config"]["rnn_init"] == "uniform"
    assert (other / "palindrome_accuracy.png").stat().st_size > 0
    with pytest.raises(SystemExit, match="error: .*another budget"):
        main([*args, "--results_dir", str(tmp_path / "more_steps"), "--train_steps", "4", "--compare_dirs", str(tmp_path)])
    with pytest.raises(SystemExit, match="error: no results.json"):
        main([*args, "--results_dir", str(other), "--compare_dirs", str(tmp_path / "missing")])


def test_sweep_cli_rejects_bad_lengths(tmp_path) -> None:
    with pytest.raises(SystemExit, match="error: --max_length"):
        main(["--min_length", "10", "--max_length", "5", "--results_dir", str(tmp_path)])
