"""Models for QM9 regression: an MLP on padded, flattened molecules and a graph neural network."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.nn import MFConv, RGCNConv, global_add_pool


class MLP(nn.Module):
    r"""Multi-layer perceptron: ``[Linear -> ReLU] * len(n_hidden) -> Linear``.

    Args:
        n_inputs: input features per sample.
        n_hidden: widths of the hidden layers; an empty list gives a linear model.
        n_outputs: outputs per sample.

    Shape:
        ``forward``: ``[batch, n_inputs]`` -> ``[batch, n_outputs]``.
    """

    def __init__(self, n_inputs: int, n_hidden: Sequence[int], n_outputs: int) -> None:
        super().__init__()
        widths = [n_inputs, *n_hidden]
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(width_in, width_out), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], n_outputs))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


class GNN(nn.Module):
    r"""Graph neural network with relational (bond-type) and degree-aware convolutions.

    .. math::
        h^{(0)} = W_e x, \qquad
        h^{(b+1)} = \mathrm{MFConv}\big(\mathrm{ReLU}(\mathrm{RGCNConv}(\mathrm{ReLU}(h^{(b)}), r))\big), \\
        \hat y_G = W_2 \, \mathrm{ReLU}\Big(W_1 \sum_{v \in G} h^{(B)}_v + b_1\Big) + b_2,

    where the relation ``r`` of an edge is its bond type (single, double,
    triple, aromatic), so ``RGCNConv`` learns one message weight per bond type.
    Summing over the nodes makes the prediction invariant to the atom order.

    Args:
        n_node_features: node input features (one-hot atom type, 5).
        n_edge_features: edge input features (one-hot bond type, 4); also the number of relations.
        n_hidden: width of the node embeddings.
        n_output: outputs per graph.
        num_convolution_blocks: number of (RGCNConv, MFConv) blocks.

    Shape:
        ``forward(x [num_nodes, n_node_features], edge_index [2, num_edges],
        edge_attr [num_edges, n_edge_features], batch_idx [num_nodes])`` -> ``[num_graphs, n_output]``.
    """

    def __init__(
        self,
        n_node_features: int,
        n_edge_features: int,
        n_hidden: int,
        n_output: int,
        num_convolution_blocks: int,
    ) -> None:
        super().__init__()
        self.embedding = nn.Linear(n_node_features, n_hidden)
        self.relational_convs = nn.ModuleList(
            RGCNConv(n_hidden, n_hidden, num_relations=n_edge_features) for _ in range(num_convolution_blocks)
        )
        self.mf_convs = nn.ModuleList(MFConv(n_hidden, n_hidden) for _ in range(num_convolution_blocks))
        self.head = nn.Sequential(nn.Linear(n_hidden, n_hidden), nn.ReLU(), nn.Linear(n_hidden, n_output))

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, batch_idx: Tensor) -> Tensor:
        edge_type = edge_attr.argmax(dim=1)
        h = self.embedding(x)
        for relational_conv, mf_conv in zip(self.relational_convs, self.mf_convs):
            h = relational_conv(torch.relu(h), edge_index, edge_type)
            h = mf_conv(torch.relu(h), edge_index)
        return self.head(global_add_pool(h, batch_idx))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device
