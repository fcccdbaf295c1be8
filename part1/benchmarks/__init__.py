"""Benchmarks of Part 1, each run as ``python -m part1.benchmarks.<name>``: ``numpy_cnn`` (Question 1.1's NumPy
blocks against PyTorch), ``corruptions`` (the cost of the 20 corrupted test sets), ``training`` (img/s of the six
CNNs per precision and memory format)."""
