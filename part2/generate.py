"""Print text sampled from a trained text model.

Example::

    python -m part2.generate --checkpoint results/part2/grimm/checkpoint.pt --temperature 0.5 --length 200 \\
        --prime "Once upon a time"
"""

from __future__ import annotations

import os
from argparse import ArgumentParser, Namespace
from collections.abc import Sequence

import torch

from common.cli import add_runtime_args, make_parser, nonnegative_float, positive_int, run_cli
from common.io import load_checkpoint
from common.runtime import UserError, resolve_device, set_threads
from part2.dataset import encode, samples_to_strings
from part2.model import TextGenerationModel

CHECKPOINT_KEYS = ("model", "model_config", "chars")


def load_model(
    checkpoint_path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[TextGenerationModel, list[str]]:
    """Rebuild the model of a ``part2.train`` checkpoint; returns ``(model in eval mode, vocabulary)``.

    A missing, truncated or foreign file raises a one-line ``UserError`` (``common.io.load_checkpoint``).
    """
    checkpoint = load_checkpoint(checkpoint_path, "part2.train", CHECKPOINT_KEYS, map_location=device)
    try:
        model = TextGenerationModel(Namespace(**checkpoint["model_config"])).to(device)
        model.load_state_dict(checkpoint["model"])
    except (TypeError, KeyError, RuntimeError):
        raise UserError(
            f"{checkpoint_path} does not hold a model of this version of part2.train; train it again"
        ) from None
    model.eval()
    return model, checkpoint["chars"]


def build_parser() -> ArgumentParser:
    """The sampling options (length and count positive integers, temperature finite and >= 0)."""
    parser = make_parser("python -m part2.generate", __doc__)
    parser.add_argument("--checkpoint", required=True, help="checkpoint.pt written by python -m part2.train")
    parser.add_argument(
        "--temperature", type=nonnegative_float, default=0.0, help="sampling temperature; 0 for greedy decoding"
    )
    parser.add_argument(
        "--length", type=positive_int, default=30, help="characters per sample, the prime or start character included"
    )
    parser.add_argument("--prime", default=None, help="text every sample starts with (default: a random character)")
    parser.add_argument("--num_samples", type=positive_int, default=5, help="number of samples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the start characters and of the sampling")
    add_runtime_args(parser, precision=False)
    return parser


def main(argv: Sequence[str] | None = None) -> list[str]:
    """Sample ``--num_samples`` texts and print them, separated by lines of dashes."""
    args = build_parser().parse_args(argv)
    device = resolve_device(args.device)
    set_threads(args.threads)
    model, chars = load_model(args.checkpoint, device)
    prime = encode(args.prime, chars) if args.prime else None
    if prime is not None and len(prime) > args.length:
        raise UserError(f"--prime has {len(prime)} characters, more than --length {args.length}")
    generator = torch.Generator().manual_seed(args.seed)
    samples = model.sample(args.num_samples, args.length, args.temperature, prime=prime, generator=generator)
    texts = samples_to_strings(samples, chars)
    for text in texts:
        print(text)
        print("-" * 40)
    return texts


if __name__ == "__main__":
    run_cli(main)
