"""MLP and GNN: shapes, architecture, and what an atom permutation does to each."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch_geometric.nn import MFConv, RGCNConv

from part3 import data as qm9
from part3.model import GNN, MLP
from part3.train import permute_indices


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def molecules(qm9_data_dir):
    """A batch of 64 validation molecules."""
    valid = qm9.get_qm9(qm9_data_dir)[1]
    return qm9.GraphLoader(valid, batch_size=64).collate(torch.tensor(valid.indices()[:64]))


def _gnn(seed: int = 0) -> GNN:
    torch.manual_seed(seed)
    return GNN(qm9.Z_ONE_HOT_DIM, qm9.EDGE_ATTR_DIM, n_hidden=32, n_output=1, num_convolution_blocks=2)


def test_mlp_layers_and_shapes():
    model = MLP(10, [16, 8], 3)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(10, 16), (16, 8), (8, 3)]
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 2
    assert model(torch.randn(5, 10)).shape == (5, 3)
    assert model.device == torch.device("cpu")


def test_mlp_without_hidden_layers_is_linear():
    model = MLP(4, [], 2)
    (linear,) = [m for m in model.modules() if isinstance(m, nn.Linear)]
    x = torch.randn(6, 4)
    assert torch.allclose(model(x), x @ linear.weight.T + linear.bias)


def test_gnn_architecture_and_output_shape(molecules):
    model = _gnn()
    assert len(model.relational_convs) == len(model.mf_convs) == 2
    assert all(isinstance(c, RGCNConv) and c.num_relations == 4 for c in model.relational_convs)
    assert all(isinstance(c, MFConv) for c in model.mf_convs)
    out = model(molecules.x, molecules.edge_index, molecules.edge_attr, molecules.batch)
    assert out.shape == (molecules.num_graphs, 1)
    assert model.device == torch.device("cpu")


def test_gnn_uses_bond_types(molecules):
    model = _gnn()
    args = (molecules.x, molecules.edge_index)
    original = model(*args, molecules.edge_attr, molecules.batch)
    swapped = model(*args, molecules.edge_attr[:, [1, 0, 2, 3]], molecules.batch)  # single <-> double
    assert not torch.allclose(original, swapped, atol=1e-4)


def test_gnn_is_invariant_to_atom_permutations(molecules):
    model = _gnn()
    original = model(molecules.x, molecules.edge_index, molecules.edge_attr, molecules.batch)
    for seed in range(3):
        permuted = permute_indices(molecules, torch.Generator().manual_seed(seed))
        assert not torch.equal(permuted.x, molecules.x)
        prediction = model(permuted.x, permuted.edge_index, permuted.edge_attr, permuted.batch)
        assert torch.allclose(prediction, original, atol=1e-5, rtol=0)


def test_mlp_predictions_change_under_atom_permutations(molecules):
    torch.manual_seed(0)
    model = MLP(qm9.FLAT_INPUT_DIM, [32], 1)
    original = model(qm9.get_mlp_features(molecules))
    permuted = permute_indices(molecules, torch.Generator().manual_seed(0))
    prediction = model(qm9.get_mlp_features(permuted))
    changed = (prediction - original).abs().squeeze(1) > 1e-4
    assert changed.float().mean() > 0.9
