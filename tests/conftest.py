"""Shared pytest fixtures.

The offline datasets live in ``../shared/data`` beside the repository root
(CIFAR-10 JPEGs, five books, the course's QM9 split permutation). Tests that
need them take the ``shared_data`` fixture and are skipped, with the reason,
where that folder is absent. Unit tests that need only tiny data make it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ``../shared/data``; skips the test where it does not exist."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"offline data folder {SHARED_DATA} not found (set SHARED_DATA to override)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def qm9_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One QM9 cache folder for the whole session, so the dataset is processed once."""
    return tmp_path_factory.mktemp("qm9_data")


@pytest.fixture(scope="module")
def torch_one_thread():
    """Run a test module on one thread: tiny batches gain nothing from intra-op threads,
    and on a busy machine threads that wait for each other make training ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
