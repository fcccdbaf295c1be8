"""The commands the job files of ``lisa_jobs/`` run, checked without a cluster.

Each job file runs with ``bash`` and ``DRY_RUN=1`` (``lisa_jobs/job_env.sh`` then prints
the command instead of running it) in a clean environment, so the defaults checked here
are the assignment's full protocol that a plain ``sbatch`` gets. The submit script of
Part 1 runs against a stand-in ``sbatch`` that records its arguments.
"""
from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
JOBS_DIR = REPO_ROOT / "lisa_jobs"
PART1_MODELS = ["debug", "vgg11", "vgg11_bn", "resnet18", "resnet34", "densenet121"]
JOB_FILES = ["install_environment.job", "part1_train.job", "part1_report.job", "part2_train.job",
             "part2_palindromes.job", "part3_train.job"]
SCRIPTS = [*JOB_FILES, "submit_part1.sh", "job_env.sh"]


def test_every_experiment_has_a_documented_job_file():
    assert sorted(p.name for p in JOBS_DIR.glob("*.job")) == sorted(JOB_FILES)
    readme = (JOBS_DIR / "README.md").read_text()
    missing = [name for name in SCRIPTS if f"`{name}`" not in readme]
    assert not missing, f"lisa_jobs/README.md does not describe {missing}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_is_valid_bash(script):
    result = subprocess.run(["bash", "-n", str(JOBS_DIR / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def venv(job_python_env: dict[str, str]) -> Path:
    """The virtual environment the dry runs activate (the one running the tests)."""
    return Path(job_python_env["VENV"])


def dry_run(job: str, venv: Path, cwd: Path = REPO_ROOT, **variables: str) -> subprocess.CompletedProcess:
    """Run ``lisa_jobs/<job>`` with ``DRY_RUN=1`` and only the given environment variables."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
           "VENV": str(venv), "DRY_RUN": "1", **variables}
    return subprocess.run(["bash", str(JOBS_DIR / job)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def command(result: subprocess.CompletedProcess) -> list[str]:
    """The command a dry run printed (the line starting with ``+``), split into words."""
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("+ ")]
    assert len(lines) == 1, result.stdout
    return shlex.split(lines[0][2:])


def options(words: list[str]) -> dict[str, str | None]:
    """``--flag value`` pairs of a command line; flags without a value map to ``None``."""
    out: dict[str, str | None] = {}
    for i, word in enumerate(words):
        if word.startswith("--"):
            nxt = words[i + 1] if i + 1 < len(words) else None
            out[word] = None if nxt is None or nxt.startswith("--") else nxt
    return out


@pytest.mark.parametrize("task, model", list(enumerate(PART1_MODELS)))
def test_part1_array_task_trains_its_model_with_the_full_protocol(venv, task, model):
    words = command(dry_run("part1_train.job", venv, SLURM_ARRAY_TASK_ID=str(task)))
    assert words[:3] == ["python", "-m", "part1.train"]
    assert options(words) == {
        "--model_name": model, "--lr": "0.01", "--batch_size": "128", "--epochs": "150",
        "--seed": "42", "--data_dir": "data", "--results_dir": "results/part1",
    }


def test_part1_environment_variables_override_the_defaults(venv):
    words = command(dry_run(
        "part1_train.job", venv, SLURM_ARRAY_TASK_ID="1", MODELS="debug resnet18", EPOCHS="1",
        TRAIN_SUBSET="100", TEST_SUBSET="50", DATA_DIR="/data/cifar", RESULTS_DIR="/tmp/r",
        EXTRA_ARGS="--device cpu --num_workers 2",
    ))
    opts = options(words)
    assert opts["--model_name"] == "resnet18" and opts["--epochs"] == "1"
    assert opts["--train_subset"] == "100" and opts["--test_subset"] == "50"
    assert opts["--data_dir"] == "/data/cifar" and opts["--results_dir"] == "/tmp/r"
    assert opts["--device"] == "cpu" and opts["--num_workers"] == "2"
    assert "--val_subset" not in opts


def test_part1_array_task_without_a_model_fails_clearly(venv):
    result = dry_run("part1_train.job", venv, SLURM_ARRAY_TASK_ID="2", MODELS="debug vgg11")
    assert result.returncode == 1
    assert "array task 2 has no model" in result.stderr


def test_part1_report_reads_the_training_results(venv):
    words = command(dry_run("part1_report.job", venv))
    assert words[:3] == ["python", "-m", "part1.report"]
    assert options(words) == {"--results_dir": "results/part1"}


def test_part2_text_job_defaults_and_resume(venv, tmp_path):
    book = tmp_path / "my_book.txt"
    book.write_text("some text\n")
    words = command(dry_run("part2_train.job", venv, BOOK=str(book)))
    assert words[:3] == ["python", "-m", "part2.train"]
    assert options(words) == {
        "--txt_file": str(book), "--results_dir": "results/part2/my_book", "--resume": None,
        "--num_epochs": "20", "--batch_size": "128", "--input_seq_length": "30",
        "--lstm_hidden_dim": "1024", "--embedding_size": "256",
    }


def test_part2_text_job_needs_a_book(venv, tmp_path):
    for variables in ({}, {"BOOK": str(tmp_path / "missing.txt")}):
        result = dry_run("part2_train.job", venv, **variables)
        assert result.returncode == 1
        assert "set BOOK to the text file" in result.stderr


def test_part2_palindrome_job_sweeps_the_assignment_lengths(venv):
    words = command(dry_run("part2_palindromes.job", venv))
    assert words[:3] == ["python", "-m", "part2.palindromes"]
    assert options(words) == {"--min_length": "5", "--max_length": "50", "--length_step": "5",
                              "--results_dir": "results/part2/palindromes"}


def test_part3_job_trains_both_models_for_ten_epochs(venv):
    words = command(dry_run("part3_train.job", venv))
    assert words[:3] == ["python", "-m", "part3.train"]
    assert options(words) == {"--model": "both", "--epochs": "10", "--data_dir": "data",
                              "--results_dir": "results/part3", "--resume": None}


@pytest.mark.parametrize("job", JOB_FILES)
def test_job_outside_the_repository_root_fails_clearly(venv, tmp_path, job):
    result = dry_run(job, venv, cwd=tmp_path, REPO_DIR=str(tmp_path), SLURM_ARRAY_TASK_ID="0")
    assert result.returncode == 1
    assert "repository root" in result.stderr, result.stderr


def test_submit_part1_chains_the_report_after_the_array(tmp_path):
    """``submit_part1.sh`` sizes the array from MODELS and makes the report depend on it."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    calls = tmp_path / "sbatch_calls"
    fake_sbatch = fake_bin / "sbatch"
    # Stand-in sbatch: records its arguments, answers like `sbatch --parsable` with ids 100, 101.
    fake_sbatch.write_text(
        "#!/bin/bash\n"
        f'echo "$*" >> {calls}\n'
        f'echo "$(( 100 + $(wc -l < {calls}) - 1 ));cluster"\n'
    )
    fake_sbatch.chmod(0o755)
    (tmp_path / "lisa_jobs" / "logs").mkdir(parents=True)
    env = {"PATH": f"{fake_bin}:{os.environ['PATH']}", "MODELS": "debug resnet18 resnet34"}
    result = subprocess.run(["bash", str(JOBS_DIR / "submit_part1.sh"), "--time=00:10:00"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    train_call, report_call = calls.read_text().splitlines()
    assert train_call == f"--parsable --array=0-2 --time=00:10:00 {JOBS_DIR / 'part1_train.job'}"
    assert report_call == f"--parsable --dependency=afterok:100 --time=00:10:00 {JOBS_DIR / 'part1_report.job'}"
    assert "training array 100 and report job 101" in result.stdout


def test_submit_part1_must_run_from_the_repository_root(tmp_path):
    result = subprocess.run(["bash", str(JOBS_DIR / "submit_part1.sh")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=30)
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
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "error: conda not found; set MODULES" in result.stderr, result.stderr
