"""QM9 as a PyTorch Geometric dataset, built offline from the CSV files of ``qm9pack``.

Every molecule becomes a graph whose nodes are its atoms, in the order of QM9's
XYZ files (the order the course's atom-permutation experiment refers to), and
whose edges are its covalent bonds, in both directions:

* ``x``          ``[num_atoms, 5]``  one-hot atom type, H, C, N, O, F;
* ``z``          ``[num_atoms]``     atomic number;
* ``edge_index`` ``[2, 2 * num_bonds]`` both directions of every bond, sorted by (source, target);
* ``edge_attr``  ``[2 * num_bonds, 4]`` one-hot bond type, single, double, triple, aromatic;
* ``y``          ``[1, 2]``          targets in eV, columns ``TARGETS`` = (U0_ATOM, U0);
* ``idx``        ``[1]``             QM9 index (the number in ``dsgdb9nsd_<idx>.xyz``).

Bonds and bond orders come from the molecule's SMILES through RDKit (with the
hydrogens ``Chem.AddHs`` would add); perceiving them from the coordinates loses
bond orders. RDKit's atom order differs from the XYZ order in about 0.3 % of
the molecules: it appends every hydrogen at the end, whereas the XYZ files put
the hydrogens of bracket atoms (``[NH3+]``, ``[CH-]``) right after their atom,
and some small symmetric molecules list their heavy atoms in another order.
The coordinates decide which atom is which (see :func:`smiles_to_graph`), and
every molecule's atoms are checked against its element list.

:func:`get_qm9` splits the dataset with a fixed permutation into 100,000
training, 10,000 validation and 20,831 test molecules and z-scores the chosen
target with the statistics of the training split only.
"""
from __future__ import annotations

import importlib.util
import multiprocessing
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from rdkit import Chem, RDLogger
from torch import Tensor
from torch_geometric.data import Batch, Data, InMemoryDataset
from torch_geometric.io import fs
from torch_geometric.utils import to_dense_adj, to_dense_batch
from tqdm import tqdm

MAX_NUM_NODES = 29
Z_ONE_HOT_DIM = 5
EDGE_ATTR_DIM = 4
FLAT_INPUT_DIM = MAX_NUM_NODES * Z_ONE_HOT_DIM + MAX_NUM_NODES * MAX_NUM_NODES * EDGE_ATTR_DIM

QM9_SIZE = 130_831
NUM_TRAIN = 100_000
NUM_VALID = 10_000

ATOM_SYMBOLS = ("H", "C", "N", "O", "F")
ATOMIC_NUMBERS = (1, 6, 7, 8, 9)
BOND_TYPES = (
    Chem.BondType.SINGLE,
    Chem.BondType.DOUBLE,
    Chem.BondType.TRIPLE,
    Chem.BondType.AROMATIC,
)
TARGETS = ("U0_ATOM", "U0")

HARTREE_TO_EV = 27.211386
# Energies of the free atoms at 0 K (B3LYP/6-31G(2df,p), the level of theory
# of QM9), subtracted from U0 to get the atomization energy.
ATOM_REF_ENERGY_HARTREE = {"H": -0.500273, "C": -37.846772, "N": -54.583861, "O": -75.064579, "F": -99.718730}

QM9PACK_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
_CSV_COLUMNS = ["Index", "SMILES", "Elements", "XYZ_Ang", "InternalEnergy_0K_au"]
_BOND_TYPE_INDEX = {bond_type: i for i, bond_type in enumerate(BOND_TYPES)}
_ATOM_TYPE_INDEX = {symbol: i for i, symbol in enumerate(ATOM_SYMBOLS)}
_CHUNK_SIZE = 2_000
# Covalent radii (Angstrom) to check that SMILES bonds join nearby atoms.
_COVALENT_RADIUS = {"H": 0.31, "C": 0.76, "N": 0.71, "O": 0.66, "F": 0.57}
_BOND_TOLERANCE = 0.45
# Bond orders in RDKit's GetAdjacencyMatrix(useBO=True), sorted for np.searchsorted,
# and the index into BOND_TYPES of each.
_BOND_ORDERS = np.array([1.0, 1.5, 2.0, 3.0])
_BOND_TYPE_OF_ORDER = np.array([0, 3, 1, 2])
# Turns qm9pack's element column into its heavy-atom symbols: "['C','O','H']" -> "CO".
_HEAVY_SYMBOLS_ONLY = str.maketrans("", "", "[]',H")


