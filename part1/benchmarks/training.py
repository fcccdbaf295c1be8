"""Training and inference throughput of the six CNNs per precision and memory format, on the current device.

    python -m part1.benchmarks.training --threads 2                       # all six models, CPU here, CUDA on a GPU node
    python -m part1.benchmarks.training --models resnet18 vgg11 --precisions fp32 bf16

For each model, precision (default: fp32 and bf16; fp16 too on CUDA) and memory format (contiguous and
channels_last) it times one full training step, the real ``part1.train.train_step`` (forward and loss under
autocast, backward, SGD update), and one inference pass (``part1.evaluate.predict`` without gradients) on a random
batch of 32x32 images, and prints images per second. The precisions of one memory format are timed in interleaved
rounds; results go to ``<results_dir>/benchmark_training.json``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

from common.cli import add_runtime_args, make_parser, nonnegative_int, positive_int, run_cli
from common.io import write_json
from common.runs import ensure_writable
from common.runtime import PRECISIONS, device_name, grad_scaler, resolve_device, set_threads
from common.timing import interleaved_medians
from part1.evaluate import predict
from part1.model import MODEL_NAMES, get_model
from part1.train import make_optimizer, train_step

MEMORY_FORMATS = {"contiguous": False, "channels_last": True}


def default_precisions(device: torch.device) -> list[str]:
    """fp32 and bf16 (where supported); fp16 as well on CUDA."""
    if device.type != "cuda":
        return ["fp32", "bf16"]
    return ["fp32", "fp16"] + (["bf16"] if torch.cuda.is_bf16_supported() else [])


def timed_calls(
    model: torch.nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor],
    device: torch.device,
    precisions: list[str],
    channels_last: bool,
) -> dict[str, Callable[[], object]]:
    """``{"train <precision>": step, "infer <precision>": forward}`` for one model in one memory format."""
    x, y = batch
    optimizer, _ = make_optimizer(model, lr=0.01, epochs=150)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    calls = {}
    for precision in precisions:
        scaler = grad_scaler(device, precision)

        def step(precision: str = precision, scaler: torch.amp.GradScaler = scaler) -> None:
            model.train()
            train_step(model, x, y, optimizer, scaler, device, precision, channels_last)
            sync()

        @torch.no_grad()
        def infer(precision: str = precision) -> None:
            model.eval()
            predict(model, x, device, precision, channels_last)
            sync()

        calls[f"train {precision}"], calls[f"infer {precision}"] = step, infer
    return calls


def benchmark_model(name: str, device: torch.device, args: Any) -> list[dict[str, Any]]:
    """Rows ``{model, precision, memory_format, train_img_per_s, infer_img_per_s}`` of one model."""
    generator = torch.Generator().manual_seed(args.seed)
    batch = (
        torch.randn(args.batch_size, 3, 32, 32, generator=generator),
        torch.randint(0, 10, (args.batch_size,), generator=generator),
    )
    rows = []
    for memory_format in args.memory_formats:
        channels_last = MEMORY_FORMATS[memory_format]
        torch.manual_seed(args.seed)
        model = get_model(name).to(
            device, memory_format=torch.channels_last if channels_last else torch.preserve_format
        )
        calls = timed_calls(model, batch, device, args.precisions, channels_last)
        medians = interleaved_medians(calls, repeats=args.repeats, warmup=args.warmup)
        for precision in args.precisions:
            train_s, infer_s = medians[f"train {precision}"][0], medians[f"infer {precision}"][0]
            rows.append(
                {
                    "model": name,
                    "precision": precision,
                    "memory_format": memory_format,
                    "train_img_per_s": round(args.batch_size / train_s, 1),
                    "infer_img_per_s": round(args.batch_size / infer_s, 1),
                }
            )
            print(
                f"{name:<12}{precision:<7}{memory_format:<15}{rows[-1]['train_img_per_s']:>14.1f}"
                f"{rows[-1]['infer_img_per_s']:>14.1f}",
                flush=True,
            )
        del model, calls
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the options, time every model, print the table and write the JSON."""
    parser = make_parser("python -m part1.benchmarks.training", __doc__)
    parser.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=list(MODEL_NAMES), help="networks to time")
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, help="autocast precisions (default: see above)")
    parser.add_argument(
        "--memory_formats",
        nargs="+",
        choices=list(MEMORY_FORMATS),
        default=list(MEMORY_FORMATS),
        help="memory formats of model and input",
    )
    parser.add_argument("--batch_size", type=positive_int, default=128, help="images per batch")
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed rounds (median)")
    parser.add_argument("--warmup", type=nonnegative_int, default=2, help="untimed calls of each variant first")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the random batch")
    parser.add_argument("--results_dir", default="results/part1", help="folder for benchmark_training.json")
    add_runtime_args(parser, precision=False)
    args = parser.parse_args(argv)
    ensure_writable(args.results_dir)
    set_threads(args.threads)
    device = resolve_device(args.device)
    args.precisions = args.precisions or default_precisions(device)
    print(
        f"part1.benchmarks.training: device {device_name(device)}, {torch.get_num_threads()} thread(s), "
        f"batch {args.batch_size}, median of {args.repeats}, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'model':<12}{'prec.':<7}{'format':<15}{'train img/s':>14}{'infer img/s':>14}")
    rows = [row for name in args.models for row in benchmark_model(name, device, args)]
    result = {
        "device": device_name(device),
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "rows": rows,
    }
    path = write_json(result, os.path.join(args.results_dir, "benchmark_training.json"))
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    run_cli(main)
