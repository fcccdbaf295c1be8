"""The CPU protocol of Question 1.2: each CNN trained on its own for about 40 minutes, then fully tested.

    python -m part1.cpu_preset --data_dir ../shared/data/cifar10 --results_dir results/part1_cpu
    python -m part1.cpu_preset --data_dir ../shared/data/cifar10 --models resnet18 vgg11   # a subset

Per model: all 45,000 training images; the assignment's optimizer (SGD, momentum 0.9, weight decay 5e-4, lr 0.01,
batch 128) and schedule shape (lr / 10 after 60 % and 90 % of the epochs) under bf16 autocast with channels-last
memory (measured faster for every network but ``debug``), for the epochs in :data:`EPOCHS` (from a 40-minute budget
and the bf16 training throughput, see part1/README.md); validation on the
5,000 held-out images; testing on all 10,000 test images, clean and the 20 corrupted sets. Models run one at a
time and each model's JSON is written as soon as it is done; a rerun skips finished models and resumes an
interrupted one. The report is (re)written whenever ResNet-18's results exist. ``--smoke`` is a tiny version for
tests and a first look (1,000 training images, 4 epochs, batch 32, 500 test images): it only shows that the
pipeline runs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from common.cli import add_runtime_args, make_parser, run_cli
from common.runs import ensure_writable
from common.runtime import PRECISIONS
from part1 import report, train
from part1.analysis.metrics import BASELINE
from part1.model import MODEL_NAMES

# About 40 minutes of training each on the 2-core CPU of part1/README.md ("CPU protocol"); debug is not budget-bound.
EPOCHS = {"debug": 20, "resnet18": 39, "resnet34": 20, "densenet121": 18, "vgg11": 5, "vgg11_bn": 5}
PROTOCOL = {"lr": 0.01, "batch_size": 128, "train_subset": None, "val_subset": None, "test_subset": None}
SMOKE = {"lr": 0.01, "batch_size": 32, "epochs": 4, "train_subset": 1000, "val_subset": 250, "test_subset": 500}
# ResNet-18 first: it normalises CE/RCE. The VGGs, the slowest per image on a CPU, last.
ORDER = ("debug", "resnet18", "resnet34", "densenet121", "vgg11", "vgg11_bn")


def preset_settings(model_name: str, smoke: bool = False) -> dict[str, Any]:
    """The ``part1.train.main`` settings of one model in the CPU protocol (or the smoke preset)."""
    if smoke:
        return dict(SMOKE)
    return PROTOCOL | {"epochs": EPOCHS[model_name], "channels_last": model_name != "debug"}


def run(
    models: tuple[str, ...],
    data_dir: str,
    results_dir: str,
    smoke: bool = False,
    seed: int = 42,
    precision: str = "bf16",
    device: str | None = None,
    threads: int | None = None,
    overwrite: bool = False,
) -> dict[str, dict[str, Any]]:
    """Train and test ``models`` one after the other, then write the report if ResNet-18 is done."""
    ensure_writable(results_dir)
    runtime = {"precision": precision, "device": device, "threads": threads, "overwrite": overwrite}
    results = {}
    for name in models:
        tic = time.perf_counter()
        settings = preset_settings(name, smoke)
        results[name] = train.main(name, data_dir=data_dir, seed=seed, results_dir=results_dir, **settings, **runtime)
        print(f"{name}: done in {(time.perf_counter() - tic) / 60:.1f} min", flush=True)
    if (Path(results_dir) / f"{BASELINE}.json").is_file():
        report.main(results_dir)
    else:
        print(f"no report yet: CE/RCE need {BASELINE}'s results (python -m part1.cpu_preset --models {BASELINE})")
    return results


def cli(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Entry point of ``python -m part1.cpu_preset``."""
    parser = make_parser("python -m part1.cpu_preset", __doc__)
    parser.add_argument("--data_dir", default="data/", help="CIFAR-10 folder or archive (see part1/data.py)")
    parser.add_argument("--results_dir", default="results/part1_cpu", help="folder for results, checkpoints, report")
    parser.add_argument("--models", nargs="+", default=list(ORDER), choices=MODEL_NAMES, help="models to run, in order")
    parser.add_argument("--smoke", action="store_true", help="the tiny smoke preset instead of the CPU protocol")
    parser.add_argument("--seed", type=int, default=42, help="seed of initialisation, batches and noise")
    parser.add_argument("--overwrite", action="store_true", help="move aside a model's run made with other settings")
    parser.add_argument("--precision", choices=PRECISIONS, default="bf16", help="autocast precision")
    add_runtime_args(parser, precision=False)
    args = parser.parse_args(argv)
    options = {k: v for k, v in vars(args).items() if k != "models"}
    return run_cli(lambda: run(tuple(dict.fromkeys(args.models)), **options))


if __name__ == "__main__":
    cli()
