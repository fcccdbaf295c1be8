"""Time the hand-written LSTM against ``torch.nn.LSTM``, and cached against recomputed generation.

Run from the repository root::

    python -m part2.benchmark                # B128, T30, E256, H1024, one text-model training step
    OMP_NUM_THREADS=1 python -m part2.benchmark --threads 1

One training step is the full text model (embedding, LSTM, output layer,
cross-entropy, backward, gradient clipping, Adam) with only the LSTM layer
swapped. The variants are timed in turns within each repeat (interleaved), so
that load from other processes on a shared machine hits all of them alike,
and medians are reported: wall-clock time, and process CPU time, which on one
thread is the wall time the step would take on an idle core.

Generation: ``TextGenerationModel.sample`` carries the LSTM state, so each new
character costs one step; the "recomputed" variant re-runs the whole prefix
for every new character, as a model without state passing would.
"""
from __future__ import annotations

import argparse
import statistics
import time
from argparse import Namespace
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from part2.model import State, TextGenerationModel


class TorchLSTMLayer(nn.Module):
    """``torch.nn.LSTM`` behind the interface of ``part2.model.LSTM`` (the baseline of the benchmark)."""

    def __init__(self, lstm_hidden_dim: int, embedding_size: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(embedding_size, lstm_hidden_dim)

    def forward(self, embeds: torch.Tensor, state: Optional[State] = None,
                return_state: bool = False) -> torch.Tensor | tuple[torch.Tensor, State]:
        torch_state = None if state is None else (state[0].unsqueeze(0), state[1].unsqueeze(0))
        outputs, (h, c) = self.lstm(embeds, torch_state)
        return (outputs, (h[0], c[0])) if return_state else outputs


def make_model(args: argparse.Namespace, variant: str) -> TextGenerationModel:
    """The text model with the LSTM variant ``ours``, ``ours+mkldnn`` or ``nn.LSTM``."""
    torch.manual_seed(0)
    model = TextGenerationModel(Namespace(vocabulary_size=args.vocabulary_size, embedding_size=args.embedding_size,
                                          lstm_hidden_dim=args.hidden_dim))
    if variant == "nn.LSTM":
        model.lstm_layers[0] = TorchLSTMLayer(args.hidden_dim, args.embedding_size)
    elif variant == "ours+mkldnn":
        model.lstm_layers[0].use_mkldnn = True
    return model


def make_training_step(model: TextGenerationModel, inputs: torch.Tensor, targets: torch.Tensor) -> Callable[[], None]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()

    def step() -> None:
        logits = model(inputs)
        loss = criterion(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()

    return step


@torch.no_grad()
def sample_by_recomputing(model: TextGenerationModel, start: torch.Tensor, sample_length: int) -> torch.Tensor:
    """Greedy decoding that runs the whole prefix ``[t, B]`` again for every new character."""
    samples = start
    while samples.size(0) < sample_length:
        next_char = model(samples)[-1].argmax(-1)
        samples = torch.cat([samples, next_char.unsqueeze(0)])
    return samples


def interleaved_medians(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple[float, float]]:
    """Median ``(wall seconds, CPU seconds)`` of each function, timed in turns after one warm-up call each."""
    for function in functions.values():
        function()
    wall: dict[str, list[float]] = {name: [] for name in functions}
    cpu: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            function()
            wall[name].append(time.perf_counter() - wall_start)
            cpu[name].append(time.process_time() - cpu_start)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in functions}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--seq_length", type=int, default=30)
    parser.add_argument("--embedding_size", type=int, default=256)
    parser.add_argument("--hidden_dim", type=int, default=1024)
    parser.add_argument("--vocabulary_size", type=int, default=87, help="87: the Grimm book")
    parser.add_argument("--repeats", type=int, default=7, help="timed training steps per variant")
    parser.add_argument("--sample_length", type=int, default=60, help="characters per generated sample")
    parser.add_argument("--num_samples", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--skip_mkldnn", action="store_true", help="do not time the oneDNN path")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); B={args.batch_size}, T={args.seq_length}, "
          f"E={args.embedding_size}, H={args.hidden_dim}, V={args.vocabulary_size}")
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randint(args.vocabulary_size, (args.seq_length, args.batch_size), generator=generator)
    targets = torch.randint(args.vocabulary_size, (args.seq_length, args.batch_size), generator=generator)
    variants = ["ours", "nn.LSTM"] + ([] if args.skip_mkldnn else ["ours+mkldnn"])
    steps = {name: make_training_step(make_model(args, name), inputs, targets) for name in variants}
    timings = interleaved_medians(steps, args.repeats)
    print(f"training step, median of {args.repeats} interleaved repeats:")
    base_wall, base_cpu = timings["nn.LSTM"]
    for name, (wall, cpu) in timings.items():
        print(f"  {name:12s} wall {wall * 1e3:8.1f} ms ({wall / base_wall:.2f}x nn.LSTM)   "
              f"cpu {cpu * 1e3:8.1f} ms ({cpu / base_cpu:.2f}x nn.LSTM)")

    model = make_model(args, "ours").eval()
    start = torch.randperm(args.vocabulary_size, generator=generator)[: args.num_samples].unsqueeze(0)
    cached = model.sample(args.num_samples, args.sample_length, 0.0, prime=None, generator=torch.Generator().manual_seed(1))
    recomputed = sample_by_recomputing(model, cached[:1], args.sample_length)
    assert torch.equal(cached, recomputed), "cached and recomputed greedy decoding disagree"
    generation = interleaved_medians({
        "cached": lambda: model.sample(args.num_samples, args.sample_length, 0.0, generator=torch.Generator().manual_seed(1)),
        "recomputed": lambda: sample_by_recomputing(model, start, args.sample_length),
    }, repeats=3)
    print(f"greedy generation of {args.num_samples} x {args.sample_length} characters, median of 3:")
    for name, (wall, cpu) in generation.items():
        print(f"  {name:12s} wall {wall * 1e3:8.1f} ms   cpu {cpu * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
