"""The palindrome sweep: every (model, L, seed) cell trained with one budget, resumable, summarised over seeds.

``<results_dir>/results.json`` holds ``config`` (the training settings, the same for every cell),
``sweep`` (the models, lengths and seeds of the last command), ``results[model][L][seed]`` (every
cell ever trained with these settings, see ``train_palindrome``) and ``summary[model][L]`` (the
requested seeds' accuracies and steps to 99 %, with their mean, minimum and maximum). It is
rewritten after every cell, so an interrupted sweep resumes where it stopped: the folder's settings
are checked by ``common.runs.claim_run``, and finished cells are skipped. A cell's result depends
only on the settings and (model, L, seed), so a resumed sweep may add lengths, seeds or models.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from common.io import read_json, write_json
from common.runs import claim_run
from common.runtime import UserError
from part2.palindromes.models import MODEL_LABELS
from part2.palindromes.train import TrainingSettings, train_palindrome
from part2.plots import plot_palindrome_sweeps

RESULTS_FILE = "results.json"
FIGURE_FILE = "palindrome_accuracy.png"
# Part of the settings, so that no sweep whose held-out set was the training stream (before issue 15) is resumed.
DATA_STREAMS = "train/eval streams seeded by SeedSequence((seed, stream))"
# Settings a comparison sweep drawn in the same figure must share (it may differ in the initialisations).
BUDGET_KEYS = ("train_steps", "batch_size", "lr", "optimizer", "num_hidden", "clip_grad_norm", "eval_batches")


def sweep_lengths(min_length: int, max_length: int, length_step: int) -> list[int]:
    """The palindrome lengths ``min_length, min_length + length_step, ... <= max_length``."""
    if min_length < 2:
        raise UserError(f"--min_length must be at least 2 (one input digit and the target), got {min_length}")
    if max_length < min_length:
        raise UserError(f"--max_length ({max_length}) must not be below --min_length ({min_length})")
    return list(range(min_length, max_length + 1, length_step))


def run_settings(settings: TrainingSettings) -> dict[str, Any]:
    """The settings recorded with a sweep and compared on resume."""
    return {**asdict(settings), "data_streams": DATA_STREAMS}


def load_comparisons(folders: Sequence[str | os.PathLike], settings: TrainingSettings) -> list[dict[str, Any]]:
    """The results of other sweeps to draw dashed in the figure; they must share the budget and data streams."""
    wanted = run_settings(settings)
    comparisons = []
    for folder in folders:
        path = Path(folder) / RESULTS_FILE
        sweep = read_json(path, kind="palindrome sweep results")
        if not isinstance(sweep, dict) or not {"config", "summary"} <= sweep.keys():
            raise UserError(f"{path} is not a results file of this version of the sweep; rerun that sweep")
        differing = [key for key in (*BUDGET_KEYS, "data_streams") if sweep["config"].get(key) != wanted[key]]
        if differing:
            raise UserError(
                f"the sweep in {folder} differs in {', '.join(differing)}; compare only sweeps with the same "
                + " ".join(f"--{key}" for key in BUDGET_KEYS)
            )
        comparisons.append(sweep)
    return comparisons


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def summarise_seeds(cells: Sequence[dict[str, Any]], seeds: Sequence[int]) -> dict[str, Any]:
    """Held-out accuracy and steps to 99 % training accuracy of one (model, L) over its seeds' ``cells``.

    The steps' mean, minimum and maximum are over the seeds that reached 99 % (``steps_to_99_reached``).
    """
    accuracies = [cell["accuracy"] for cell in cells]
    steps = [cell["steps_to_99"] for cell in cells]
    reached = [step for step in steps if step is not None]
    return {
        "seeds": list(seeds),
        "accuracy": accuracies,
        "accuracy_mean": _mean(accuracies),
        "accuracy_min": min(accuracies),
        "accuracy_max": max(accuracies),
        "steps_to_99": steps,
        "steps_to_99_reached": len(reached),
        "steps_to_99_mean": _mean(reached),
        "steps_to_99_min": min(reached, default=None),
        "steps_to_99_max": max(reached, default=None),
    }


def summarise(
    results: dict[str, Any], models: Sequence[str], lengths: Sequence[int], seeds: Sequence[int]
) -> dict[str, dict[str, Any]]:
    """``summary[model][L]`` over the requested seeds that are done (lengths without any are left out)."""
    summary: dict[str, dict[str, Any]] = {}
    for model in models:
        for length in lengths:
            per_seed = results.get(model, {}).get(str(length), {})
            done = [seed for seed in seeds if str(seed) in per_seed]
            if done:
                cells = [per_seed[str(seed)] for seed in done]
                summary.setdefault(model, {})[str(length)] = summarise_seeds(cells, done)
    return summary


def run_sweep(
    models: Sequence[str],
    lengths: Sequence[int],
    seeds: Sequence[int],
    settings: TrainingSettings,
    results_dir: str | os.PathLike,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    compare_dirs: Sequence[str | os.PathLike] = (),
    progress: bool = True,
) -> dict[str, Any]:
    """Train every (model, L, seed) cell not yet in ``results.json``, then draw the figure; returns the results."""
    comparisons = load_comparisons(compare_dirs, settings)
    results_dir = Path(results_dir)
    results_path = results_dir / RESULTS_FILE
    resume = claim_run(results_dir, run_settings(settings), overwrite, name="sweep", owned=(RESULTS_FILE, FIGURE_FILE))
    results = read_json(results_path, "palindrome sweep results")["results"] if resume and results_path.exists() else {}
    sweep = {"models": list(models), "lengths": list(lengths), "seeds": list(seeds)}
    data = {"config": run_settings(settings), "sweep": sweep, "results": results}
    # Seed by seed, so that an interrupted sweep has whole curves for its first seeds.
    cells = [(model, length, seed) for seed in seeds for length in lengths for model in models]
    todo = [(m, n, s) for m, n, s in cells if str(s) not in results.get(m, {}).get(str(n), {})]
    if len(todo) < len(cells):
        print(f"resuming: {len(cells) - len(todo)} of {len(cells)} (model, L, seed) cells already in {results_path}")
    for model, length, seed in tqdm(todo, desc="sweep", disable=None if progress else True):
        cell = train_palindrome(model, length, seed, settings, device, progress)
        results.setdefault(model, {}).setdefault(str(length), {})[str(seed)] = cell
        data["summary"] = summarise(results, models, lengths, seeds)
        write_json(data, results_path)
        tqdm.write(
            f"{MODEL_LABELS[model]:>11} L={length:3d} seed {seed}: held-out accuracy {cell['accuracy']:.4f}, "
            f"steps to 99 % {cell['steps_to_99']}, {cell['seconds']:.1f} s"
        )
    data["summary"] = summarise(results, models, lengths, seeds)
    write_json(data, results_path)
    plot_palindrome_sweeps([data, *comparisons], results_dir / FIGURE_FILE)
    return data
