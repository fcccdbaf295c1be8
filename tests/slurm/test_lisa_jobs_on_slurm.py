"""The job files of ``lisa_jobs/`` on a real local SLURM cluster (see ``conftest.py``).

Every job file must pass ``sbatch --test-only`` against the controller, on the
``gpu_shared`` partition with one (fake) GPU. Then the experiments really run through
``sbatch``, all submitted at once so they share the node:

* the Part 1 array (the debug model and ResNet-18, the CE/RCE reference, 1 epoch on a
  few hundred images of the offline CIFAR-10 copy), chained by ``submit_part1.sh`` to
  the report job;
* the Part 2 text job (a tiny LSTM for a few steps on one offline book), and the same
  job resubmitted with one more epoch, which must resume from the first one's checkpoint;
* the palindrome sweep (one length, a few steps);
* the Part 3 job (1 epoch on a small QM9 subset).

Each must end in state COMPLETED and leave its result files.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

REPO_ROOT = Path(__file__).resolve().parents[2]
JOBS_DIR = REPO_ROOT / "lisa_jobs"
JOB_FILES = sorted(JOBS_DIR.glob("*.job"))
# Wall-clock limit for one real run, generous for a busy 2-core machine.
RUN_TIMEOUT_S = 240


def sbatch_options(job_file: Path) -> dict[str, str]:
    """``#SBATCH --key=value`` lines of a job file as ``{key: value}``."""
    return dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)", job_file.read_text(), flags=re.MULTILINE))


@pytest.mark.parametrize("job_file", JOB_FILES, ids=[p.name for p in JOB_FILES])
def test_job_file_passes_sbatch_test_only(slurm_cluster, submit_dir, job_file):
    options = sbatch_options(job_file)
    assert options.get("partition") == "gpu_shared"
    assert options.get("gres") == "gpu:1"
    for key in ("cpus-per-task", "mem", "time", "job-name"):
        assert key in options, f"{job_file.name} sets no --{key}"
    assert options.get("output", "").startswith("lisa_jobs/logs/")

    result = slurm_cluster.run("sbatch", "--test-only", str(job_file), cwd=submit_dir, check=False)
    assert result.returncode == 0, result.stderr
    assert re.search(r"to start at \S+ using \d+ processors on nodes \S+ in partition gpu_shared",
                     result.stderr), result.stderr


@pytest.mark.parametrize("override, message", [
    ("--gres=gpu:8", "Requested node configuration is not available"),
    ("--partition=gpu_missing", "invalid partition"),
    ("--mem=4000000M", "Requested node configuration is not available"),
], ids=["too-many-gpus", "unknown-partition", "too-much-memory"])
def test_test_only_rejects_impossible_requests(slurm_cluster, submit_dir, override, message):
    """The check above means something: the controller refuses what the node cannot give."""
    result = slurm_cluster.run("sbatch", "--test-only", override, str(JOBS_DIR / "part3_train.job"),
                               cwd=submit_dir, check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def cifar10_subset(archive: Path, folder: Path) -> None:
    """Extract 20 training and 10 test JPEGs per class from the CIFAR-10 archive into ``folder``.

    The archive holds ``<split>/<class>/NNNN.jpg``; the result is the image-folder layout
    that part1 reads, and a few hundred images decode in a moment where the full archive
    takes half a minute.
    """
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(folder), "--wildcards",
                    "train/*/00[01]?.jpg", "test/*/000?.jpg"], check=True)
    counts = {split: len(list((folder / split).glob("*/*.jpg"))) for split in ("train", "test")}
    assert counts == {"train": 200, "test": 100}, counts


