"""Part 2 text data: reading a book (accepted and refused encodings), the vocabulary, items and batches."""

from __future__ import annotations

import codecs
import random
from pathlib import Path

import pytest
import torch

from common.runtime import UserError
from part2.dataset import TextDataset, encode, read_text, samples_to_strings, text_collate_fn

ACCEPTED = "UTF-8 (with or without BOM) or Latin-1"
TEXT = "Es war einmal ein König, der hatte drei Töchter.\n\tDie jüngste war die schönste.\f\n"


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "data",
    [TEXT.encode("utf-8"), codecs.BOM_UTF8 + TEXT.encode("utf-8"), TEXT.encode("latin-1")],
    ids=["utf-8", "utf-8 with BOM", "latin-1"],
)
def test_accepted_encodings_read_the_same_text(tmp_path: Path, data: bytes) -> None:
    assert read_text(write(tmp_path, "book.md", data)) == TEXT  # any extension; the BOM is dropped


def test_a_few_control_characters_are_accepted(tmp_path: Path) -> None:
    text = "a line of ordinary text\n" * 40 + "\x1b[1m bold \x1b[0m\x07\n"
    assert read_text(write(tmp_path, "book.txt", text.encode("utf-8"))) == text


def random_bytes_without_nul(count: int) -> bytes:
    rng = random.Random(0)
    return bytes(rng.randrange(1, 256) for _ in range(count))


@pytest.mark.parametrize(
    "data, problem",
    [
        (codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"), "it is UTF-16"),
        (codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"), "it is UTF-16"),
        (codecs.BOM_UTF32_LE + TEXT.encode("utf-32-le"), "it is UTF-32"),
        (codecs.BOM_UTF32_BE + TEXT.encode("utf-32-be"), "it is UTF-32"),
        (TEXT.encode("utf-16-le"), "NUL bytes"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4, "NUL bytes"),
        (random_bytes_without_nul(4000), "control characters"),
        (b"ab\x01\x02\x03\x04\x05\x06" * 100, "75% of its characters are control characters"),
    ],
    ids=["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be", "utf-16 no BOM", "png", "random bytes", "controls"],
)
def test_files_that_are_not_text_are_refused_in_one_line(tmp_path: Path, data: bytes, problem: str) -> None:
    path = write(tmp_path, "book.txt", data)
    for read in (read_text, lambda file: TextDataset(file, seq_length=3)):
        with pytest.raises(UserError) as error:
            read(path)
        message = str(error.value)
        assert "\n" not in message and str(path) in message and ACCEPTED in message and problem in message


def test_missing_and_short_files_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="missing.txt.*not found.*--txt_file"):
        TextDataset(tmp_path / "missing.txt", seq_length=3)
    path = write(tmp_path, "short.txt", b"abc")
    assert len(TextDataset(path, seq_length=2)) == 1
    with pytest.raises(UserError, match="short.txt.* 3 characters, fewer than one sequence of 3 \\+ 1"):
        TextDataset(path, seq_length=3)


def test_items_targets_vocabulary_and_collate(tmp_path: Path) -> None:
    dataset = TextDataset(write(tmp_path, "book.txt", b"abcabd\nxyz"), seq_length=4, step_size=2, random_select=False)
    assert dataset.chars == sorted(set("abcabd\nxyz")) and dataset.vocabulary_size == 8
    inputs, targets = dataset[1]
    # The course template's names: convert_to_string, vocabulary_size.
    assert dataset.convert_to_string(inputs) == "cabd" and dataset.convert_to_string(targets) == "abd\n"
    assert len(dataset) == 3  # start offsets 0, 2, 4 of the 6 with room for the target
    assert dataset.convert_to_string(dataset[len(dataset) - 1][1]) == "d\nxy"
    batch_inputs, batch_targets = text_collate_fn([dataset[0], dataset[1], dataset[2]])
    assert batch_inputs.shape == (4, 3) and batch_targets.shape == (4, 3)  # time-major [T, B]
    assert torch.equal(batch_inputs[1:], batch_targets[:-1])
    assert samples_to_strings(batch_inputs, dataset.chars) == ["abca", "cabd", "bd\nx"]
    assert dataset.encode("cab") == [3, 1, 2]  # "\n" sorts first


def test_random_select_is_seeded_and_stays_inside_the_text(tmp_path: Path) -> None:
    path = write(tmp_path, "book.txt", "café · naïve, über alles".encode("latin-1"))
    first, second = TextDataset(path, seq_length=3, seed=1), TextDataset(path, seq_length=3, seed=1)
    items = [first[0] for _ in range(30)]
    assert items == [second[0] for _ in range(30)]
    assert len({tuple(inputs) for inputs, _ in items}) > 5  # the index is ignored: random offsets
    for inputs, targets in items:
        assert inputs[1:] == targets[:-1]
        assert first.convert_to_string(inputs + targets[-1:]) in first.text


def test_encode_refuses_characters_outside_the_vocabulary() -> None:
    assert encode("ba", ["a", "b"]) == [1, 0]
    with pytest.raises(UserError, match="\\['Q'\\] are not in the model's vocabulary"):
        encode("aQ", ["a", "b"])
