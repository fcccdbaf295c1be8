"""CIFAR-10 for Part 1b: locating, decoding once, splitting, batched augmentation.

The 60,000 images are decoded a single time into ``uint8`` tensors of shape
``(N, 3, 32, 32)`` and, when the data folder is writable, cached there as
``cifar10_uint8.pt`` so that later runs load them in well under a second.
Augmentation and normalisation run on whole batches of tensors; no image is
opened or converted with PIL inside the training loop.

``--data_dir D`` is resolved in this order:

1. the decoded cache ``D/cifar10_uint8.pt``;
2. an image-folder copy ``D/train/<class>/*`` and ``D/test/<class>/*``
   (also ``D/cifar10/train`` ...), labels in alphabetical class order;
3. the archive ``D/cifar10-jpeg.tar.gz`` (or ``D`` itself being a ``.tar.gz``),
   decoded straight from the tar stream without extracting it;
4. torchvision's ``D/cifar-10-batches-py``, downloaded when missing.
"""
from __future__ import annotations

import functools
import io
import logging
import math
import os
import tarfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as nnf
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from part1.checkpoint import save_atomic

logger = logging.getLogger(__name__)

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR_MEAN = (0.491, 0.482, 0.447)
CIFAR_STD = (0.247, 0.243, 0.262)
CACHE_NAME = "cifar10_uint8.pt"
ARCHIVE_NAME = "cifar10-jpeg.tar.gz"
SPLIT_SEED = 42
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
# The subset of the test set used with --test_subset is the same for every model and
# every --seed, so that CE/RCE always compare models on identical images.
TEST_SUBSET_SEED = 0

CifarTensors = dict[str, torch.Tensor]


