"""Report-only analysis for part 3: code that answers a written question of REPORT.md, not part of the pipeline.

- ``spectral``: questions 3.1-3.4, ring graphs, circulant matrices, the layer of equation 23 and the
  graph Fourier transform.
- ``graph_attention``: question 3.5, a single-head graph-attention layer written out (matches PyG's ``GATConv``).
"""
