"""A handful of real QM9 molecules as PyTorch Geometric graphs, built offline with RDKit, and helpers on batches.

The SMILES are QM9 molecules (indices from the qm9pack listing) covering the
five elements and the four bond types. Graphs follow PyG's ``QM9`` layout:
``x [atoms, 11]`` (one-hot H, C, N, O, F first), ``edge_index`` in both
directions, ``edge_attr [edges, 4]`` one-hot (single, double, triple,
aromatic), ``z``, and ``y [1, 19]``. ``y`` holds the molecule's label in all 19
columns, so it is the label whichever column the student's ``get_labels``
reads (the template's index 7, this repository's 0).
"""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.utils import to_dense_adj, to_dense_batch

QM9_SMILES = (
    "CC(C)C",
    "COCC#C",
    "C1C2C1N1CC21",
    "CC(CCO)C#N",
    "ON=C1CC2(CC2)C1",
    "COC(C)CCC#N",
    "O=COC1CC1C=O",
    "FC(F)(F)C#N",
    "COC1=C(O)C=C(N)N1",
    "C1CC11CC=C2COC12",
    "ON=C(CCC#C)C#C",
    "CC#N",
)
ELEMENTS = ("H", "C", "N", "O", "F")
MAX_NUM_NODES, Z_ONE_HOT_DIM, EDGE_ATTR_DIM, FLAT_INPUT_DIM = 29, 5, 4, 3509


def _bond_type(bond) -> int:
    from rdkit import Chem

    kind = bond.GetBondType()
    return {Chem.BondType.SINGLE: 0, Chem.BondType.DOUBLE: 1, Chem.BondType.TRIPLE: 2}.get(kind, 3)


def molecule(smiles: str, label: float) -> Data:
    """One molecule with explicit hydrogens as a PyG graph (see the module docstring)."""
    from rdkit import Chem
    from rdkit.Chem.rdchem import HybridizationType

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    x = torch.zeros(mol.GetNumAtoms(), 11)
    for atom in mol.GetAtoms():
        row = x[atom.GetIdx()]
        row[ELEMENTS.index(atom.GetSymbol())] = 1
        row[5] = atom.GetAtomicNum()
        row[6] = float(atom.GetIsAromatic())
        hybrid = atom.GetHybridization()
        row[7:10] = torch.tensor(
            [hybrid == HybridizationType.SP, hybrid == HybridizationType.SP2, hybrid == HybridizationType.SP3],
            dtype=torch.float32,
        )
        row[10] = atom.GetTotalNumHs()
    pairs, types = [], []
    for bond in mol.GetBonds():
        a, b = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        pairs += [(a, b), (b, a)]
        types += [_bond_type(bond)] * 2
    edge_index = torch.tensor(pairs, dtype=torch.long).t().contiguous()
    edge_attr = torch.nn.functional.one_hot(torch.tensor(types), EDGE_ATTR_DIM).float()
    z = x[:, 5].long()
    return Data(x=x, edge_index=edge_index, edge_attr=edge_attr, z=z, y=torch.full((1, 19), float(label)))


def qm9_molecules() -> list[Data]:
    """The molecules of :data:`QM9_SMILES` with fixed pseudo-random labels (z-scored energies)."""
    labels = np.random.default_rng(0).standard_normal(len(QM9_SMILES))
    return [molecule(smiles, label) for smiles, label in zip(QM9_SMILES, labels)]


def batch_of(molecules: list[Data]) -> Batch:
    return Batch.from_data_list(molecules)


def permute_atoms(batch: Batch, seed: int) -> Batch:
    """The same molecules with their atoms renumbered at random inside each molecule."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.argsort(batch.batch.double() + torch.rand(batch.num_nodes, generator=generator, dtype=torch.float64))
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order))
    permuted = batch.clone()
    permuted.x, permuted.z = batch.x[order], batch.z[order]
    permuted.edge_index = inverse[batch.edge_index]
    return permuted


def copies_as_one_graph(single: Data, copies: int) -> Batch:
    """A one-graph batch made of ``copies`` disjoint copies of a molecule."""
    n = single.num_nodes
    edge_index = torch.cat([single.edge_index + k * n for k in range(copies)], dim=1)
    graph = Data(
        x=single.x.repeat(copies, 1),
        edge_index=edge_index,
        edge_attr=single.edge_attr.repeat(copies, 1),
        z=single.z.repeat(copies),
        y=single.y,
    )
    return batch_of([graph])


def mlp_features(batch: Batch) -> torch.Tensor:
    """Padded, flattened molecules ``[graphs, 3509]``: one-hot atoms (29 x 5), then the bond adjacency (29 x 29 x 4)."""
    atoms, _ = to_dense_batch(
        batch.x[:, :Z_ONE_HOT_DIM], batch.batch, max_num_nodes=MAX_NUM_NODES, batch_size=batch.num_graphs
    )
    bonds = to_dense_adj(
        batch.edge_index,
        batch.batch,
        edge_attr=batch.edge_attr,
        max_num_nodes=MAX_NUM_NODES,
        batch_size=batch.num_graphs,
    )
    return torch.cat([atoms.flatten(1), bonds.flatten(1)], dim=1)
