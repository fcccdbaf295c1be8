"""The CPU preset: all six models end to end (train, corrupted test, CE/RCE report) in one process.

A scaled-down version of the assignment's protocol that fits a 2-core machine
without a GPU; its numbers are a smoke test of the whole pipeline, not results
of the assignment. Per model: 1,000 training images (class-balanced, fixed),
4 epochs at batch size 32 (learning rate 0.01, divided by 10 after epochs 2
and 3), validation on 250 of the 5,000 validation images, testing on a fixed
class-balanced 500 of the 10,000 test images (clean + 20 corrupted sets).
Running the models in one process decodes CIFAR-10 only once.

Usage::

    python -m part1.cpu_preset --data_dir ../shared/data/cifar10 --results_dir results/part1_cpu_preset

Each model is the same as ``python -m part1.train --model_name M`` with the
flags in :data:`PRESET`; finished models are loaded from their checkpoints, so
an interrupted preset continues where it stopped.
"""
from __future__ import annotations

import argparse
import logging
import time

import torch

from part1 import report, train
from part1.model import MODEL_NAMES

PRESET = {"lr": 0.01, "batch_size": 32, "epochs": 4, "train_subset": 1000, "val_subset": 250, "test_subset": 500}
# ResNet-18 first: it is the CE/RCE normaliser. The VGGs, the slowest on a CPU, last.
ORDER = ("debug", "resnet18", "resnet34", "densenet121", "vgg11", "vgg11_bn")


def run(data_dir: str, results_dir: str, seed: int = 42, device: str | None = None,
        models: tuple[str, ...] = ORDER) -> None:
    """Train and test ``models`` with :data:`PRESET`, then write the report into ``results_dir``."""
    for name in models:
        tic = time.perf_counter()
        train.main(name, PRESET["lr"], PRESET["batch_size"], PRESET["epochs"], data_dir, seed,
                   train_subset=PRESET["train_subset"], val_subset=PRESET["val_subset"],
                   test_subset=PRESET["test_subset"], device=device, results_dir=results_dir)
        logging.getLogger(__name__).info("%s done in %.1f min", name, (time.perf_counter() - tic) / 60)
    report.main(results_dir, results_dir)


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the Part 1b CPU preset (all six models, then the report).")
    parser.add_argument("--data_dir", default="data/", help="CIFAR-10 folder or archive (see part1/data.py)")
    parser.add_argument("--results_dir", default="results/part1_cpu_preset", help="where results and figures go")
    parser.add_argument("--seed", type=int, default=42, help="seed of initialisation, batches and noise")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--models", nargs="+", default=list(ORDER), choices=MODEL_NAMES, help="models to run")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        run(args.data_dir, args.results_dir, args.seed, args.device, tuple(args.models))
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    cli()
