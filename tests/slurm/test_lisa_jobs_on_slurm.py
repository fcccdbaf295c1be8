"""The job files of ``lisa_jobs/`` on a real local SLURM cluster (see ``conftest.py``).

Every job file must pass ``sbatch --test-only`` against the controller: the training jobs
on the ``gpu_shared`` partition with one (fake) GPU, the environment, data and report jobs
without a GPU in the default partition. Then the experiments really run through
``sbatch``, all submitted at once so they share the node, with ``DEVICE=cpu`` (the fake
GPUs are device files, not GPUs) and one thread each:

* ``submit_part1.sh``: the data preparation (a few hundred CIFAR-10 images of the offline
  copy, and QM9), then the Part 1 array (the debug model and ResNet-18, the CE/RCE
  reference, 1 epoch) once it has succeeded, then the report job once the array has;
* the Part 3 job (1 epoch on a small QM9 subset), chained to the same data preparation;
* the Part 2 text job (a tiny LSTM for a few steps on one offline book), and the same
  job resubmitted with one more epoch, which must resume from the first one's checkpoint;
* the palindrome sweep (one length, one seed, a few steps);
* a GPU job without ``DEVICE=cpu``, which must fail with its one line and run nothing.

Each must end in the expected state and leave its result files.
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
CPU_JOBS = {"install_environment.job", "prepare_data.job", "part1_report.job"}
DEFAULT_PARTITION = "debug"  # the Default=YES partition of slurm.conf.in
# Wall-clock limit for one real run, generous for a busy 2-core machine.
RUN_TIMEOUT_S = 240


def sbatch_options(job_file: Path) -> dict[str, str]:
    """``#SBATCH --key=value`` lines of a job file as ``{key: value}``."""
    return dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)", job_file.read_text(), flags=re.MULTILINE))


@pytest.mark.parametrize("job_file", JOB_FILES, ids=[p.name for p in JOB_FILES])
def test_job_file_passes_sbatch_test_only(slurm_cluster, submit_dir, job_file):
    options = sbatch_options(job_file)
    if job_file.name in CPU_JOBS:
        assert "partition" not in options and "gres" not in options, options
        partition = DEFAULT_PARTITION
    else:
        assert options.get("partition") == "gpu_shared" and options.get("gres") == "gpu:1", options
        partition = "gpu_shared"
    for key in ("cpus-per-task", "mem", "time", "job-name"):
        assert key in options, f"{job_file.name} sets no --{key}"
    assert options.get("output", "").startswith("lisa_jobs/logs/")

    result = slurm_cluster.run("sbatch", "--test-only", str(job_file), cwd=submit_dir, check=False)
    assert result.returncode == 0, result.stderr
    assert re.search(rf"to start at \S+ using \d+ processors on nodes \S+ in partition {partition}\b",
                     result.stderr), result.stderr  # fmt: skip


@pytest.mark.parametrize("override, message", [
    ("--gres=gpu:8", "Requested node configuration is not available"),
    ("--partition=gpu_missing", "invalid partition"),
    ("--mem=4000000M", "Requested node configuration is not available"),
], ids=["too-many-gpus", "unknown-partition", "too-much-memory"])  # fmt: skip
def test_test_only_rejects_impossible_requests(slurm_cluster, submit_dir, override, message):
    """The check above means something: the controller refuses what the node cannot give."""
    result = slurm_cluster.run("sbatch", "--test-only", override, str(JOBS_DIR / "part3_train.job"),
                               cwd=submit_dir, check=False)  # fmt: skip
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def cifar10_subset(archive: Path, folder: Path) -> None:
    """Extract 20 training and 10 test JPEGs per class from the CIFAR-10 archive into ``folder``.

    The archive holds ``<split>/<class>/NNNN.jpg``; the result is the image-folder layout
    that part1 reads, and a few hundred images decode in a moment where the full archive
    takes half a minute.
    """
    subprocess.run(
        ["tar", "-xzf", str(archive), "-C", str(folder), "--wildcards", "train/*/00[01]?.jpg", "test/*/000?.jpg"],
        check=True,
    )
    counts = {split: len(list((folder / split).glob("*/*.jpg"))) for split in ("train", "test")}
    assert counts == {"train": 200, "test": 100}, counts


