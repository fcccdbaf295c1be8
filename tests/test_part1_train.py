"""Tests of Part 1b's data pipeline, models, training loop, metrics and report.

Unit tests use tiny synthetic CIFAR-shaped data; one integration test trains
``debug`` (and a minimal ``resnet18``, the CE/RCE normaliser) on a subset of
the offline CIFAR-10 copy and builds the full results JSON and table.
"""
from __future__ import annotations

import json
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as F
from PIL import Image
from torch import nn

from part1 import data, metrics, report, train
from part1.model import MODEL_NAMES, get_model

CLASSES = data.CLASSES


def _synthetic(n_train: int, n_test: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random uint8 images whose mean colour depends on the label, so a linear model can learn."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = torch.arange(n) % 10
        x = torch.randint(0, 120, (n, 3, 32, 32), generator=gen) + (y * 13).view(n, 1, 1, 1)
        out[f"{split}_x"], out[f"{split}_y"] = x.to(torch.uint8), y
    return out


@pytest.fixture
def synthetic_dir(tmp_path: Path) -> Path:
    """A data folder holding only the decoded cache of 200 training and 50 test images."""
    torch.save(_synthetic(200, 50), tmp_path / data.CACHE_NAME)
    return tmp_path


def _write_image_folder(root: Path, tensors: dict[str, torch.Tensor], suffix: str = ".png") -> None:
    for split in ("train", "test"):
        for i, (img, label) in enumerate(zip(tensors[f"{split}_x"], tensors[f"{split}_y"])):
            folder = root / split / CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i:04d}{suffix}")


# --------------------------------------------------------------------------- models
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_get_model_output_shape(name):
    model = get_model(name).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_unknown_model_lists_choices():
    with pytest.raises(ValueError, match="resnet18.*densenet121"):
        get_model("resnet50")


# --------------------------------------------------------------------------- data
def test_split_sizes_match_random_split():
    train_idx, val_idx = data.train_val_split(50_000)
    assert len(train_idx) == 45_000 and len(val_idx) == 5_000
    assert torch.cat([train_idx, val_idx]).sort().values.equal(torch.arange(50_000))
    ref = torch.utils.data.random_split(range(50_000), [45_000, 5_000], generator=torch.Generator().manual_seed(42))
    assert train_idx.tolist() == ref[0].indices and val_idx.tolist() == ref[1].indices


def test_subset_is_class_balanced_and_fixed():
    labels = torch.arange(1000) % 10
    a = data.subset_indices(labels, 105, seed=0)
    assert len(a) == 105 and len(a.unique()) == 105
    assert labels[a].bincount().tolist() == [11] * 5 + [10] * 5
    assert a.equal(data.subset_indices(labels, 105, seed=0))
    assert data.subset_indices(labels, None, seed=0).equal(torch.arange(1000))


def test_augmentation_matches_torchvision_and_is_seeded():
    images = torch.rand(8, 3, 32, 32)
    boxes = data.random_resized_crop_params(8, 32, (0.8, 1.0), (0.9, 1.1), torch.Generator().manual_seed(0))
    flip = torch.arange(8) % 2 == 1
    out = data.crop_resize_flip(images, boxes, flip)
    for img, (top, left, h, w), f, got in zip(images, boxes.tolist(), flip, out):
        assert 0.8 * 1024 - 64 <= h * w <= 1024 and 0.85 <= w / h <= 1.15
        ref = F.resized_crop(img, top, left, h, w, [32, 32], antialias=False)
        torch.testing.assert_close(got, F.horizontal_flip(ref) if f else ref)
    a = data.augment(images, torch.Generator().manual_seed(1))
    assert a.equal(data.augment(images, torch.Generator().manual_seed(1)))
    assert not a.equal(data.augment(images, torch.Generator().manual_seed(2)))


def test_normalize_uses_cifar_statistics():
    x = torch.tensor(data.CIFAR_MEAN).view(3, 1, 1).expand(3, 4, 4)
    assert data.normalize(x).abs().max() < 1e-6
    assert data.normalize(x + torch.tensor(data.CIFAR_STD).view(3, 1, 1)).sub(1).abs().max() < 1e-6


def test_image_folder_and_cache(tmp_path):
    tensors = _synthetic(20, 10)
    _write_image_folder(tmp_path / "cifar10", tensors)  # the nested layout D/cifar10/train/...
    loaded = data.load_cifar10(tmp_path)
    # Files are read class by class, so compare after sorting by label (stable within a class).
    for split in ("train", "test"):
        order = tensors[f"{split}_y"].argsort(stable=True)
        assert loaded[f"{split}_x"].equal(tensors[f"{split}_x"][order])
        assert loaded[f"{split}_y"].equal(tensors[f"{split}_y"][order])
    assert (tmp_path / data.CACHE_NAME).is_file()


def test_archive_without_extracting(tmp_path):
    tensors = _synthetic(20, 10)
    _write_image_folder(tmp_path / "tree", tensors, suffix=".jpg")
    archive_dir = tmp_path / "archive"
    archive_dir.mkdir()
    with tarfile.open(archive_dir / data.ARCHIVE_NAME, "w:gz") as tf:
        for split in ("train", "test"):
            tf.add(tmp_path / "tree" / split, arcname=split)
    from_dir = data.load_cifar10(archive_dir)
    assert from_dir["train_x"].shape == (20, 3, 32, 32) and from_dir["test_y"].bincount().tolist() == [1] * 10
    # Batched libjpeg decoding gives PIL's pixels; test image 3 is the only one of class 3.
    with Image.open(tmp_path / "tree" / "test" / CLASSES[3] / "0003.jpg") as img:
        assert from_dir["test_x"][3].permute(1, 2, 0).numpy().tolist() == np.asarray(img).tolist()
    assert (archive_dir / data.CACHE_NAME).is_file()
    (archive_dir / data.CACHE_NAME).unlink()
    data._load_cached.cache_clear()
    from_file = data.load_cifar10(archive_dir / data.ARCHIVE_NAME)
    assert all(from_file[k].equal(from_dir[k]) for k in from_dir)


