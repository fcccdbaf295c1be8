"""Time the text model's real training step with our LSTM against ``torch.nn.LSTM``, per precision.

Run from the repository root (on an idle machine; the variants are timed in turns, so load that comes
and goes hits them alike)::

    python -m part2.benchmarks.lstm --threads 2
    python -m part2.benchmarks.lstm --threads 1 --out results/benchmarks/lstm_1thread.json

One step is ``part2.train.train_step`` (embedding, LSTM, output layer, cross-entropy under autocast,
backward, gradient clipping, Adam) with only the LSTM layer swapped. Variants: ``ours`` (per-step
products on oneDNN with the weight packed once per sequence, the default on CPU), ``ours-mm`` (the
same with plain ``torch.mm``, to show what the packing buys) and ``nn.LSTM``; with each time, the minor page
faults of one step (fresh memory the kernel maps and zeroes: a cost that varies with the machine's state). Also
times greedy generation with the state carried vs the prefix recomputed for every character.
"""

from __future__ import annotations

import argparse
import resource
from argparse import Namespace
from collections.abc import Callable, Sequence

import torch
from torch import nn

import part2.lstm_function as lstm_function
from common.cli import make_parser, positive_int, run_cli
from common.io import write_json
from common.runtime import PRECISIONS, grad_scaler, resolve_device, set_threads
from common.timing import interleaved_medians
from part2.model import State, TextGenerationModel
from part2.train import train_step

VARIANTS = ("ours", "ours-mm", "nn.LSTM")