def qm9pack_data_folder() -> Path:
    """Folder of the CSV files shipped inside the ``qm9pack`` package.

    The package is located without importing it: its ``__init__`` imports
    ``pkg_resources``, which recent environments no longer provide.
    """
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the package qm9pack is not installed; install it with `pip install qm9pack`")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    missing = [name for name in QM9PACK_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"qm9pack is incomplete: {', '.join(missing)} missing in {folder}; reinstall qm9pack")
    return folder


def parse_elements(elements: str) -> list[str]:
    """Parse qm9pack's element column, e.g. ``"['C','H','H','H','H']"`` -> ``['C', 'H', 'H', 'H', 'H']``."""
    return elements[2:-2].split("','")


def atomization_energy_ev(u0_hartree: np.ndarray, elements: Sequence[str]) -> np.ndarray:
    r"""U0_ATOM = (U0 - \sum_atoms E_atom) \cdot 27.211386, in eV, for each molecule.

    Args:
        u0_hartree: ``[num_molecules]`` internal energy at 0 K in Hartree.
        elements: one element string per molecule in qm9pack's format.
    """
    reference = np.array([sum(ATOM_REF_ENERGY_HARTREE[s] for s in parse_elements(e)) for e in elements])
    return (np.asarray(u0_hartree, dtype=np.float64) - reference) * HARTREE_TO_EV


def parse_coordinates(xyz: str) -> np.ndarray:
    """Parse qm9pack's coordinate column into ``[num_atoms, 3]`` Angstrom.

    The values follow the original XYZ files, including Mathematica-style
    exponents (``1.2*^-6``) and bare trailing dots (``1.``).
    """
    values = xyz.replace("*^", "e").replace("[", "").replace("]", "").split(",")
    return np.array(values, dtype=np.float64).reshape(-1, 3)


def _match_heavy_atoms(
    symbols: Sequence[str], bonds: np.ndarray, elements: Sequence[str], close: np.ndarray, distance: np.ndarray
) -> np.ndarray | None:
    """XYZ heavy-atom number of each SMILES heavy atom, keeping elements and putting every bond on a close pair.

    Depth-first search over the heavy atoms (at most 9 in QM9); among all
    valid maps the one with the shortest total bond length wins, which only
    matters if non-bonded atoms happen to be close.

    Args:
        symbols: ``[h]`` elements of the SMILES heavy atoms.
        bonds: ``[b, 2]`` heavy-atom bonds in SMILES numbering.
        elements: ``[h]`` elements of the XYZ heavy atoms, in XYZ order.
        close: ``[h, h]`` whether two XYZ heavy atoms are close enough to be bonded.
        distance: ``[h, h]`` distances between the XYZ heavy atoms.

    Returns:
        ``[h]`` index among the XYZ heavy atoms for each SMILES heavy atom, or ``None`` if no map exists.
    """
    num_heavy = len(symbols)
    earlier_neighbours: list[list[int]] = [[] for _ in range(num_heavy)]
    for a, b in bonds.tolist():
        earlier_neighbours[max(a, b)].append(min(a, b))
    best: tuple[float, list[int]] | None = None
    chosen = [-1] * num_heavy
    used = [False] * num_heavy

    def extend(atom: int, length: float) -> None:
        nonlocal best
        if atom == num_heavy:
            if best is None or length < best[0]:
                best = (length, chosen.copy())
            return
        placed = [chosen[n] for n in earlier_neighbours[atom]]
        for candidate in range(num_heavy):
            if used[candidate] or elements[candidate] != symbols[atom]:
                continue
            if not all(close[candidate, p] for p in placed):
                continue
            used[candidate], chosen[atom] = True, candidate
            extend(atom + 1, length + sum(distance[candidate, p] for p in placed))
            used[candidate], chosen[atom] = False, -1

    extend(0, 0.0)
    return None if best is None else np.array(best[1])


