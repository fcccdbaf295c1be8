"""The commands the job files of ``lisa_jobs/`` run, checked without a cluster.

Each job file runs with ``bash`` and ``DRY_RUN=1`` (``lisa_jobs/job_env.sh`` then prints
the command instead of running it) in a clean environment, so the defaults checked here
are the assignment's full protocol that a plain ``sbatch`` gets. Every command is then
parsed by the real argument parser of the script it calls, so a job passing an option
the script no longer accepts (or only as a hidden alias) fails here. The submit script of
Part 1 runs against a stand-in ``sbatch`` that records its arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
JOBS_DIR = REPO_ROOT / "lisa_jobs"
PART1_MODELS = ["debug", "vgg11", "vgg11_bn", "resnet18", "resnet34", "densenet121"]
GPU_JOBS = ["part1_train.job", "part2_train.job", "part2_palindromes.job", "part3_train.job"]
CPU_JOBS = ["install_environment.job", "prepare_data.job", "part1_report.job"]
JOB_FILES = GPU_JOBS + CPU_JOBS
SCRIPTS = [*JOB_FILES, "submit_part1.sh", "job_env.sh"]

# Every setting variable of a job, each set to a valid value other than the job's default.
ALL_SETTINGS = {
    "part1_train.job": {
        "MODELS": "debug resnet18",
        "SLURM_ARRAY_TASK_ID": "1",
        "DATA_DIR": "/data/cifar",
        "EPOCHS": "2",
        "LR": "0.1",
        "BATCH_SIZE": "64",
        "SEED": "1",
        "TRAIN_SUBSET": "100",
        "VAL_SUBSET": "50",
        "TEST_SUBSET": "40",
        "PRECISION": "bf16",
        "OVERWRITE": "1",
        "NUM_WORKERS": "2",
        "THREADS": "3",
        "DEVICE": "cpu",
        "EXTRA_ARGS": "--channels_last",
    },
    "part1_report.job": {"RESULTS_DIR": "/tmp/r", "OUT_DIR": "/tmp/out"},
    "part2_train.job": {
        "EPOCHS": "3",
        "BATCH_SIZE": "8",
        "INPUT_SEQ_LENGTH": "20",
        "LSTM_HIDDEN_DIM": "16",
        "EMBEDDING_SIZE": "8",
        "MAX_STEPS_PER_EPOCH": "5",
        "SEED": "1",
        "PRECISION": "fp32",
        "OVERWRITE": "1",
        "THREADS": "3",
        "DEVICE": "cpu",
        "EXTRA_ARGS": "--lr 0.01",
    },
    "part2_palindromes.job": {
        "MIN_LENGTH": "4",
        "MAX_LENGTH": "8",
        "LENGTH_STEP": "2",
        "SEEDS": "3 4",
        "TRAIN_STEPS": "20",
        "OVERWRITE": "1",
        "THREADS": "3",
        "DEVICE": "cpu",
        "EXTRA_ARGS": "--num_hidden 8",
    },
    "part3_train.job": {
        "MODEL": "gnn",
        "EPOCHS": "2",
        "DATA_DIR": "/data/qm9",
        "TRAIN_SUBSET": "200",
        "EVAL_SUBSET": "100",
        "SEED": "1",
        "PERMUTATION": "/data/permute.pt",
        "PRECISION": "fp32",
        "OVERWRITE": "1",
        "THREADS": "3",
        "DEVICE": "cpu",
        "EXTRA_ARGS": "--batch_size 32",
    },
}


def test_every_experiment_has_a_documented_job_file():
    assert sorted(p.name for p in JOBS_DIR.glob("*.job")) == sorted(JOB_FILES)
    readme = (JOBS_DIR / "README.md").read_text()
    missing = [name for name in SCRIPTS if f"`{name}`" not in readme]
    assert not missing, f"lisa_jobs/README.md does not describe {missing}"


def test_readme_explains_running_job_files_off_the_cluster():
    readme = (JOBS_DIR / "README.md").read_text()
    assert "DRY_RUN=1" in readme and "VENV=" in readme
    assert "OVERWRITE=1" in readme and "PRECISION" in readme


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_is_valid_bash(script):
    result = subprocess.run(["bash", "-n", str(JOBS_DIR / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def venv(job_python_env: dict[str, str]) -> Path:
    """The virtual environment the dry runs activate (the one running the tests)."""
    return Path(job_python_env["VENV"])


def run_job(job: str, venv: Path, cwd: Path = REPO_ROOT, dry: bool = True, **variables: str):
    """Run ``lisa_jobs/<job>`` (with ``DRY_RUN=1`` unless ``dry`` is false) and only the given variables."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "VENV": str(venv), **variables}
    if dry:
        env["DRY_RUN"] = "1"
    return subprocess.run(["bash", str(JOBS_DIR / job)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def dry_run(job: str, venv: Path, cwd: Path = REPO_ROOT, **variables: str) -> subprocess.CompletedProcess:
    return run_job(job, venv, cwd, **variables)


def commands(result: subprocess.CompletedProcess) -> list[list[str]]:
    """The commands a dry run printed (the lines starting with ``+``), each split into words."""
    assert result.returncode == 0, result.stdout + result.stderr
    return [shlex.split(line[2:]) for line in result.stdout.splitlines() if line.startswith("+ ")]


def command(result: subprocess.CompletedProcess) -> list[str]:
    """The one command a dry run printed."""
    printed = commands(result)
    assert len(printed) == 1, result.stdout
    return printed[0]


def options(words: list[str]) -> dict[str, str | None]:
    """``--flag value`` pairs of a command line; flags without a value map to ``None``."""
    out: dict[str, str | None] = {}
    for i, word in enumerate(words):
        if word.startswith("--"):
            nxt = words[i + 1] if i + 1 < len(words) else None
            out[word] = None if nxt is None or nxt.startswith("--") else nxt
    return out


# --------------------------------------------------------------------------- the scripts' own parsers
class _Captured(Exception):
    """Raised by the stand-in ``parse_args`` once it has the parser an entry point built."""


def _parser_built_by(entry) -> argparse.ArgumentParser:
    """The parser that ``entry([])`` builds, caught at its ``parse_args`` call (nothing else runs)."""
    captured: list[argparse.ArgumentParser] = []

    def capture(self, *args, **kwargs):
        captured.append(self)
        raise _Captured

    with mock.patch.object(argparse.ArgumentParser, "parse_args", capture), contextlib.suppress(_Captured):
        entry([])
    return captured[0]


def parser_of(module_name: str) -> argparse.ArgumentParser:
    """The argument parser of ``python -m <module_name>`` (or of its ``cli`` submodule): its
    ``build_parser()``, or the parser its ``parse_args``/``cli`` builds."""
    for name in (module_name, f"{module_name}.cli"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        if hasattr(module, "build_parser"):
            return module.build_parser()
        entry = getattr(module, "parse_args", None) or getattr(module, "cli", None)
        if callable(entry):
            return _parser_built_by(entry)
    raise AssertionError(f"no argument parser found for python -m {module_name}")


def check_against_parser(words: list[str]) -> argparse.Namespace:
    """``python -m <module> <args>``: every option is a visible, canonical one of the script, and the whole
    command line parses (types, choices, required options)."""
    assert words[:2] == ["python", "-m"], words
    parser = parser_of(words[2])
    by_option = {opt: action for action in parser._actions for opt in action.option_strings}
    for word in words[3:]:
        if not word.startswith("--"):
            continue
        action = by_option.get(word)
        assert action is not None, f"python -m {words[2]} has no option {word}"
        assert action.help != argparse.SUPPRESS, f"{word} is a hidden option of python -m {words[2]}"
        assert word == action.option_strings[0], f"{word} is an alias; use {action.option_strings[0]}"
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            return parser.parse_args(words[3:])
    except SystemExit:
        raise AssertionError(f"python -m {words[2]} refuses {shlex.join(words[3:])}: {stderr.getvalue()}") from None


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("books") / "my_book.txt"
    path.write_text("some text\n")
    return path


def settings_for(job: str, book: Path, every: bool) -> dict[str, str]:
    """The variables a job needs (BOOK), plus every setting variable when ``every``."""
    variables = {"BOOK": str(book)} if job == "part2_train.job" else {}
    return {**variables, **(ALL_SETTINGS[job] if every else {})}


@pytest.mark.parametrize("every", [False, True], ids=["defaults", "every-setting"])
@pytest.mark.parametrize("job", sorted(ALL_SETTINGS))
def test_job_passes_only_options_its_script_accepts(venv, book, job, every):
    """Drift between a job file and its script's command line fails here, not on the cluster."""
    words = command(dry_run(job, venv, **settings_for(job, book, every)))
    check_against_parser(words)


@pytest.mark.parametrize("job", sorted(ALL_SETTINGS))
def test_every_setting_variable_is_documented_and_reaches_the_command(venv, book, job):
    header = (JOBS_DIR / job).read_text().split("\nset -euo pipefail")[0]
    everything = settings_for(job, book, every=True)
    full = command(dry_run(job, venv, **everything))
    for name in ALL_SETTINGS[job]:
        if name.startswith("SLURM_"):
            continue
        assert re.search(rf"\b{name}\b", header), f"{job} does not document {name} in its header"
        without = {key: value for key, value in everything.items() if key != name}
        assert command(dry_run(job, venv, **without)) != full, f"{name} does not change the command of {job}"


def test_hidden_options_are_refused_by_the_check():
    """The check above means something: aliases and hidden no-op options of the scripts are refused."""
    with pytest.raises(AssertionError, match="alias; use --epochs"):
        check_against_parser(["python", "-m", "part2.train", "--txt_file", "b.txt", "--num_epochs", "2"])
    with pytest.raises(AssertionError, match="hidden option"):
        check_against_parser(["python", "-m", "part2.train", "--txt_file", "b.txt", "--resume"])
    with pytest.raises(AssertionError, match="has no option --no_such_option"):
        check_against_parser(["python", "-m", "part1.train", "--no_such_option", "2"])
    with pytest.raises(AssertionError, match="refuses"):
        check_against_parser(["python", "-m", "part3.train", "--epochs", "0"])


# --------------------------------------------------------------------------- defaults: the full protocol
@pytest.mark.parametrize("task, model", list(enumerate(PART1_MODELS)))
def test_part1_array_task_trains_its_model_with_the_full_protocol(venv, task, model):
    words = command(dry_run("part1_train.job", venv, SLURM_ARRAY_TASK_ID=str(task), SLURM_CPUS_PER_TASK="3"))
    assert words[:3] == ["python", "-m", "part1.train"]
    assert options(words) == {
        "--model_name": model, "--lr": "0.01", "--batch_size": "128", "--epochs": "150",
        "--seed": "42", "--data_dir": "data", "--results_dir": "results/part1", "--threads": "3",
    }  # fmt: skip


def test_part1_array_task_without_a_model_fails_clearly(venv):
    result = dry_run("part1_train.job", venv, SLURM_ARRAY_TASK_ID="2", MODELS="debug vgg11")
    assert result.returncode == 1
    assert "array task 2 has no model" in result.stderr


def test_part1_report_reads_the_training_results(venv):
    words = command(dry_run("part1_report.job", venv))
    assert words[:3] == ["python", "-m", "part1.report"]
    assert options(words) == {"--results_dir": "results/part1"}


def test_part2_text_job_defaults(venv, book):
    words = command(dry_run("part2_train.job", venv, BOOK=str(book)))
    assert words[:3] == ["python", "-m", "part2.train"]
    assert options(words) == {
        "--txt_file": str(book), "--results_dir": "results/part2/my_book", "--epochs": "20",
        "--batch_size": "128", "--input_seq_length": "30", "--lstm_hidden_dim": "1024", "--embedding_size": "256",
    }  # fmt: skip


def test_part2_text_job_reads_num_epochs_when_epochs_is_unset(venv, book):
    assert options(command(dry_run("part2_train.job", venv, BOOK=str(book), NUM_EPOCHS="7")))["--epochs"] == "7"
    both = dry_run("part2_train.job", venv, BOOK=str(book), NUM_EPOCHS="7", EPOCHS="9")
    assert options(command(both))["--epochs"] == "9"


def test_part2_text_job_needs_a_book(venv, tmp_path):
    for variables in ({}, {"BOOK": str(tmp_path / "missing.txt")}):
        result = dry_run("part2_train.job", venv, **variables)
        assert result.returncode == 1
        assert "set BOOK to the text file" in result.stderr


def test_part2_palindrome_job_sweeps_the_assignment_lengths(venv):
    words = command(dry_run("part2_palindromes.job", venv))
    assert words[:3] == ["python", "-m", "part2.palindromes"]
    assert options(words) == {"--min_length": "5", "--max_length": "50", "--length_step": "5",
                              "--results_dir": "results/part2/palindromes"}  # fmt: skip


def test_part2_palindrome_job_passes_every_seed(venv):
    words = command(dry_run("part2_palindromes.job", venv, SEEDS="3 4 5"))
    assert words[words.index("--seeds") : words.index("--seeds") + 4] == ["--seeds", "3", "4", "5"]
    assert check_against_parser(words).seeds == [3, 4, 5]
    assert check_against_parser(command(dry_run("part2_palindromes.job", venv, SEED="6"))).seeds == [6]


def test_part3_job_trains_both_models_for_ten_epochs(venv):
    words = command(dry_run("part3_train.job", venv))
    assert words[:3] == ["python", "-m", "part3.train"]
    assert options(words) == {"--model": "both", "--epochs": "10", "--data_dir": "data",
                              "--results_dir": "results/part3"}  # fmt: skip


# --------------------------------------------------------------------------- results folders
def results_dir(job: str, venv: Path, **variables: str) -> str:
    return options(command(dry_run(job, venv, **variables)))["--results_dir"]


def test_results_folder_is_named_after_the_settings_given(venv, book):
    """The scripts refuse a folder holding a run with other settings: other settings, another folder."""
    smoke = {"EPOCHS": "1", "TRAIN_SUBSET": "1000", "TEST_SUBSET": "500"}
    assert results_dir("part1_train.job", venv, **smoke) == "results/part1_epochs-1_train_subset-1000_test_subset-500"
    # The report, submitted with the same variables, reads the folder the array wrote.
    assert results_dir("part1_report.job", venv, **smoke) == results_dir("part1_train.job", venv, **smoke)
    assert results_dir("part1_train.job", venv, PRECISION="fp16") == "results/part1_precision-fp16"
    assert results_dir("part3_train.job", venv, MODEL="gnn", PERMUTATION="data/permute.pt") == (
        "results/part3_model-gnn_permutation-permute.pt"
    )
    assert results_dir("part2_palindromes.job", venv, TRAIN_STEPS="500") == "results/part2/palindromes_train_steps-500"
    assert results_dir("part2_train.job", venv, BOOK=str(book), LSTM_HIDDEN_DIM="16", MAX_STEPS_PER_EPOCH="3") == (
        "results/part2/my_book_lstm_hidden_dim-16_max_steps_per_epoch-3"
    )


def test_settings_a_run_may_change_keep_its_folder(venv, book):
    """More epochs extend a Part 2 run and more lengths or seeds a sweep: the same folder, so it resumes."""
    assert results_dir("part2_train.job", venv, BOOK=str(book), EPOCHS="40") == "results/part2/my_book"
    sweep = {"MAX_LENGTH": "60", "SEEDS": "0 1 2 3", "DEVICE": "cpu", "THREADS": "2"}
    assert results_dir("part2_palindromes.job", venv, **sweep) == "results/part2/palindromes"


def test_results_dir_overrides_the_derived_name(venv):
    assert results_dir("part1_train.job", venv, EPOCHS="1", RESULTS_DIR="/tmp/r") == "/tmp/r"
    assert results_dir("part1_report.job", venv, EPOCHS="1", RESULTS_DIR="/tmp/r") == "/tmp/r"


@pytest.mark.parametrize("value, passed", [("1", True), ("0", False), ("", False)])
def test_overwrite_is_passed_only_for_1(venv, value, passed):
    opts = options(command(dry_run("part3_train.job", venv, OVERWRITE=value)))
    assert ("--overwrite" in opts) == passed


def test_overwrite_with_another_value_fails_clearly(venv):
    result = dry_run("part3_train.job", venv, OVERWRITE="yes")
    assert result.returncode == 1 and "+ python" not in result.stdout
    assert result.stderr.strip().splitlines() == [
        "error: OVERWRITE must be 1 (move a run with other settings aside) or unset, got 'yes'"
    ]


def test_threads_default_to_the_cpus_slurm_gave_the_job(venv):
    assert options(command(dry_run("part3_train.job", venv, SLURM_CPUS_PER_TASK="3")))["--threads"] == "3"
    assert options(command(dry_run("part3_train.job", venv, SLURM_CPUS_PER_TASK="3", THREADS="1")))["--threads"] == "1"
    assert "--threads" not in options(command(dry_run("part3_train.job", venv)))


# --------------------------------------------------------------------------- GPU requests and checks
def sbatch_options(job: str) -> dict[str, str]:
    return dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)", (JOBS_DIR / job).read_text(), flags=re.MULTILINE))


@pytest.mark.parametrize("job", JOB_FILES)
def test_only_the_training_jobs_request_and_require_a_gpu(job):
    text, requested = (JOBS_DIR / job).read_text(), sbatch_options(job)
    if job in GPU_JOBS:
        assert requested.get("gres") == "gpu:1" and requested.get("partition") == "gpu_shared"
        check = re.search(r"^require_gpu$", text, flags=re.MULTILINE)
        assert check and check.start() < text.index("\nrun python"), f"{job} does not call require_gpu before running"
    else:
        assert "gres" not in requested and "gpu" not in requested.get("partition", ""), requested
        assert "require_gpu" not in text


@pytest.fixture(scope="module")
def no_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a usable GPU")


def test_gpu_job_without_a_gpu_fails_with_one_line_before_running(venv, no_cuda, tmp_path):
    """With this machine's Python, which sees no GPU: the job ends before the script starts."""
    results = tmp_path / "results"
    result = run_job("part1_train.job", venv, dry=False, RESULTS_DIR=str(results), SLURM_ARRAY_TASK_ID="0")
    assert result.returncode == 1
    assert "+ python" not in result.stdout and not results.exists()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no usable CUDA GPU on "), result.stderr
    assert "or set DEVICE=cpu" in lines[0]


def fake_venv(folder: Path, python: str) -> Path:
    """A virtual environment whose ``python`` is the given bash script."""
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "activate").write_text(f'export PATH="{folder}/bin:$PATH"\n')
    (folder / "bin" / "python").write_text("#!/bin/bash\n" + python)
    (folder / "bin" / "python").chmod(0o755)
    return folder


def test_gpu_job_without_torch_says_so(tmp_path):
    venv = fake_venv(tmp_path / "venv", "echo \"ModuleNotFoundError: No module named 'torch'\" >&2; exit 1\n")
    result = run_job("part3_train.job", venv, dry=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {venv}/bin/python cannot import torch (ModuleNotFoundError: No module named 'torch'); "
        "create the environment with lisa_jobs/install_environment.job"
    ]


@pytest.mark.parametrize("device", ["cpu", "mps"])
def test_device_cpu_or_mps_skips_the_gpu_check(tmp_path, device):
    venv = fake_venv(tmp_path / "venv", 'echo "python $*"\n')
    result = run_job("part3_train.job", venv, dry=False, DEVICE=device)
    assert result.returncode == 0, result.stderr
    assert "python -m part3.train" in result.stdout and f"--device {device}" in result.stdout


def test_gpu_check_accepts_a_usable_gpu_after_warnings(tmp_path):
    """The last line of the check counts: CUDA libraries may print warnings before it."""
    script = 'if [[ "$1" == -c ]]; then echo "UserWarning: something" >&2; echo True; else echo "python $*"; fi\n'
    result = run_job("part3_train.job", fake_venv(tmp_path / "venv", script), dry=False)
    assert result.returncode == 0, result.stderr
    assert "python -m part3.train" in result.stdout


def fake_conda(folder: Path, site: Path) -> dict[str, str]:
    """``conda`` and ``activate`` stand-ins: the environment is this Python with ``site`` first on its path."""
    folder.mkdir()
    (folder / "conda").write_text('#!/bin/bash\necho "conda $*"\n')
    (folder / "conda").chmod(0o755)
    (folder / "activate").write_text(f'export PYTHONPATH="{site}"\nexport PATH="{Path(sys.executable).parent}:$PATH"\n')
    return {"PATH": f"{folder}:/usr/bin:/bin", "HOME": str(folder), "REPO_DIR": str(REPO_ROOT)}


def fake_torch(site: Path, cuda: str | None, available: bool) -> Path:
    """Stand-ins of torch, torchvision and torch_geometric with the given CUDA build and GPU."""
    for name in ("torchvision", "torch_geometric"):
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text("__version__ = '0'\n")
    (site / "torch").mkdir()
    (site / "torch" / "__init__.py").write_text(
        "import types\n__version__ = '2.x'\n"
        f"version = types.SimpleNamespace(cuda={cuda!r})\n"
        f"cuda = types.SimpleNamespace(is_available=lambda: {available}, get_device_name=lambda i: 'Fake GPU')\n"
    )
    return site


@pytest.mark.parametrize(
    "cuda, available, visible, error",
    [
        (None, False, "", "error: torch 2.x was installed without CUDA support"),
        ("12.4", False, "0", "error: this job has GPU 0 but torch 2.x (CUDA 12.4) cannot use it"),
        ("12.4", False, "", None),
        ("12.4", True, "0", None),
    ],
    ids=["cpu-build", "gpu-unusable", "cuda-build-no-gpu", "cuda-build-and-gpu"],
)
def test_install_job_fails_without_a_cuda_build(tmp_path, cuda, available, visible, error):
    env = fake_conda(tmp_path / "bin", fake_torch(tmp_path / "site", cuda, available))
    env["CUDA_VISIBLE_DEVICES"] = visible
    job = str(JOBS_DIR / "install_environment.job")
    result = subprocess.run(["bash", job], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert "conda env create -n dl2021 -f environment.yml" in result.stdout
    if error is None:
        assert result.returncode == 0, result.stderr
        assert "torch built with CUDA 12.4; GPU: " + ("Fake GPU" if available else "none") in result.stdout
    else:
        assert result.returncode == 1
        assert result.stderr.strip().splitlines()[-1].startswith(error), result.stderr


# --------------------------------------------------------------------------- data preparation
def test_prepare_data_job_prepares_both_data_sets_in_data_dir(venv):
    printed = commands(dry_run("prepare_data.job", venv, DATA_DIR="/data/shared"))
    assert [words[:2] + words[3:] for words in printed] == [["python", "-c", "/data/shared"]] * 2
    assert "load_cifar10" in printed[0][2] and "QM9" in printed[1][2]
    assert [words[3] for words in commands(dry_run("prepare_data.job", venv))] == ["data", "data"]
    only_qm9 = commands(dry_run("prepare_data.job", venv, DATASETS="qm9"))
    assert len(only_qm9) == 1 and "QM9" in only_qm9[0][2]


def test_prepare_data_job_refuses_an_unknown_data_set_before_any_work(venv):
    result = dry_run("prepare_data.job", venv, DATASETS="cifar10 mnist")
    assert result.returncode == 1 and "+ python" not in result.stdout
    assert "unknown data set 'mnist' in DATASETS" in result.stderr


def test_prepare_data_programs_call_the_data_code(venv, tmp_path, monkeypatch, capsys):
    """The one-line programs run (here in this process, with the data loaders replaced) and use DATA_DIR."""
    import part1.data
    import part3.data

    calls = []
    fake_cifar = {"train_y": [0] * 5, "test_y": [0] * 2}
    monkeypatch.setattr(part1.data, "load_cifar10", lambda folder: calls.append(folder) or fake_cifar)
    monkeypatch.setattr(part3.data, "QM9", lambda root: calls.append(root) or [0] * 3)
    for words in commands(dry_run("prepare_data.job", venv, DATA_DIR=str(tmp_path))):
        monkeypatch.setattr(sys, "argv", ["-c", *words[3:]])
        exec(words[2], {})
    assert calls == [str(tmp_path), tmp_path / "qm9"]
    out = capsys.readouterr().out
    assert f"CIFAR-10 ready in {tmp_path} : 5 training and 2 test images" in out
    assert f"QM9 ready in {tmp_path} : 3 molecules" in out


# --------------------------------------------------------------------------- the submit script
@pytest.mark.parametrize("job", JOB_FILES)
def test_job_outside_the_repository_root_fails_clearly(venv, tmp_path, job):
    result = dry_run(job, venv, cwd=tmp_path, REPO_DIR=str(tmp_path), SLURM_ARRAY_TASK_ID="0")
    assert result.returncode == 1
    assert "repository root" in result.stderr, result.stderr


def submit_part1(tmp_path: Path, *args: str, **variables: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run ``submit_part1.sh`` against a stand-in sbatch that records its arguments and answers with ids 100, 101..."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    calls = tmp_path / "sbatch_calls"
    fake_sbatch = fake_bin / "sbatch"
    fake_sbatch.write_text(
        "#!/bin/bash\n"
        f'echo "$*" >> {calls}\n'
        f'echo "$(( 100 + $(wc -l < {calls}) - 1 ));cluster"\n'
    )  # fmt: skip
    fake_sbatch.chmod(0o755)
    (tmp_path / "lisa_jobs" / "logs").mkdir(parents=True)
    env = {"PATH": f"{fake_bin}:{os.environ['PATH']}", **variables}
    result = subprocess.run(["bash", str(JOBS_DIR / "submit_part1.sh"), *args],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result, calls.read_text().splitlines()


def test_submit_part1_chains_data_preparation_array_and_report(tmp_path):
    """The array starts after the data is prepared, the report after every array task."""
    result, calls = submit_part1(tmp_path, "--time=00:10:00", MODELS="debug resnet18 resnet34")
    assert calls == [
        f"--parsable --time=00:10:00 {JOBS_DIR / 'prepare_data.job'}",
        f"--parsable --dependency=afterok:100 --array=0-2 --time=00:10:00 {JOBS_DIR / 'part1_train.job'}",
        f"--parsable --dependency=afterok:101 --time=00:10:00 {JOBS_DIR / 'part1_report.job'}",
    ]
    assert "data preparation 100, training array 101 and report job 102" in result.stdout


def test_submit_part1_without_data_preparation(tmp_path):
    result, calls = submit_part1(tmp_path, PREPARE="0")
    assert calls == [
        f"--parsable {JOBS_DIR / 'part1_train.job'}",
        f"--parsable --dependency=afterok:100 {JOBS_DIR / 'part1_report.job'}",
    ]
    assert "training array 100 and report job 101" in result.stdout


def test_submit_part1_must_run_from_the_repository_root(tmp_path):
    result = subprocess.run(["bash", str(JOBS_DIR / "submit_part1.sh")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 1
    assert "run this script from the repository root" in result.stderr


def test_logs_folder_is_kept_in_git_but_its_logs_are_not(repo_root):
    """SLURM does not create the folder of --output, so a fresh clone must contain lisa_jobs/logs/."""
    if subprocess.run(["git", "rev-parse"], cwd=repo_root, capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    keep = subprocess.run(["git", "check-ignore", "-q", "lisa_jobs/logs/.gitignore"], cwd=repo_root)
    assert keep.returncode == 1, "lisa_jobs/logs/.gitignore is git-ignored; a clone would lack lisa_jobs/logs/"
    log = subprocess.run(["git", "check-ignore", "-q", "lisa_jobs/logs/part1_train_1_0.out"], cwd=repo_root)
    assert log.returncode == 0, "job logs in lisa_jobs/logs/ are not git-ignored"


@pytest.mark.parametrize("job", ["part1_train.job", "install_environment.job"])
def test_job_without_conda_or_venv_fails_clearly(tmp_path, job):
    """Neither VENV nor a `module` command nor conda: one line saying what to set."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "REPO_DIR": str(REPO_ROOT), "DRY_RUN": "1"}
    result = subprocess.run(["bash", str(JOBS_DIR / job)], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 1
    assert "error: conda not found; set MODULES" in result.stderr, result.stderr


def test_venv_without_activate_fails_clearly(tmp_path):
    result = dry_run("part3_train.job", tmp_path / "nowhere")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: VENV={tmp_path / 'nowhere'} has no bin/activate; point VENV at a Python virtual environment"
    )
