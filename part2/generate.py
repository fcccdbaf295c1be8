"""Print text sampled from a trained text model.

Example::

    python -m part2.generate --checkpoint results/part2/grimm/checkpoint.pt --temperature 0.5 --length 200 --prime "Once upon a time"
"""
from __future__ import annotations

import argparse
import os
from argparse import Namespace
from typing import Optional, Sequence

import torch

from part2.dataset import encode, samples_to_strings
from part2.model import TextGenerationModel


def load_model(checkpoint_path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[TextGenerationModel, list[str]]:
    """Rebuild the model of a ``part2.train`` checkpoint; returns ``(model in eval mode, vocabulary)``."""
    if not os.path.isfile(checkpoint_path):
        raise FileNotFoundError(f"checkpoint {os.fspath(checkpoint_path)!r} not found; train one with python -m part2.train")
    checkpoint = torch.load(checkpoint_path, map_location=device, weights_only=False)
    model = TextGenerationModel(Namespace(**checkpoint["model_config"])).to(device)
    model.load_state_dict(checkpoint["model"])
    model.eval()
    return model, checkpoint["chars"]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=str, required=True, help="checkpoint.pt written by part2.train")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 for greedy decoding")
    parser.add_argument("--length", type=int, default=30, help="characters per sample, the prime or start character included")
    parser.add_argument("--prime", type=str, default=None, help="text every sample starts with (default: a random character)")
    parser.add_argument("--num_samples", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", type=str, default=None, help="default: cuda if available, else cpu")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model, chars = load_model(args.checkpoint, device)
        prime = encode(args.prime, chars) if args.prime else None
        generator = torch.Generator().manual_seed(args.seed)
        samples = model.sample(args.num_samples, args.length, args.temperature, prime=prime, generator=generator)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    for text in samples_to_strings(samples, chars):
        print(text)
        print("-" * 40)


if __name__ == "__main__":
    main()
