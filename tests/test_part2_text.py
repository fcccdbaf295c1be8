"""Part 2 text generation: dataset, sampling, training, resume and the CLIs."""

from __future__ import annotations

import math
from argparse import Namespace
from pathlib import Path

import pytest
import torch
from helpers import file_hashes

from common.runtime import UserError, grad_scaler
from part2 import generate, plots
from part2.dataset import TextDataset, read_text, samples_to_strings, text_collate_fn
from part2.model import TextGenerationModel
from part2.train import main as train_main
from part2.train import parse_args, train, train_step

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def tiny_model(num_layers: int = 1, vocabulary_size: int = 11) -> TextGenerationModel:
    torch.manual_seed(0)
    return TextGenerationModel(
        Namespace(vocabulary_size=vocabulary_size, embedding_size=6, lstm_hidden_dim=16, lstm_num_layers=num_layers)
    )


def test_dataset_encoding_targets_and_collate(tmp_path: Path) -> None:
    path = tmp_path / "book.md"  # any extension
    path.write_bytes("\ufeffabcabd\nxyz".encode())
    dataset = TextDataset(path, seq_length=4, step_size=2, random_select=False)
    assert dataset.text == "abcabd\nxyz"  # the byte-order mark is dropped
    assert dataset.chars == sorted(set("abcabd\nxyz")) and dataset.vocabulary_size == 8
    inputs, targets = dataset[1]
    assert dataset.convert_to_string(inputs) == "cabd" and dataset.convert_to_string(targets) == "abd\n"
    assert len(dataset) == 3  # start offsets 0, 2, 4 of the 6 possible
    assert dataset.convert_to_string(dataset[len(dataset) - 1][1]) == "d\nxy"
    batch_inputs, batch_targets = text_collate_fn([dataset[0], dataset[1], dataset[2]])
    assert batch_inputs.shape == (4, 3) and batch_targets.shape == (4, 3)
    assert torch.equal(batch_inputs[1:], batch_targets[:-1])
    assert samples_to_strings(batch_inputs, dataset.chars) == ["abca", "cabd", "bd\nx"]


def test_latin1_fallback_and_random_select(tmp_path: Path) -> None:
    path = tmp_path / "book.tex"
    path.write_bytes("caf\xe9 \xb7 na\xefve".encode("latin-1"))
    assert read_text(path) == "café · naïve"
    dataset = TextDataset(path, seq_length=3, seed=1)
    for _ in range(20):
        inputs, targets = dataset[0]
        text = dataset.convert_to_string(inputs + targets[-1:])
        assert text in "café · naïve"


def test_short_file_and_missing_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "short.txt"
    path.write_text("abc", encoding="utf-8")
    TextDataset(path, seq_length=2)
    with pytest.raises(UserError, match="fewer than one sequence"):
        TextDataset(path, seq_length=3)
    with pytest.raises(UserError, match="--txt_file"):
        TextDataset(tmp_path / "missing.txt", seq_length=3)
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--txt_file", str(path), "--input_seq_length", "30", "--results_dir", str(tmp_path / "r")])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("num_layers", [1, 2])
def test_text_model_shapes_and_state(num_layers: int) -> None:
    model = tiny_model(num_layers)
    x = torch.randint(11, (9, 3))
    logits, state = model(x, return_state=True)
    assert logits.shape == (9, 3, 11) and len(state) == num_layers
    first, mid_state = model(x[:5], return_state=True)
    second = model(x[5:], mid_state)
    torch.testing.assert_close(torch.cat([first, second]), logits, atol=1e-6, rtol=0)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_greedy_sampling_is_deterministic_and_equals_argmax_decoding(num_layers: int) -> None:
    model = tiny_model(num_layers)
    samples = model.sample(batch_size=6, sample_length=25, temperature=0.0, generator=torch.Generator().manual_seed(1))
    again = model.sample(batch_size=6, sample_length=25, temperature=0.0, generator=torch.Generator().manual_seed(1))
    assert samples.shape == (25, 6) and torch.equal(samples, again)
    assert len(set(samples[0].tolist())) == 6  # different start characters
    with torch.no_grad():
        assert torch.equal(model(samples[:-1]).argmax(-1), samples[1:])


