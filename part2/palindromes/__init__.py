"""Palindromes: how far back can a vanilla RNN and an LSTM remember?

A palindrome of length ``L`` is ``ceil(L / 2)`` random digits followed by their
mirror image. The model reads the first ``L - 1`` digits and predicts the last
one, which equals the first: it has to keep one digit in memory over ``L - 2``
time steps. Both models are trained, for every ``L`` and seed of a sweep, with the
same fixed budget, and their accuracy on held-out palindromes is plotted against ``L``.

Modules: ``data`` (palindrome streams), ``models`` (vanilla RNN, LSTM classifier),
``train`` (one training run), ``sweep`` (every (model, L, seed), resumable),
``cli`` (``python -m part2.palindromes``); the figure is drawn by ``part2.plots``.
"""
