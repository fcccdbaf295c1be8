"""Question 3.6 (b)/(d) as a student's part3/networks.py: our MLP and GNN (part3.model), template-shaped.

Read as text by the test builder, which replaces the template's classes with these.
"""

import torch
import torch.nn as nn
import torch_geometric.nn as geom_nn


class MLP(nn.Module):
    def __init__(self, n_inputs, n_hidden, n_outputs):
        super().__init__()
        widths = [n_inputs, *n_hidden]
        layers = []
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(width_in, width_out), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], n_outputs))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        out = self.layers(x)
        return out

    @property
    def device(self):
        return next(self.parameters()).device


class GNN(nn.Module):
    def __init__(self, n_node_features, n_edge_features, n_hidden, n_output, num_convolution_blocks):
        super().__init__()
        self.embedding = nn.Linear(n_node_features, n_hidden)
        self.relational_convs = nn.ModuleList(
            geom_nn.RGCNConv(n_hidden, n_hidden, num_relations=n_edge_features) for _ in range(num_convolution_blocks)
        )
        self.mf_convs = nn.ModuleList(geom_nn.MFConv(n_hidden, n_hidden) for _ in range(num_convolution_blocks))
        self.head = nn.Sequential(nn.Linear(n_hidden, n_hidden), nn.ReLU(), nn.Linear(n_hidden, n_output))

    def forward(self, x, edge_index, edge_attr, batch_idx):
        edge_type = edge_attr.argmax(dim=1)
        h = self.embedding(x)
        for relational_conv, mf_conv in zip(self.relational_convs, self.mf_convs):
            h = relational_conv(torch.relu(h), edge_index, edge_type)
            h = mf_conv(torch.relu(h), edge_index)
        out = self.head(geom_nn.global_add_pool(h, batch_idx))
        return out

    @property
    def device(self):
        return next(self.parameters()).device
