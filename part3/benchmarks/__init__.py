"""Benchmarks of part 3, run as ``python -m part3.benchmarks.<name>``."""
