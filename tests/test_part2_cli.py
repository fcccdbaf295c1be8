"""Bad input to the part 2 command lines I own (palindromes, generate, plots): one line, exit 2, no file touched.

Each case runs the entry point in-process through ``common.cli.run_cli`` (as ``python -m`` does) and checks
the exit code, that stderr has exactly one ``error:`` line naming the problem and no traceback, that every
file already in the workspace is byte-for-byte unchanged, and that no new results folder was made.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from argparse import Namespace
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from helpers import file_hashes, run_entry_point

from common.io import save_torch, write_json
from part2 import generate, plots
from part2.model import TextGenerationModel
from part2.palindromes import cli as palindromes

pytestmark = pytest.mark.usefixtures("torch_one_thread")

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_SWEEP = ["--train_steps", "2", "--batch_size", "4", "--num_hidden", "4", "--eval_batches", "1"]
TINY_SWEEP += ["--min_length", "3", "--max_length", "3", "--models", "rnn", "--seeds", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished palindrome sweep, text-model checkpoints (good and bad), results folders and a plain file."""
    root = tmp_path_factory.mktemp("workspace")
    palindromes.main([*TINY_SWEEP, "--results_dir", str(root / "sweep")])
    config = {"vocabulary_size": 4, "embedding_size": 3, "lstm_hidden_dim": 5, "lstm_num_layers": 1}
    torch.manual_seed(0)
    model = TextGenerationModel(Namespace(**config))
    save_torch({"model": model.state_dict(), "model_config": config, "chars": list("ab c")}, root / "checkpoint.pt")
    good = (root / "checkpoint.pt").read_bytes()
    (root / "truncated.pt").write_bytes(good[: len(good) // 2])
    (root / "empty.pt").write_bytes(b"")
    save_torch({"weights": torch.zeros(2)}, root / "foreign.pt")
    (root / "no_logs").mkdir()
    (root / "no_logs" / "notes.txt").write_text("not a run\n")
    (root / "broken").mkdir()
    (root / "broken" / "metrics.json").write_text('{"epochs": [')
    (root / "broken" / "results.json").write_text('{"config": {')
    write_json({"config": {"seed": 0}, "results": {}}, root / "old_sweep" / "results.json")
    write_json({"config": {}, "epochs": [], "steps": {"loss": []}}, root / "unstarted" / "metrics.json")
    (root / "a_file").write_text("a file, not a folder\n")
    return root


ENTRY_POINTS: dict[str, Callable] = {"palindromes": palindromes.main, "generate": generate.main, "plots": plots.main}
W = "{w}"  # replaced by the workspace folder

CASES = [
    # palindromes (after a tiny budget; a new --results_dir is added unless the case names one: it must not be made)
    ("palindromes", ["--threads", "0"], r"argument --threads: expected a positive integer, got 0"),
    ("palindromes", ["--device", "gpu"], r"unknown --device 'gpu'; use cpu, cuda, cuda:N or mps"),
    ("palindromes", ["--device", "cuda:0"], r"--device cuda:0 requested but CUDA is not available"),
    ("palindromes", ["--min_length", "1"], r"--min_length must be at least 2"),
    ("palindromes", ["--min_length", "10", "--max_length", "5"], r"--max_length \(5\) must not be below"),
    ("palindromes", ["--length_step", "0"], r"argument --length_step: expected a positive integer"),
    ("palindromes", ["--train_steps", "-3"], r"argument --train_steps: expected a positive integer"),
    ("palindromes", ["--batch_size", "0"], r"argument --batch_size: expected a positive integer"),
    ("palindromes", ["--num_hidden", "0"], r"argument --num_hidden: expected a positive integer"),
    ("palindromes", ["--eval_batches", "0"], r"argument --eval_batches: expected a positive integer"),
    ("palindromes", ["--lr", "nan"], r"argument --lr: expected a finite positive number"),
    ("palindromes", ["--clip_grad_norm", "0"], r"argument --clip_grad_norm: expected a finite positive number"),
    ("palindromes", ["--lstm_forget_bias", "inf"], r"argument --lstm_forget_bias: expected a finite number"),
    ("palindromes", ["--seeds", "0", "-1"], r"argument --seeds: expected an integer >= 0, got -1"),
    ("palindromes", ["--models", "gru"], r"argument --models: invalid choice: 'gru'"),
    ("palindromes", ["--compare_dirs", f"{W}/no_logs"], r"no_logs/results.json does not exist"),
    ("palindromes", ["--compare_dirs", f"{W}/broken"], r"broken/results.json is not a valid palindrome sweep"),
    ("palindromes", ["--compare_dirs", f"{W}/old_sweep"], r"old_sweep/results.json is not a results file of this"),
    (
        "palindromes",
        ["--lr", "0.5", "--results_dir", f"{W}/sweep"],
        r"sweep holds a run with other "
        r"settings \(lr: 0.001 -> 0.5\); choose another --results_dir, or pass --overwrite",
    ),  # fmt: skip
    ("palindromes", ["--results_dir", f"{W}/a_file/sweep"], r"cannot write to .*a_file/sweep"),
    # generate
    ("generate", ["--checkpoint", f"{W}/truncated.pt"], r"truncated.pt is not a valid part2.train checkpoint"),
    ("generate", ["--checkpoint", f"{W}/empty.pt"], r"empty.pt is not a valid part2.train checkpoint"),
    ("generate", ["--checkpoint", f"{W}/foreign.pt"], r"foreign.pt is not a valid .* \(missing model, model_config"),
    ("generate", ["--checkpoint", f"{W}/missing.pt"], r"missing.pt does not exist"),
    ("generate", ["--checkpoint", f"{W}/a_file"], r"a_file is not a valid part2.train checkpoint"),
    ("generate", ["--checkpoint", f"{W}/checkpoint.pt", "--length", "-5"], r"argument --length: expected a positive"),
    ("generate", ["--checkpoint", f"{W}/checkpoint.pt", "--num_samples", "-1"], r"argument --num_samples: expected"),
    ("generate", ["--checkpoint", f"{W}/checkpoint.pt", "--temperature", "nan"], r"argument --temperature: expected"),
    ("generate", ["--checkpoint", f"{W}/checkpoint.pt", "--temperature", "-1"], r"argument --temperature: expected"),
    ("generate", ["--checkpoint", f"{W}/checkpoint.pt", "--prime", "aQ"], r"\['Q'\] are not in the model's vocab"),
    ("generate", ["--checkpoint", f"{W}/checkpoint.pt", "--prime", "abab", "--length", "3"], r"--prime has 4 char"),
    ("generate", ["--checkpoint", f"{W}/checkpoint.pt", "--device", "gpu"], r"unknown --device 'gpu'"),
    ("generate", ["--checkpoint", f"{W}/checkpoint.pt", "--threads", "0"], r"argument --threads: expected a pos"),
    # plots
    ("plots", ["--results_dir", f"{W}/no_logs"], r"no metrics.json in .*no_logs; pass the --results_dir of a part2"),
    ("plots", ["--results_dir", f"{W}/missing"], r"no metrics.json in .*missing"),
    ("plots", ["--results_dir", f"{W}/broken"], r"broken/metrics.json is not a valid part2.train metrics file"),
    ("plots", ["--results_dir", f"{W}/unstarted"], r"unstarted/metrics.json holds no training steps yet"),
]


@pytest.mark.parametrize("name, argv, problem", CASES, ids=[f"{c[0]} {' '.join(c[1][-2:])}" for c in CASES])
def test_bad_input_gets_one_line_and_changes_nothing(
    name: str, argv: list[str], problem: str, workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [arg.replace(W, str(workspace)) for arg in argv]
    fresh = tmp_path / "fresh_results"
    if name == "palindromes":  # a tiny budget, should a planted bug let the sweep start
        argv = [*TINY_SWEEP, *argv] if "--results_dir" in argv else [*TINY_SWEEP, *argv, "--results_dir", str(fresh)]
    before = file_hashes(workspace)
    code, stderr = run_entry_point(lambda: ENTRY_POINTS[name](argv), capsys)
    errors = [line for line in stderr if "error:" in line]
    assert code == 2 and len(errors) == 1, stderr
    assert not any("Traceback" in line for line in stderr)
    assert re.search(problem, errors[0]), errors[0]
    assert file_hashes(workspace) == before
    assert not fresh.exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_results_folder_is_refused_before_any_work(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, stderr = run_entry_point(
            lambda: ENTRY_POINTS["palindromes"]([*TINY_SWEEP, "--results_dir", str(folder)]), capsys
        )
    finally:
        folder.chmod(0o755)
    assert code == 2 and stderr == [
        f"error: cannot write to {folder} (Permission denied); choose another --results_dir"
    ]
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("module", ["part2.palindromes", "part2.generate", "part2.plots"])
def test_every_option_has_help_and_the_prog_is_the_module(module: str) -> None:
    builder = {"part2.palindromes": palindromes.build_parser, "part2.generate": generate.build_parser}
    parser = builder.get(module, plots.build_parser)()
    assert parser.prog == f"python -m {module}"
    for action in parser._actions:
        assert action.help, action.option_strings


# Run in one interpreter (one torch import) by runpy, as `python -m` runs them.
RUN_MODULES = """
import runpy, sys
for module, *argv in [line.split("|") for line in sys.argv[1:]]:
    sys.argv = [module, *argv]
    print("=== " + module, file=sys.stderr, flush=True)
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exit:
        print(f"exit {exit.code}", file=sys.stderr, flush=True)
"""


def test_python_dash_m_prints_one_line(workspace: Path) -> None:
    calls = {
        "part2.palindromes": (["--min_length", "1", "--results_dir", f"{workspace}/none"], "--min_length must be"),
        "part2.generate": (["--checkpoint", f"{workspace}/truncated.pt"], "truncated.pt is not a valid part2.train"),
        "part2.plots": (["--results_dir", f"{workspace}/no_logs"], "no metrics.json in"),
    }
    lines = ["|".join([module, *argv]) for module, (argv, _) in calls.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", RUN_MODULES, *lines], cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=120
    )
    assert "Traceback" not in result.stderr, result.stderr
    outputs = dict(block.split("\n", 1) for block in result.stderr.split("=== ")[1:])
    for module, (_, problem) in calls.items():
        errors = [line for line in outputs[module].splitlines() if "error:" in line]
        assert len(errors) == 1 and problem in errors[0], outputs[module]
        assert outputs[module].rstrip().endswith("exit 2"), outputs[module]


def test_plots_redraws_a_results_folder_from_its_metrics(tmp_path: Path, monkeypatch, capsys) -> None:
    figures = []
    monkeypatch.setattr(plots.plt, "close", figures.append)
    losses, accuracies = [4.0, 3.0, 2.0, 2.0, 1.0, 1.0], [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    epochs = [{"epoch": 1, "loss": 3.0, "accuracy": 0.1, "steps": 3}, {"epoch": 2, "loss": 4 / 3, "accuracy": 0.4}]
    config = {"txt_file": "data/book.txt", "lstm_num_layers": 1, "lstm_hidden_dim": 8, "embedding_size": 4}
    write_json({"config": config, "epochs": epochs, "steps": {"loss": losses, "accuracy": accuracies}},
               tmp_path / "metrics.json")  # fmt: skip
    assert plots.main(["--results_dir", str(tmp_path)]) == tmp_path / "curves.png"
    assert capsys.readouterr().out == f"{tmp_path / 'curves.png'}\n"
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    ax_loss, ax_accuracy = figures[0].axes
    per_step, per_epoch = ax_loss.lines
    # Step s (0-based) ends at epoch (s + 1) / steps_per_epoch; the curve is the running mean of 20 steps.
    assert list(per_step.get_xdata()) == pytest.approx([1 / 3, 2 / 3, 1, 4 / 3, 5 / 3, 2])
    assert list(per_step.get_ydata()) == pytest.approx([4, 3.5, 3, 2.75, 2.4, 13 / 6])
    assert list(per_epoch.get_xdata()) == [1, 2] and list(per_epoch.get_ydata()) == pytest.approx([3, 4 / 3])
    assert list(ax_accuracy.lines[1].get_ydata()) == pytest.approx([0.1, 0.4])
    assert figures[0]._suptitle.get_text() == "book.txt: LSTM 1x8, embedding 4"
