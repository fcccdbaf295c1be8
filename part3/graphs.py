"""QM9's molecules as graph tensors, built from the CSV files of the ``qm9pack`` package.

Why qm9pack: ``torch_geometric.datasets.QM9`` (the course template's loader)
downloads the data set at first use, which machines without internet (this one,
many cluster nodes) cannot do; the PyPI package ``qm9pack`` ships all 130,831
molecules inside its wheel as CSV (SMILES, element list, XYZ coordinates,
energies, in QM9 index order), so ``pip install`` is all a user needs.

Every molecule becomes a graph whose nodes are its atoms in the order of QM9's
XYZ files (the order the atom-permutation experiment refers to) and whose edges
are its covalent bonds, in both directions. Bonds and bond orders come from the
SMILES through RDKit (with the hydrogens ``Chem.AddHs`` would add); perceiving
them from coordinates loses bond orders. RDKit's atom order differs from the
XYZ order in about 0.3 % of the molecules, so the coordinates decide which atom
is which: SMILES heavy atom i is XYZ heavy atom i when the elements agree and
every bond joins close atoms, otherwise a search finds the map that does (see
:func:`_match_heavy_atoms`); each hydrogen bonds to its nearest heavy atom,
checked against the SMILES' hydrogen counts.
"""

from __future__ import annotations

import contextlib
import importlib.util
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rdkit import Chem, RDLogger
from torch import Tensor
from tqdm import tqdm

from common.runtime import UserError

QM9_SIZE = 130_831
MAX_NUM_NODES = 29
ATOM_SYMBOLS = ("H", "C", "N", "O", "F")
ATOMIC_NUMBERS = (1, 6, 7, 8, 9)
BOND_TYPE_NAMES = ("single", "double", "triple", "aromatic")
TARGETS = ("U0_ATOM", "U0")
HARTREE_TO_EV = 27.211386
# Energies of the free atoms at 0 K (B3LYP/6-31G(2df,p), QM9's level of theory), subtracted from U0.
ATOM_REF_ENERGY_HARTREE = {"H": -0.500273, "C": -37.846772, "N": -54.583861, "O": -75.064579, "F": -99.718730}
QM9PACK_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")

_CSV_COLUMNS = ["Index", "SMILES", "Elements", "XYZ_Ang", "InternalEnergy_0K_au"]
_ATOM_TYPE_INDEX = {symbol: i for i, symbol in enumerate(ATOM_SYMBOLS)}
_CHUNK_SIZE = 2_000
# A bond may be at most this much (Angstrom) longer than the sum of its atoms' covalent radii.
_COVALENT_RADIUS = np.array([0.31, 0.76, 0.71, 0.66, 0.57])  # H, C, N, O, F
_BOND_TOLERANCE = 0.45
# Bond orders of RDKit's GetAdjacencyMatrix(useBO=True), sorted for searchsorted, and their BOND_TYPE_NAMES index.
_BOND_ORDERS = np.array([1.0, 1.5, 2.0, 3.0])
_BOND_TYPE_OF_ORDER = np.array([0, 3, 1, 2])


def qm9pack_data_folder() -> Path:
    """Folder of qm9pack's CSV files, found without importing the package (its ``__init__`` needs ``pkg_resources``)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the package qm9pack is not installed; install it with `pip install qm9pack`")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    missing = [name for name in QM9PACK_FILES if not (folder / name).is_file()]
    if missing:
        raise UserError(f"qm9pack is incomplete: {', '.join(missing)} missing in {folder}; reinstall qm9pack")
    return folder


def read_qm9pack(folder: Path | None = None) -> pd.DataFrame:
    """The 130,831 molecules of qm9pack in QM9 index order, with the columns the graphs need."""
    folder = qm9pack_data_folder() if folder is None else Path(folder)
    frame = pd.concat([pd.read_csv(folder / name, usecols=_CSV_COLUMNS) for name in QM9PACK_FILES], ignore_index=True)
    if len(frame) != QM9_SIZE or not frame["Index"].is_monotonic_increasing:
        raise ValueError(f"expected {QM9_SIZE} molecules in QM9 index order in {folder}, found {len(frame)}")
    return frame


def parse_elements(elements: str) -> list[str]:
    """qm9pack's element column, e.g. ``"['C','H','H','H','H']"`` -> ``['C', 'H', 'H', 'H', 'H']``."""
    return elements[2:-2].split("','")


