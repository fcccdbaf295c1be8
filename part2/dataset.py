"""Character-level text data: reading a book, its vocabulary, and (input, target) sequences.

``TextDataset`` and ``text_collate_fn`` keep the interface of the course
template: an item is a pair of index lists of length ``seq_length``, the
target shifted by one character, and a batch is stacked time-major as
``inputs, targets [T, B]``.
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch.utils import data

from common.runtime import UserError

ACCEPTED_ENCODINGS = "UTF-8 (with or without BOM) or Latin-1"
_WIDE_BOMS = {  # UTF-32 first: its little-endian BOM starts with UTF-16's
    codecs.BOM_UTF32_LE: "UTF-32",
    codecs.BOM_UTF32_BE: "UTF-32",
    codecs.BOM_UTF16_LE: "UTF-16",
    codecs.BOM_UTF16_BE: "UTF-16",
}
# Control characters other than whitespace (tab, newlines, vertical tab, form feed).
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
# Binary data read as Latin-1 is about 23 % such characters (60 of 256 byte values); text has almost none.
MAX_CONTROL_FRACTION = 0.1


def read_text(filename: str | os.PathLike) -> str:
    """Read a text file of any extension: UTF-8 (a byte-order mark is dropped), else Latin-1.

    Latin-1 maps every byte to a character, so decoding never fails; binary files and UTF-16/32
    text are refused instead (NUL bytes, a UTF-16/32 byte-order mark, or more than
    ``MAX_CONTROL_FRACTION`` control characters), with a ``UserError`` naming the file.
    """
    if not os.path.isfile(filename):
        raise UserError(
            f"text file {os.fspath(filename)!r} not found; pass an existing file with --txt_file "
            "(a path, or a name inside --data_dir)"
        )
    with open(filename, "rb") as handle:
        raw = handle.read()
    refuse = f"{os.fspath(filename)} is not a text file in an accepted encoding ({ACCEPTED_ENCODINGS}): "
    for bom, encoding in _WIDE_BOMS.items():
        if raw.startswith(bom):
            raise UserError(refuse + f"it is {encoding}; convert it, e.g. iconv -f {encoding} -t UTF-8")
    if b"\x00" in raw:
        raise UserError(refuse + "it contains NUL bytes (binary data, or UTF-16/32 without a byte-order mark)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    controls = len(_CONTROL.findall(text))
    if controls > MAX_CONTROL_FRACTION * len(text):
        raise UserError(refuse + f"{controls / len(text):.0%} of its characters are control characters")
    return text


class TextDataset(data.Dataset):
    """Sequences of ``seq_length`` characters from one text file and the next character of each.

    Args:
        filename: path of the text file (see ``read_text`` for encodings).
        seq_length: number of characters ``T`` per input sequence.
        step_size: distance between the start offsets of consecutive items; the
            dataset has ``ceil((N - T) / step_size)`` items for ``N`` characters.
        random_select: ignore the item index and draw a uniformly random start
            offset instead (the template's behaviour), from this dataset's own
            generator so that training can save and restore its state.
        seed: seed of that generator.

    Raises:
        UserError: the file is missing, not text (see ``read_text``) or shorter than ``seq_length + 1`` characters.
    """

    def __init__(
        self,
        filename: str | os.PathLike,
        seq_length: int,
        step_size: int = 10,
        random_select: bool = True,
        seed: int | None = None,
    ) -> None:
        if seq_length < 1 or step_size < 1:
            raise ValueError(f"seq_length and step_size must be positive, got {seq_length} and {step_size}")
        self._seq_length = seq_length
        self._step_size = step_size
        self._random_select = random_select
        self._data = read_text(filename)
        # Start offsets 0 .. N - T - 1 leave room for the target's last character.
        self._num_offsets = len(self._data) - seq_length
        if self._num_offsets < 1:
            raise UserError(
                f"{os.fspath(filename)!r} has {len(self._data)} characters, fewer than one sequence of "
                f"{seq_length} + 1; use a longer text or a smaller --input_seq_length"
            )
        self._chars = sorted(set(self._data))
        self._char_to_ix = {ch: i for i, ch in enumerate(self._chars)}
        self._encoded = np.array([self._char_to_ix[ch] for ch in self._data], dtype=np.int64)
        self.rng = np.random.default_rng(seed)

    def __getitem__(self, item: int) -> tuple[list[int], list[int]]:
        if self._random_select:
            offset = int(self.rng.integers(0, self._num_offsets))
        else:
            offset = item * self._step_size
        window = self._encoded[offset : offset + self._seq_length + 1]
        return window[:-1].tolist(), window[1:].tolist()

    def __len__(self) -> int:
        return (self._num_offsets - 1) // self._step_size + 1

    def convert_to_string(self, char_ix: Iterable[int]) -> str:
        """Indices to text."""
        return indices_to_string(char_ix, self._chars)

    def encode(self, text: str) -> list[int]:
        """Text to indices; every character must be in the vocabulary."""
        return encode(text, self._chars)

    @property
    def vocabulary_size(self) -> int:
        """Number of distinct characters of the text."""
        return len(self._chars)

    @property
    def chars(self) -> list[str]:
        """The vocabulary: the sorted distinct characters of the text (index ``i`` is ``chars[i]``)."""
        return list(self._chars)

    @property
    def text(self) -> str:
        """The whole text as read."""
        return self._data


def text_collate_fn(batch: Sequence[tuple[list[int], list[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack a list of ``(inputs, targets)`` items time-major: two LongTensors ``[T, B]``."""
    inputs = torch.tensor([item[0] for item in batch], dtype=torch.long).t().contiguous()
    targets = torch.tensor([item[1] for item in batch], dtype=torch.long).t().contiguous()
    return inputs, targets


def indices_to_string(char_ix: Iterable[int], chars: Sequence[str]) -> str:
    """Indices to text with the vocabulary ``chars``."""
    return "".join(chars[int(ix)] for ix in char_ix)


def samples_to_strings(samples: torch.Tensor, chars: Sequence[str]) -> list[str]:
    """Sampled index sequences ``[L, B]`` (as returned by ``TextGenerationModel.sample``) to ``B`` strings."""
    return [indices_to_string(column, chars) for column in samples.t().tolist()]


def encode(text: str, chars: Sequence[str]) -> list[int]:
    """Text to indices with the vocabulary ``chars``; unknown characters raise a ``UserError``."""
    lookup = {ch: i for i, ch in enumerate(chars)}
    unknown = sorted(set(text) - lookup.keys())
    if unknown:
        raise UserError(f"characters {unknown!r} are not in the model's vocabulary; use only characters of its book")
    return [lookup[ch] for ch in text]
