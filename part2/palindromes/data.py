"""Random palindromes of digits, drawn in batches from seeded streams.

A palindrome of length ``L`` is ``ceil(L / 2)`` uniform digits followed by the
mirror image of the first ``floor(L / 2)``. The model reads the first ``L - 1``
digits and predicts the last, which equals the first.
"""

from __future__ import annotations

import math

import numpy as np
import torch

NUM_DIGITS = 10
TRAIN_STREAM, EVAL_STREAM = "train", "eval"
_STREAM_IDS = {TRAIN_STREAM: 0, EVAL_STREAM: 1}


def generate_palindromes(batch_size: int, seq_length: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random palindromes of digits 0-9, ``[batch_size, seq_length]`` (int64)."""
    if seq_length < 2:
        raise ValueError(f"palindrome length must be at least 2 (one input digit and the target), got {seq_length}")
    left = torch.randint(0, NUM_DIGITS, (batch_size, math.ceil(seq_length / 2)), generator=generator)
    right = left[:, : seq_length // 2].flip(1)
    return torch.cat([left, right], dim=1)


def stream_seed(seed: int, stream: str) -> int:
    """The 32-bit generator seed of data stream ``stream`` (``"train"`` or ``"eval"``) of experiment ``seed`` >= 0.

    Why hashed: torch's CPU generator keeps only the low 32 bits of its seed, so an offset such as
    ``seed + 2**32`` gives the training stream back (the held-out set was once the first training
    batches). ``numpy.random.SeedSequence`` hashes ``(seed, stream)`` into independent streams.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return int(np.random.SeedSequence([seed, _STREAM_IDS[stream]]).generate_state(1)[0])


class PalindromeDataset:
    """An endless stream of palindromes of length ``seq_length``, drawn one batch at a time.

    Args:
        seq_length: full palindrome length ``L`` (the model reads ``L - 1`` digits).
        seed: experiment seed (>= 0).
        stream: ``"train"`` or ``"eval"``: the two streams of one seed come from different generators
            (they share palindromes only by chance, which is likely only at short ``L``: there are
            ``10 ** ceil(L / 2)`` palindromes).
    """

    def __init__(self, seq_length: int, seed: int = 0, stream: str = TRAIN_STREAM) -> None:
        if seq_length < 2:
            raise ValueError(f"palindrome length must be at least 2 (one input digit and the target), got {seq_length}")
        self.seq_length = seq_length
        self.generator = torch.Generator().manual_seed(stream_seed(seed, stream))

    def batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``batch_size`` palindromes of the stream: inputs ``[B, L - 1]``, targets ``[B]`` (int64)."""
        palindromes = generate_palindromes(batch_size, self.seq_length, self.generator)
        return palindromes[:, :-1], palindromes[:, -1]
