"""The shared helpers: the run-folder rule, atomic writes, checkpoint loading, device/precision, CLI conventions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from common.cli import make_parser, nonnegative_float, positive_float, positive_int, run_cli
from common.io import load_checkpoint, read_json, save_torch, write_json
from common.runs import claim_run, ensure_writable
from common.runtime import UserError, autocast, grad_scaler, resolve_device, resolve_precision


def test_claim_run_starts_resumes_refuses_and_moves_aside(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    settings = {"lr": 0.1, "sizes": (1, 2), "seed": 0}
    assert claim_run(tmp_path, settings, owned=["model.pt"]) is False  # a new run
    (tmp_path / "model.pt").write_text("old weights")
    assert claim_run(tmp_path, dict(settings)) is True  # same settings (a tuple reads back as a list): resume
    with pytest.raises(UserError, match=r"lr: 0\.1 -> 0\.2.*--overwrite"):
        claim_run(tmp_path, {**settings, "lr": 0.2}, owned=["model.pt"])
    assert (tmp_path / "model.pt").read_text() == "old weights"
    assert claim_run(tmp_path, {**settings, "lr": 0.2}, overwrite=True, owned=["model.pt"]) is False
    (moved,) = tmp_path.glob("superseded-*")
    assert (moved / "model.pt").read_text() == "old weights"
    assert read_json(moved / "run.config.json")["lr"] == 0.1
    assert read_json(tmp_path / "run.config.json")["lr"] == 0.2 and not (tmp_path / "model.pt").exists()


def test_claim_run_refuses_results_of_unknown_settings(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(UserError, match="settings are unknown"):
        claim_run(tmp_path, {"a": 1}, owned=["metrics.json"])


def test_ensure_writable_refuses_a_path_below_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="cannot write to .*--results_dir"):
        ensure_writable(tmp_path / "file" / "results")


def test_atomic_writes_and_checkpoint_errors(tmp_path: Path) -> None:
    write_json({"é": [1, 2]}, tmp_path / "a" / "x.json")
    assert json.loads((tmp_path / "a" / "x.json").read_text(encoding="utf-8")) == {"é": [1, 2]}
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.json"]  # no temporary file left
    save_torch({"w": torch.ones(3)}, tmp_path / "ok.pt")
    assert torch.equal(load_checkpoint(tmp_path / "ok.pt", "test", ("w",))["w"], torch.ones(3))
    with pytest.raises(UserError, match="missing epoch"):
        load_checkpoint(tmp_path / "ok.pt", "test", ("w", "epoch"))
    (tmp_path / "bad.pt").write_bytes((tmp_path / "ok.pt").read_bytes()[:50])
    with pytest.raises(UserError, match=r"bad\.pt is not a valid test checkpoint \(truncated\?\); delete it"):
        load_checkpoint(tmp_path / "bad.pt", "test")
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt", "test")


@pytest.mark.parametrize("spec", ["gpu", "cuda:banana", "tpu"])
def test_unknown_devices_are_refused(spec: str) -> None:
    with pytest.raises(UserError, match="--device"):
        resolve_device(spec)


def test_cuda_requested_without_cuda_is_an_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(UserError, match="CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device(None).type == "cpu"


def test_precision_defaults_and_autocast() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision(None, cpu) == "fp32"
    with autocast(cpu, "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast(cpu, "fp32"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    assert grad_scaler(cpu, "fp16").is_enabled() and not grad_scaler(cpu, "bf16").is_enabled()


@pytest.mark.parametrize(
    "parse,text",
    [
        (positive_int, "0"),
        (positive_int, "-8"),
        (positive_int, "2.5"),
        (positive_float, "nan"),
        (positive_float, "0"),
        (nonnegative_float, "-1"),
        (nonnegative_float, "inf"),
    ],
)
def test_argument_types_refuse_bad_values(parse, text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse(text)


def test_help_shows_each_default_once_and_none_never() -> None:
    parser = make_parser("python -m part0.x", "Summary line.\n\nDetails.")
    parser.add_argument("--a", type=int, default=3, help="a number")
    parser.add_argument("--b", default=None, help="b (default: computed)")
    text = parser.format_help()
    assert "usage: python -m part0.x" in text and "Details" not in text
    assert "a number (default: 3)" in text and "(default: None)" not in text and text.count("default:") == 2


def test_run_cli_turns_errors_and_interrupts_into_exit_codes(capsys: pytest.CaptureFixture) -> None:
    def fail() -> None:
        raise UserError("bad input; do this instead")

    def interrupt() -> None:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exit_info:
        run_cli(fail)
    assert exit_info.value.code == 2 and capsys.readouterr().err == "error: bad input; do this instead\n"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(interrupt)
    assert exit_info.value.code == 130 and "rerun the same command to resume" in capsys.readouterr().err


def test_a_failed_save_leaves_the_old_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    save_torch({"w": torch.ones(2)}, path)
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - pickling a lambda fails in the middle of the write
        save_torch({"f": lambda: 0}, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["model.pt"]