def test_read_only_folder_is_not_written(tmp_path):
    tensors = _synthetic(20, 10)
    _write_image_folder(tmp_path, tensors)
    tmp_path.chmod(0o555)
    try:
        assert data.load_cifar10(tmp_path)["train_x"].shape == (20, 3, 32, 32)
        assert not (tmp_path / data.CACHE_NAME).exists()
    finally:
        tmp_path.chmod(0o755)


def test_missing_data_names_both_options(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("torchvision.datasets.CIFAR10", offline)
    with pytest.raises(FileNotFoundError, match="--data_dir.*network access"):
        data.load_cifar10(tmp_path / "nothing")
    with pytest.raises(SystemExit, match="^error: .*image folder.*network access"):
        train.cli(["--data_dir", str(tmp_path / "still_nothing"), "--epochs", "1",
                   "--results_dir", str(tmp_path / "results")])


def test_loader_keeps_last_batch_and_is_seeded():
    x, y = _synthetic(10, 1)["train_x"], torch.arange(10)
    loader = data.make_loader(x, y, batch_size=4, train=True, seed=3)
    first = [b for b in loader]
    assert [len(b[1]) for b in first] == [4, 4, 2]
    assert sorted(torch.cat([b[1] for b in first]).tolist()) == list(range(10))
    assert all(a[0].equal(b[0]) for a, b in zip(first, loader))
    loader.dataset.set_epoch(1)
    assert not torch.cat([b[1] for b in loader]).equal(torch.cat([b[1] for b in first]))


# --------------------------------------------------------------------------- training and testing
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


def test_resume_equals_uninterrupted_run(synthetic_dir, tmp_path, monkeypatch):
    def run(ckpt: Path) -> nn.Module:
        torch.manual_seed(0)
        return train.train_model(get_model("debug"), 0.01, 32, 3, synthetic_dir, ckpt, "cpu", seed=1,
                                 log_dir=tmp_path / "tb")

    straight = run(tmp_path / "a" / "debug.pt")
    assert not train.resume_path(tmp_path / "a" / "debug.pt").exists()

    original, calls = train._train_one_epoch, []

    def crash_in_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(train, "_train_one_epoch", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b" / "debug.pt")
    state = torch.load(train.resume_path(tmp_path / "b" / "debug.pt"), weights_only=True)
    assert state["epoch"] == 1
    monkeypatch.setattr(train, "_train_one_epoch", original)
    resumed = run(tmp_path / "b" / "debug.pt")
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    saved = torch.load(tmp_path / "b" / "debug.pt", weights_only=True)
    assert saved["finished"] and 1 <= saved["epoch"] <= 3


def test_main_writes_json_and_reuses_finished_checkpoint(synthetic_dir, tmp_path, monkeypatch):
    kwargs = dict(results_dir=tmp_path / "res", device="cpu", test_subset=20)
    first = train.main("debug", 0.01, 32, 2, synthetic_dir, 0, **kwargs)
    saved = json.loads((tmp_path / "res" / "debug.json").read_text())
    assert saved == json.loads(json.dumps(first))
    assert saved["num_test_images"] == 20 and saved["config"]["epochs"] == 2
    assert all(len(v) == 5 for v in saved["corrupted_accuracy"].values())

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished checkpoint must be loaded, not retrained")

    monkeypatch.setattr(train, "train_model", must_not_train)
    again = train.main("debug", 0.01, 32, 2, synthetic_dir, 0, **kwargs)
    assert again["clean_accuracy"] == first["clean_accuracy"]
    with pytest.raises(ValueError, match="other settings"):
        train.main("debug", 0.1, 32, 2, synthetic_dir, 0, **kwargs)


# --------------------------------------------------------------------------- metrics and report
def _result(name: str, clean: float, corrupted: dict[str, list[float]], subset=None) -> dict:
    return {"model_name": name, "clean_accuracy": clean, "corrupted_accuracy": corrupted,
            "config": {"test_subset": subset}, "num_test_images": 100}


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


def test_metrics_need_resnet18_and_same_test_set(tmp_path):
    corrupted = {"noise": [0.5] * 5}
    with pytest.raises(ValueError, match="resnet18"):
        metrics.compute_ce_rce({"vgg11": _result("vgg11", 0.6, corrupted)})
    with pytest.raises(ValueError, match="test_subset"):
        metrics.compute_ce_rce({"resnet18": _result("resnet18", 0.6, corrupted),
                                "vgg11": _result("vgg11", 0.6, corrupted, subset=500)})
    (tmp_path / "vgg11.json").write_text(json.dumps(_result("vgg11", 0.6, corrupted)))
    with pytest.raises(SystemExit, match="^error: .*resnet18"):
        report.cli(["--results_dir", str(tmp_path)])


# --------------------------------------------------------------------------- integration
def test_cli_end_to_end_on_cifar10(shared_data, tmp_path):
    archive = shared_data / "cifar10" / data.ARCHIVE_NAME
    if not archive.is_file():
        pytest.skip(f"{archive} not found")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / data.ARCHIVE_NAME).symlink_to(archive)
    results = tmp_path / "results"
    common = ["--data_dir", str(data_dir), "--results_dir", str(results), "--epochs", "1", "--device", "cpu",
              "--test_subset", "100", "--val_subset", "200"]
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
