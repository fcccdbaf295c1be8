"""Part 3: QM9 atomization energy with an MLP and a GNN, and the atom-permutation experiment."""

import warnings

# PyTorch Geometric 2.8 calls torch.jit.script while it is imported, which torch 2.14 deprecates:
# a warning about library code on every run that the user can do nothing about.
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
