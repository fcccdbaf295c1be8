"""Sweep the palindrome length for the vanilla RNN and the LSTM, several seeds each, and plot the accuracy.

Run from the repository root::

    python -m part2.palindromes --min_length 5 --max_length 50 --length_step 5 --seeds 0 1 2 \\
        --train_steps 1000 --num_hidden 64 --results_dir results/part2/palindromes

Writes ``results.json`` (after every (model, L, seed) cell; the same command resumes an
interrupted sweep) and ``palindrome_accuracy.png`` into ``--results_dir``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from common.cli import add_runtime_args, finite_float, make_parser, nonnegative_int, positive_float, positive_int
from common.runtime import resolve_device, set_threads, start_line
from part2.palindromes.models import DEFAULT_LSTM_FORGET_BIAS, MODEL_LABELS, RNN_INITS
from part2.palindromes.sweep import run_sweep, sweep_lengths
from part2.palindromes.train import OPTIMIZERS, TrainingSettings

PROG = "python -m part2.palindromes"


def _add_sweep_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min_length", type=positive_int, default=5, help="shortest palindrome length L (>= 2)")
    parser.add_argument("--max_length", type=positive_int, default=50, help="longest palindrome length L")
    parser.add_argument("--length_step", type=positive_int, default=5, help="step between swept lengths")
    parser.add_argument(
        "--models", nargs="+", choices=sorted(MODEL_LABELS), default=["rnn", "lstm"], help="models to sweep"
    )
    parser.add_argument(
        "--seeds", nargs="+", type=nonnegative_int, default=[0, 1, 2], help="seeds of every (model, L): init and data"
    )
    # The single-seed option of earlier versions (and of lisa_jobs/part2_palindromes.job's SEED).
    parser.add_argument(
        "--seed",
        dest="seeds",
        type=lambda text: [nonnegative_int(text)],
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )


def _add_training_args(parser: argparse.ArgumentParser) -> None:
    defaults = TrainingSettings()
    parser.add_argument(
        "--train_steps", type=positive_int, default=defaults.train_steps, help="training steps per cell"
    )
    parser.add_argument(
        "--batch_size", type=positive_int, default=defaults.batch_size, help="palindromes per training step"
    )
    parser.add_argument("--lr", type=positive_float, default=defaults.lr, help="learning rate")
    parser.add_argument(
        "--optimizer", choices=sorted(OPTIMIZERS), default=defaults.optimizer, help="optimizer of both models"
    )
    parser.add_argument(
        "--num_hidden", type=positive_int, default=defaults.num_hidden, help="hidden state size of both models"
    )
    parser.add_argument(
        "--rnn_init",
        choices=RNN_INITS,
        default=defaults.rnn_init,
        help="vanilla RNN initialisation: orthogonal W_hh, or U(-1/sqrt(H), 1/sqrt(H)) as torch.nn.RNN",
    )
    parser.add_argument(
        "--lstm_forget_bias",
        type=finite_float,
        default=DEFAULT_LSTM_FORGET_BIAS,
        help="centre of the LSTM's initial forget-gate bias (1 is the LSTM's own initialisation)",
    )
    parser.add_argument(
        "--clip_grad_norm", type=positive_float, default=defaults.clip_grad_norm, help="maximum gradient norm"
    )
    parser.add_argument(
        "--eval_batches",
        type=positive_int,
        default=defaults.eval_batches,
        help="held-out batches (of --batch_size) for the final accuracy",
    )


def build_parser() -> argparse.ArgumentParser:
    """The sweep's options (every size, count and step a positive integer)."""
    parser = make_parser(PROG, __doc__)
    _add_sweep_args(parser)
    _add_training_args(parser)
    parser.add_argument(
        "--compare_dirs",
        nargs="*",
        default=[],
        help="results folders of sweeps with the same budget (e.g. --rnn_init uniform) to draw dashed in the figure",
    )
    parser.add_argument(
        "--results_dir",
        default="results/part2/palindromes",
        help="folder of results.json and the figure; a sweep there resumes only with identical training settings",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="if --results_dir holds a sweep with other settings, move it aside and start again",
    )
    add_runtime_args(parser, precision=False)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed options; each seed kept once."""
    args = build_parser().parse_args(argv)
    args.seeds = list(dict.fromkeys(args.seeds))  # each seed once, in the given order
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run (or resume) the sweep, draw the figure and print each model's accuracy per L."""
    args = parse_args(argv)
    lengths = sweep_lengths(args.min_length, args.max_length, args.length_step)
    settings = TrainingSettings(**{field.name: getattr(args, field.name) for field in fields(TrainingSettings)})
    device = resolve_device(args.device)
    set_threads(args.threads)
    start_line("part2.palindromes", device, "fp32", args.results_dir)
    data = run_sweep(
        args.models, lengths, args.seeds, settings, args.results_dir, device, args.overwrite, args.compare_dirs
    )
    print(f"results in {args.results_dir}: results.json, palindrome_accuracy.png")
    for model, per_length in data["summary"].items():
        curve = ", ".join(
            f"L={length}: {entry['accuracy_mean']:.3f} [{entry['accuracy_min']:.3f}, {entry['accuracy_max']:.3f}]"
            for length, entry in per_length.items()
        )
        print(f"{MODEL_LABELS[model]} (held-out accuracy, mean [min, max] over seeds): {curve}")
    return data