class TorchLSTMLayer(nn.Module):
    """``torch.nn.LSTM`` behind the interface of ``part2.model.LSTM`` (the baseline)."""

    def __init__(self, lstm_hidden_dim: int, embedding_size: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(embedding_size, lstm_hidden_dim)

    def forward(self, embeds: torch.Tensor, state: State | None = None, return_state: bool = False):
        torch_state = None if state is None else (state[0].unsqueeze(0), state[1].unsqueeze(0))
        outputs, (h, c) = self.lstm(embeds, torch_state)
        return (outputs, (h[0], c[0])) if return_state else outputs


def make_model(args: argparse.Namespace, variant: str, device: torch.device) -> TextGenerationModel:
    torch.manual_seed(0)
    config = Namespace(
        vocabulary_size=args.vocabulary_size, embedding_size=args.embedding_size, lstm_hidden_dim=args.hidden_dim
    )
    model = TextGenerationModel(config)
    if variant == "nn.LSTM":
        model.lstm_layers[0] = TorchLSTMLayer(args.hidden_dim, args.embedding_size)
    return model.to(device)


def make_step(args, variant: str, precision: str, device: torch.device, batch) -> Callable[[], None]:
    """A closure running one real training step of ``variant`` in ``precision``."""
    model = make_model(args, variant, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion, scaler = nn.CrossEntropyLoss(), grad_scaler(device, precision)

    def step() -> None:
        packing = lstm_function.USE_ONEDNN_PACKING
        lstm_function.USE_ONEDNN_PACKING = variant != "ours-mm"
        try:
            train_step(model, *batch, optimizer, criterion, 5.0, precision, scaler)
        finally:
            lstm_function.USE_ONEDNN_PACKING = packing
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


@torch.no_grad()
def sample_by_recomputing(model: TextGenerationModel, start: torch.Tensor, sample_length: int) -> torch.Tensor:
    """Greedy decoding that runs the whole prefix ``[t, B]`` again for every new character."""
    samples = start
    while samples.size(0) < sample_length:
        samples = torch.cat([samples, model(samples)[-1].argmax(-1).unsqueeze(0)])
    return samples


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("python -m part2.benchmarks.lstm", __doc__)
    parser.add_argument("--batch_size", type=positive_int, default=128, help="sequences per step (B)")
    parser.add_argument("--seq_length", type=positive_int, default=30, help="characters per sequence (T)")
    parser.add_argument("--embedding_size", type=positive_int, default=256, help="E")
    parser.add_argument("--hidden_dim", type=positive_int, default=1024, help="H")
    parser.add_argument("--vocabulary_size", type=positive_int, default=87, help="V (87: the Grimm book)")
    parser.add_argument("--repeats", type=positive_int, default=7, help="timed steps per variant")
    parser.add_argument(
        "--precisions", nargs="+", choices=PRECISIONS, default=["fp32", "bf16"], help="precisions to time"
    )
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="LSTMs to time")
    parser.add_argument("--sample_length", type=positive_int, default=60, help="characters per generated sample")
    parser.add_argument("--num_samples", type=positive_int, default=5, help="samples generated at once")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    parser.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: torch's choice)")
    parser.add_argument("--out", default=None, help="also write the results as JSON to this file")
    return parser


def time_generation(args, device: torch.device) -> dict[str, float]:
    """Greedy generation: state carried (``sample``) vs the prefix recomputed per character; median ms."""
    model = make_model(args, "ours", device).eval()
    start = model.sample(args.num_samples, 1, 0.0, generator=torch.Generator().manual_seed(1))
    cached = model.sample(
        args.num_samples, args.sample_length, 0.0, prime=None, generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(cached, sample_by_recomputing(model, start.to(device), args.sample_length).cpu())
    timings = interleaved_medians(
        {
            "cached": lambda: model.sample(
                args.num_samples, args.sample_length, 0.0, generator=torch.Generator().manual_seed(1)
            ),
            "recomputed": lambda: sample_by_recomputing(model, start.to(device), args.sample_length),
        },
        repeats=3,
    )
    return {name: wall * 1e3 for name, (wall, _) in timings.items()}


def time_activations(args, device: torch.device) -> dict[str, float]:
    """Median microseconds of the gate nonlinearities on one ``[B, H]`` fp32 block (why the LSTM avoids tanh)."""
    x = torch.randn(args.batch_size, args.hidden_dim, device=device)
    out = torch.empty_like(x)
    timings = interleaved_medians(
        {
            "sigmoid": lambda: torch.sigmoid(x, out=out),
            "tanh": lambda: torch.tanh(x, out=out),
            "tanh as 2 sigmoid(2x) - 1": lambda: lstm_function._tanh(x, out=out),
        },
        repeats=max(args.repeats, 20),
    )
    return {name: wall * 1e6 for name, (wall, _) in timings.items()}


def page_faults_per_step(step: Callable[[], None], repeats: int = 2) -> float:
    """Minor page faults per call of ``step`` after a warm-up call: fresh memory that the kernel maps and zeroes."""
    step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(repeats):
        step()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / repeats


def step_rows(timings: dict[str, tuple[float, float]], steps: dict[str, Callable[[], None]]) -> list[dict]:
    """One row per ``"<variant> <precision>"`` timing (wall and CPU seconds, page faults), printed as it is made."""
    rows = []
    for name, (wall, cpu) in timings.items():
        variant, precision = name.split()
        base = timings.get(f"nn.LSTM {precision}", (wall, cpu))[0]
        faults = page_faults_per_step(steps[name])
        row = {"variant": variant, "precision": precision, "wall_ms": wall * 1e3, "cpu_ms": cpu * 1e3}
        rows.append(row | {"ratio_to_nn_lstm": wall / base, "page_faults": faults})
        print(
            f"  {variant:8s} {precision:5s} {wall * 1e3:8.1f} ms  {wall / base:5.2f}x  (cpu {cpu * 1e3:8.1f} ms, "
            f"{faults:6.0f} page faults)"
        )
    return rows


def run(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    threads = set_threads(args.threads)
    print(
        f"torch {torch.__version__}, {device}, {threads} thread(s); B={args.batch_size}, T={args.seq_length}, "
        f"E={args.embedding_size}, H={args.hidden_dim}, V={args.vocabulary_size}",
        flush=True,
    )
    generator = torch.Generator().manual_seed(0)
    shape = (args.seq_length, args.batch_size)
    batch = tuple(torch.randint(args.vocabulary_size, shape, generator=generator).to(device) for _ in range(2))
    steps = {
        f"{variant} {precision}": make_step(args, variant, precision, device, batch)
        for precision in args.precisions
        for variant in args.variants
    }
    timings = interleaved_medians(steps, args.repeats)
    print(f"training step, median of {args.repeats} interleaved repeats (ratio: to nn.LSTM, same precision):")
    rows = step_rows(timings, steps)
    generation = time_generation(args, device)
    print(
        f"greedy generation of {args.num_samples} x {args.sample_length} characters: "
        + ", ".join(f"{k} {v:.1f} ms" for k, v in generation.items())
    )
    activations = time_activations(args, device)
    print("gate nonlinearity on one [B, H] block: " + ", ".join(f"{k} {v:.1f} us" for k, v in activations.items()))
    result = {
        "device": str(device),
        "threads": threads,
        "torch": torch.__version__,
        "shape": {
            "B": args.batch_size,
            "T": args.seq_length,
            "E": args.embedding_size,
            "H": args.hidden_dim,
            "V": args.vocabulary_size,
        },
        "repeats": args.repeats,
        "training_step": rows,
        "generation_ms": generation,
        "activation_us": activations,
    }
    if args.out:
        write_json(result, args.out)
    return result


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args))


if __name__ == "__main__":
    main()
