"""Bad input to every part 1 command line: exit 2, one ``error:`` line naming the problem, no file touched.

Each case runs the entry point in-process through ``common.cli.run_cli`` (as ``python -m`` does) on tiny
synthetic data, and checks the exit code, that stderr has exactly one ``error:`` line matching the problem and
no traceback, and that every file already in the workspace is byte-for-byte unchanged. Further tests: a
mismatched rerun is refused and ``--overwrite`` moves the old run aside intact; the help of every entry point;
smoke runs of the CPU preset and the three benchmarks.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import file_hashes, run_entry_point
from test_part1_data import write_synthetic_cache

from common.cli import run_cli
from common.io import write_json
from part1 import cpu_preset, data, report, train
from part1.benchmarks import corruptions as benchmark_corruptions
from part1.benchmarks import numpy_cnn as benchmark_numpy_cnn
from part1.benchmarks import training as benchmark_training

pytestmark = pytest.mark.usefixtures("torch_one_thread")

W = "{w}"  # replaced by the workspace folder
RUN = ["--model_name", "debug", "--batch_size", "32", "--epochs", "1", "--seed", "0", "--test_subset", "20"]
RUN += ["--device", "cpu", "--data_dir", f"{W}/data"]


def _copy_run(root: Path, name: str) -> Path:
    shutil.copytree(root / "run", root / name)
    return root / name


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic data, a finished debug run, damaged copies of both, report inputs and a plain file."""
    root = tmp_path_factory.mktemp("workspace")
    write_synthetic_cache(root / "data")
    train.cli([arg.replace(W, str(root)) for arg in RUN] + ["--results_dir", str(root / "run")])
    checkpoint = root / "run" / "checkpoints" / "debug.pt"
    damaged = _copy_run(root, "truncated_checkpoint") / "checkpoints" / "debug.pt"
    damaged.write_bytes(checkpoint.read_bytes()[:300])
    interrupted = _copy_run(root, "truncated_state")
    (interrupted / "debug.json").unlink()
    (interrupted / "checkpoints" / "debug.pt").rename(interrupted / "checkpoints" / "debug.last.pt")
    (interrupted / "checkpoints" / "debug.last.pt").write_bytes(b"")
    (root / "unknown_run").mkdir()
    shutil.copy(root / "run" / "debug.json", root / "unknown_run" / "debug.json")
    cache = (root / "data" / data.CACHE_NAME).read_bytes()
    for name, content in (("bad_cache", cache[:1000]), ("empty_cache", b"")):
        (root / name).mkdir()
        (root / name / data.CACHE_NAME).write_bytes(content)
    (root / "bad_archive").mkdir()
    (root / "bad_archive" / data.ARCHIVE_NAME).write_bytes(b"\x1f\x8b\x08\x00" + b"not a tar archive" * 10)
    _report_inputs(root)
    (root / "a_file").write_text("a file, not a folder\n")
    return root


def _report_inputs(root: Path) -> None:
    result = json.loads((root / "run" / "debug.json").read_text())
    write_json(result | {"model_name": "vgg11"}, root / "vgg_only" / "vgg11.json")
    write_json(result | {"model_name": "resnet18"}, root / "mixed" / "resnet18.json")
    write_json(result | {"model_name": "vgg11", "config": {"test_subset": 500}}, root / "mixed" / "vgg11.json")
    (root / "broken").mkdir()
    (root / "broken" / "resnet18.json").write_text('{"model_name": ')
    (root / "empty").mkdir()


