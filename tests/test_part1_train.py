"""Part 1b's models, training loop, checkpoints, testing under corruption and ``main``.

Unit tests use tiny synthetic CIFAR-shaped data (``test_part1_data.synthetic_cifar10``); one integration test
trains ``debug`` (and a one-step ``resnet18``, the CE/RCE normaliser) on a subset of the offline CIFAR-10 copy.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_part1_data import write_synthetic_cache
from torch import nn

from common.runtime import UserError, grad_scaler
from part1 import data, evaluate, report, train
from part1.corruptions import CORRUPTIONS
from part1.model import MODEL_NAMES, get_model

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture
def synthetic_dir(tmp_path: Path) -> Path:
    return write_synthetic_cache(tmp_path / "data")


# --------------------------------------------------------------------------- models
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_get_model_output_shape(name):
    model = get_model(name).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_unknown_model_lists_choices():
    with pytest.raises(ValueError, match="resnet18.*densenet121"):
        get_model("resnet50")


def test_template_names_importable_from_part1_train():
    for name in ("get_model", "train_model", "evaluate_model", "test_model", "main"):
        assert callable(getattr(train, name))
    assert train.get_model is get_model


# --------------------------------------------------------------------------- one step, precisions
@pytest.mark.parametrize(
    "precision, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)]
)
def test_train_step_runs_forward_under_autocast_and_keeps_fp32_weights(precision, dtype):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    optimizer, _ = train.make_optimizer(model, lr=0.1, epochs=10)
    scaler = grad_scaler(torch.device("cpu"), precision)
    assert scaler.is_enabled() == (precision == "fp16")
    before = model[1].weight.detach().clone()
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8)
    loss, logits = train.train_step(model, x, y, optimizer, scaler, torch.device("cpu"), precision)
    assert logits.dtype == dtype and torch.isfinite(loss)
    assert model[1].weight.dtype == torch.float32 and not model[1].weight.equal(before)


def test_channels_last_reaches_the_model():
    seen = []

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3 * 32 * 32, 10)

        def forward(self, x):
            seen.append(x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())
            return self.linear(x.flatten(1))

    model, device = Spy(), torch.device("cpu")
    optimizer, _ = train.make_optimizer(model, lr=0.1, epochs=10)
    x, y = torch.randn(4, 3, 32, 32), torch.arange(4)
    train.train_step(model, x, y, optimizer, grad_scaler(device, "fp32"), device, channels_last=True)
    evaluate.predict(model, x, device, channels_last=True)
    train.train_step(model, x, y, optimizer, grad_scaler(device, "fp32"), device, channels_last=False)
    assert seen == [True, True, False]


# --------------------------------------------------------------------------- the training loop
def _train(synthetic_dir: Path, checkpoint: Path, epochs: int = 3, **options) -> nn.Module:
    torch.manual_seed(0)
    options = {"seed": 1, "log_dir": checkpoint.parent / "tb"} | options
    return train.train_model(get_model("debug"), 0.01, 32, epochs, synthetic_dir, checkpoint, "cpu", **options)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_train_model_in_every_precision(synthetic_dir, tmp_path, precision):
    _train(synthetic_dir, tmp_path / "debug.pt", epochs=1, precision=precision)
    saved = train.load_checkpoint(tmp_path / "debug.pt")
    assert saved["finished"] and saved["settings"]["precision"] == precision
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in saved["history"])


def test_lr_schedule_steps_once_per_epoch(synthetic_dir, tmp_path):
    """lr / 10 after 60 % and after 90 % of the epochs (the template's milestones [90, 135] of 150)."""
    _train(synthetic_dir, tmp_path / "debug.pt", epochs=10)
    lrs = [row["lr"] for row in train.load_checkpoint(tmp_path / "debug.pt")["history"]]
    assert lrs == pytest.approx([0.01] * 6 + [0.001] * 3 + [0.0001])
    optimizer, scheduler = train.make_optimizer(nn.Linear(1, 1), lr=0.01, epochs=150)
    assert sorted(scheduler.milestones.elements()) == [90, 135] and optimizer.defaults["momentum"] == 0.9
    assert optimizer.defaults["weight_decay"] == 5e-4


def test_best_validation_weights_are_returned_and_saved(synthetic_dir, tmp_path, monkeypatch):
    """Validation 0.3, 0.9, 0.5: the epoch-2 weights are returned and saved, not the last ones."""
    weights, accuracies = [], iter([0.3, 0.9, 0.5])

    def fake_evaluate(model, *args, **kwargs):
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(accuracies)

    monkeypatch.setattr(train, "evaluate", fake_evaluate)
    model = _train(synthetic_dir, tmp_path / "debug.pt", epochs=3)
    saved = train.load_checkpoint(tmp_path / "debug.pt")
    assert saved["epoch"] == 2 and saved["val_accuracy"] == 0.9
    for key, value in model.state_dict().items():
        assert value.equal(weights[1][key]) and saved["model_state"][key].equal(weights[1][key])
        assert not value.equal(weights[2][key])


def test_resume_equals_uninterrupted_run(synthetic_dir, tmp_path, monkeypatch):
    straight = _train(synthetic_dir, tmp_path / "a" / "debug.pt")
    assert not train.resume_path(tmp_path / "a" / "debug.pt").exists()

    original, calls = train.train_one_epoch, []

    def crash_in_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(train, "train_one_epoch", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        _train(synthetic_dir, tmp_path / "b" / "debug.pt")
    assert train.load_checkpoint(train.resume_path(tmp_path / "b" / "debug.pt"), ("epoch",))["epoch"] == 1
    monkeypatch.setattr(train, "train_one_epoch", original)
    with pytest.raises(UserError, match=r"debug.last.pt was made with other settings \(lr: 0.01 -> 0.02\)"):
        train.train_model(get_model("debug"), 0.02, 32, 3, synthetic_dir, tmp_path / "b" / "debug.pt", "cpu", seed=1)
    resumed = _train(synthetic_dir, tmp_path / "b" / "debug.pt")
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    saved = train.load_checkpoint(tmp_path / "b" / "debug.pt")
    assert saved["finished"] and [row["epoch"] for row in saved["history"]] == [1, 2, 3]


# --------------------------------------------------------------------------- testing
class _AlwaysZero(nn.Module):
    def forward(self, x):
        return torch.zeros(len(x), 10).index_fill_(1, torch.tensor([0]), 1.0)


def test_evaluate_model_counts_every_image():
    labels = torch.tensor([0, 0, 0, 1, 0, 2, 0, 0, 3, 0])  # 7 of 10 are class 0
    loader = [(torch.zeros(len(chunk), 3, 32, 32), chunk) for chunk in labels.split(3)]  # 3 + 3 + 3 + 1
    assert train.evaluate_model(_AlwaysZero(), loader, "cpu") == pytest.approx(0.7)


def test_test_model_returns_all_corrupted_sets(synthetic_dir):
    results = train.test_model(_AlwaysZero(), 16, synthetic_dir, "cpu", seed=0)
    assert results["clean"] == pytest.approx(0.1)
    assert set(results) == {"clean", "gaussian_noise", "gaussian_blur", "contrast", "jpeg"}
    assert all(v == pytest.approx([0.1] * 5) for k, v in results.items() if k != "clean")


def test_corruption_is_applied_before_normalisation(synthetic_dir):
    """The model sees normalize(corruption(to_float(images))) for every corruption and severity."""
    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            seen.append(x.clone())
            return torch.zeros(len(x), 10)

    seed, batch_size = 3, 16
    train.test_model(Spy(), batch_size, synthetic_dir, "cpu", seed)
    images = data.load_cifar10(synthetic_dir)["test_x"]
    expected = [data.normalize(data.to_float(x)) for x in images.split(batch_size)]
    for index, (name, severity) in enumerate(evaluate.TEST_SETS):
        corruption, generator = CORRUPTIONS[name](severity), evaluate.corruption_generator(seed, index)
        expected += [data.normalize(corruption(data.to_float(x), generator)) for x in images.split(batch_size)]
    assert len(seen) == len(expected) == 21 * 4
    for got, want in zip(seen, expected):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- main
def test_main_writes_json_and_reuses_a_finished_run(synthetic_dir, tmp_path, monkeypatch):
    kwargs = dict(results_dir=tmp_path / "res", device="cpu", test_subset=20, precision="bf16")
    first = train.main("debug", 0.01, 32, 2, synthetic_dir, 0, **kwargs)
    saved = json.loads((tmp_path / "res" / "debug.json").read_text())
    assert saved == json.loads(json.dumps(first))
    assert saved["num_test_images"] == 20 and saved["config"]["epochs"] == 2 and saved["precision"] == "bf16"
    assert [row["epoch"] for row in saved["history"]] == [1, 2]
    assert all(len(v) == 5 for v in saved["corrupted_accuracy"].values())

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished run must be reported, not trained or tested again")

    monkeypatch.setattr(train, "train_model", must_not_run)
    monkeypatch.setattr(train, "test_model", must_not_run)
    assert train.main("debug", 0.01, 32, 2, synthetic_dir, 0, **kwargs) == first
    with pytest.raises(UserError, match=r"holds a run with other settings \(lr: 0.01 -> 0.1\)"):
        train.main("debug", 0.1, 32, 2, synthetic_dir, 0, **kwargs)


def test_main_retests_a_finished_checkpoint_without_results(synthetic_dir, tmp_path, monkeypatch):
    kwargs = dict(results_dir=tmp_path / "res", device="cpu", test_subset=20)
    first = train.main("debug", 0.01, 32, 1, synthetic_dir, 0, **kwargs)
    (tmp_path / "res" / "debug.json").unlink()
    monkeypatch.setattr(train, "train_model", lambda *a, **k: pytest.fail("a finished checkpoint must be loaded"))
    again = train.main("debug", 0.01, 32, 1, synthetic_dir, 0, **kwargs)
    assert again["clean_accuracy"] == first["clean_accuracy"] and again["history"] == first["history"]


# --------------------------------------------------------------------------- integration
def test_cli_end_to_end_on_cifar10(shared_data, tmp_path):
    archive = shared_data / "cifar10" / data.ARCHIVE_NAME
    if not archive.is_file():
        pytest.skip(f"{archive} not found")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / data.ARCHIVE_NAME).symlink_to(archive)
    results = tmp_path / "results"
    common = ["--data_dir", str(data_dir), "--results_dir", str(results), "--epochs", "1", "--device", "cpu"]
    common += ["--test_subset", "100", "--val_subset", "200"]
    train.cli(["--model_name", "debug", "--train_subset", "2000", "--batch_size", "32", *common])
    # ResNet-18 only as the CE/RCE normaliser of the table: one step on 100 images keeps it quick.
    train.cli(["--model_name", "resnet18", "--train_subset", "100", "--batch_size", "100", *common])

    saved = json.loads((results / "debug.json").read_text())
    assert saved["num_test_images"] == 100 and saved["config"]["train_subset"] == 2000
    assert set(saved["corrupted_accuracy"]) == {"gaussian_noise", "gaussian_blur", "contrast", "jpeg"}
    # A linear model trained for one epoch on 2,000 images is above chance (10 %) on 200 validation images.
    assert 0.15 < saved["best_val_accuracy"] <= 1 and 0.1 < saved["clean_accuracy"] <= 1
    assert (data_dir / data.CACHE_NAME).is_file()

    report.cli(["--results_dir", str(results), "--out_dir", str(tmp_path / "report")])
    table = (tmp_path / "report" / "ce_rce_table.md").read_text()
    assert "| debug |" in table and "| resnet18 |" in table and "mCE" in table
    for figure in ("resnet18_accuracy_vs_severity.png", "accuracy_vs_severity_grid.png", "ce_rce_bars.png"):
        assert (tmp_path / "report" / figure).stat().st_size > 10_000
    summary = json.loads((tmp_path / "report" / "ce_rce_table.json").read_text())
    assert summary["resnet18"]["mce"] == pytest.approx(1.0)
