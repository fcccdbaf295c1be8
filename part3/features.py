"""The inputs and labels the models see, as the course template defines them.

The GNN reads the graph: one-hot atom types (:func:`get_node_features`), the bonds and
their one-hot types. The MLP reads the molecule padded to 29 atoms and flattened
(:func:`get_mlp_features`): 29 * 5 one-hot atom values and the 29 * 29 * 4 dense
bond-type adjacency, 3509 features whose positions depend on the atom order.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Batch
from torch_geometric.utils import to_dense_adj, to_dense_batch

from part3.graphs import ATOM_SYMBOLS, BOND_TYPE_NAMES, MAX_NUM_NODES

Z_ONE_HOT_DIM = len(ATOM_SYMBOLS)  # 5: H, C, N, O, F
EDGE_ATTR_DIM = len(BOND_TYPE_NAMES)  # 4: single, double, triple, aromatic
FLAT_INPUT_DIM = MAX_NUM_NODES * Z_ONE_HOT_DIM + MAX_NUM_NODES * MAX_NUM_NODES * EDGE_ATTR_DIM  # 3509


def get_labels(molecules: Batch) -> Tensor:
    """Z-scored targets ``[num_graphs]`` of a batch."""
    return molecules.y[:, 0]


def get_node_features(molecules: Batch) -> Tensor:
    """One-hot atom types ``[num_nodes, Z_ONE_HOT_DIM]``."""
    return molecules.x[:, :Z_ONE_HOT_DIM]


def get_z_one_hot(molecules: Batch) -> Tensor:
    """One-hot atom types padded to ``MAX_NUM_NODES`` atoms: ``[num_graphs, MAX_NUM_NODES, Z_ONE_HOT_DIM]``."""
    dense, _ = to_dense_batch(
        get_node_features(molecules), molecules.batch, max_num_nodes=MAX_NUM_NODES, batch_size=molecules.num_graphs
    )
    return dense


def get_dense_adj(molecules: Batch) -> Tensor:
    """``[num_graphs, MAX_NUM_NODES, MAX_NUM_NODES, EDGE_ATTR_DIM]``: entry ``[g, i, j]`` is the one-hot type
    of the bond between atoms i and j of molecule g (zeros: no bond)."""
    return to_dense_adj(
        molecules.edge_index,
        molecules.batch,
        edge_attr=molecules.edge_attr,
        max_num_nodes=MAX_NUM_NODES,
        batch_size=molecules.num_graphs,
    )


def get_mlp_features(molecules: Batch) -> Tensor:
    """``[num_graphs, FLAT_INPUT_DIM]``: the flattened :func:`get_z_one_hot` followed by the flattened
    :func:`get_dense_adj`."""
    num_graphs = molecules.num_graphs
    return torch.cat(
        [get_z_one_hot(molecules).reshape(num_graphs, -1), get_dense_adj(molecules).reshape(num_graphs, -1)], dim=1
    )