def parse_coordinates(xyz: str) -> np.ndarray:
    """qm9pack's coordinate column -> ``[num_atoms, 3]`` Angstrom (Mathematica exponents ``1.2*^-6`` included)."""
    values = xyz.replace("*^", "e").replace("[", "").replace("]", "").split(",")
    return np.array(values, dtype=np.float64).reshape(-1, 3)


def atomization_energy_ev(u0_hartree: np.ndarray, elements: Sequence[str]) -> np.ndarray:
    r"""U0_ATOM = (U0 - \sum_atoms E_atom) \cdot 27.211386 eV, ``[num_molecules]``, from U0 in Hartree."""
    reference = np.array([sum(ATOM_REF_ENERGY_HARTREE[s] for s in parse_elements(e)) for e in elements])
    return (np.asarray(u0_hartree, dtype=np.float64) - reference) * HARTREE_TO_EV


def _smiles_heavy_atoms(smiles: str, elements: Sequence[str]) -> tuple[str, list[int], np.ndarray, str]:
    """RDKit's heavy atoms: ``(symbols, hydrogens on each, bond orders [h, h], smiles)``, in SMILES numbering.

    Raises ValueError if RDKit cannot parse the SMILES or its atoms differ from ``elements``.
    """
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"RDKit cannot parse the SMILES {smiles!r}")
    atoms = [(atom.GetSymbol(), atom.GetTotalNumHs()) for atom in mol.GetAtoms()]
    symbols, hydrogens = [a[0] for a in atoms], [a[1] for a in atoms]
    heavy = [e for e in elements if e != "H"]
    if sorted(symbols) != sorted(heavy) or sum(hydrogens) != len(elements) - len(heavy):
        with_hs = "".join(symbols) + "H" * sum(hydrogens)
        raise ValueError(f"atoms of SMILES {smiles!r} ({with_hs}) differ from the element list ({''.join(elements)})")
    return "".join(symbols), hydrogens, Chem.GetAdjacencyMatrix(mol, useBO=True), smiles


def _match_heavy_atoms(symbols: str, bonds: np.ndarray, elements: str, close: np.ndarray, distance: np.ndarray):
    """XYZ heavy-atom rank of each SMILES heavy atom: elements kept, every bond on a close pair, shortest bonds.

    Depth-first search over the heavy atoms (at most 9 in QM9).

    Args:
        symbols: ``[h]`` elements of the SMILES heavy atoms; ``elements``: of the XYZ heavy atoms.
        bonds: ``[b, 2]`` heavy-atom bonds in SMILES numbering.
        close, distance: ``[h, h]`` whether two XYZ heavy atoms may be bonded, and their distance.

    Returns:
        ``[h]`` array, or ``None`` if no map exists.
    """
    num_heavy = len(symbols)
    earlier_neighbours: list[list[int]] = [[] for _ in range(num_heavy)]
    for a, b in bonds.tolist():
        earlier_neighbours[max(a, b)].append(min(a, b))
    best: tuple[float, list[int]] | None = None
    chosen, used = [-1] * num_heavy, [False] * num_heavy

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
            if all(close[candidate, p] for p in placed):
                used[candidate], chosen[atom] = True, candidate
                extend(atom + 1, length + sum(distance[candidate, p] for p in placed))
                used[candidate], chosen[atom] = False, -1

    extend(0, 0.0)
    return None if best is None else np.array(best[1])


