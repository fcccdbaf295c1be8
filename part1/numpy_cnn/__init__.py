"""Question 1.1: the building blocks of a CNN in NumPy, by the course template's names.

``part1.numpy_cnn`` (= :mod:`part1.numpy_cnn.vectorised`) is the fast version, :mod:`part1.numpy_cnn.loops` the
plain-loop reference, :mod:`part1.numpy_cnn.checks` their shared argument checks.
"""

from part1.numpy_cnn.vectorised import (
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
