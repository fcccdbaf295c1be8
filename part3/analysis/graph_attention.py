"""Question 3.5: a single-head graph-attention layer (Velickovic et al., 2018), written out.

The layer replaces the fixed GCN weights ``1 / sqrt(d_i d_j)`` by learned,
data-dependent attention coefficients over each node's neighbourhood::

    e_ij     = LeakyReLU(a^T [W h_i || W h_j])          # score of neighbour j for node i
    alpha_ij = softmax_{j in N(i)}(e_ij) = exp(e_ij) / sum_{k in N(i)} exp(e_ik)
    h_i'     = sum_{j in N(i)} alpha_ij W h_j + b

The non-linearity ``sigma`` of the written equation is left to the model that
stacks layers, as in PyTorch Geometric's ``GATConv``. This module shows the
mechanism; for real models use ``torch_geometric.nn.GATConv``, which it matches
for one head without dropout.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch_geometric.utils import add_self_loops, remove_self_loops, softmax


class GraphAttentionLayer(nn.Module):
    """Single-head graph attention.

    ``a^T [W h_i || W h_j]`` is computed as ``a_dst . W h_i + a_src . W h_j`` (the
    two halves of ``a``), so scores cost ``O(|E|)`` after one ``[N, F_in] x
    [F_in, F_out]`` product instead of materialising ``[|E|, 2 F_out]`` pairs.

    Args:
        in_features: input feature size ``F_in``.
        out_features: output feature size ``F_out``.
        negative_slope: slope of the LeakyReLU for negative scores (0.2 in the paper).
        add_self_loops: include ``i`` in its own neighbourhood ``N(i)`` (as in
            the paper), so a node keeps its own features and a node without
            neighbours still has a well-defined softmax. Without self-loops an
            isolated node gets output ``b``.
        bias: add a learned bias ``b``.

    Shapes:
        x ``[N, F_in]``; edge_index ``[2, E]`` in PyTorch Geometric's convention
        (row 0 = source ``j``, row 1 = target ``i``; messages flow ``j -> i``,
        so ``N(i)`` is the set of sources of edges into ``i``); output ``[N, F_out]``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        negative_slope: float = 0.2,
        add_self_loops: bool = True,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.negative_slope = negative_slope
        self.add_self_loops = add_self_loops
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.att_src = nn.Parameter(torch.empty(out_features))
        self.att_dst = nn.Parameter(torch.empty(out_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform ``W`` and ``a`` (as ``GATConv``), zero bias."""
        nn.init.xavier_uniform_(self.weight)
        for att in (self.att_src, self.att_dst):
            # Glorot bound for a [1, F_out] matrix, written out because xavier_uniform_ needs 2-D.
            bound = (6.0 / (1 + self.out_features)) ** 0.5
            nn.init.uniform_(att, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, return_attention_weights: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Attend over each node's incoming neighbours.

        Returns:
            ``h' [N, F_out]``; with ``return_attention_weights`` also
            ``(edge_index, alpha)``: the edges actually used (self-loops
            included when enabled) ``[2, E']`` and ``alpha_ij`` per edge ``[E']``.
        """
        if x.dim() != 2 or x.size(1) != self.in_features:
            raise ValueError(f"expected x of shape [N, {self.in_features}], got {tuple(x.shape)}")
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"expected edge_index of shape [2, E], got {tuple(edge_index.shape)}")
        num_nodes = x.size(0)
        if self.add_self_loops:
            # Drop existing loops first so that no node attends to itself twice.
            edge_index, _ = remove_self_loops(edge_index)
            edge_index, _ = add_self_loops(edge_index, num_nodes=num_nodes)
        source, target = edge_index

        wh = x @ self.weight.T
        scores = F.leaky_relu(
            (wh @ self.att_dst)[target] + (wh @ self.att_src)[source], negative_slope=self.negative_slope
        )
        alpha = softmax(scores, index=target, num_nodes=num_nodes)
        out = torch.zeros_like(wh).index_add_(0, target, alpha.unsqueeze(1) * wh[source])
        if self.bias is not None:
            out = out + self.bias
        if return_attention_weights:
            return out, (edge_index, alpha)
        return out