ENTRY_POINTS: dict[str, Callable] = {
    "train": train.cli,
    "report": report.cli,
    "cpu_preset": cpu_preset.cli,
    "benchmarks.training": benchmark_training.main,
    "benchmarks.numpy_cnn": benchmark_numpy_cnn.main,
    "benchmarks.corruptions": benchmark_corruptions.main,
}
PRESET = ["--smoke", "--models", "debug", "--data_dir", f"{W}/data", "--device", "cpu", "--precision", "fp32"]
BENCH = ["--models", "debug", "--batch_size", "2", "--repeats", "1", "--warmup", "0", "--device", "cpu"]
CORR = ["--model_name", "debug", "--num_images", "10", "--data_dir", f"{W}/data", "--device", "cpu"]
CASES = [
    ("train", [*RUN, "--epochs", "0"], r"argument --epochs: expected a positive integer, got 0"),
    ("train", [*RUN, "--batch_size", "-4"], r"argument --batch_size: expected a positive integer, got -4"),
    ("train", [*RUN, "--lr", "nan"], r"argument --lr: expected a finite positive number, got nan"),
    ("train", [*RUN, "--lr", "0"], r"argument --lr: expected a finite positive number, got 0"),
    ("train", [*RUN, "--train_subset", "0"], r"argument --train_subset: expected a positive integer, got 0"),
    ("train", [*RUN, "--val_subset", "-5"], r"argument --val_subset: expected a positive integer, got -5"),
    ("train", [*RUN, "--test_subset", "x"], r"argument --test_subset: expected a positive integer, got 'x'"),
    ("train", [*RUN, "--num_workers", "-1"], r"argument --num_workers: expected an integer >= 0, got -1"),
    ("train", [*RUN, "--threads", "0"], r"argument --threads: expected a positive integer, got 0"),
    ("train", [*RUN, "--model_name", "resnet50"], r"argument --model_name: invalid choice: 'resnet50'"),
    ("train", [*RUN, "--precision", "fp8"], r"argument --precision: invalid choice: 'fp8'"),
    ("train", [*RUN, "--device", "gpu"], r"unknown --device 'gpu'; use cpu, cuda, cuda:N or mps"),
    ("train", [*RUN, "--device", "cuda:0"], r"--device cuda:0 requested but CUDA is not available"),
    (
        "train",
        [*RUN, "--data_dir", f"{W}/bad_cache"],
        r"bad_cache/cifar10_uint8.pt is not a valid decoded CIFAR-10 "
        r"cache checkpoint \(truncated\?\); delete it or choose another --data_dir",
    ),  # fmt: skip
    ("train", [*RUN, "--data_dir", f"{W}/empty_cache"], r"empty_cache/cifar10_uint8.pt is not a valid decoded"),
    (
        "train",
        [*RUN, "--data_dir", f"{W}/bad_archive"],
        r"bad_archive/cifar10-jpeg.tar.gz is not a valid CIFAR-10 "
        r"archive \(truncated\?\); delete it and fetch it again",
    ),  # fmt: skip
    ("train", [*RUN, "--results_dir", f"{W}/a_file/results"], r"cannot write to .*a_file/results"),
    (
        "train",
        [*RUN, "--lr", "0.02", "--results_dir", f"{W}/run"],
        r"run holds a run with other settings "
        r"\(lr: 0.01 -> 0.02\); choose another --results_dir, or pass --overwrite",
    ),  # fmt: skip
    ("train", [*RUN, "--precision", "bf16", "--results_dir", f"{W}/run"], r"\(precision: 'fp32' -> 'bf16'\)"),
    ("train", [*RUN, "--results_dir", f"{W}/unknown_run"], r"unknown_run holds results of a run whose settings"),
    (
        "train",
        [*RUN, "--results_dir", f"{W}/truncated_checkpoint"],
        r"truncated_checkpoint/checkpoints/debug.pt "
        r"is not a valid part 1 training checkpoint \(truncated\?\); delete it",
    ),  # fmt: skip
    ("train", [*RUN, "--results_dir", f"{W}/truncated_state"], r"debug.last.pt is not a valid part 1 training"),
    ("report", ["--results_dir", f"{W}/missing"], r"results folder .*missing does not exist; run python -m part1"),
    ("report", ["--results_dir", f"{W}/empty"], r"no model results .* in .*empty"),
    ("report", ["--results_dir", f"{W}/vgg_only"], r"results of the normalising model 'resnet18' are missing"),
    ("report", ["--results_dir", f"{W}/broken"], r"broken/resnet18.json is not a valid results file"),
    ("report", ["--results_dir", f"{W}/mixed"], r"vgg11 was tested with test_subset=500 but resnet18 with "),
    ("report", ["--results_dir", f"{W}/run", "--out_dir", f"{W}/a_file/out"], r"cannot write to .*a_file/out"),
    ("cpu_preset", [*PRESET, "--models", "resnet50"], r"argument --models: invalid choice: 'resnet50'"),
    ("cpu_preset", [*PRESET, "--precision", "fp8"], r"argument --precision: invalid choice: 'fp8'"),
    ("cpu_preset", [*PRESET, "--threads", "0"], r"argument --threads: expected a positive integer, got 0"),
    ("cpu_preset", [*PRESET, "--device", "gpu"], r"unknown --device 'gpu'"),
    ("cpu_preset", [*PRESET, "--results_dir", f"{W}/a_file/x"], r"cannot write to .*a_file/x"),
    ("cpu_preset", [*PRESET, "--data_dir", f"{W}/bad_cache"], r"bad_cache/cifar10_uint8.pt is not a valid"),
    ("benchmarks.training", [*BENCH, "--batch_size", "0"], r"argument --batch_size: expected a positive integer"),
    ("benchmarks.training", [*BENCH, "--repeats", "0"], r"argument --repeats: expected a positive integer"),
    ("benchmarks.training", [*BENCH, "--warmup", "-1"], r"argument --warmup: expected an integer >= 0"),
    ("benchmarks.training", [*BENCH, "--models", "lenet"], r"argument --models: invalid choice: 'lenet'"),
    ("benchmarks.training", [*BENCH, "--device", "gpu"], r"unknown --device 'gpu'"),
    ("benchmarks.training", [*BENCH, "--results_dir", f"{W}/a_file/b"], r"cannot write to .*a_file/b"),
    ("benchmarks.numpy_cnn", ["--repeats", "0"], r"argument --repeats: expected a positive integer"),
    ("benchmarks.numpy_cnn", ["--cases", "vgg"], r"argument --cases: invalid choice: 'vgg'"),
    ("benchmarks.numpy_cnn", ["--threads", "-2"], r"argument --threads: expected a positive integer"),
    ("benchmarks.numpy_cnn", ["--results_dir", f"{W}/a_file/b"], r"cannot write to .*a_file/b"),
    ("benchmarks.corruptions", [*CORR, "--num_images", "0"], r"argument --num_images: expected a positive integer"),
    ("benchmarks.corruptions", [*CORR, "--device", "cuda"], r"--device cuda requested but CUDA is not available"),
    ("benchmarks.corruptions", [*CORR, "--data_dir", f"{W}/bad_cache"], r"bad_cache/cifar10_uint8.pt is not"),
    ("benchmarks.corruptions", [*CORR, "--results_dir", f"{W}/a_file/b"], r"cannot write to .*a_file/b"),
]