# --------------------------------------------------------------------------- loading
def _decode_all(blobs: list[bytes], names: list[str]) -> torch.Tensor:
    """Encoded images -> ``(N, 3, H, W)`` uint8 RGB.

    JPEGs go through one batched ``torchvision.io.decode_jpeg`` call (libjpeg-turbo,
    about 4x faster than PIL image by image, same pixels); other formats through PIL.
    """
    is_jpeg = [Path(n).suffix.lower() in (".jpg", ".jpeg") for n in names]
    out: list[torch.Tensor | None] = [None] * len(blobs)
    jpeg_idx = [i for i, j in enumerate(is_jpeg) if j]
    if jpeg_idx:
        with warnings.catch_warnings():
            # torchvision 0.29 flags its libjpeg bindings as deprecated in favour of TorchCodec,
            # which is not a dependency here; they still work.
            warnings.simplefilter("ignore", DeprecationWarning)
            decoded = decode_jpeg([torch.frombuffer(bytearray(blobs[i]), dtype=torch.uint8) for i in jpeg_idx],
                                  mode=ImageReadMode.RGB)
        for i, img in zip(jpeg_idx, decoded):
            out[i] = img
    for i in (i for i, j in enumerate(is_jpeg) if not j):
        with Image.open(io.BytesIO(blobs[i])) as img:
            out[i] = torch.from_numpy(np.array(img.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1)
    return torch.stack(out)


def _assemble(items: dict[str, list[tuple[str, str, bytes]]], where: str) -> CifarTensors:
    """``{split: [(class, file name, encoded image)]}`` -> tensors, sorted by class then name.

    Labels are the classes' positions in alphabetical order (as ``ImageFolder``;
    for CIFAR-10 the standard labels).
    """
    out: CifarTensors = {}
    for split in ("train", "test"):
        entries = sorted(items.get(split, []), key=lambda item: (item[0], item[1]))
        if not entries:
            raise FileNotFoundError(f"no {split}/<class>/<image> files found in {where}")
        classes = sorted({cls for cls, _, _ in entries})
        out[f"{split}_x"] = _decode_all([blob for _, _, blob in entries], [name for _, name, _ in entries])
        out[f"{split}_y"] = torch.tensor([classes.index(cls) for cls, _, _ in entries], dtype=torch.int64)
    return out


def _find_image_folder(root: Path) -> Path | None:
    for candidate in (root, root / "cifar10"):
        if (candidate / "train").is_dir() and (candidate / "test").is_dir():
            return candidate
    return None


def _load_image_folder(root: Path) -> CifarTensors:
    items: dict[str, list[tuple[str, str, bytes]]] = {}
    for split in ("train", "test"):
        items[split] = [
            (folder.name, f.name, f.read_bytes())
            for folder in (root / split).iterdir() if folder.is_dir()
            for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES
        ]
    return _assemble(items, str(root))


def _load_archive(path: Path) -> CifarTensors:
    """Decode the ``train/<class>/<file>`` and ``test/<class>/<file>`` members of a tar archive."""
    items: dict[str, list[tuple[str, str, bytes]]] = {"train": [], "test": []}
    with tarfile.open(path, "r:*") as tf:
        for member in tf:
            parts = Path(member.name).parts
            wanted = len(parts) >= 3 and parts[-3] in items and Path(parts[-1]).suffix.lower() in IMAGE_SUFFIXES
            if member.isfile() and wanted:
                items[parts[-3]].append((parts[-2], parts[-1], tf.extractfile(member).read()))
    return _assemble(items, f"archive {path}")


def _load_torchvision(root: Path) -> CifarTensors:
    from torchvision.datasets import CIFAR10

    try:
        sets = {split: CIFAR10(str(root), train=split == "train", download=True) for split in ("train", "test")}
    except Exception as err:  # no network, DNS failure, refused write, bad checksum ...
        raise FileNotFoundError(
            f"CIFAR-10 not found in {root} and the download failed ({type(err).__name__}: {err}). "
            f"Either pass --data_dir pointing at a local copy (an image folder with train/<class>/*.jpg "
            f"and test/<class>/*.jpg, or the archive {ARCHIVE_NAME}), "
            f"or run with network access so torchvision can download CIFAR-10 into --data_dir."
        ) from err
    out: CifarTensors = {}
    for split, ds in sets.items():
        out[f"{split}_x"] = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        out[f"{split}_y"] = torch.tensor(ds.targets, dtype=torch.int64)
    return out


def _save_cache(data: CifarTensors, folder: Path) -> None:
    """Write the decoded tensors atomically; skip (with one log line) if ``folder`` is read-only.

    A folder without any write permission bit counts as read-only even for root,
    who could write there anyway (e.g. a shared, read-only-by-mode data copy).
    """
    if not folder.is_dir() or not os.access(folder, os.W_OK) or not folder.stat().st_mode & 0o222:
        logger.info("not caching decoded CIFAR-10: %s is not a writable folder", folder)
        return
    try:
        save_atomic(data, folder / CACHE_NAME)
    except OSError as err:
        logger.info("not caching decoded CIFAR-10 in %s (%s)", folder, err.strerror or err)


@functools.lru_cache(maxsize=2)
def _load_cached(path: str) -> CifarTensors:
    root = Path(path)
    if root.is_file() and root.name.endswith((".tar.gz", ".tgz", ".tar")):
        archive, folder = root, root.parent
    else:
        archive, folder = root / ARCHIVE_NAME, root
    if (folder / CACHE_NAME).is_file():
        return torch.load(folder / CACHE_NAME, weights_only=True)
    image_folder = _find_image_folder(root) if root.is_dir() else None
    if image_folder is not None:
        logger.info("decoding CIFAR-10 image folder %s", image_folder)
        data = _load_image_folder(image_folder)
    elif archive.is_file():
        logger.info("decoding CIFAR-10 archive %s", archive)
        data = _load_archive(archive)
    else:
        data = _load_torchvision(folder)
    _save_cache(data, folder)
    return data


def load_cifar10(data_dir: str | os.PathLike) -> CifarTensors:
    """Load CIFAR-10 as decoded uint8 tensors (cached per process and on disk).

    Args:
        data_dir: folder (or ``.tar.gz`` archive) resolved as described in the module docstring.

    Returns:
        ``{"train_x": (50000, 3, 32, 32) uint8, "train_y": (50000,) int64,
        "test_x": (10000, 3, 32, 32) uint8, "test_y": (10000,) int64}`` for the real data set.

    Raises:
        FileNotFoundError: with one message naming both ways to provide the data.
    """
    # absolute(), not resolve(): a symlinked archive's cache belongs beside the link, not its target.
    return _load_cached(str(Path(data_dir).expanduser().absolute()))


# --------------------------------------------------------------------------- splits
def train_val_split(num_train: int, seed: int = SPLIT_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the 45,000 / 5,000 train/validation split of the 50,000 training images.

    Matches ``torch.utils.data.random_split(ds, [n - n // 10, n // 10],
    generator=torch.Generator().manual_seed(seed))`` as in the course template
    (``n // 10`` is 5,000 for CIFAR-10).
    """
    perm = torch.randperm(num_train, generator=torch.Generator().manual_seed(seed))
    num_val = num_train // 10
    return perm[: num_train - num_val], perm[num_train - num_val :]


def subset_indices(labels: torch.Tensor, size: int | None, seed: int) -> torch.Tensor:
    """A fixed, class-balanced subset of ``size`` indices (all indices, in order, if ``None``).

    Takes ``size // C`` images of each of the ``C`` classes (the remainder from the
    first classes), each class's images chosen by a seeded permutation; returned sorted.
    """
    if size is None or size >= len(labels):
        return torch.arange(len(labels))
    if size <= 0:
        raise ValueError(f"subset size must be positive, got {size}")
    gen = torch.Generator().manual_seed(seed)
    classes = labels.unique()
    chosen = []
    for rank, cls in enumerate(classes.tolist()):
        members = (labels == cls).nonzero().flatten()
        take = size // len(classes) + (rank < size % len(classes))
        chosen.append(members[torch.randperm(len(members), generator=gen)[:take]])
    return torch.cat(chosen).sort().values


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
    """Crop boxes ``(top, left, h, w)`` for ``n`` square images, as ``RandomResizedCrop.get_params``.

    Ten attempts per image, vectorised; the first valid one is used, and a centre
    crop of the whole image when none is valid (as torchvision does).

    Returns:
        ``(n, 4)`` int64 tensor.
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
    """Crop each image to its box, resize bilinearly back to ``H x W``, then mirror where ``flip``.

    One ``grid_sample`` call for the whole batch, equal (up to float rounding) to
    ``hflip(resized_crop(img, top, left, h, w, [H, W], antialias=False))`` per
    image: the boxes are never larger than the image, so every crop is upsampled
    (or kept), where antialiasing has no effect.

    Args:
        images: ``(N, C, H, W)`` float.
        boxes: ``(N, 4)`` integer ``(top, left, h, w)``.
        flip: ``(N,)`` bool.

    Returns:
        ``(N, C, H, W)`` float.
    """
    n, _, height, width = images.shape
    top, left, h, w = (v[:, None] for v in boxes.to(images.device, images.dtype).unbind(1))

    def source(start, length, size):
        # Pixel coordinate sampled for output pixel i, as interpolate(align_corners=False) on the
        # crop: start + (i + 0.5) * length / size - 0.5, clamped to the crop; then in grid units.
        i = torch.arange(size, device=images.device, dtype=images.dtype)
        pos = (start + (i + 0.5) * length / size - 0.5).clamp(min=start, max=start + length - 1)
        return (2 * pos + 1) / size - 1

    ys = source(top, h, height)
    xs = source(left, w, width)
    xs = torch.where(flip.to(images.device)[:, None], xs.flip(1), xs)
    grid = torch.stack(torch.broadcast_tensors(xs[:, None, :], ys[:, :, None]), dim=-1)
    return nnf.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Training augmentation on a float batch ``(N, 3, 32, 32)`` in [0, 1].

    ``RandomHorizontalFlip()`` and ``RandomResizedCrop(32, scale=(0.8, 1.0), ratio=(0.9, 1.1))``.
    """
    n, size = images.shape[0], images.shape[-1]
    boxes = random_resized_crop_params(n, size, (0.8, 1.0), (0.9, 1.1), generator)
    flip = torch.rand(n, generator=generator) < 0.5
    return crop_resize_flip(images, boxes, flip)


# --------------------------------------------------------------------------- loaders
class TensorBatches(torch.utils.data.Dataset):
    """Batches of normalised images from in-memory uint8 tensors; item ``i`` is batch ``i``.

    Used with ``DataLoader(batch_size=None)`` so that optional worker processes
    prepare whole batches. With ``train=True`` the order is reshuffled and the
    images augmented, both from generators seeded by ``(seed, epoch, batch)``,
    so results do not depend on the number of workers and a resumed run sees the
    same batches as an uninterrupted one. Keeps the last, smaller batch.

    Args:
        images: ``(N, 3, H, W)`` uint8.
        labels: ``(N,)`` int64.
        batch_size: images per batch.
        train: shuffle and augment.
        seed: base seed of the shuffling and augmentation.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, train: bool = False,
                 seed: int = 0) -> None:
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
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(len(self.labels), generator=gen)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        idx = self._order()[index * self.batch_size : (index + 1) * self.batch_size]
        x = to_float(self.images[idx])
        if self.train:
            gen = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 100_003 + index)
            x = augment(x, gen)
        return normalize(x), self.labels[idx]


def make_loader(images: torch.Tensor, labels: torch.Tensor, batch_size: int, train: bool = False, seed: int = 0,
                num_workers: int = 0) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` over :class:`TensorBatches` (see there); ``loader.dataset.set_epoch`` reshuffles."""
    batches = TensorBatches(images, labels, batch_size, train=train, seed=seed)
    return torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False, num_workers=num_workers)


def iterate_batches(images: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """Consecutive slices of ``images`` of at most ``batch_size`` along dim 0."""
    for start in range(0, len(images), batch_size):
        yield images[start : start + batch_size]
