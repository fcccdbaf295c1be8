"""MLP and GNN: shapes, architecture, and what an atom permutation does to each."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch_geometric.nn import MFConv, RGCNConv

from part3 import features
from part3.data import get_qm9
from part3.loader import GraphLoader
from part3.model import GNN, MLP
from part3.train import permute_indices

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def molecules(qm9_data_dir):
    """A batch of 64 validation molecules."""
    valid = get_qm9(qm9_data_dir)[1]
    return GraphLoader(valid, batch_size=64).collate(torch.tensor(valid.indices()[:64]))


def _gnn(seed: int = 0) -> GNN:
    torch.manual_seed(seed)
    return GNN(features.Z_ONE_HOT_DIM, features.EDGE_ATTR_DIM, n_hidden=32, n_output=1, num_convolution_blocks=2)


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
    model = MLP(features.FLAT_INPUT_DIM, [32], 1)
    original = model(features.get_mlp_features(molecules))
    permuted = permute_indices(molecules, torch.Generator().manual_seed(0))
    prediction = model(features.get_mlp_features(permuted))
    changed = (prediction - original).abs().squeeze(1) > 1e-4
    assert changed.float().mean() > 0.9


def _gnn_output_and_readout(model: GNN, molecules):
    """The GNN's prediction, its atom embeddings after the last block, and the vector its head reads."""
    seen = {}
    hooks = [
        model.mf_convs[-1].register_forward_hook(lambda module, args, out: seen.update(atoms=out)),
        model.head.register_forward_hook(lambda module, args, out: seen.update(readout=args[0])),
    ]
    out = model(molecules.x, molecules.edge_index, molecules.edge_attr, molecules.batch)
    for hook in hooks:
        hook.remove()
    return out, seen["atoms"], seen["readout"]


def test_gnn_reads_out_the_sum_over_each_molecules_atoms(molecules):
    _, atoms, readout = _gnn_output_and_readout(_gnn(), molecules)
    for g in range(molecules.num_graphs):
        first, last = molecules.ptr[g].item(), molecules.ptr[g + 1].item()
        assert torch.allclose(readout[g], atoms[first:last].sum(dim=0), atol=1e-5)


def test_two_disjoint_copies_of_a_molecule_predict_differently_from_one(molecules):
    model = _gnn()
    n = molecules.ptr[1].item()
    edges = molecules.batch[molecules.edge_index[0]] == 0
    one = SimpleNamespace(
        x=molecules.x[:n], edge_index=molecules.edge_index[:, edges], edge_attr=molecules.edge_attr[edges]
    )
    x = torch.cat([one.x, one.x])
    edge_index = torch.cat([one.edge_index, one.edge_index + n], dim=1)
    edge_attr = torch.cat([one.edge_attr, one.edge_attr])
    single = model(one.x, one.edge_index, one.edge_attr, torch.zeros(n, dtype=torch.long))
    double = model(x, edge_index, edge_attr, torch.zeros(2 * n, dtype=torch.long))
    assert not torch.allclose(single, double, atol=1e-3)
