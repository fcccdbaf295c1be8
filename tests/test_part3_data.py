"""QM9 from qm9pack: graphs, atom order, targets, splits, features and batching."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch_geometric.data import Batch

from part3 import data as qm9

NUM_CHECKED = 1_000  # molecules rebuilt or checked against coordinates


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def dataset(qm9_data_dir):
    """The full dataset, processed once per session in the shared ``qm9_data_dir``."""
    return qm9.QM9(qm9_data_dir / "qm9")


@pytest.fixture(scope="module")
def frame():
    return qm9.read_qm9pack()


@pytest.fixture(scope="module")
def splits(dataset, qm9_data_dir):
    return qm9.get_qm9(qm9_data_dir)


def _edge_graph(dataset):
    counts = dataset.slices["edge_index"].diff()
    return torch.repeat_interleave(torch.arange(len(counts)), counts)


def test_size_and_one_hot_features(dataset):
    data = dataset._data
    assert len(dataset) == qm9.QM9_SIZE == 130_831
    assert data.x.shape[1] == qm9.Z_ONE_HOT_DIM == 5
    assert data.edge_attr.shape[1] == qm9.EDGE_ATTR_DIM == 4
    for one_hot in (data.x, data.edge_attr):
        assert torch.all((one_hot == 0) | (one_hot == 1))
        assert torch.all(one_hot.sum(dim=1) == 1)
    assert torch.equal(torch.tensor(qm9.ATOMIC_NUMBERS)[data.x.argmax(dim=1)], data.z)
    assert dataset.slices["x"].diff().max().item() == qm9.MAX_NUM_NODES
    assert data.y.shape == (len(dataset), len(qm9.TARGETS))


def test_atoms_follow_the_element_lists_of_qm9pack(dataset, frame):
    counts = frame["Elements"].str.count(",").to_numpy() + 1
    assert np.array_equal(dataset.slices["x"].diff().numpy(), counts)
    expected = "".join(frame["Elements"]).translate(str.maketrans("", "", "[]',"))
    symbols = "".join(np.array(qm9.ATOM_SYMBOLS)[dataset._data.x.argmax(dim=1).numpy()])
    assert symbols == expected
    assert torch.equal(dataset._data.idx, torch.tensor(frame["Index"].to_numpy()))


def test_every_bond_appears_in_both_directions_with_one_type(dataset):
    data = dataset._data
    graph = _edge_graph(dataset)
    source, target = data.edge_index
    bond_type = data.edge_attr.argmax(dim=1)
    num_nodes = dataset.slices["x"].diff()[graph]
    assert torch.all((source >= 0) & (source < num_nodes) & (target >= 0) & (target < num_nodes))
    assert not torch.any(source == target)

    def key(a, b):
        return ((graph * 29 + a) * 29 + b) * 4 + bond_type

    forward = key(source, target)
    assert torch.all(forward[1:] > forward[:-1])  # stored sorted, without duplicate bonds
    assert torch.equal(torch.sort(key(target, source)).values, forward)


def test_hydrogens_have_one_single_bond(dataset):
    data = dataset._data
    source = dataset.slices["x"][:-1][_edge_graph(dataset)] + data.edge_index[0]  # dataset-wide atom numbers
    degree = torch.bincount(source, minlength=len(data.z))
    assert torch.all(degree[data.z == 1] == 1)
    assert torch.all(data.edge_attr[data.z[source] == 1].argmax(dim=1) == 0)


def test_bonds_join_nearby_atoms_in_xyz_order(dataset, frame):
    """Bond lengths from the XYZ coordinates confirm that node i is atom i of the XYZ file."""
    radius = {"H": 0.31, "C": 0.76, "N": 0.71, "O": 0.66, "F": 0.57}
    rows = np.linspace(0, len(frame) - 1, NUM_CHECKED).astype(int)
    for row in rows:
        molecule = dataset[int(row)]
        xyz = qm9.parse_coordinates(frame["XYZ_Ang"].iloc[row])
        r = np.array([radius[s] for s in qm9.parse_elements(frame["Elements"].iloc[row])])
        source, target = molecule.edge_index.numpy()
        lengths = np.linalg.norm(xyz[source] - xyz[target], axis=1)
        assert np.all(lengths < r[source] + r[target] + 0.45), frame["SMILES"].iloc[row]


def test_smiles_to_graph_reorders_hydrogens_to_xyz_order(frame):
    # Two molecules whose XYZ files interleave hydrogens with heavy atoms:
    # H-C#C-C#N lists its H before the N, a zwitterion lists [NH3+]'s hydrogens after the N.
    for smiles in ("C#CC#N", "CC1(OC1C[NH3+])C([O-])=O"):
        row = frame.index[frame["SMILES"] == smiles][0]
        elements = qm9.parse_elements(frame["Elements"].iloc[row])
        xyz = qm9.parse_coordinates(frame["XYZ_Ang"].iloc[row])
        atom_types, bonds, bond_types = qm9.smiles_to_graph(smiles, elements, xyz)
        assert [qm9.ATOM_SYMBOLS[t] for t in atom_types] == elements
        hydrogen_bonds = (atom_types[bonds] == 0).any(axis=1)
        lengths = np.linalg.norm(xyz[bonds[:, 0]] - xyz[bonds[:, 1]], axis=1)
        assert np.all(lengths[hydrogen_bonds] < 1.2) and np.all(lengths < 1.9)
        assert set(bond_types.tolist()) <= {0, 1, 2, 3}


def test_vectorised_processing_matches_smiles_to_graph(frame):
    # Small symmetric molecules (heavy atoms out of SMILES order), charged ones
    # (bracket hydrogens), strained cages at the end of QM9, and a spread sample.
    rows = pd.concat([frame.iloc[:40], frame[frame["SMILES"].str.contains("+", regex=False)].iloc[:100],
                      frame.iloc[-30:], frame.iloc[::1000]])
    atom_types, num_atoms, bond_molecule, bonds, bond_types = qm9._process_chunk(
        (rows["SMILES"].tolist(), rows["Elements"].tolist(), rows["XYZ_Ang"].tolist())
    )
    offsets = np.concatenate([[0], np.cumsum(num_atoms)])
    for m, row in enumerate(rows.itertuples()):
        types, pairs, kinds = qm9.smiles_to_graph(
            row.SMILES, qm9.parse_elements(row.Elements), qm9.parse_coordinates(row.XYZ_Ang)
        )
        assert np.array_equal(atom_types[offsets[m] : offsets[m + 1]], types)
        mine = bond_molecule == m
        expected = sorted(map(tuple, np.column_stack([np.sort(pairs, axis=1), kinds]).tolist()))
        found = sorted(map(tuple, np.column_stack([np.sort(bonds[mine], axis=1), bond_types[mine]]).tolist()))
        assert found == expected, row.SMILES


def test_smiles_to_graph_rejects_inconsistent_molecules():
    methane = np.array([[0.0, 0.0, 0.0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63], [-0.63, 0.63, -0.63],
                        [0.63, -0.63, -0.63]])
    qm9.smiles_to_graph("C", ["C", "H", "H", "H", "H"], methane)
    with pytest.raises(ValueError, match="differ from the element list"):
        qm9.smiles_to_graph("N", ["C", "H", "H", "H", "H"], methane)
    with pytest.raises(ValueError, match="cannot parse"):
        qm9.smiles_to_graph("C1CC", ["C"], methane[:1])
    with pytest.raises(ValueError, match="cannot be matched"):
        far_apart = np.array([[0, 0, 0], [9, 0, 0]] + [[0, 1, 0]] * 4, dtype=float)
        qm9.smiles_to_graph("CO", ["O", "C", "H", "H", "H", "H"], far_apart)


def test_targets_are_atomization_and_internal_energies_in_ev(dataset, frame):
    u0_atom, u0 = dataset._data.y.double().T
    assert u0_atom.mean().item() == pytest.approx(-76.12, abs=0.01)
    assert u0_atom.std().item() == pytest.approx(10.32, abs=0.01)
    assert u0[0].item() == pytest.approx(-40.47893 * 27.211386, rel=1e-6)  # methane, Hartree -> eV
    methane_atoms = -37.846772 - 4 * 0.500273
    assert u0_atom[0].item() == pytest.approx((-40.47893 - methane_atoms) * 27.211386, abs=1e-3)


def test_splits_and_z_scoring_use_training_statistics_only(dataset, splits):
    train, valid, test = splits
    assert (len(train), len(valid), len(test)) == (100_000, 10_000, 20_831)
    all_indices = torch.tensor(train.indices() + valid.indices() + test.indices())
    assert torch.equal(torch.sort(all_indices).values, torch.arange(qm9.QM9_SIZE))

    raw = dataset._data.y[:, 0].double()
    train_raw = raw[train.indices()]
    assert train.target_mean == pytest.approx(train_raw.mean().item(), abs=1e-9)
    assert train.target_std == pytest.approx(train_raw.std().item(), abs=1e-9)
    assert abs(train.target_mean - raw.mean().item()) > 1e-3  # the full-set mean would differ
    y = train._data.y[train.indices(), 0].double()
    assert y.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert y.std().item() == pytest.approx(1.0, abs=1e-5)
    restored = test._data.y[test.indices(), 0].double() * test.target_std + test.target_mean
    assert torch.allclose(restored, raw[test.indices()], atol=1e-3)


def test_the_course_permutation_file_orders_the_split(qm9_data_dir, dataset, shared_data):
    path = shared_data / "qm9" / "permute.pt"
    permutation = torch.load(path, weights_only=True)
    train, valid, test = qm9.get_qm9(qm9_data_dir, permutation=path, target="U0")
    assert train.indices() == permutation[:100_000].tolist()
    assert valid.indices() == permutation[100_000:110_000].tolist()
    assert test.indices() == permutation[110_000:].tolist()
    raw_u0 = dataset._data.y[permutation[:100_000], 1].double()
    assert train.target_mean == pytest.approx(raw_u0.mean().item(), abs=1e-9)


def test_bad_arguments_give_clear_errors(qm9_data_dir, dataset, tmp_path):
    with pytest.raises(ValueError, match="unknown target"):
        qm9.get_qm9(qm9_data_dir, target="gap")
    with pytest.raises(FileNotFoundError, match="--permutation"):
        qm9.get_qm9(qm9_data_dir, permutation=tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="permutation of range"):
        qm9.get_qm9(qm9_data_dir, permutation=torch.zeros(qm9.QM9_SIZE, dtype=torch.long))


def test_mlp_features_are_padded_atoms_and_dense_bonds(splits):
    train = splits[0]
    molecules = qm9.GraphLoader(train[:16], batch_size=16).collate(torch.tensor(train.indices()[:16]))
    features = qm9.get_mlp_features(molecules)
    assert qm9.FLAT_INPUT_DIM == 29 * 5 + 29 * 29 * 4 == 3509
    assert features.shape == (16, qm9.FLAT_INPUT_DIM)
    for g in range(16):
        first, n = molecules.ptr[g].item(), (molecules.ptr[g + 1] - molecules.ptr[g]).item()
        edges = molecules.batch[molecules.edge_index[0]] == g
        atoms = features[g, : 29 * 5].view(29, 5)
        adjacency = features[g, 29 * 5 :].view(29, 29, 4)
        assert torch.equal(atoms[:n], molecules.x[first : first + n]) and not atoms[n:].any()
        expected = torch.zeros(29, 29, 4)
        expected[molecules.edge_index[0, edges] - first, molecules.edge_index[1, edges] - first] = (
            molecules.edge_attr[edges]
        )
        assert torch.equal(adjacency, expected)


def test_graph_loader_batches_like_pytorch_geometric(splits):
    valid = splits[1][:300]
    loader = qm9.GraphLoader(valid, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    graphs = torch.tensor(valid.indices()[100:137])
    molecules = loader.collate(graphs)
    reference = Batch.from_data_list([valid.get(int(g)) for g in graphs])
    for key in ("x", "z", "edge_index", "edge_attr", "y", "idx", "batch", "ptr"):
        assert torch.equal(molecules[key], reference[key]), key
    assert molecules.num_graphs == 37
    batches = list(loader)
    assert len(loader) == len(batches) == 5 and batches[-1].num_graphs == 300 - 4 * 64
    seen = torch.cat([b.idx for b in batches])
    assert torch.equal(torch.sort(seen).values, torch.sort(valid._data.idx[valid.indices()]).values)
    assert not torch.equal(seen, valid._data.idx[valid.indices()])  # shuffled


def test_cached_reload_equals_a_fresh_build(dataset, frame, qm9_data_dir):
    reloaded = qm9.QM9(qm9_data_dir / "qm9")
    for key in ("x", "z", "edge_index", "edge_attr", "y", "idx"):
        assert torch.equal(reloaded._data[key], dataset._data[key]), key
        assert torch.equal(reloaded.slices[key], dataset.slices[key]), key
    tensors, slices = qm9.build_qm9_tensors(frame.iloc[:NUM_CHECKED], num_workers=2)
    for key, value in tensors.items():
        stored = dataset._data[key]
        end = slices[key][-1]
        prefix = stored[:, :end] if key == "edge_index" else stored[:end]
        assert torch.equal(value, prefix), key
        assert torch.equal(slices[key], dataset.slices[key][: NUM_CHECKED + 1]), key