@pytest.fixture(scope="module")
def real_runs(slurm_cluster, submit_dir, job_python_env, shared_data, qm9_data_dir, tmp_path_factory):
    """Submit every real run, and return the job ids by name and the folder holding the results."""
    results = tmp_path_factory.mktemp("slurm_results")
    # One data folder for both parts, as on the cluster: the CIFAR-10 images, then the caches.
    data_dir = qm9_data_dir
    cifar10_subset(shared_data / "cifar10" / "cifar10-jpeg.tar.gz", data_dir)
    on_cpu = {**job_python_env, "DEVICE": "cpu", "THREADS": "1"}
    runs = {}

    part1_env = {
        **on_cpu, "MODELS": "debug resnet18", "EPOCHS": "1", "TRAIN_SUBSET": "100",
        "TEST_SUBSET": "50", "DATA_DIR": str(data_dir), "RESULTS_DIR": str(results / "part1"),
    }  # fmt: skip
    submitted = slurm_cluster.run("bash", str(JOBS_DIR / "submit_part1.sh"), cwd=submit_dir, env=part1_env)
    match = re.search(r"data preparation (\d+), training array (\d+) and report job (\d+)", submitted.stdout)
    assert match, submitted.stdout
    runs["prepare_data"], runs["part1_train"], runs["part1_report"] = match.groups()

    part3_env = {
        **on_cpu, "EPOCHS": "1", "TRAIN_SUBSET": "200", "EVAL_SUBSET": "100",
        "DATA_DIR": str(data_dir), "RESULTS_DIR": str(results / "part3"),
    }  # fmt: skip
    runs["part3_train"] = slurm_cluster.sbatch(
        f"--dependency=afterok:{runs['prepare_data']}", str(JOBS_DIR / "part3_train.job"),
        cwd=submit_dir, env=part3_env,
    )  # fmt: skip

    part2_env = {
        **on_cpu, "BOOK": str(shared_data / "books" / "book_EN_grimms_fairy_tails.txt"),
        "RESULTS_DIR": str(results / "part2"), "EPOCHS": "1", "MAX_STEPS_PER_EPOCH": "3",
        "BATCH_SIZE": "8", "LSTM_HIDDEN_DIM": "16", "EMBEDDING_SIZE": "8",
    }  # fmt: skip
    runs["part2_train"] = slurm_cluster.sbatch(str(JOBS_DIR / "part2_train.job"), cwd=submit_dir, env=part2_env)
    # The same job again once the first has finished, as a user would resubmit it after a
    # time-out, with one more epoch: it must continue from the first one's checkpoint.
    runs["part2_resubmitted"] = slurm_cluster.sbatch(
        f"--dependency=afterok:{runs['part2_train']}", str(JOBS_DIR / "part2_train.job"),
        cwd=submit_dir, env={**part2_env, "EPOCHS": "2"})  # fmt: skip

    palindrome_env = {
        **on_cpu, "MIN_LENGTH": "5", "MAX_LENGTH": "5", "SEEDS": "0", "TRAIN_STEPS": "20",
        "RESULTS_DIR": str(results / "palindromes"), "EXTRA_ARGS": "--batch_size 16 --eval_batches 2",
    }  # fmt: skip
    runs["part2_palindromes"] = slurm_cluster.sbatch(str(JOBS_DIR / "part2_palindromes.job"),
                                                     cwd=submit_dir, env=palindrome_env)  # fmt: skip

    # No DEVICE=cpu: the job must find that the node's (fake) GPU is unusable and stop.
    no_gpu_env = {**job_python_env, "RESULTS_DIR": str(results / "no_gpu"), "DATA_DIR": str(data_dir)}
    runs["no_gpu"] = slurm_cluster.sbatch(str(JOBS_DIR / "part3_train.job"), cwd=submit_dir, env=no_gpu_env)
    return runs, results


def assert_finished(cluster, submit_dir: Path, job_id: str, state: str = "COMPLETED") -> list[dict[str, str]]:
    """Wait for ``job_id``; every task must end in ``state``, logged in lisa_jobs/logs, on the partition
    its job file asks for (with a GPU for GPU jobs)."""
    records = cluster.wait(job_id, timeout=RUN_TIMEOUT_S)
    assert records and all(r["JobState"] == state for r in records), cluster.report(records)
    for r in records:
        if r["JobName"] in ("prepare_data", "part1_report"):
            assert r["Partition"] == DEFAULT_PARTITION and "gpu" not in r.get("TresPerNode", ""), cluster.report(
                records
            )
        else:
            assert r["Partition"] == "gpu_shared" and "gpu:1" in r.get("TresPerNode", ""), cluster.report(records)
        assert Path(r["StdOut"]).parent == submit_dir / "lisa_jobs" / "logs", r["StdOut"]
    return records


