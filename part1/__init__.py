"""Part 1 of the assignment: convolutional networks.

1a (Question 1.1): the NumPy CNN block in :mod:`part1.numpy_cnn`, importable from here by the course template's
names (``from part1 import convolution2D``). 1b (Question 1.2): the CIFAR-10 corruption benchmark
(:mod:`part1.data`, :mod:`part1.model`, :mod:`part1.corruptions`, :mod:`part1.train`, :mod:`part1.evaluate`,
:mod:`part1.report`). Importing this package loads only NumPy.
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
