"""QM9 from qm9pack: graphs, atom order, targets, splits, features and batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from common.runtime import UserError
from part3 import data, features, graphs
from part3.loader import GraphLoader

NUM_CHECKED = 1_000  # molecules rebuilt or checked against coordinates


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def dataset(qm9_data_dir):
    """The full dataset, processed once per session in the shared ``qm9_data_dir``."""
    return data.QM9(qm9_data_dir / "qm9")


@pytest.fixture(scope="module")
def frame():
    return graphs.read_qm9pack()


@pytest.fixture(scope="module")
def splits(dataset, qm9_data_dir):
    return data.get_qm9(qm9_data_dir)


def _edge_graph(dataset):
    counts = dataset.slices["edge_index"].diff()
    return torch.repeat_interleave(torch.arange(len(counts)), counts)


def test_size_and_one_hot_features(dataset):
    stored = dataset._data
    assert len(dataset) == graphs.QM9_SIZE == 130_831
    assert stored.x.shape[1] == features.Z_ONE_HOT_DIM == 5
    assert stored.edge_attr.shape[1] == features.EDGE_ATTR_DIM == 4
    for one_hot in (stored.x, stored.edge_attr):
        assert torch.all((one_hot == 0) | (one_hot == 1))
        assert torch.all(one_hot.sum(dim=1) == 1)
    assert torch.equal(torch.tensor(graphs.ATOMIC_NUMBERS)[stored.x.argmax(dim=1)], stored.z)
    assert dataset.slices["x"].diff().max().item() == graphs.MAX_NUM_NODES
    assert stored.y.shape == (len(dataset), len(graphs.TARGETS))


def test_atoms_follow_the_element_lists_of_qm9pack(dataset, frame):
    counts = frame["Elements"].str.count(",").to_numpy() + 1
    assert np.array_equal(dataset.slices["x"].diff().numpy(), counts)
    expected = "".join(frame["Elements"]).translate(str.maketrans("", "", "[]',"))
    symbols = "".join(np.array(graphs.ATOM_SYMBOLS)[dataset._data.x.argmax(dim=1).numpy()])
    assert symbols == expected
    assert torch.equal(dataset._data.idx, torch.tensor(frame["Index"].to_numpy()))


def test_every_bond_appears_in_both_directions_with_one_type(dataset):
    stored = dataset._data
    graph = _edge_graph(dataset)
    source, target = stored.edge_index
    bond_type = stored.edge_attr.argmax(dim=1)
    num_nodes = dataset.slices["x"].diff()[graph]
    assert torch.all((source >= 0) & (source < num_nodes) & (target >= 0) & (target < num_nodes))
    assert not torch.any(source == target)

    def key(a, b):
        return ((graph * 29 + a) * 29 + b) * 4 + bond_type

    forward = key(source, target)
    assert torch.all(forward[1:] > forward[:-1])  # stored sorted, without duplicate bonds
    assert torch.equal(torch.sort(key(target, source)).values, forward)


def test_hydrogens_have_one_single_bond(dataset):
    stored = dataset._data
    source = dataset.slices["x"][:-1][_edge_graph(dataset)] + stored.edge_index[0]  # dataset-wide atom numbers
    degree = torch.bincount(source, minlength=len(stored.z))
    assert torch.all(degree[stored.z == 1] == 1)
    assert torch.all(stored.edge_attr[stored.z[source] == 1].argmax(dim=1) == 0)


def test_bonds_join_nearby_atoms_in_xyz_order(dataset, frame):
    """Bond lengths from the XYZ coordinates confirm that node i is atom i of the XYZ file."""
    radius = {"H": 0.31, "C": 0.76, "N": 0.71, "O": 0.66, "F": 0.57}
    rows = np.linspace(0, len(frame) - 1, NUM_CHECKED).astype(int)
    for row in rows:
        molecule = dataset[int(row)]
        xyz = graphs.parse_coordinates(frame["XYZ_Ang"].iloc[row])
        r = np.array([radius[s] for s in graphs.parse_elements(frame["Elements"].iloc[row])])
        source, target = molecule.edge_index.numpy()
        lengths = np.linalg.norm(xyz[source] - xyz[target], axis=1)
        assert np.all(lengths < r[source] + r[target] + 0.45), frame["SMILES"].iloc[row]


def test_atoms_out_of_smiles_order_get_their_xyz_numbers(dataset, frame):
    # H-C#C-C#N lists its H before the N; a zwitterion lists [NH3+]'s hydrogens right after the N;
    # HC#C-C#CH lists its two inner carbons first.
    for smiles in ("C#CC#N", "CC1(OC1C[NH3+])C([O-])=O", "C#CC#C"):
        row = int(frame.index[frame["SMILES"] == smiles][0])
        molecule = dataset[row]
        elements = graphs.parse_elements(frame["Elements"].iloc[row])
        xyz = graphs.parse_coordinates(frame["XYZ_Ang"].iloc[row])
        assert [graphs.ATOM_SYMBOLS[t] for t in molecule.x.argmax(dim=1)] == elements
        source, target = molecule.edge_index.numpy()
        lengths = np.linalg.norm(xyz[source] - xyz[target], axis=1)
        hydrogen_bonds = (molecule.z[source] == 1).numpy()
        assert np.all(lengths[hydrogen_bonds] < 1.2) and np.all(lengths < 1.9), smiles
        assert molecule.num_edges == 2 * (len(elements) - 1 + smiles.count("1") // 2), smiles  # a tree, or one ring


def _molecule_rows(smiles: str, elements: list[str], xyz: np.ndarray) -> tuple[list[str], list[str], list[str]]:
    """One molecule in qm9pack's CSV format, as a chunk for ``graphs._chunk_graphs``."""
    element_string = "[" + ",".join(f"'{e}'" for e in elements) + "]"
    xyz_string = "[" + ",".join("[" + ",".join(map(str, row)) + "]" for row in xyz.tolist()) + "]"
    return [smiles], [element_string], [xyz_string]


