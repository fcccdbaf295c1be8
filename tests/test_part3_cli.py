"""The command line of part 3: every bad input ends with one line on stderr and changes no file; the run-folder rule."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from helpers import file_hashes

from common.io import write_json
from part3 import train as trainer
from part3.data import cache_path

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TINY = ["--epochs", "1", "--train_subset", "300", "--eval_subset", "100", "--batch_size", "64", "--threads", "1"]
TINY_MLP = ["--model", "mlp", "--mlp_hidden_dims", "16", *TINY]


def _unwritable_folder(tmp_path: Path, name: str) -> Path:
    """A folder nothing can be written to: read-only, or (as root, who may write anyway) below a regular file."""
    if os.geteuid() != 0:
        folder = tmp_path / name
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    (tmp_path / f"{name}_is_a_file").write_text("")
    return tmp_path / f"{name}_is_a_file" / name


def _run_expecting_error(argv: list[str], capsys, folder: Path) -> str:
    """Run the CLI, assert exit code 2, one line on stderr and no file changed under ``folder``; return that line."""
    before = file_hashes(folder)
    with pytest.raises(SystemExit) as exit_info:
        trainer.cli(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert file_hashes(folder) == before
    return err


BAD_OPTIONS = [
    (["--gnn_hidden_dims", "0"], "argument --gnn_hidden_dims: expected a positive integer, got 0"),
    (["--gnn_hidden_dims", "-4"], "argument --gnn_hidden_dims: expected a positive integer, got -4"),
    (["--mlp_hidden_dims", "-3"], "argument --mlp_hidden_dims: expected a positive integer, got -3"),
    (["--mlp_hidden_dims", "64", "0"], "argument --mlp_hidden_dims: expected a positive integer, got 0"),
    (["--gnn_num_blocks", "0"], "argument --gnn_num_blocks: expected a positive integer"),
    (["--epochs", "0"], "argument --epochs: expected a positive integer"),
    (["--batch_size", "-1"], "argument --batch_size: expected a positive integer"),
    (["--train_subset", "0"], "argument --train_subset: expected a positive integer"),
    (["--eval_subset", "x"], "argument --eval_subset: expected a positive integer"),
    (["--threads", "0"], "argument --threads: expected a positive integer"),
    (["--lr", "nan"], "argument --lr: expected a finite positive number"),
    (["--lr", "0"], "argument --lr: expected a finite positive number"),
    (["--model", "cnn"], "argument --model: invalid choice"),
    (["--target", "gap"], "argument --target: invalid choice"),
    (["--precision", "fp8"], "argument --precision: invalid choice"),
    (["--device", "gpu"], "unknown --device 'gpu'"),
    (["--model", "gnn", "--precision", "bf16"], "--precision bf16 works only with --model mlp"),
    (["--no_such_option"], "unrecognized arguments: --no_such_option"),
]


@pytest.mark.parametrize("options, message", BAD_OPTIONS, ids=[" ".join(case[0]) for case in BAD_OPTIONS])
def test_bad_options_are_one_line_and_change_nothing(tmp_path, capsys, options, message):
    argv = [*TINY, "--data_dir", str(tmp_path / "data"), "--results_dir", str(tmp_path / "results"), *options]
    assert message in _run_expecting_error(argv, capsys, tmp_path)
    assert not (tmp_path / "results").exists() and not (tmp_path / "data").exists()  # no work started


def test_cuda_without_a_gpu_is_one_line(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is available here")
    argv = [*TINY, "--device", "cuda", "--results_dir", str(tmp_path / "results")]
    assert "CUDA is not available" in _run_expecting_error(argv, capsys, tmp_path)


def _bad_permutation_file(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / "permute.pt"
    if kind == "text":
        path.write_text("0 1 2 3\n")
    elif kind == "short":
        torch.save(torch.arange(10), path)
    elif kind == "repeats":
        torch.save(torch.zeros(130_831, dtype=torch.long), path)
    return path  # "missing": not created


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "does not exist; pass an existing file to --permutation"),
        ("text", "is not a permutation of range(130831)"),
        ("short", "is not a permutation of range(130831)"),
        ("repeats", "is not a permutation of range(130831)"),
    ],
)
def test_a_bad_permutation_file_is_one_line(tmp_path, capsys, kind, message):
    path = _bad_permutation_file(tmp_path, kind)
    argv = [*TINY_MLP, "--permutation", str(path), "--data_dir", str(tmp_path / "data")]
    argv += ["--results_dir", str(tmp_path / "results")]
    err = _run_expecting_error(argv, capsys, tmp_path)
    assert str(path) in err and message in err


def test_an_unwritable_results_folder_is_one_line_before_any_work(qm9_data_dir, tmp_path, capsys):
    results_dir = _unwritable_folder(tmp_path, "results")
    argv = [*TINY_MLP, "--data_dir", str(qm9_data_dir), "--results_dir", str(results_dir)]
    assert f"cannot write to {results_dir}" in _run_expecting_error(argv, capsys, tmp_path)


def test_an_unwritable_data_folder_is_one_line_before_any_work(tmp_path, capsys):
    data_dir = _unwritable_folder(tmp_path, "data")
    argv = [*TINY_MLP, "--data_dir", str(data_dir), "--results_dir", str(tmp_path / "results")]
    err = _run_expecting_error(argv, capsys, tmp_path)
    assert "cannot write the QM9 cache" in err and "--data_dir" in err
    assert not (tmp_path / "results").exists()


def test_a_corrupt_dataset_cache_is_one_line(tmp_path, capsys):
    cache = cache_path(tmp_path / "data")
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"\x80\x02 truncated")
    argv = [*TINY_MLP, "--data_dir", str(tmp_path / "data"), "--results_dir", str(tmp_path / "results")]
    err = _run_expecting_error(argv, capsys, tmp_path / "data")
    assert f"{cache} is not a valid QM9 dataset checkpoint" in err and "--data_dir" in err


def test_a_corrupt_checkpoint_is_one_line(qm9_data_dir, tmp_path, capsys):
    argv = [*TINY_MLP, "--data_dir", str(qm9_data_dir), "--results_dir", str(tmp_path)]
    write_json(trainer.run_settings(trainer.parse_args(argv), "fp32"), tmp_path / "run.config.json")
    (tmp_path / "mlp_checkpoint.pt").write_bytes(b"PK\x03\x04 truncated zip")
    err = _run_expecting_error(argv, capsys, tmp_path)
    assert f"{tmp_path / 'mlp_checkpoint.pt'} is not a valid part3 training checkpoint" in err


def test_a_folder_with_results_of_unknown_settings_is_refused(qm9_data_dir, tmp_path, capsys):
    (tmp_path / "gnn.json").write_text("{}")
    argv = [*TINY_MLP, "--data_dir", str(qm9_data_dir), "--results_dir", str(tmp_path)]
    assert "settings are unknown" in _run_expecting_error(argv, capsys, tmp_path)


def test_other_settings_are_refused_before_any_work(tmp_path, capsys):
    cache = cache_path(tmp_path / "data")  # never read: the refusal comes first
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"")
    argv = [*TINY_MLP, "--data_dir", str(tmp_path / "data"), "--results_dir", str(tmp_path / "results")]
    write_json(trainer.run_settings(trainer.parse_args(argv), "fp32"), tmp_path / "results" / "run.config.json")
    (tmp_path / "results" / "mlp.json").write_text("{}")
    err = _run_expecting_error([*argv, "--seed", "7", "--epochs", "3"], capsys, tmp_path)
    assert "other settings (epochs: 1 -> 3; seed: 42 -> 7)" in err


def test_other_settings_are_refused_and_overwrite_keeps_the_old_run(qm9_data_dir, tmp_path, capsys):
    argv = [*TINY_MLP, "--data_dir", str(qm9_data_dir), "--results_dir", str(tmp_path / "results")]
    trainer.cli(argv)
    first = file_hashes(tmp_path / "results")
    capsys.readouterr()

    trainer.cli([*argv, "--resume"])  # same settings (--resume is accepted and changes nothing): resumed
    assert "resumed mlp" in capsys.readouterr().out

    for changed in (["--seed", "1"], ["--train_subset", "200"], ["--lr", "0.01"], ["--mlp_hidden_dims", "8"]):
        err = _run_expecting_error([*argv, *changed], capsys, tmp_path)
        assert changed[0].lstrip("-") + ":" in err and "--overwrite" in err and "--results_dir" in err

    trainer.cli([*argv, "--seed", "1", "--overwrite"])
    assert "moved the previous run to" in capsys.readouterr().out
    (superseded,) = (tmp_path / "results").glob("superseded-*")
    kept = file_hashes(superseded)
    for name in ("run.config.json", "mlp.json", "mlp_checkpoint.pt", "mlp_best.pt", "mlp_results.md"):
        assert kept[name] == first[name], name
    assert '"seed": 1' in (tmp_path / "results" / "run.config.json").read_text()