def _assign_hydrogens(distance: np.ndarray, needed: np.ndarray) -> np.ndarray:
    """Parent of each hydrogen, shortest distance first, under the heavy atoms' hydrogen counts.

    For the few molecules where a hydrogen is nearer to another heavy atom than to its
    SMILES parent (e.g. across a hydrogen bond). ``distance``: ``[num_h, 29]`` (inf: no heavy atom);
    ``needed``: ``[29]``. Returns ``[num_h]`` slot numbers.
    """
    needed = needed.copy()
    parent = np.full(len(distance), -1)
    for flat in np.argsort(distance, axis=None, kind="stable").tolist():
        h, heavy = divmod(flat, distance.shape[1])
        if parent[h] < 0 and needed[heavy] > 0:
            parent[h], needed[heavy] = heavy, needed[heavy] - 1
    return parent


def _padded_atoms(elements: list[list[str]], coordinates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Atom types ``[M, 29]`` (-1: no atom) and positions ``[M, 29, 3]`` of a chunk of molecules."""
    num_atoms = np.array([len(e) for e in elements])
    if len(coordinates) != num_atoms.sum():
        raise ValueError("the coordinate and element columns of qm9pack disagree on the number of atoms")
    molecule = np.repeat(np.arange(len(elements)), num_atoms)
    slot = np.arange(len(molecule)) - np.repeat(np.cumsum(num_atoms) - num_atoms, num_atoms)
    types = np.full((len(elements), MAX_NUM_NODES), -1)
    types[molecule, slot] = [_ATOM_TYPE_INDEX[s] for e in elements for s in e]
    positions = np.zeros((len(elements), MAX_NUM_NODES, 3))
    positions[molecule, slot] = coordinates
    return types, positions


def _bond_limit(types: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Longest distance at which two atoms of the given types count as bonded (Angstrom)."""
    return _COVALENT_RADIUS[types[first]] + _COVALENT_RADIUS[types[second]] + _BOND_TOLERANCE


def _heavy_atom_slots(types: np.ndarray, positions: np.ndarray, heavy: list, orders: np.ndarray) -> np.ndarray:
    """``slots[m, s]``: XYZ atom number of SMILES heavy atom ``s`` of molecule ``m``, ``[M, max_heavy]``.

    Heavy atom i of the SMILES is heavy atom i of the XYZ file, unless the elements disagree or a
    bond joins distant atoms; then :func:`_match_heavy_atoms` decides. If no map exists (a few
    strained cages whose relaxed geometry breaks a SMILES bond) the SMILES order is kept.
    ``orders``: ``[M, max_heavy, max_heavy]`` bond orders in SMILES numbering.
    """
    molecule, xyz_slot = np.nonzero(types > 0)
    num_heavy = (types > 0).sum(axis=1)
    rank = np.arange(len(molecule)) - np.repeat(np.cumsum(num_heavy) - num_heavy, num_heavy)
    slots = np.zeros(orders.shape[:2], dtype=np.int64)
    slots[molecule, rank] = xyz_slot
    bond_molecule, first, second = np.nonzero(np.triu(orders))
    first, second = slots[bond_molecule, first], slots[bond_molecule, second]
    length = np.linalg.norm(positions[bond_molecule, first] - positions[bond_molecule, second], axis=1)
    far = length > _bond_limit(types, (bond_molecule, first), (bond_molecule, second))
    xyz_symbols = ["".join(ATOM_SYMBOLS[t] for t in row[row > 0]) for row in types]
    check = set(bond_molecule[far].tolist()) | {m for m, h in enumerate(heavy) if h[0] != xyz_symbols[m]}
    for m in sorted(check):
        symbols, xyz = heavy[m][0], slots[m, : len(heavy[m][0])]
        distance = np.linalg.norm(positions[m, xyz][:, None] - positions[m, xyz][None], axis=2)
        close = distance <= _bond_limit(types[m, xyz], (slice(None), None), (None, slice(None)))
        mapping = _match_heavy_atoms(symbols, np.argwhere(np.triu(orders[m])), xyz_symbols[m], close, distance)
        if mapping is not None:
            slots[m, : len(symbols)] = xyz[mapping]
        elif symbols != xyz_symbols[m]:
            raise ValueError(f"heavy atoms of SMILES {heavy[m][3]!r} cannot be matched to the element list")
    return slots


def _hydrogen_parents(types: np.ndarray, positions: np.ndarray, needed: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(molecule, slot, parent slot)`` of every hydrogen: its nearest heavy atom, if that gives each heavy
    atom the ``needed [M, 29]`` hydrogens of the SMILES, else :func:`_assign_hydrogens` for that molecule."""
    h_molecule, h_slot = np.nonzero(types == 0)
    offset = positions[h_molecule] - positions[h_molecule, h_slot][:, None]
    distance = np.sqrt((offset**2).sum(axis=2))
    distance[types[h_molecule] <= 0] = np.inf
    parent = distance.argmin(axis=1)
    counts = np.zeros_like(needed)
    np.add.at(counts, (h_molecule, parent), 1)
    for m in np.flatnonzero((counts != needed).any(axis=1)).tolist():
        parent[h_molecule == m] = _assign_hydrogens(distance[h_molecule == m], needed[m])
    return h_molecule, h_slot, parent


def _chunk_graphs(rows: tuple[list[str], list[str], list[str]]) -> tuple[np.ndarray, ...]:
    """Graphs of a chunk of molecules (a worker's unit of work): RDKit per molecule, geometry vectorised.

    Returns:
        ``(atom_types [atoms], num_atoms [M], bond_molecule [bonds], bonds [bonds, 2], bond_types [bonds])``
        with chunk-local molecule numbers and molecule-local atom numbers in XYZ order.
    """
    RDLogger.DisableLog("rdApp.*")
    smiles, element_strings, xyz_strings = rows
    elements = [parse_elements(e) for e in element_strings]
    types, positions = _padded_atoms(elements, parse_coordinates(",".join(xyz_strings)))
    heavy = [_smiles_heavy_atoms(s, e) for s, e in zip(smiles, elements)]
    max_heavy = max(len(h[0]) for h in heavy)
    orders = np.zeros((len(heavy), max_heavy, max_heavy))
    for m, (symbols, _, bond_orders, _) in enumerate(heavy):
        orders[m, : len(symbols), : len(symbols)] = bond_orders
    slots = _heavy_atom_slots(types, positions, heavy, orders)
    needed = np.zeros(types.shape, dtype=np.int64)  # hydrogens the SMILES puts on each XYZ atom
    for m, (symbols, hydrogens, _, _) in enumerate(heavy):
        needed[m, slots[m, : len(symbols)]] = hydrogens
    bond_molecule, first, second = np.nonzero(np.triu(orders))
    bond_types = _BOND_TYPE_OF_ORDER[np.searchsorted(_BOND_ORDERS, orders[bond_molecule, first, second])]
    heavy_pairs = np.stack([slots[bond_molecule, first], slots[bond_molecule, second]], axis=1)
    h_molecule, h_slot, parent = _hydrogen_parents(types, positions, needed)
    return (
        types[types >= 0].astype(np.int8),
        (types >= 0).sum(axis=1),
        np.concatenate([bond_molecule, h_molecule]),
        np.concatenate([heavy_pairs, np.stack([parent, h_slot], axis=1)]).astype(np.int8),
        np.concatenate([bond_types, np.zeros(len(h_slot), dtype=np.int64)]).astype(np.int8),
    )


def _chunks(frame: pd.DataFrame) -> Iterator[tuple[list[str], list[str], list[str]]]:
    for start in range(0, len(frame), _CHUNK_SIZE):
        part = frame.iloc[start : start + _CHUNK_SIZE]
        yield part["SMILES"].tolist(), part["Elements"].tolist(), part["XYZ_Ang"].tolist()


def _graphs_of_all_chunks(frame: pd.DataFrame, num_workers: int | None) -> list[tuple[np.ndarray, ...]]:
    """:func:`_chunk_graphs` of every chunk, on ``num_workers`` processes (default: the usable cores)."""
    if num_workers is None:
        num_workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    progress = tqdm(total=len(frame), desc="Processing QM9 molecules", unit="mol", disable=None)
    results = []
    with contextlib.ExitStack() as stack:
        mapper = map
        if num_workers > 1:
            context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
            mapper = stack.enter_context(context.Pool(num_workers)).imap
        for result in mapper(_chunk_graphs, _chunks(frame)):
            results.append(result)
            progress.update(len(result[1]))
    progress.close()
    return results


def _both_directions_sorted(bond_molecule: Tensor, bonds: Tensor, bond_types: Tensor) -> tuple[Tensor, Tensor]:
    """``edge_index [2, 2 * bonds]`` and edge types, both directions of every bond, by (molecule, source, target)."""
    molecule = bond_molecule.repeat(2)
    sources = torch.cat([bonds[:, 0], bonds[:, 1]])
    targets = torch.cat([bonds[:, 1], bonds[:, 0]])
    order = torch.argsort((molecule * MAX_NUM_NODES + sources) * MAX_NUM_NODES + targets)
    return torch.stack([sources[order], targets[order]]), bond_types.repeat(2)[order]


def build_qm9_tensors(frame: pd.DataFrame, num_workers: int | None = None) -> tuple[dict[str, Tensor], dict]:
    """Graph tensors of all molecules of ``frame`` and their per-molecule slices, in ``InMemoryDataset``'s layout.

    Building the concatenated tensors directly avoids creating and collating 130,831 ``Data`` objects.
    ``x [atoms, 5]`` one-hot atom type (H, C, N, O, F); ``z [atoms]`` atomic number; ``edge_index [2, edges]``
    molecule-local atom numbers; ``edge_attr [edges, 4]`` one-hot bond type (single, double, triple, aromatic);
    ``y [molecules, 2]`` (U0_ATOM, U0) in eV; ``idx [molecules]`` QM9 index.
    """
    results = _graphs_of_all_chunks(frame, num_workers)
    offsets = np.cumsum([0] + [len(result[1]) for result in results[:-1]])
    atom_types = torch.from_numpy(np.concatenate([r[0] for r in results]).astype(np.int64))
    num_atoms = torch.from_numpy(np.concatenate([r[1] for r in results]))
    bond_molecule = torch.from_numpy(np.concatenate([r[2] + offset for r, offset in zip(results, offsets)]))
    bonds = torch.from_numpy(np.concatenate([r[3] for r in results]).astype(np.int64))
    bond_types = torch.from_numpy(np.concatenate([r[4] for r in results]).astype(np.int64))
    edge_index, edge_types = _both_directions_sorted(bond_molecule, bonds, bond_types)

    u0 = frame["InternalEnergy_0K_au"].to_numpy(dtype=np.float64)
    energies = np.stack([atomization_energy_ev(u0, frame["Elements"].tolist()), u0 * HARTREE_TO_EV], axis=1)
    tensors = {
        "x": torch.nn.functional.one_hot(atom_types, len(ATOM_SYMBOLS)).float(),
        "z": torch.tensor(ATOMIC_NUMBERS)[atom_types],
        "edge_index": edge_index,
        "edge_attr": torch.nn.functional.one_hot(edge_types, len(BOND_TYPE_NAMES)).float(),
        "y": torch.from_numpy(energies).float(),
        "idx": torch.tensor(frame["Index"].to_numpy(dtype=np.int64)),
    }
    zero = torch.zeros(1, dtype=torch.long)
    node_slice = torch.cat([zero, torch.cumsum(num_atoms, 0)])
    num_edges = 2 * torch.bincount(bond_molecule, minlength=len(frame))
    edge_slice = torch.cat([zero, torch.cumsum(num_edges, 0)])
    graph_slice = torch.arange(len(frame) + 1)
    slices = {"x": node_slice, "z": node_slice, "edge_index": edge_slice, "edge_attr": edge_slice}
    return tensors, {**slices, "y": graph_slice, "idx": graph_slice}
