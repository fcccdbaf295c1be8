"""CIFAR-10 for Question 1.2: found and decoded once, split 45k/5k, augmented and normalised in whole batches.

The 60,000 images are decoded once into ``uint8`` tensors ``(N, 3, 32, 32)`` and cached as
``<data_dir>/cifar10_uint8.pt`` when that folder is writable, so later runs load them in under a second.
``--data_dir D`` is resolved in this order:

1. the decoded cache ``D/cifar10_uint8.pt``;
2. an image folder ``D/train/<class>/*`` and ``D/test/<class>/*`` (or under ``D/cifar10/``), classes in
   alphabetical order (= the standard labels);
3. the archive ``D/cifar10-jpeg.tar.gz`` (or ``D`` itself a ``.tar.gz``), decoded from the tar stream;
4. torchvision's ``D/cifar-10-batches-py``, downloaded when missing.
"""

from __future__ import annotations

import functools
import io
import math
import os
import tarfile
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as nnf
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from common.io import load_checkpoint, save_torch
from common.runtime import UserError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR_MEAN = (0.491, 0.482, 0.447)
CIFAR_STD = (0.247, 0.243, 0.262)
CACHE_NAME = "cifar10_uint8.pt"
CACHE_KEYS = ("train_x", "train_y", "test_x", "test_y")
ARCHIVE_NAME = "cifar10-jpeg.tar.gz"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
SPLIT_SEED = 42
# Subsets are fixed (not tied to --seed) so that every model and seed is trained and tested on the same images.
SUBSET_SEED = SPLIT_SEED
TEST_SUBSET_SEED = 0

CifarTensors = dict[str, torch.Tensor]