@pytest.mark.parametrize("name, argv, problem", CASES, ids=[f"{c[0]} {' '.join(c[1][-2:])}" for c in CASES])
def test_bad_input_gets_one_line_and_changes_nothing(
    name: str, argv: list[str], problem: str, workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [arg.replace(W, str(workspace)) for arg in argv]
    if "--results_dir" not in argv and name != "report":
        argv += ["--results_dir", str(tmp_path / "fresh")]
    before = file_hashes(workspace)
    code, stderr = run_entry_point(lambda: ENTRY_POINTS[name](argv), capsys)
    errors = [line for line in stderr if "error:" in line]
    assert code == 2 and len(errors) == 1, stderr
    assert not any("Traceback" in line for line in stderr)
    assert re.search(problem, errors[0]), errors[0]
    assert file_hashes(workspace) == before


def test_overwrite_moves_the_old_run_aside(workspace: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "run"
    shutil.copytree(workspace / "run", folder)
    old = file_hashes(folder)
    argv = [arg.replace(W, str(workspace)) for arg in RUN] + ["--lr", "0.02", "--results_dir", str(folder)]
    with pytest.raises(SystemExit):
        run_cli(lambda: train.cli(argv))
    assert file_hashes(folder) == old
    results = train.cli([*argv, "--overwrite"])
    assert results["config"]["lr"] == 0.02 and json.loads((folder / "debug.json").read_text()) == results
    (aside,) = folder.glob("superseded-*")
    # common.runs.move_aside keeps each moved path's last component (checkpoints/debug.pt -> debug.pt)
    assert sorted(file_hashes(aside).values()) == sorted(old.values())
    assert f"moved the previous run to {aside}" in capsys.readouterr().out


def test_ctrl_c_says_how_to_resume(workspace: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "train_one_epoch", interrupted)
    argv = [arg.replace(W, str(workspace)) for arg in RUN] + ["--results_dir", str(tmp_path / "run")]
    with pytest.raises(SystemExit) as exit_info:
        train.cli(argv)
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.splitlines() == ["interrupted; rerun the same command to resume"]


def test_rerun_with_the_same_settings_reports_the_finished_run(workspace: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "run"
    shutil.copytree(workspace / "run", folder)
    old = file_hashes(folder)
    results = train.cli([arg.replace(W, str(workspace)) for arg in RUN] + ["--results_dir", str(folder)])
    assert results == json.loads((folder / "debug.json").read_text()) and file_hashes(folder) == old
    out = capsys.readouterr().out
    assert out.startswith("part1.train: device cpu, precision fp32, 1 thread(s), results in ")
    assert "this run has finished" in out


@pytest.mark.parametrize("module", ["part1.train", "part1.report", "part1.cpu_preset", "part1.benchmarks.training",
                                    "part1.benchmarks.numpy_cnn", "part1.benchmarks.corruptions"])  # fmt: skip
def test_help_names_the_module_and_documents_every_option(module: str, capsys) -> None:
    entry = {f"part1.{k}": v for k, v in ENTRY_POINTS.items()}[module]
    with pytest.raises(SystemExit) as exit_info:
        entry(["--help"])
    text = capsys.readouterr().out
    assert exit_info.value.code == 0 and text.startswith(f"usage: python -m {module} ")
    entries = re.split(r"\n(?=  -)", text.split("options:", 1)[1].strip("\n"))
    undocumented = [e for e in entries if "\n" not in e.strip() and not re.search(r"\S {2,}\S", e.strip())]
    assert len(entries) >= 3 and not undocumented and ("--threads" in text) == (module != "part1.report")


def test_cpu_preset_smoke_writes_each_model_and_waits_for_resnet18(workspace: Path, tmp_path: Path, capsys):
    argv = [arg.replace(W, str(workspace)) for arg in PRESET] + ["--results_dir", str(tmp_path / "preset")]
    results = cpu_preset.cli(argv)
    saved = json.loads((tmp_path / "preset" / "debug.json").read_text())
    assert results["debug"] == saved and saved["config"]["train_subset"] == 1000 and saved["config"]["epochs"] == 4
    assert "no report yet" in capsys.readouterr().out and not (tmp_path / "preset" / "ce_rce_table.md").exists()
    assert cpu_preset.preset_settings("resnet18") == {
        "lr": 0.01,
        "batch_size": 128,
        "epochs": 39,
        "train_subset": None,
        "val_subset": None,
        "test_subset": None,
        "channels_last": True,
    }
    assert not cpu_preset.preset_settings("debug")["channels_last"]
    assert cpu_preset.EPOCHS["resnet18"] > 5 * cpu_preset.EPOCHS["vgg11"]


def test_benchmarks_smoke(workspace: Path, tmp_path: Path) -> None:
    out = ["--results_dir", str(tmp_path)]
    result = benchmark_training.main([*BENCH, *out, "--precisions", "fp32", "bf16"])
    assert [(r["precision"], r["memory_format"]) for r in result["rows"]] == [
        ("fp32", "contiguous"), ("bf16", "contiguous"), ("fp32", "channels_last"), ("bf16", "channels_last")
    ]  # fmt: skip
    assert all(r["train_img_per_s"] > 0 and r["infer_img_per_s"] > 0 for r in result["rows"])
    numpy_result = benchmark_numpy_cnn.main(["--cases", "notebook", "--repeats", "1", "--loop_repeats", "1", *out])
    for op in ("pool back", "pool forward + back"):
        assert set(numpy_result["notebook"]["seconds"][op]) == {"loop", "vectorised", "torch"}
    corr = benchmark_corruptions.main([arg.replace(W, str(workspace)) for arg in CORR] + out)
    assert corr["num_images"] == 10 and corr["batched_vs_plain_cpu"] > 0
    for name in ("benchmark_training.json", "benchmark_numpy_cnn.json", "benchmark_corruptions.json"):
        assert json.loads((tmp_path / name).read_text())