def log_of(records: list[dict[str, str]]) -> str:
    return Path(records[0]["StdOut"]).read_text()


def test_data_preparation_then_part1_array_then_report(slurm_cluster, submit_dir, real_runs):
    runs, results = real_runs
    prepare = assert_finished(slurm_cluster, submit_dir, runs["prepare_data"])
    train = assert_finished(slurm_cluster, submit_dir, runs["part1_train"])
    report = assert_finished(slurm_cluster, submit_dir, runs["part1_report"])
    assert "CIFAR-10 ready in" in log_of(prepare) and "QM9 ready in" in log_of(prepare), log_of(prepare)
    assert sorted(r["ArrayTaskId"] for r in train) == ["0", "1"], slurm_cluster.report(train)
    # Each job started only after the one it depends on had finished.
    assert min(r["StartTime"] for r in train) >= prepare[0]["EndTime"], slurm_cluster.report(prepare + train)
    assert report[0]["StartTime"] >= max(r["EndTime"] for r in train), slurm_cluster.report(train + report)
    for r in train:  # the data was prepared: no task decoded CIFAR-10 itself
        assert "decoding the CIFAR-10" not in Path(r["StdOut"]).read_text(), slurm_cluster.report([r])
        assert "part1.train: device cpu, precision fp32, 1 thread(s)" in Path(r["StdOut"]).read_text()
    folder = results / "part1"
    for model in ("debug", "resnet18"):
        assert json.loads((folder / f"{model}.json").read_text())["model_name"] == model
    table = json.loads((folder / "ce_rce_table.json").read_text())
    assert sorted(table) == ["debug", "resnet18"]
    for figure in ("resnet18_accuracy_vs_severity.png", "accuracy_vs_severity_grid.png", "ce_rce_bars.png"):
        assert (folder / figure).is_file(), sorted(p.name for p in folder.iterdir())


def test_part2_text_job_runs_and_resumes_when_resubmitted(slurm_cluster, submit_dir, real_runs):
    runs, results = real_runs
    assert_finished(slurm_cluster, submit_dir, runs["part2_train"])
    records = assert_finished(slurm_cluster, submit_dir, runs["part2_resubmitted"])
    assert "resuming after epoch 1" in log_of(records), slurm_cluster.report(records)
    folder = results / "part2"
    for name in ("checkpoint.pt", "metrics.json", "samples.json", "curves.png"):
        assert (folder / name).is_file(), sorted(p.name for p in folder.iterdir())
    epochs = json.loads((folder / "metrics.json").read_text())["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2]


def test_part2_palindrome_job_runs(slurm_cluster, submit_dir, real_runs):
    runs, results = real_runs
    assert_finished(slurm_cluster, submit_dir, runs["part2_palindromes"])
    assert json.loads((results / "palindromes" / "results.json").read_text())
    assert (results / "palindromes" / "palindrome_accuracy.png").is_file()


def test_part3_job_runs_on_the_prepared_data(slurm_cluster, submit_dir, real_runs):
    runs, results = real_runs
    records = assert_finished(slurm_cluster, submit_dir, runs["part3_train"])
    prepare = slurm_cluster.jobs(runs["prepare_data"])
    assert records[0]["StartTime"] >= prepare[0]["EndTime"], slurm_cluster.report(prepare + records)
    folder = results / "part3"
    for name in ("mlp.json", "gnn.json", "comparison.json"):
        assert (folder / name).is_file(), sorted(p.name for p in folder.iterdir())


def test_gpu_job_without_a_usable_gpu_fails_with_one_line(slurm_cluster, submit_dir, real_runs):
    runs, results = real_runs
    records = assert_finished(slurm_cluster, submit_dir, runs["no_gpu"], state="FAILED")
    log = log_of(records)
    assert re.search(r"^error: no usable CUDA GPU on \S+ \(CUDA_VISIBLE_DEVICES=", log, flags=re.MULTILINE), log
    assert "+ python" not in log and not (results / "no_gpu").exists()