# --------------------------------------------------------------------------- loading
def _decode_all(blobs: list[bytes], names: list[str], where: str) -> torch.Tensor:
    """Encoded images -> ``(N, 3, H, W)`` uint8 RGB: JPEGs in one batched libjpeg call, other formats by PIL."""
    is_jpeg = [Path(name).suffix.lower() in (".jpg", ".jpeg") for name in names]
    out: list[torch.Tensor | None] = [None] * len(blobs)
    jpeg_idx = [i for i, jpeg in enumerate(is_jpeg) if jpeg]
    try:
        if jpeg_idx:
            with warnings.catch_warnings():  # torchvision flags its libjpeg bindings as deprecated; they still work
                warnings.simplefilter("ignore", DeprecationWarning)
                data = [torch.frombuffer(bytearray(blobs[i]), dtype=torch.uint8) for i in jpeg_idx]
                for i, image in zip(jpeg_idx, decode_jpeg(data, mode=ImageReadMode.RGB)):
                    out[i] = image
        for i in (i for i, jpeg in enumerate(is_jpeg) if not jpeg):
            with Image.open(io.BytesIO(blobs[i])) as image:
                out[i] = torch.from_numpy(np.array(image.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1)
        return torch.stack(out)
    except (RuntimeError, OSError, ValueError):
        raise UserError(
            f"could not decode the images in {where} (a truncated or corrupt image?); fetch it again"
        ) from None


def _assemble(items: dict[str, list[tuple[str, str, bytes]]], where: str) -> CifarTensors:
    """``{split: [(class, file name, encoded image)]}`` -> tensors sorted by class then name, labels alphabetical."""
    out: CifarTensors = {}
    for split in ("train", "test"):
        entries = sorted(items.get(split, []), key=lambda item: (item[0], item[1]))
        if not entries:
            raise UserError(f"no {split}/<class>/<image> files found in {where}; check --data_dir")
        classes = sorted({cls for cls, _, _ in entries})
        out[f"{split}_x"] = _decode_all([blob for _, _, blob in entries], [name for _, name, _ in entries], where)
        out[f"{split}_y"] = torch.tensor([classes.index(cls) for cls, _, _ in entries], dtype=torch.int64)
    return out


def _find_image_folder(root: Path) -> Path | None:
    for candidate in (root, root / "cifar10"):
        if (candidate / "train").is_dir() and (candidate / "test").is_dir():
            return candidate
    return None


def _load_image_folder(root: Path) -> CifarTensors:
    items = {
        split: [
            (folder.name, f.name, f.read_bytes())
            for folder in (root / split).iterdir()
            if folder.is_dir()
            for f in folder.iterdir()
            if f.suffix.lower() in IMAGE_SUFFIXES
        ]
        for split in ("train", "test")
    }
    return _assemble(items, str(root))


def _load_archive(path: Path) -> CifarTensors:
    """Decode the ``train/<class>/<file>`` and ``test/<class>/<file>`` members of a tar archive."""
    items: dict[str, list[tuple[str, str, bytes]]] = {"train": [], "test": []}
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                parts = Path(member.name).parts
                wanted = len(parts) >= 3 and parts[-3] in items and Path(parts[-1]).suffix.lower() in IMAGE_SUFFIXES
                if member.isfile() and wanted:
                    items[parts[-3]].append((parts[-2], parts[-1], archive.extractfile(member).read()))
    except (tarfile.TarError, EOFError, zlib.error, OSError):
        raise UserError(
            f"{path} is not a valid CIFAR-10 archive (truncated?); delete it and fetch it again, "
            "or point --data_dir at another copy"
        ) from None
    return _assemble(items, f"archive {path}")


def _load_torchvision(root: Path) -> CifarTensors:
    from torchvision.datasets import CIFAR10

    try:
        sets = {split: CIFAR10(str(root), train=split == "train", download=True) for split in ("train", "test")}
    except Exception as error:  # no network, DNS failure, refused write, bad checksum ...
        raise UserError(
            f"CIFAR-10 not found in {root} and the download failed ({type(error).__name__}); pass --data_dir "
            f"pointing at a local copy (an image folder train/<class>/*.jpg and test/<class>/*.jpg, or the archive "
            f"{ARCHIVE_NAME}), or run with network access so torchvision can download CIFAR-10 into --data_dir"
        ) from None
    out: CifarTensors = {}
    for split, dataset in sets.items():
        out[f"{split}_x"] = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
        out[f"{split}_y"] = torch.tensor(dataset.targets, dtype=torch.int64)
    return out


def _load_cache(path: Path) -> CifarTensors:
    hint = "delete it or choose another --data_dir"
    return load_checkpoint(path, "decoded CIFAR-10 cache", required_keys=CACHE_KEYS, hint=hint)


def _save_cache(data: CifarTensors, folder: Path) -> None:
    """Write the decoded tensors atomically, unless ``folder`` is read-only (also by mode only, e.g. for root)."""
    if not folder.is_dir() or not os.access(folder, os.W_OK) or not folder.stat().st_mode & 0o222:
        print(f"not caching decoded CIFAR-10: {folder} is not a writable folder")
        return
    try:
        save_torch(data, folder / CACHE_NAME)
    except OSError as error:
        print(f"not caching decoded CIFAR-10 in {folder} ({error.strerror or error})")


@functools.lru_cache(maxsize=2)
def _load_cached(path: str) -> CifarTensors:
    root = Path(path)
    if root.is_file() and root.name.endswith((".tar.gz", ".tgz", ".tar")):
        archive, folder = root, root.parent
    else:
        archive, folder = root / ARCHIVE_NAME, root
    if (folder / CACHE_NAME).is_file():
        return _load_cache(folder / CACHE_NAME)
    image_folder = _find_image_folder(root) if root.is_dir() else None
    if image_folder is not None:
        print(f"decoding the CIFAR-10 image folder {image_folder}")
        data = _load_image_folder(image_folder)
    elif archive.is_file():
        print(f"decoding the CIFAR-10 archive {archive}")
        data = _load_archive(archive)
    else:
        data = _load_torchvision(folder)
    _save_cache(data, folder)
    return data


def load_cifar10(data_dir: str | os.PathLike) -> CifarTensors:
    """``{"train_x": (50000, 3, 32, 32) uint8, "train_y": (50000,) int64, "test_x": (10000, ...), "test_y": ...}``.

    Cached per process and on disk; any problem with the data is one ``UserError`` saying what to do.
    """
    # absolute(), not resolve(): a symlinked archive's cache belongs beside the link, not its target.
    return _load_cached(str(Path(data_dir).expanduser().absolute()))


# --------------------------------------------------------------------------- splits
def train_val_split(num_train: int, seed: int = SPLIT_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """The 45,000 / 5,000 split: ``random_split(ds, [n - n // 10, n // 10], Generator().manual_seed(seed))``."""
    perm = torch.randperm(num_train, generator=torch.Generator().manual_seed(seed))
    num_val = num_train // 10
    return perm[: num_train - num_val], perm[num_train - num_val :]


def subset_indices(labels: torch.Tensor, size: int | None, seed: int) -> torch.Tensor:
    """A fixed, class-balanced, sorted subset of ``size`` indices (all indices if ``None`` or too large).

    ``size // C`` images per class (the remainder from the first classes), each class's chosen by a seeded permutation.
    """
    if size is None or size >= len(labels):
        return torch.arange(len(labels))
    if size <= 0:
        raise ValueError(f"subset size must be positive, got {size}")
    generator = torch.Generator().manual_seed(seed)
    classes = labels.unique()
    chosen = []
    for rank, cls in enumerate(classes.tolist()):
        members = (labels == cls).nonzero().flatten()
        take = size // len(classes) + (rank < size % len(classes))
        chosen.append(members[torch.randperm(len(members), generator=generator)[:take]])
    return torch.cat(chosen).sort().values


def train_val_indices(
    train_labels: torch.Tensor, train_subset: int | None, val_subset: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices into the 50,000 training images of the (subsets of the) training and validation splits."""
    train_idx, val_idx = train_val_split(len(train_labels))
    train_idx = train_idx[subset_indices(train_labels[train_idx], train_subset, SUBSET_SEED)]
    val_idx = val_idx[subset_indices(train_labels[val_idx], val_subset, SUBSET_SEED)]
    return train_idx, val_idx


def indices_of_test_set(test_labels: torch.Tensor, test_subset: int | None) -> torch.Tensor:
    """Indices of the (fixed, class-balanced subset of the) test set."""
    return subset_indices(test_labels, test_subset, TEST_SUBSET_SEED)


# --------------------------------------------------------------------------- transforms
def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(..., 3, H, W)`` in [0, 255] -> float32 in [0, 1] (as ``ToTensor``)."""
    return images.float().div_(255)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Per-channel ``(x - mean) / std`` with the CIFAR-10 statistics, for ``(..., 3, H, W)``."""
    mean = torch.tensor(CIFAR_MEAN, device=images.device).view(3, 1, 1)
    std = torch.tensor(CIFAR_STD, device=images.device).view(3, 1, 1)
    return (images - mean) / std


def random_resized_crop_params(
    n: int, size: int, scale: tuple[float, float], ratio: tuple[float, float], generator: torch.Generator
) -> torch.Tensor:
    """``(n, 4)`` crop boxes ``(top, left, h, w)`` as ``RandomResizedCrop.get_params``, vectorised.

    Ten attempts per image; the first valid one is used, the whole image when none is (as torchvision does).
    """
    attempts = 10
    area = float(size * size)
    target = area * torch.empty(n, attempts).uniform_(scale[0], scale[1], generator=generator)
    log_r = torch.empty(n, attempts).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = log_r.exp()
    w = (target * aspect).sqrt().round().long()
    h = (target / aspect).sqrt().round().long()
    valid = (w > 0) & (w <= size) & (h > 0) & (h <= size)
    first = valid.float().argmax(dim=1)
    rows = torch.arange(n)
    h, w, ok = h[rows, first], w[rows, first], valid.any(dim=1)
    h, w = torch.where(ok, h, size), torch.where(ok, w, size)
    top = (torch.rand(n, generator=generator) * (size - h + 1)).long()
    left = (torch.rand(n, generator=generator) * (size - w + 1)).long()
    return torch.stack([top, left, h, w], dim=1)


def crop_resize_flip(images: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Crop ``(N, C, H, W)`` images to ``boxes`` ``(N, 4)``, resize bilinearly back to ``H x W``, mirror where ``flip``.

    One ``grid_sample`` call, equal up to rounding to ``hflip(resized_crop(img, *box, [H, W], antialias=False))``
    per image: a crop is never larger than the image, so it is only upsampled, where antialiasing does nothing.
    """
    n, _, height, width = images.shape
    top, left, h, w = (v[:, None] for v in boxes.to(images.device, images.dtype).unbind(1))

    def source(start: torch.Tensor, length: torch.Tensor, size: int) -> torch.Tensor:
        # Pixel sampled for output i, as interpolate(align_corners=False) on the crop, in grid units.
        i = torch.arange(size, device=images.device, dtype=images.dtype)
        pos = (start + (i + 0.5) * length / size - 0.5).clamp(min=start, max=start + length - 1)
        return (2 * pos + 1) / size - 1

    ys = source(top, h, height)
    xs = source(left, w, width)
    xs = torch.where(flip.to(images.device)[:, None], xs.flip(1), xs)
    grid = torch.stack(torch.broadcast_tensors(xs[:, None, :], ys[:, :, None]), dim=-1)
    return nnf.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The template's training augmentation on floats ``(N, 3, 32, 32)`` in [0, 1]:
    ``RandomHorizontalFlip()`` and ``RandomResizedCrop(32, scale=(0.8, 1.0), ratio=(0.9, 1.1))``."""
    n, size = images.shape[0], images.shape[-1]
    boxes = random_resized_crop_params(n, size, (0.8, 1.0), (0.9, 1.1), generator)
    flip = torch.rand(n, generator=generator) < 0.5
    return crop_resize_flip(images, boxes, flip)


# --------------------------------------------------------------------------- loaders
class TensorBatches(torch.utils.data.Dataset):
    """Normalised batches from in-memory uint8 images ``(N, 3, H, W)`` and labels ``(N,)``; item ``i`` is batch ``i``.

    With ``train=True`` the order is reshuffled and the images augmented from generators seeded by
    ``(seed, epoch, batch)``: results do not depend on the number of workers, and a resumed run sees the same
    batches as an uninterrupted one. The last, smaller batch is kept.
    """

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, train: bool = False, seed: int = 0
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def _order(self) -> torch.Tensor:
        if not self.train:
            return torch.arange(len(self.labels))
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(len(self.labels), generator=generator)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        idx = self._order()[index * self.batch_size : (index + 1) * self.batch_size]
        x = to_float(self.images[idx])
        if self.train:
            generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 100_003 + index)
            x = augment(x, generator)
        return normalize(x), self.labels[idx]


def make_loader(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    train: bool = False,
    seed: int = 0,
    num_workers: int = 0,
) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` of whole :class:`TensorBatches` batches; ``loader.dataset.set_epoch(e)`` reshuffles."""
    batches = TensorBatches(images, labels, batch_size, train=train, seed=seed)
    return torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False, num_workers=num_workers)