def test_hydrogens_follow_the_smiles_counts_when_nearer_to_another_atom():
    # Formaldehyde with one hydrogen nearer to the O than to the C: the SMILES puts both on the C.
    xyz = np.array([[0, 0, 0], [1.2, 0, 0], [-0.5, 0.9, 0], [0.9, 0.9, 0]], dtype=float)
    _, _, _, bonds, bond_types = graphs._chunk_graphs(_molecule_rows("C=O", list("COHH"), xyz))
    assert sorted(map(sorted, bonds.tolist())) == [[0, 1], [0, 2], [0, 3]]
    assert sorted(bond_types.tolist()) == [0, 0, 1]  # two single C-H, one double C=O


def test_inconsistent_molecules_are_rejected():
    methane = np.array(
        [[0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63], [-0.63, 0.63, -0.63], [0.63, -0.63, -0.63]]
    )
    atom_types, num_atoms, _, bonds, bond_types = graphs._chunk_graphs(_molecule_rows("C", list("CHHHH"), methane))
    assert atom_types.tolist() == [1, 0, 0, 0, 0] and num_atoms.tolist() == [5]
    assert sorted(map(sorted, bonds.tolist())) == [[0, 1], [0, 2], [0, 3], [0, 4]] and not bond_types.any()
    with pytest.raises(ValueError, match="differ from the element list"):
        graphs._chunk_graphs(_molecule_rows("N", list("CHHHH"), methane))
    with pytest.raises(ValueError, match="cannot parse"):
        graphs._chunk_graphs(_molecule_rows("C1CC", ["C"], methane[:1]))
    far_apart = np.array([[0, 0, 0], [9, 0, 0]] + [[0, 1, 0]] * 4, dtype=float)
    with pytest.raises(ValueError, match="cannot be matched"):
        graphs._chunk_graphs(_molecule_rows("CO", list("OCHHHH"), far_apart))


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
    assert torch.equal(torch.sort(all_indices).values, torch.arange(graphs.QM9_SIZE))

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
    train, valid, test = data.get_qm9(qm9_data_dir, permutation=path, target="U0")
    assert train.indices() == permutation[:100_000].tolist()
    assert valid.indices() == permutation[100_000:110_000].tolist()
    assert test.indices() == permutation[110_000:].tolist()
    raw_u0 = dataset._data.y[permutation[:100_000], 1].double()
    assert train.target_mean == pytest.approx(raw_u0.mean().item(), abs=1e-9)


def test_bad_arguments_give_clear_errors(qm9_data_dir, dataset, tmp_path):
    with pytest.raises(UserError, match="unknown target"):
        data.get_qm9(qm9_data_dir, target="gap")
    with pytest.raises(UserError, match="--permutation"):
        data.get_qm9(qm9_data_dir, permutation=tmp_path / "missing.pt")
    with pytest.raises(UserError, match="permutation of range"):
        data.get_qm9(qm9_data_dir, permutation=torch.zeros(graphs.QM9_SIZE, dtype=torch.long))


def test_mlp_features_are_padded_atoms_and_dense_bonds(splits):
    train = splits[0]
    molecules = GraphLoader(train[:16], batch_size=16).collate(torch.tensor(train.indices()[:16]))
    flat = features.get_mlp_features(molecules)
    assert features.FLAT_INPUT_DIM == 29 * 5 + 29 * 29 * 4 == 3509
    assert flat.shape == (16, features.FLAT_INPUT_DIM)
    for g in range(16):
        first, n = molecules.ptr[g].item(), (molecules.ptr[g + 1] - molecules.ptr[g]).item()
        edges = molecules.batch[molecules.edge_index[0]] == g
        atoms = flat[g, : 29 * 5].view(29, 5)
        adjacency = flat[g, 29 * 5 :].view(29, 29, 4)
        assert torch.equal(atoms[:n], molecules.x[first : first + n]) and not atoms[n:].any()
        expected = torch.zeros(29, 29, 4)
        expected[molecules.edge_index[0, edges] - first, molecules.edge_index[1, edges] - first] = molecules.edge_attr[
            edges
        ]
        assert torch.equal(adjacency, expected)


def test_graph_loader_batches_like_pytorch_geometric(splits):
    valid = splits[1][:300]
    loader = GraphLoader(valid, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
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
    reloaded = data.QM9(qm9_data_dir / "qm9")
    for key in ("x", "z", "edge_index", "edge_attr", "y", "idx"):
        assert torch.equal(reloaded._data[key], dataset._data[key]), key
        assert torch.equal(reloaded.slices[key], dataset.slices[key]), key
    tensors, slices = graphs.build_qm9_tensors(frame.iloc[:NUM_CHECKED], num_workers=1)
    for key, value in tensors.items():
        stored = dataset._data[key]
        end = slices[key][-1]
        prefix = stored[:, :end] if key == "edge_index" else stored[:end]
        assert torch.equal(value, prefix), key
        assert torch.equal(slices[key], dataset.slices[key][: NUM_CHECKED + 1]), key


def test_a_corrupt_cache_is_one_line_naming_the_file(tmp_path):
    path = data.cache_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a torch file")
    with pytest.raises(UserError, match=f"{path} is not a valid QM9 dataset checkpoint .*--data_dir"):
        data.get_qm9(tmp_path)