def smiles_to_graph(
    smiles: str, elements: Sequence[str], coordinates: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Atoms and bonds of one molecule, with the atoms in QM9's XYZ order.

    The heavy atoms, their bonds and bond orders and the number of hydrogens on
    each heavy atom (the hydrogens ``Chem.AddHs`` would add) come from the
    SMILES; the coordinates decide which XYZ atom is which. The heavy atoms
    almost always come in SMILES order in the XYZ file, so the i-th heavy atom
    of the SMILES becomes the i-th heavy atom of the XYZ file if the elements
    agree and every bond joins atoms at most 0.45 Angstrom farther apart than
    the sum of their covalent radii; otherwise (small symmetric molecules such
    as C#CC#C, whose XYZ files list the inner atoms first) a search finds the
    map that satisfies both; if none does (a few strained cages whose relaxed
    geometry breaks a SMILES bond), the SMILES order is kept. Each XYZ hydrogen is bonded to its nearest heavy
    atom; where that disagrees with the SMILES' hydrogen counts, hydrogens are
    handed to the heavy atoms that still need one, shortest distance first.

    Args:
        smiles: the molecule's SMILES.
        elements: its element symbols in XYZ order.
        coordinates: ``[num_atoms, 3]`` positions in XYZ order (Angstrom).

    Returns:
        ``(atom_types [n], bonds [num_bonds, 2], bond_types [num_bonds])``: atom-type
        indices into ``ATOM_SYMBOLS`` in XYZ order, the two atoms of each bond in
        XYZ numbering, bond-type indices into ``BOND_TYPES``.

    Raises:
        ValueError: if RDKit cannot parse the SMILES, or its atoms cannot be
            matched to ``elements``.
    """
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"RDKit cannot parse the SMILES {smiles!r}")
    atoms = [mol.GetAtomWithIdx(i) for i in range(mol.GetNumAtoms())]
    symbols = [atom.GetSymbol() for atom in atoms]
    hydrogen_counts = [atom.GetTotalNumHs() for atom in atoms]
    xyz_heavy = [i for i, element in enumerate(elements) if element != "H"]
    xyz_hydrogens = [i for i, element in enumerate(elements) if element == "H"]
    if sorted(symbols) != sorted(elements[i] for i in xyz_heavy) or sum(hydrogen_counts) != len(xyz_hydrogens):
        with_hs = "".join(symbols) + "H" * sum(hydrogen_counts)
        raise ValueError(f"atoms of SMILES {smiles!r} ({with_hs}) differ from the element list ({''.join(elements)})")
    heavy_bonds = np.array(
        [(b.GetBeginAtomIdx(), b.GetEndAtomIdx(), _BOND_TYPE_INDEX[b.GetBondType()]) for b in mol.GetBonds()],
        dtype=np.int64,
    ).reshape(-1, 3)

    radius = np.array([_COVALENT_RADIUS[e] for e in elements])
    distance = np.sqrt(((coordinates[:, None] - coordinates[None]) ** 2).sum(axis=2))
    close = distance <= radius[:, None] + radius[None] + _BOND_TOLERANCE
    xyz_heavy_array = np.array(xyz_heavy)
    heavy_close = close[np.ix_(xyz_heavy_array, xyz_heavy_array)]
    # heavy_position[SMILES heavy atom] = index among the XYZ heavy atoms
    heavy_position = np.arange(len(symbols))
    if not (
        symbols == [elements[i] for i in xyz_heavy] and heavy_close[heavy_bonds[:, 0], heavy_bonds[:, 1]].all()
    ):
        heavy_distance = distance[np.ix_(xyz_heavy_array, xyz_heavy_array)]
        mapping = _match_heavy_atoms(
            symbols, heavy_bonds[:, :2], [elements[i] for i in xyz_heavy], heavy_close, heavy_distance
        )
        if mapping is not None:
            heavy_position = mapping
        elif symbols != [elements[i] for i in xyz_heavy]:
            raise ValueError(f"heavy atoms of SMILES {smiles!r} cannot be matched to the element list")
        # Otherwise the relaxed geometry breaks a SMILES bond (a few strained
        # cages): keep the SMILES order, which the elements confirm.
    # needed[k] = hydrogens the SMILES puts on the k-th XYZ heavy atom
    needed = np.zeros(len(symbols), dtype=np.int64)
    needed[heavy_position] = hydrogen_counts

    parent = np.empty(0, dtype=np.int64)
    if xyz_hydrogens:
        h_distance = distance[np.ix_(np.array(xyz_hydrogens), xyz_heavy_array)]
        parent = np.argmin(h_distance, axis=1)
        if not np.array_equal(np.bincount(parent, minlength=len(symbols)), needed):
            # A hydrogen nearer to another heavy atom than to its SMILES parent
            # (e.g. across a hydrogen bond): assign greedily under the SMILES counts.
            parent = np.full(len(xyz_hydrogens), -1)
            for flat in np.argsort(h_distance, axis=None, kind="stable").tolist():
                h, heavy = divmod(flat, len(symbols))
                if parent[h] < 0 and needed[heavy] > 0:
                    parent[h] = heavy
                    needed[heavy] -= 1

    bonds = np.concatenate(
        [
            xyz_heavy_array[heavy_position[heavy_bonds[:, :2]]].reshape(-1, 2),
            np.stack([xyz_heavy_array[parent], np.array(xyz_hydrogens, dtype=np.int64)], axis=1).reshape(-1, 2),
        ]
    )
    bond_types = np.concatenate([heavy_bonds[:, 2], np.zeros(len(xyz_hydrogens), dtype=np.int64)])
    atom_types = np.array([_ATOM_TYPE_INDEX[e] for e in elements], dtype=np.int64)
    return atom_types, bonds, bond_types


def _process_chunk(rows: tuple[list[str], list[str], list[str]]) -> tuple[np.ndarray, ...]:
    """Graphs of a chunk of molecules (a worker's unit of work).

    Does what :func:`smiles_to_graph` does, but with the geometric checks
    vectorised over the chunk: RDKit runs per molecule, the bond lengths and the
    nearest heavy atom of every hydrogen are computed for all molecules at once,
    and only the few molecules that fail a check go through
    :func:`smiles_to_graph` one by one.

    Returns:
        ``(atom_types [atoms], num_atoms [molecules], bond_molecule [bonds],
        bonds [bonds, 2], bond_types [bonds])`` with chunk-local molecule numbers
        and molecule-local atom numbers in XYZ order.
    """
    RDLogger.DisableLog("rdApp.*")
    smiles_list, element_strings, xyz_strings = rows
    elements = [parse_elements(e) for e in element_strings]
    num_molecules = len(elements)
    num_atoms = np.array([len(e) for e in elements], dtype=np.int64)
    atom_types = np.array([_ATOM_TYPE_INDEX[s] for e in elements for s in e], dtype=np.int64)
    coordinates = parse_coordinates(",".join(xyz_strings))
    if len(coordinates) != len(atom_types):
        raise ValueError("the coordinate and element columns of qm9pack disagree on the number of atoms")
    molecule_of_atom = np.repeat(np.arange(num_molecules), num_atoms)
    local = np.arange(len(atom_types)) - np.repeat(np.cumsum(num_atoms) - num_atoms, num_atoms)
    positions = np.zeros((num_molecules, MAX_NUM_NODES, 3))
    positions[molecule_of_atom, local] = coordinates
    radius = np.zeros((num_molecules, MAX_NUM_NODES))
    radius[molecule_of_atom, local] = np.array([_COVALENT_RADIUS[s] for s in ATOM_SYMBOLS])[atom_types]

    # heavy_xyz[m, k] = XYZ number of the k-th heavy atom of molecule m.
    is_heavy = atom_types != 0
    heavy_molecule, heavy_local = molecule_of_atom[is_heavy], local[is_heavy]
    heavy_counts = np.bincount(heavy_molecule, minlength=num_molecules)
    heavy_rank = np.arange(len(heavy_molecule)) - np.repeat(np.cumsum(heavy_counts) - heavy_counts, heavy_counts)
    max_heavy = int(heavy_counts.max())
    heavy_xyz = np.zeros((num_molecules, max_heavy), dtype=np.int64)
    heavy_xyz[heavy_molecule, heavy_rank] = heavy_local
    heavy_symbols = [e.translate(_HEAVY_SYMBOLS_ONLY) for e in element_strings]

    # RDKit per molecule, in SMILES numbering: hydrogens per heavy atom, and bond
    # orders (1, 2, 3, or 1.5 for aromatic) from one call instead of a loop over bonds.
    smiles_hydrogens = np.zeros((num_molecules, max_heavy), dtype=np.int64)
    smiles_orders = np.zeros((num_molecules, max_heavy, max_heavy))
    slow: set[int] = set()
    for m, (smiles, symbols) in enumerate(zip(smiles_list, heavy_symbols)):
        mol = Chem.MolFromSmiles(smiles)
        atoms = [] if mol is None else [(atom.GetSymbol(), atom.GetTotalNumHs()) for atom in mol.GetAtoms()]
        if "".join(symbol for symbol, _ in atoms) != symbols:
            slow.add(m)  # heavy atoms out of order, or an error that smiles_to_graph reports
            continue
        smiles_hydrogens[m, : len(atoms)] = [count for _, count in atoms]
        smiles_orders[m, : len(atoms), : len(atoms)] = Chem.GetAdjacencyMatrix(mol, useBO=True)
    needed = np.zeros((num_molecules, MAX_NUM_NODES), dtype=np.int64)  # hydrogens per XYZ heavy atom
    needed[heavy_molecule, heavy_local] = smiles_hydrogens[heavy_molecule, heavy_rank]
    bond_molecule_array, first, second = np.nonzero(np.triu(smiles_orders))
    bond_orders = smiles_orders[bond_molecule_array, first, second]
    bond_type_array = _BOND_TYPE_OF_ORDER[np.searchsorted(_BOND_ORDERS, bond_orders)]
    first, second = heavy_xyz[bond_molecule_array, first], heavy_xyz[bond_molecule_array, second]
    bond_pair_array = np.stack([first, second], axis=1)

    # Heavy-atom bonds must join close atoms.
    length = np.linalg.norm(positions[bond_molecule_array, first] - positions[bond_molecule_array, second], axis=1)
    limit = radius[bond_molecule_array, first] + radius[bond_molecule_array, second] + _BOND_TOLERANCE
    slow.update(bond_molecule_array[length > limit].tolist())

    # Each hydrogen bonds to its nearest heavy atom, if that reproduces the SMILES' hydrogen counts.
    heavy_slot = np.zeros((num_molecules, MAX_NUM_NODES), dtype=bool)
    heavy_slot[heavy_molecule, heavy_local] = True
    h_molecule, h_local = molecule_of_atom[~is_heavy], local[~is_heavy]
    squared_distance = ((positions[h_molecule] - coordinates[~is_heavy][:, None]) ** 2).sum(axis=2)
    squared_distance[~heavy_slot[h_molecule]] = np.inf
    h_parent = squared_distance.argmin(axis=1)
    counts = np.zeros_like(needed)
    np.add.at(counts, (h_molecule, h_parent), 1)
    slow.update(np.flatnonzero((counts != needed).any(axis=1)).tolist())

    slow_array = np.array(sorted(slow), dtype=np.int64)
    keep_bond = ~np.isin(bond_molecule_array, slow_array)
    keep_h = ~np.isin(h_molecule, slow_array)
    parts_molecule = [bond_molecule_array[keep_bond], h_molecule[keep_h]]
    parts_pairs = [bond_pair_array[keep_bond], np.stack([h_parent[keep_h], h_local[keep_h]], axis=1)]
    parts_types = [bond_type_array[keep_bond], np.zeros(int(keep_h.sum()), dtype=np.int64)]
    for m in slow_array.tolist():
        start = int(np.sum(num_atoms[:m]))
        _, pairs, kinds = smiles_to_graph(
            smiles_list[m], elements[m], coordinates[start : start + num_atoms[m]]
        )
        parts_molecule.append(np.full(len(kinds), m, dtype=np.int64))
        parts_pairs.append(pairs)
        parts_types.append(kinds)
    return (
        atom_types.astype(np.int8),
        num_atoms,
        np.concatenate(parts_molecule),
        np.concatenate(parts_pairs).astype(np.int8),
        np.concatenate(parts_types).astype(np.int8),
    )


def _chunks(frame: pd.DataFrame) -> Iterator[tuple[list[str], list[str], list[str]]]:
    for start in range(0, len(frame), _CHUNK_SIZE):
        part = frame.iloc[start : start + _CHUNK_SIZE]
        yield part["SMILES"].tolist(), part["Elements"].tolist(), part["XYZ_Ang"].tolist()


def build_qm9_tensors(
    frame: pd.DataFrame, num_workers: int | None = None
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Collated graph tensors and their per-molecule slices, in the layout of ``InMemoryDataset``.

    Building the concatenated tensors directly avoids creating and collating
    130,831 ``Data`` objects.

    Args:
        frame: qm9pack rows with the columns Index, SMILES, Elements, XYZ_Ang, InternalEnergy_0K_au.
        num_workers: processes for RDKit (default: the usable CPU cores).
    """
    if num_workers is None:
        num_workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    progress = tqdm(total=len(frame), desc="Processing QM9 molecules", unit="mol", disable=None)
    results = []
    if num_workers > 1:
        with multiprocessing.get_context("fork" if os.name == "posix" else "spawn").Pool(num_workers) as pool:
            for result in pool.imap(_process_chunk, _chunks(frame)):
                results.append(result)
                progress.update(len(result[1]))
    else:
        for rows in _chunks(frame):
            results.append(_process_chunk(rows))
            progress.update(len(results[-1][1]))
    progress.close()

    chunk_offsets = np.cumsum([0] + [len(result[1]) for result in results[:-1]])
    atom_types = torch.from_numpy(np.concatenate([r[0] for r in results]).astype(np.int64))
    num_atoms = torch.from_numpy(np.concatenate([r[1] for r in results]))
    molecule_of_bond = torch.from_numpy(np.concatenate([r[2] + offset for r, offset in zip(results, chunk_offsets)]))
    bonds = torch.from_numpy(np.concatenate([r[3] for r in results]).astype(np.int64))
    bond_types = torch.from_numpy(np.concatenate([r[4] for r in results]).astype(np.int64))

    # Both directions of every bond, then sorted by (molecule, source, target).
    num_molecules = len(frame)
    num_bonds = torch.bincount(molecule_of_bond, minlength=num_molecules)
    molecule_of_bond = molecule_of_bond.repeat(2)
    sources = torch.cat([bonds[:, 0], bonds[:, 1]])
    targets = torch.cat([bonds[:, 1], bonds[:, 0]])
    edge_types = bond_types.repeat(2)
    key = (molecule_of_bond * MAX_NUM_NODES + sources) * MAX_NUM_NODES + targets
    order = torch.argsort(key)

    energy_u0 = frame["InternalEnergy_0K_au"].to_numpy(dtype=np.float64) * HARTREE_TO_EV
    energy_atom = atomization_energy_ev(frame["InternalEnergy_0K_au"].to_numpy(), frame["Elements"].tolist())
    tensors = {
        "x": torch.nn.functional.one_hot(atom_types, Z_ONE_HOT_DIM).float(),
        "z": torch.tensor(ATOMIC_NUMBERS)[atom_types],
        "edge_index": torch.stack([sources[order], targets[order]]),
        "edge_attr": torch.nn.functional.one_hot(edge_types[order], EDGE_ATTR_DIM).float(),
        "y": torch.from_numpy(np.stack([energy_atom, energy_u0], axis=1)).float(),
        "idx": torch.tensor(frame["Index"].to_numpy(dtype=np.int64)),
    }
    zero = torch.zeros(1, dtype=torch.long)
    node_slice = torch.cat([zero, torch.cumsum(num_atoms, 0)])
    edge_slice = torch.cat([zero, torch.cumsum(2 * num_bonds, 0)])
    graph_slice = torch.arange(num_molecules + 1)
    slices = {
        "x": node_slice,
        "z": node_slice,
        "edge_index": edge_slice,
        "edge_attr": edge_slice,
        "y": graph_slice,
        "idx": graph_slice,
    }
    return tensors, slices


def read_qm9pack(folder: Path | None = None) -> pd.DataFrame:
    """The 130,831 molecules of qm9pack in QM9 index order, with the columns the graphs need."""
    folder = qm9pack_data_folder() if folder is None else Path(folder)
    frame = pd.concat(
        [pd.read_csv(folder / name, usecols=_CSV_COLUMNS) for name in QM9PACK_FILES], ignore_index=True
    )
    if len(frame) != QM9_SIZE or not frame["Index"].is_monotonic_increasing:
        raise ValueError(f"expected {QM9_SIZE} molecules in QM9 index order in {folder}, found {len(frame)}")
    return frame


class QM9(InMemoryDataset):
    """QM9 (130,831 molecules) from the CSV files of ``qm9pack``, processed once and cached.

    The processed graphs are stored in ``<root>/processed/`` and reloaded from
    there. See the module docstring for the per-molecule attributes.

    Args:
        root: dataset folder (``<data_dir>/qm9``).
        transform: optional transform applied to each ``Data`` on access.
        num_workers: processes used while processing (default: the usable CPU cores).
    """

    def __init__(self, root: str | Path, transform=None, num_workers: int | None = None) -> None:
        self.num_workers = num_workers
        super().__init__(str(root), transform)
        self.load(self.processed_paths[0])

    @property
    def raw_dir(self) -> str:
        # The raw files are read in place from the installed package.
        return str(qm9pack_data_folder())

    @property
    def raw_file_names(self) -> list[str]:
        return list(QM9PACK_FILES)

    @property
    def processed_file_names(self) -> list[str]:
        return ["qm9pack_graphs_v1.pt"]

    def download(self) -> None:
        raise FileNotFoundError(f"qm9pack CSV files not found in {self.raw_dir}; reinstall qm9pack")

    def process(self) -> None:
        tensors, slices = build_qm9_tensors(read_qm9pack(Path(self.raw_dir)), self.num_workers)
        # Write atomically: an interrupted run must not leave a truncated cache behind.
        path = Path(self.processed_paths[0])
        temporary = path.with_name(path.name + ".tmp")
        fs.torch_save((tensors, slices, Data), str(temporary))
        os.replace(temporary, path)


def get_qm9(
    data_dir: str | Path,
    device: str | torch.device = "cpu",
    target: str = "U0_ATOM",
    permutation: str | Path | Tensor | None = None,
    seed: int = 42,
) -> tuple[QM9, QM9, QM9]:
    """Training, validation and test splits of QM9 with a z-scored target.

    The dataset is reordered by ``permutation`` (a permutation of the 130,831
    molecules in QM9 index order, or a file holding one, like the course's
    ``permute.pt``; default: a random one drawn with ``seed``), then split into
    the first 100,000, the next 10,000 and the remaining 20,831 molecules. The
    target becomes ``y = (target - mean) / std`` with ``y`` of shape
    ``[num_molecules, 1]``, where mean and std come from the training split
    only; each split carries them as ``target_mean`` and ``target_std`` (eV).

    Args:
        data_dir: folder for the processed dataset (``<data_dir>/qm9/processed``).
        device: device the whole dataset is moved to.
        target: ``"U0_ATOM"`` (atomization energy at 0 K) or ``"U0"`` (internal energy at 0 K).
        permutation: molecule order for the split, a tensor or a ``torch.save`` file.
        seed: seed of the default permutation.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if permutation is None:
        permutation = torch.randperm(QM9_SIZE, generator=torch.Generator().manual_seed(seed))
    elif not isinstance(permutation, Tensor):
        path = Path(permutation)
        if not path.is_file():
            raise FileNotFoundError(f"permutation file {path} not found; pass an existing file to --permutation")
        permutation = torch.load(path, weights_only=True)
    permutation = torch.as_tensor(permutation, dtype=torch.long)
    if permutation.shape != (QM9_SIZE,) or not torch.equal(torch.sort(permutation).values, torch.arange(QM9_SIZE)):
        raise ValueError(f"the split permutation must be a permutation of range({QM9_SIZE})")

    dataset = QM9(Path(data_dir) / "qm9")
    raw = dataset._data.y[:, TARGETS.index(target)].double()
    train_values = raw[permutation[:NUM_TRAIN]]
    mean, std = train_values.mean().item(), train_values.std().item()
    dataset._data.y = ((raw - mean) / std).float().unsqueeze(1)
    dataset._data = dataset._data.to(device)
    dataset.target_mean, dataset.target_std, dataset.target = mean, std, target

    dataset = dataset[permutation]
    train = dataset[:NUM_TRAIN]
    valid = dataset[NUM_TRAIN : NUM_TRAIN + NUM_VALID]
    test = dataset[NUM_TRAIN + NUM_VALID :]
    return train, valid, test


def get_labels(molecules: Data) -> Tensor:
    """Z-scored targets ``[num_graphs]`` of a batch."""
    return molecules.y[:, 0]


def get_node_features(molecules: Data) -> Tensor:
    """One-hot atom types ``[num_nodes, Z_ONE_HOT_DIM]``."""
    return molecules.x[:, :Z_ONE_HOT_DIM]


def get_z_one_hot(molecules: Data) -> Tensor:
    """One-hot atom types padded to ``MAX_NUM_NODES`` atoms: ``[num_graphs, MAX_NUM_NODES, Z_ONE_HOT_DIM]``."""
    dense, _ = to_dense_batch(
        get_node_features(molecules), molecules.batch, max_num_nodes=MAX_NUM_NODES, batch_size=molecules.num_graphs
    )
    return dense


def get_dense_adj(molecules: Data) -> Tensor:
    """Dense bond-type adjacency ``[num_graphs, MAX_NUM_NODES, MAX_NUM_NODES, EDGE_ATTR_DIM]``.

    Entry ``[g, i, j]`` is the one-hot bond type between atoms i and j of molecule g (zeros: no bond).
    """
    return to_dense_adj(
        molecules.edge_index,
        molecules.batch,
        edge_attr=molecules.edge_attr,
        max_num_nodes=MAX_NUM_NODES,
        batch_size=molecules.num_graphs,
    )


def get_mlp_features(molecules: Data) -> Tensor:
    """Padded, flattened molecules for the MLP: ``[num_graphs, FLAT_INPUT_DIM]``.

    Concatenates the one-hot atoms (29 * 5 values) and the dense bond adjacency
    (29 * 29 * 4 values): 3509 features whose positions depend on the atom order.
    """
    num_graphs = molecules.num_graphs
    return torch.cat(
        [get_z_one_hot(molecules).reshape(num_graphs, -1), get_dense_adj(molecules).reshape(num_graphs, -1)], dim=1
    )


class GraphLoader:
    """Mini-batches of an ``InMemoryDataset`` split, collated with vectorised indexing.

    PyTorch Geometric's ``DataLoader`` builds one ``Data`` object per molecule and
    collates them in Python, which dominates the MLP's epoch time on QM9; this
    loader gathers a batch's nodes and edges from the stored tensors directly.
    Batches hold ``x``, ``z``, ``edge_index`` (batch-wide node numbers),
    ``edge_attr``, ``y``, ``idx``, ``batch`` and ``ptr``, like PyG's batches.

    Args:
        dataset: a split returned by :func:`get_qm9` (or any ``QM9`` index selection).
        batch_size: molecules per batch; the last batch may be smaller.
        shuffle: reshuffle the molecules every epoch.
        generator: random generator for shuffling (seeded for reproducible runs).
    """

    def __init__(
        self, dataset: QM9, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        data, slices = dataset._data, dataset.slices
        indices = torch.as_tensor(dataset.indices(), dtype=torch.long)
        self._data = data
        self._indices = indices.to(data.x.device)
        self._node_ptr = slices["x"].to(data.x.device)
        self._edge_ptr = slices["edge_index"].to(data.x.device)

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
        data = self._data
        device = graphs.device
        node_start, num_nodes = self._node_ptr[graphs], self._node_ptr[graphs + 1] - self._node_ptr[graphs]
        edge_start, num_edges = self._edge_ptr[graphs], self._edge_ptr[graphs + 1] - self._edge_ptr[graphs]
        num_graphs = len(graphs)
        batch = torch.repeat_interleave(torch.arange(num_graphs, device=device), num_nodes)
        ptr = torch.cat([torch.zeros(1, dtype=torch.long, device=device), torch.cumsum(num_nodes, 0)])
        nodes = node_start[batch] + torch.arange(len(batch), device=device) - ptr[batch]
        edge_graph = torch.repeat_interleave(torch.arange(num_graphs, device=device), num_edges)
        edge_offset = torch.cat([torch.zeros(1, dtype=torch.long, device=device), torch.cumsum(num_edges, 0)])
        edges = edge_start[edge_graph] + torch.arange(len(edge_graph), device=device) - edge_offset[edge_graph]
        # Stored edge indices are local to their molecule; shift them to batch-wide numbers.
        edge_index = data.edge_index[:, edges] + ptr[edge_graph]
        return Batch(
            x=data.x[nodes],
            z=data.z[nodes],
            edge_index=edge_index,
            edge_attr=data.edge_attr[edges],
            y=data.y[graphs],
            idx=data.idx[graphs],
            batch=batch,
            ptr=ptr,
        )
