"""Part 1b's CIFAR-10 pipeline: the three data sources and the cache, the split, subsets, augmentation, loaders.

Everything runs on tiny synthetic CIFAR-shaped data; ``synthetic_cifar10`` and ``write_synthetic_cache`` are
shared with the other part 1 test files.
"""

from __future__ import annotations

import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as F
from PIL import Image
from torchvision import transforms as T

from common.runtime import UserError
from part1 import data

CLASSES = data.CLASSES


def synthetic_cifar10(n_train: int, n_test: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random uint8 images whose mean colour depends on the label, so a linear model can learn."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = torch.arange(n) % 10
        x = torch.randint(0, 120, (n, 3, 32, 32), generator=generator) + (y * 13).view(n, 1, 1, 1)
        out[f"{split}_x"], out[f"{split}_y"] = x.to(torch.uint8), y
    return out


def write_synthetic_cache(folder: Path, n_train: int = 200, n_test: int = 50) -> Path:
    """A data folder holding only the decoded cache of ``n_train`` training and ``n_test`` test images."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(synthetic_cifar10(n_train, n_test), folder / data.CACHE_NAME)
    return folder


def _write_image_folder(root: Path, tensors: dict[str, torch.Tensor], suffix: str = ".png") -> None:
    for split in ("train", "test"):
        for i, (img, label) in enumerate(zip(tensors[f"{split}_x"], tensors[f"{split}_y"])):
            folder = root / split / CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i:04d}{suffix}")


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


def test_train_and_validation_subsets_stay_inside_their_split():
    labels = torch.arange(50_000) % 10
    train_idx, val_idx = data.train_val_indices(labels, 1000, 100)
    full_train, full_val = data.train_val_split(50_000)
    assert set(train_idx.tolist()) <= set(full_train.tolist()) and set(val_idx.tolist()) <= set(full_val.tolist())
    assert labels[train_idx].bincount().tolist() == [100] * 10


def test_augmentation_matches_torchvision_and_is_seeded():
    images = torch.rand(8, 3, 32, 32)
    boxes = data.random_resized_crop_params(8, 32, (0.8, 1.0), (0.9, 1.1), torch.Generator().manual_seed(0))
    flip = torch.arange(8) % 2 == 1
    out = data.crop_resize_flip(images, boxes, flip)
    for img, (top, left, h, w), f, got in zip(images, boxes.tolist(), flip, out):
        ref = F.resized_crop(img, top, left, h, w, [32, 32], antialias=False)
        torch.testing.assert_close(got, F.horizontal_flip(ref) if f else ref)
    a = data.augment(images, torch.Generator().manual_seed(1))
    assert a.equal(data.augment(images, torch.Generator().manual_seed(1)))
    assert not a.equal(data.augment(images, torch.Generator().manual_seed(2)))


def test_augmentation_is_the_templates(monkeypatch):
    """RandomResizedCrop(32, scale=(0.8, 1.0), ratio=(0.9, 1.1)) and a horizontal flip with probability 1/2."""
    seen = {}

    def spy(images, boxes, flip):
        seen["boxes"], seen["flip"] = boxes, flip
        return images

    monkeypatch.setattr(data, "crop_resize_flip", spy)
    data.augment(torch.rand(4000, 3, 32, 32), torch.Generator().manual_seed(0))
    top, left, h, w = seen["boxes"].T.double()
    area, aspect = h * w / 1024, w / h
    assert area.min() >= 0.8 - 0.07 and area.max() <= 1.0 and aspect.min() >= 0.9 - 0.07 and aspect.max() <= 1.1 + 0.07
    assert (top >= 0).all() and (top + h <= 32).all() and (left >= 0).all() and (left + w <= 32).all()
    torch.manual_seed(0)
    image = torch.zeros(3, 32, 32)
    draws = [T.RandomResizedCrop.get_params(image, [0.8, 1.0], [0.9, 1.1]) for _ in range(4000)]
    ref = torch.tensor([[int(v) for v in box] for box in draws]).double()
    assert area.mean().item() == pytest.approx((ref[:, 2] * ref[:, 3] / 1024).mean().item(), abs=0.004)
    assert aspect.mean().item() == pytest.approx((ref[:, 3] / ref[:, 2]).mean().item(), abs=0.004)
    assert seen["flip"].float().mean().item() == pytest.approx(0.5, abs=0.03)


def test_training_batches_are_augmented_and_validation_batches_are_not():
    images, labels = synthetic_cifar10(10, 1)["train_x"], torch.arange(10)
    train = data.TensorBatches(images, labels, batch_size=10, train=True, seed=3)
    x, y = train[0]
    generator = torch.Generator().manual_seed((3 * 1_000_003 + 0) * 100_003 + 0)
    order = torch.randperm(10, generator=torch.Generator().manual_seed(3 * 1_000_003))
    torch.testing.assert_close(x, data.normalize(data.augment(data.to_float(images[order]), generator)))
    assert y.equal(labels[order])
    x, y = data.TensorBatches(images, labels, batch_size=10)[0]
    assert x.equal(data.normalize(data.to_float(images))) and y.equal(labels)


def test_normalize_uses_cifar_statistics():
    x = torch.tensor(data.CIFAR_MEAN).view(3, 1, 1).expand(3, 4, 4)
    assert data.normalize(x).abs().max() < 1e-6
    assert data.normalize(x + torch.tensor(data.CIFAR_STD).view(3, 1, 1)).sub(1).abs().max() < 1e-6


def test_image_folder_and_cache(tmp_path):
    tensors = synthetic_cifar10(20, 10)
    _write_image_folder(tmp_path / "cifar10", tensors)  # the nested layout D/cifar10/train/...
    loaded = data.load_cifar10(tmp_path)
    # Files are read class by class, so compare after sorting by label (stable within a class).
    for split in ("train", "test"):
        order = tensors[f"{split}_y"].argsort(stable=True)
        assert loaded[f"{split}_x"].equal(tensors[f"{split}_x"][order])
        assert loaded[f"{split}_y"].equal(tensors[f"{split}_y"][order])
    assert (tmp_path / data.CACHE_NAME).is_file()


def test_archive_without_extracting(tmp_path):
    tensors = synthetic_cifar10(20, 10)
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
    truncated = tmp_path / "truncated" / data.ARCHIVE_NAME
    truncated.parent.mkdir()
    truncated.write_bytes((archive_dir / data.ARCHIVE_NAME).read_bytes()[:3000])
    with pytest.raises(UserError, match="truncated.*is not a valid CIFAR-10 archive .*delete it"):
        data.load_cifar10(truncated.parent)


def test_read_only_folder_is_not_written(tmp_path):
    _write_image_folder(tmp_path, synthetic_cifar10(20, 10))
    tmp_path.chmod(0o555)
    try:
        assert data.load_cifar10(tmp_path)["train_x"].shape == (20, 3, 32, 32)
        assert not (tmp_path / data.CACHE_NAME).exists()
    finally:
        tmp_path.chmod(0o755)


def test_corrupt_cache_names_the_file_and_says_to_delete_it(tmp_path):
    good = write_synthetic_cache(tmp_path / "good", 20, 10) / data.CACHE_NAME
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / data.CACHE_NAME).write_bytes(good.read_bytes()[:500])
    with pytest.raises(UserError, match=r"bad/cifar10_uint8.pt is not a valid decoded CIFAR-10 cache.*delete it"):
        data.load_cifar10(tmp_path / "bad")
    torch.save({"train_x": torch.zeros(1)}, tmp_path / "foreign.pt")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign.pt").rename(tmp_path / "foreign" / data.CACHE_NAME)
    with pytest.raises(UserError, match=r"missing train_y, test_x, test_y\); delete it or choose another --data_dir"):
        data.load_cifar10(tmp_path / "foreign")


def test_missing_data_names_both_options(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("torchvision.datasets.CIFAR10", offline)
    with pytest.raises(UserError, match="--data_dir.*image folder.*network access"):
        data.load_cifar10(tmp_path / "nothing")


def test_loader_keeps_last_batch_and_is_seeded():
    x, y = synthetic_cifar10(10, 1)["train_x"], torch.arange(10)
    loader = data.make_loader(x, y, batch_size=4, train=True, seed=3)
    first = list(loader)
    assert [len(b[1]) for b in first] == [4, 4, 2]
    assert sorted(torch.cat([b[1] for b in first]).tolist()) == list(range(10))
    assert all(a[0].equal(b[0]) for a, b in zip(first, loader))
    loader.dataset.set_epoch(1)
    assert not torch.cat([b[1] for b in loader]).equal(torch.cat([b[1] for b in first]))
