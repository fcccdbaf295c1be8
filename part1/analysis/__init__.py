"""Report-only analysis of Part 1: :mod:`part1.analysis.metrics` (CE, RCE, mCE with confidence intervals)."""