def test_prime_and_temperature_behaviour() -> None:
    model = tiny_model()
    generator = torch.Generator().manual_seed(2)
    primed = model.sample(batch_size=3, sample_length=12, temperature=1.0, prime=[4, 2, 7], generator=generator)
    assert primed[:3].tolist() == [[4] * 3, [2] * 3, [7] * 3]
    greedy = model.sample(batch_size=4, sample_length=20, temperature=0.0, prime=[5])
    assert torch.equal(
        model.sample(batch_size=4, sample_length=20, temperature=1e-4, prime=[5], generator=generator), greedy
    )

    # The next character follows softmax(logits / temperature), and the entropy of what the sampler
    # draws grows with the temperature (the tiny model's logits span little, hence the small temperatures).
    with torch.no_grad():
        logits = model(torch.tensor([[3]]))[0, 0]
    entropies = []
    for temperature in (0.01, 0.03, 0.1, 100.0):
        samples = model.sample(
            batch_size=4000, sample_length=2, temperature=temperature, prime=[3], generator=generator
        )
        frequencies = torch.bincount(samples[1], minlength=11).float() / 4000
        expected = torch.softmax(logits / temperature, dim=0)
        assert (frequencies - expected).abs().sum() / 2 < 0.04
        drawn = frequencies[frequencies > 0]
        entropies.append(-(drawn * drawn.log()).sum().item())
    assert entropies == sorted(entropies) and entropies[0] < entropies[-1] - 1.0
    assert entropies[-1] > 0.99 * math.log(11)
    with pytest.raises(ValueError):
        model.sample(temperature=-1.0)