@pytest.fixture(scope="module")
def real_runs(slurm_cluster, submit_dir, job_python_env, shared_data, qm9_data_dir, tmp_path_factory):
    """Submit every real run, and return the job ids by name and the folder holding the results."""
    results = tmp_path_factory.mktemp("slurm_results")
    runs = {}

    # The longest run first: part3 builds the QM9 data set unless an earlier test did.
    part3_env = {
        **job_python_env, "EPOCHS": "1", "TRAIN_SUBSET": "200", "EVAL_SUBSET": "100",
        "DATA_DIR": str(qm9_data_dir), "RESULTS_DIR": str(results / "part3"),
    }
    runs["part3_train"] = slurm_cluster.sbatch(str(JOBS_DIR / "part3_train.job"), cwd=submit_dir, env=part3_env)

    part2_env = {
        **job_python_env, "BOOK": str(shared_data / "books" / "book_EN_grimms_fairy_tails.txt"),
        "RESULTS_DIR": str(results / "part2"), "NUM_EPOCHS": "1", "MAX_STEPS_PER_EPOCH": "3",
        "BATCH_SIZE": "8", "LSTM_HIDDEN_DIM": "16", "EMBEDDING_SIZE": "8",
    }
    runs["part2_train"] = slurm_cluster.sbatch(str(JOBS_DIR / "part2_train.job"), cwd=submit_dir, env=part2_env)
    # The same job again once the first has finished, as a user would resubmit it after a
    # time-out, with one more epoch: it must continue from the first one's checkpoint.
    runs["part2_resubmitted"] = slurm_cluster.sbatch(
        f"--dependency=afterok:{runs['part2_train']}", str(JOBS_DIR / "part2_train.job"),
        cwd=submit_dir, env={**part2_env, "NUM_EPOCHS": "2"})

    palindrome_env = {
        **job_python_env, "MIN_LENGTH": "5", "MAX_LENGTH": "5", "TRAIN_STEPS": "20",
        "RESULTS_DIR": str(results / "palindromes"), "EXTRA_ARGS": "--batch_size 16 --eval_batches 2",
    }
    runs["part2_palindromes"] = slurm_cluster.sbatch(str(JOBS_DIR / "part2_palindromes.job"),
                                                     cwd=submit_dir, env=palindrome_env)

    cifar_dir = tmp_path_factory.mktemp("cifar10")
    cifar10_subset(shared_data / "cifar10" / "cifar10-jpeg.tar.gz", cifar_dir)
    part1_env = {
        **job_python_env, "MODELS": "debug resnet18", "EPOCHS": "1", "TRAIN_SUBSET": "100",
        "TEST_SUBSET": "50", "DATA_DIR": str(cifar_dir), "RESULTS_DIR": str(results / "part1"),
    }
    submitted = slurm_cluster.run("bash", str(JOBS_DIR / "submit_part1.sh"), cwd=submit_dir, env=part1_env)
    match = re.search(r"training array (\d+) and report job (\d+)", submitted.stdout)
    assert match, submitted.stdout
    runs["part1_train"], runs["part1_report"] = match.groups()
    return runs, results


def assert_completed(cluster, submit_dir: Path, job_id: str) -> list[dict[str, str]]:
    """Wait for ``job_id``; every task must be COMPLETED, on gpu_shared with a GPU, logged in lisa_jobs/logs."""
    records = cluster.wait(job_id, timeout=RUN_TIMEOUT_S)
    assert records and all(r["JobState"] == "COMPLETED" for r in records), cluster.report(records)
    for r in records:
        assert r["Partition"] == "gpu_shared" and "gpu:1" in r.get("TresPerNode", ""), cluster.report(records)
        assert Path(r["StdOut"]).parent == submit_dir / "lisa_jobs" / "logs", r["StdOut"]
    return records


def test_part1_array_then_dependent_report(slurm_cluster, submit_dir, real_runs):
    runs, results = real_runs
    train = assert_completed(slurm_cluster, submit_dir, runs["part1_train"])
    report = assert_completed(slurm_cluster, submit_dir, runs["part1_report"])
    assert sorted(r["ArrayTaskId"] for r in train) == ["0", "1"], slurm_cluster.report(train)
    # The report started only after both array tasks had finished.
    assert report[0]["StartTime"] >= max(r["EndTime"] for r in train), slurm_cluster.report(train + report)
    folder = results / "part1"
    for model in ("debug", "resnet18"):
        assert json.loads((folder / f"{model}.json").read_text())["model_name"] == model
    table = json.loads((folder / "ce_rce_table.json").read_text())
    assert sorted(table) == ["debug", "resnet18"]
    for figure in ("resnet18_accuracy_vs_severity.png", "accuracy_vs_severity_grid.png", "ce_rce_bars.png"):
        assert (folder / figure).is_file(), sorted(p.name for p in folder.iterdir())


def test_part2_text_job_runs_and_resumes_when_resubmitted(slurm_cluster, submit_dir, real_runs):
    runs, results = real_runs
    assert_completed(slurm_cluster, submit_dir, runs["part2_train"])
    records = assert_completed(slurm_cluster, submit_dir, runs["part2_resubmitted"])
    assert "resuming from" in Path(records[0]["StdOut"]).read_text(), slurm_cluster.report(records)
    folder = results / "part2"
    for name in ("checkpoint.pt", "metrics.json", "samples.json", "curves.png"):
        assert (folder / name).is_file(), sorted(p.name for p in folder.iterdir())
    epochs = json.loads((folder / "metrics.json").read_text())["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2]


def test_part2_palindrome_job_runs(slurm_cluster, submit_dir, real_runs):
    runs, results = real_runs
    assert_completed(slurm_cluster, submit_dir, runs["part2_palindromes"])
    assert json.loads((results / "palindromes" / "results.json").read_text())
    assert (results / "palindromes" / "palindrome_accuracy.png").is_file()


def test_part3_job_runs(slurm_cluster, submit_dir, real_runs):
    runs, results = real_runs
    assert_completed(slurm_cluster, submit_dir, runs["part3_train"])
    folder = results / "part3"
    for name in ("mlp.json", "gnn.json", "comparison.json"):
        assert (folder / name).is_file(), sorted(p.name for p in folder.iterdir())
