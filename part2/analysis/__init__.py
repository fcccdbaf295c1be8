"""Report-only analysis for part 2: code that answers a written question of REPORT.md, not part of the pipeline.

- ``rnn_gradients``: question 2.1, BPTT for a vanilla RNN checked against autograd, and the
  Jacobian-product norms behind vanishing and exploding gradients
  (``python -m part2.analysis.rnn_gradients --results_dir assets/part2``).
"""
