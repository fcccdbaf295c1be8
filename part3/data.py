"""QM9 as a PyTorch Geometric ``InMemoryDataset`` cached on disk, and its training, validation and test splits.

:class:`QM9` builds the graphs once (:mod:`part3.graphs`) and caches them in
``<data_dir>/qm9/processed/``; :func:`get_qm9` orders the molecules by a fixed
permutation, splits them 100,000 / 10,000 / 20,831 and z-scores the chosen
target with the statistics of the training split only (the template used the
whole data set's, which leaks test statistics into training).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from torch_geometric.data import Data, InMemoryDataset

from common.io import load_checkpoint, save_torch
from common.runs import ensure_writable
from common.runtime import UserError
from part3.graphs import QM9_SIZE, TARGETS, build_qm9_tensors, read_qm9pack

NUM_TRAIN = 100_000
NUM_VALID = 10_000
CACHE_FILE = "qm9pack_graphs_v2.pt"


def cache_path(data_dir: str | Path) -> Path:
    """Where the processed graphs of ``--data_dir`` are cached."""
    return Path(data_dir) / "qm9" / "processed" / CACHE_FILE


def check_data_dir(data_dir: str | Path) -> None:
    """Fail with one line, before any work, if the cache is missing and its folder cannot be written."""
    _check_cache_writable(cache_path(data_dir))


def _check_cache_writable(path: Path) -> None:
    if not path.is_file():
        ensure_writable(path.parent, what="the QM9 cache ", option="--data_dir")


class QM9(InMemoryDataset):
    """QM9 (130,831 molecules) from qm9pack, built once and cached; attributes as in :func:`build_qm9_tensors`.

    Args:
        root: dataset folder (``<data_dir>/qm9``); the cache is ``<root>/processed/<CACHE_FILE>``.
        transform: optional transform applied to each ``Data`` on access.
        num_workers: processes used while building (default: the usable CPU cores).
    """

    def __init__(self, root: str | Path, transform: Callable | None = None, num_workers: int | None = None) -> None:
        super().__init__(None, transform)  # no root: PyG's own download/process steps are not used
        path = Path(root) / "processed" / CACHE_FILE
        if not path.is_file():
            _check_cache_writable(path)
            tensors, slices = build_qm9_tensors(read_qm9pack(), num_workers)
            save_torch({"tensors": tensors, "slices": slices}, path)
        hint = "delete it or choose another --data_dir"
        cache = load_checkpoint(path, "QM9 dataset", required_keys=("tensors", "slices"), hint=hint)
        self.data, self.slices = Data.from_dict(cache["tensors"]), cache["slices"]


def load_permutation(path: str | Path) -> Tensor:
    """The split permutation saved in ``path`` (``torch.save`` of a tensor, like the course's ``permute.pt``)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"permutation file {path} does not exist; pass an existing file to --permutation")
    try:
        permutation = torch.load(path, weights_only=True)
    except Exception:
        permutation = None
    return check_permutation(permutation, str(path))


def check_permutation(permutation: object, source: str = "the split permutation") -> Tensor:
    """``permutation`` as a long tensor if it is a permutation of ``range(QM9_SIZE)``; otherwise one-line error."""
    if isinstance(permutation, Tensor) and permutation.shape == (QM9_SIZE,) and not permutation.is_floating_point():
        permutation = permutation.long()
        if torch.equal(torch.sort(permutation).values, torch.arange(QM9_SIZE)):
            return permutation
    raise UserError(
        f"{source} is not a permutation of range({QM9_SIZE}); --permutation takes a torch.save'd tensor "
        "such as the course's permute.pt"
    )


def get_qm9(
    data_dir: str | Path,
    device: str | torch.device = "cpu",
    target: str = "U0_ATOM",
    permutation: str | Path | Tensor | None = None,
    seed: int = 42,
) -> tuple[QM9, QM9, QM9]:
    """Training, validation and test splits of QM9 with ``y [num_molecules, 1] = (target - mean) / std``.

    The molecules (QM9 index order) are reordered by ``permutation`` (a tensor or a file holding one;
    default: a random one drawn with ``seed``, so the seed picks the split), then split into the
    first 100,000, the next 10,000 and the remaining 20,831. Mean and std (eV) come from the
    training split only; each split carries them as ``target_mean`` and ``target_std``.

    Args:
        target: ``"U0_ATOM"`` (atomization energy at 0 K) or ``"U0"`` (internal energy at 0 K).
    """
    if target not in TARGETS:
        raise UserError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if permutation is None:
        permutation = torch.randperm(QM9_SIZE, generator=torch.Generator().manual_seed(seed))
    elif isinstance(permutation, Tensor):
        permutation = check_permutation(permutation)
    else:
        permutation = load_permutation(permutation)

    dataset = QM9(Path(data_dir) / "qm9")
    raw = dataset._data.y[:, TARGETS.index(target)].double()
    train_values = raw[permutation[:NUM_TRAIN]]
    mean, std = train_values.mean().item(), train_values.std().item()
    dataset._data.y = ((raw - mean) / std).float().unsqueeze(1)
    dataset._data = dataset._data.to(device)
    dataset.target_mean, dataset.target_std, dataset.target = mean, std, target

    dataset = dataset[permutation]
    return dataset[:NUM_TRAIN], dataset[NUM_TRAIN : NUM_TRAIN + NUM_VALID], dataset[NUM_TRAIN + NUM_VALID :]
