"""Mini-batches of a QM9 split, gathered from the stored tensors with vectorised indexing.

PyTorch Geometric's ``DataLoader`` builds one ``Data`` object per molecule and
collates them in Python, which costs more than training the MLP; this loader
returns the same ``Batch`` objects without per-molecule Python work (timing:
``python -m part3.benchmarks.loader``, see part3/README.md).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch_geometric.data import Batch

from part3.data import QM9


class GraphLoader:
    """Batches of ``batch_size`` molecules of ``dataset`` (a split returned by ``get_qm9``), like PyG's.

    Batches hold ``x``, ``z``, ``edge_index`` (batch-wide node numbers), ``edge_attr``, ``y``, ``idx``,
    ``batch`` and ``ptr``; the last batch may be smaller. ``shuffle`` reorders the molecules every
    epoch with ``generator`` (seeded for reproducible runs).
    """

    def __init__(
        self, dataset: QM9, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.dataset, self.batch_size, self.shuffle, self.generator = dataset, batch_size, shuffle, generator
        self._data = dataset._data
        device = self._data.x.device
        self._indices = torch.as_tensor(dataset.indices(), dtype=torch.long).to(device)
        self._node_ptr = dataset.slices["x"].to(device)
        self._edge_ptr = dataset.slices["edge_index"].to(device)

    def __len__(self) -> int:
        return (len(self._indices) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[Batch]:
        order = self._indices
        if self.shuffle:
            order = order[torch.randperm(len(order), generator=self.generator).to(order.device)]
        for start in range(0, len(order), self.batch_size):
            yield self.collate(order[start : start + self.batch_size])

    def collate(self, graphs: Tensor) -> Batch:
        """The batch of the stored molecules ``graphs`` (dataset-wide indices), in that order."""
        nodes, batch, ptr = _ranges(self._node_ptr, graphs)
        edges, edge_graph, _ = _ranges(self._edge_ptr, graphs)
        data = self._data
        return Batch(
            x=data.x[nodes],
            z=data.z[nodes],
            edge_index=data.edge_index[:, edges] + ptr[edge_graph],  # molecule-local -> batch-wide numbers
            edge_attr=data.edge_attr[edges],
            y=data.y[graphs],
            idx=data.idx[graphs],
            batch=batch,
            ptr=ptr,
        )


def _ranges(pointer: Tensor, graphs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The rows ``pointer[g]:pointer[g + 1]`` of every ``g`` in ``graphs``, concatenated.

    Returns ``(rows, graph of each row [0, len(graphs)), start of each graph's rows [len(graphs) + 1])``.
    """
    start, count = pointer[graphs], pointer[graphs + 1] - pointer[graphs]
    graph = torch.repeat_interleave(torch.arange(len(graphs), device=graphs.device), count)
    offset = torch.cat([torch.zeros(1, dtype=torch.long, device=graphs.device), torch.cumsum(count, 0)])
    return start[graph] + torch.arange(len(graph), device=graphs.device) - offset[graph], graph, offset