def test_sampling_records_no_autograd_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    """``sample`` is inference: no forward pass it makes may build a graph (memory and time for nothing)."""
    model = tiny_model()
    grad_modes = []
    forward = model.forward

    def recording_forward(*args, **kwargs):
        grad_modes.append(torch.is_grad_enabled())
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", recording_forward)
    model.sample(batch_size=2, sample_length=5, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert grad_modes and not any(grad_modes)


def _tiny_argv(book: Path, results_dir: Path, num_epochs: int, *extra: str) -> list[str]:
    return [
        "--txt_file",
        str(book),
        "--results_dir",
        str(results_dir),
        "--num_epochs",
        str(num_epochs),
        "--lstm_hidden_dim",
        "24",
        "--embedding_size",
        "8",
        "--batch_size",
        "8",
        "--input_seq_length",
        "12",
        "--max_steps_per_epoch",
        "3",
        "--long_sample_length",
        "40",
        "--sample_epochs",
        "2",
        "--device",
        "cpu",
        *extra,
    ]


def _tiny_train_args(book: Path, results_dir: Path, num_epochs: int, *extra: str) -> Namespace:
    args = parse_args(_tiny_argv(book, results_dir, num_epochs, *extra))
    args.argv = _tiny_argv(book, results_dir, num_epochs, *extra)
    return args


def vars_to_argv(args: Namespace, extra: list[str]) -> list[str]:
    """The command line of ``_tiny_train_args`` with ``extra`` options appended (later options win)."""
    return [*args.argv, *extra]


def test_resume_gives_the_same_training_as_uninterrupted(tmp_path: Path) -> None:
    book = tmp_path / "book.txt"
    book.write_text("the quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    straight = train(_tiny_train_args(Path(book.name), tmp_path / "straight", 3, "--data_dir", str(tmp_path)))
    train(_tiny_train_args(book, tmp_path / "resumed", 1))
    resumed = train(_tiny_train_args(book, tmp_path / "resumed", 3, "--resume"))
    assert [e["loss"] for e in resumed] == [e["loss"] for e in straight]
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for name in ("metrics.json", "curves.png", "samples.md", "samples.json"):
        assert (tmp_path / "resumed" / name).is_file()
    assert (tmp_path / "straight" / "samples.md").read_text() == (tmp_path / "resumed" / "samples.md").read_text()
    assert b["chars"] == sorted(set(book.read_text()))
    plots.main(["--results_dir", str(tmp_path / "resumed"), "--output", str(tmp_path / "redrawn.png")])
    assert (tmp_path / "redrawn.png").stat().st_size > 10_000


def test_generate_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    book = tmp_path / "book.txt"
    book.write_text("once upon a time there was a king. " * 30, encoding="utf-8")
    train(_tiny_train_args(book, tmp_path, 1))
    capsys.readouterr()
    generate.main(
        [
            "--checkpoint",
            str(tmp_path / "checkpoint.pt"),
            "--prime",
            "once",
            "--length",
            "20",
            "--num_samples",
            "3",
            "--temperature",
            "0.5",
            "--device",
            "cpu",
        ]
    )
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("once")]
    assert len(printed) == 3


def test_short_training_on_a_book_lowers_the_loss(shared_data: Path, tmp_path: Path) -> None:
    book = shared_data / "books" / "book_EN_grimms_fairy_tails.txt"
    args = parse_args(
        [
            "--txt_file",
            str(book),
            "--results_dir",
            str(tmp_path),
            "--num_epochs",
            "4",
            "--lstm_hidden_dim",
            "64",
            "--embedding_size",
            "16",
            "--batch_size",
            "32",
            "--max_steps_per_epoch",
            "12",
            "--lr",
            "1e-2",
            "--sample_epochs",
            "--device",
            "cpu",
        ]
    )
    history = train(args)
    assert history[0]["loss"] > 3.3  # about log(86) at the start, then below 3 within the 48 steps
    assert history[-1]["loss"] < history[0]["loss"] - 0.5
    assert history[-1]["accuracy"] > history[0]["accuracy"] + 0.05


def test_gradient_clipping_bounds_every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    norms = []
    real_step = optimizer.step

    def spy_step(*args, **kwargs):
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())
        return real_step(*args, **kwargs)

    monkeypatch.setattr(optimizer, "step", spy_step)
    scaler = grad_scaler(torch.device("cpu"), "fp32")
    for _ in range(4):
        x = torch.randint(11, (7, 5))
        train_step(model, x, torch.randint(11, (7, 5)), optimizer, torch.nn.CrossEntropyLoss(), 1e-3, "fp32", scaler)
    assert len(norms) == 4 and max(norms) <= 1e-3 * (1 + 1e-4)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_every_precision_trains_on_cpu(precision: str) -> None:
    model = tiny_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    scaler = grad_scaler(torch.device("cpu"), precision)
    x = torch.randint(11, (9, 6), generator=torch.Generator().manual_seed(0))
    losses = [
        train_step(model, x[:-1], x[1:], optimizer, torch.nn.CrossEntropyLoss(), 5.0, precision, scaler)[0]
        for _ in range(15)
    ]
    assert losses[-1] < losses[0] - 0.5
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_rerun_with_other_settings_is_refused_and_overwrite_moves_the_run_aside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    book = tmp_path / "book.txt"
    book.write_text("the quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    results = tmp_path / "run"
    train(_tiny_train_args(book, results, 1))
    before = file_hashes(results)
    for changed in (["--lr", "0.01"], ["--seed", "3"], ["--max_steps_per_epoch", "2"], ["--precision", "bf16"]):
        with pytest.raises(SystemExit) as exit_info:
            train_main(vars_to_argv(_tiny_train_args(book, results, 1), changed))
        assert exit_info.value.code == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and "--overwrite" in error[0] and changed[0].lstrip("-") in error[0]
        assert file_hashes(results) == before
    train_main(vars_to_argv(_tiny_train_args(book, results, 1), ["--lr", "0.01", "--overwrite"]))
    moved = list(results.glob("superseded-*"))
    assert len(moved) == 1
    assert file_hashes(moved[0]) == before  # the old run, byte for byte
    assert (results / "checkpoint.pt").is_file()


def test_truncated_checkpoint_gives_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    book = tmp_path / "book.txt"
    book.write_text("once upon a time there was a king. " * 30, encoding="utf-8")
    train(_tiny_train_args(book, tmp_path, 1))
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(SystemExit) as exit_info:
        train_main(vars_to_argv(_tiny_train_args(book, tmp_path, 2), []))
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "checkpoint.pt is not a valid" in error[0] and "delete it" in error[0]


def test_the_template_defaults_of_the_text_model() -> None:
    args = parse_args(["--txt_file", "book.txt"])
    assert (args.input_seq_length, args.lstm_hidden_dim, args.embedding_size, args.lstm_num_layers) == (
        30,
        1024,
        256,
        1,
    )
    assert (args.batch_size, args.lr, args.epochs, args.clip_grad_norm, args.seed) == (128, 1e-3, 20, 5.0, 0)
    assert parse_args(["--txt_file", "book.txt", "--num_epochs", "3"]).epochs == 3  # the template's name
