"""Part 1 of the assignment: convolutional networks.

The NumPy building blocks of a CNN (question 1.1) are importable from here by the
course template's names; they are the vectorised versions from
:mod:`part1.numpy_cnn` (the plain-loop reference is :mod:`part1.numpy_cnn_loops`).
Importing this package loads only NumPy; the PyTorch modules are imported on use.
"""
from part1.numpy_cnn import (
    convolution2D,
    convolution2D_backward_filter,
    convolution2D_backward_input,
    pool_back,
    pool_forward,
    zero_padding,
)

__all__ = [
    "zero_padding",
    "convolution2D",
    "convolution2D_backward_filter",
    "convolution2D_backward_input",
    "pool_forward",
    "pool_back",
]
