"""Part 3: QM9 atomization energy with an MLP and a GNN, and the atom-permutation experiment."""
