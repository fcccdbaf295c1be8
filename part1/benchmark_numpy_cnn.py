"""Time the NumPy CNN blocks: plain loops vs vectorised NumPy vs PyTorch (float64, CPU).

Run from the repository root::

    python -m part1.benchmark_numpy_cnn

For each case (the shapes of ``part1/CNN.ipynb`` and a ResNet-like 3x3 layer) it
prints the median wall-clock time of the convolution forward pass, of both
backward passes and of max-pooling forward/backward, and the ratios to PyTorch.
The implementations are timed in interleaved rounds (one call of each per round)
so that load from other processes on the machine affects them alike. The loop
version takes seconds per call on the ResNet-like layer, so it is timed once
there (``--loop_repeats_large``; 0 skips it). The figures are also written to
``<results_dir>/benchmark_numpy_cnn.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from part1 import numpy_cnn, numpy_cnn_loops

# (name, X shape, W shape, stride, padding, pool window f, pool stride s).
# The first case is the one CNN.ipynb walks through.
CASES = [
    ("notebook", (2, 3, 7, 7), (4, 3, 3, 3), (2, 1), (1, 2), 3, 2),
    ("resnet_layer", (32, 64, 16, 16), (64, 64, 3, 3), (1, 1), (1, 1), 2, 2),
]
IMPLEMENTATIONS = ("loop", "vectorised", "torch")
OPS = ("conv forward", "conv backward filter", "conv backward input", "pool forward", "pool back")


def median_times(
    fns: dict[str, Callable[[], object]], repeats: dict[str, int]
) -> dict[str, float]:
    """Median seconds per call of each function, timed in interleaved rounds.

    Functions timed more than once get one untimed warm-up call first; those
    timed once are the slow loops, for which warm-up effects do not matter.
    """
    fns = {name: fn for name, fn in fns.items() if repeats[name] > 0}
    for name, fn in fns.items():
        if repeats[name] > 1:
            fn()
    times: dict[str, list[float]] = {name: [] for name in repeats}
    for round_ in range(max(repeats.values())):
        for name, fn in fns.items():
            if round_ < repeats[name]:
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) if t else float("nan") for name, t in times.items()}


def benchmark_case(
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    stride: tuple[int, int],
    padding: tuple[int, int],
    f: int,
    s: int,
    repeats: int,
    loop_repeats: int,
    rng: np.random.Generator,
) -> dict[str, dict[str, float]]:
    """Median seconds of every op for each implementation on one set of shapes."""
    X = rng.standard_normal(x_shape)
    W = rng.standard_normal(w_shape)
    dY = rng.standard_normal(numpy_cnn.convolution2D(X, W, stride, padding).shape)
    dP = rng.standard_normal(numpy_cnn.pool_forward(X, f, s).shape)
    Xt, Wt, dYt, dPt = (torch.from_numpy(a) for a in (X, W, dY, dP))
    _, pool_indices = F.max_pool2d(Xt, f, s, return_indices=True)

    def torch_conv_backward(mask: tuple[bool, bool, bool]) -> torch.Tensor:
        return torch.ops.aten.convolution_backward(
            dYt, Xt, Wt, None, stride, padding, (1, 1), False, (0, 0), 1, mask
        )

    def torch_pool_back() -> torch.Tensor:
        # PyTorch keeps the argmax indices from the forward pass; the NumPy
        # pool_back recomputes them from X, so this row favours PyTorch.
        return torch.ops.aten.max_pool2d_with_indices_backward(
            dPt, Xt, (f, f), (s, s), (0, 0), (1, 1), False, pool_indices
        )

    calls: dict[str, dict[str, Callable[[], object]]] = {
        "conv forward": {
            impl: (lambda m=m: m.convolution2D(X, W, stride, padding))
            for impl, m in (("loop", numpy_cnn_loops), ("vectorised", numpy_cnn))
        }
        | {"torch": lambda: F.conv2d(Xt, Wt, stride=stride, padding=padding)},
        "conv backward filter": {
            impl: (lambda m=m: m.convolution2D_backward_filter(dY, X, W, stride, padding))
            for impl, m in (("loop", numpy_cnn_loops), ("vectorised", numpy_cnn))
        }
        | {"torch": lambda: torch_conv_backward((False, True, False))},
        "conv backward input": {
            impl: (lambda m=m: m.convolution2D_backward_input(dY, X, W, stride, padding))
            for impl, m in (("loop", numpy_cnn_loops), ("vectorised", numpy_cnn))
        }
        | {"torch": lambda: torch_conv_backward((True, False, False))},
        "pool forward": {
            impl: (lambda m=m: m.pool_forward(X, f, s))
            for impl, m in (("loop", numpy_cnn_loops), ("vectorised", numpy_cnn))
        }
        | {"torch": lambda: F.max_pool2d(Xt, f, s)},
        "pool back": {
            impl: (lambda m=m: m.pool_back(dP, X, f, s))
            for impl, m in (("loop", numpy_cnn_loops), ("vectorised", numpy_cnn))
        }
        | {"torch": torch_pool_back},
    }
    counts = {"loop": loop_repeats, "vectorised": repeats, "torch": repeats}
    return {op: median_times(fns, counts) for op, fns in calls.items()}


def format_table(result: dict[str, dict[str, float]]) -> str:
    """Milliseconds per op and implementation, plus the ratios to PyTorch."""
    lines = [
        f"  {'op':<32}{'loop ms':>11}{'vectorised ms':>15}{'torch ms':>10}"
        f"{'loop/torch':>12}{'vec/torch':>11}"
    ]
    conv_total = {
        impl: sum(result[op][impl] for op in OPS[:3]) for impl in IMPLEMENTATIONS
    }
    rows = list(result.items()) + [("conv forward + both backward", conv_total)]
    for op, t in rows:
        lines.append(
            f"  {op:<32}{t['loop'] * 1e3:>11.2f}{t['vectorised'] * 1e3:>15.2f}"
            f"{t['torch'] * 1e3:>10.2f}{t['loop'] / t['torch']:>12.1f}"
            f"{t['vectorised'] / t['torch']:>11.2f}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15,
                        help="timed calls per op for the vectorised and PyTorch versions")
    parser.add_argument("--loop_repeats", type=int, default=3,
                        help="timed calls per op for the loop version on the small case")
    parser.add_argument("--loop_repeats_large", type=int, default=1,
                        help="timed calls per op for the loop version on the ResNet-like "
                             "layer (each takes seconds); 0 skips the loops there")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    parser.add_argument("--results_dir", type=Path, default=Path("results/part1"),
                        help="folder for benchmark_numpy_cnn.json")
    args = parser.parse_args(argv)
    if min(args.repeats, args.loop_repeats) < 1 or args.loop_repeats_large < 0:
        parser.error("--repeats and --loop_repeats must be >= 1, --loop_repeats_large >= 0")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                      "OPENBLAS_CORETYPE") if k in os.environ}
    print(f"numpy {np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} "
          f"threads), {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
          f"float64, env {env or '{}'}")
    if hasattr(os, "getloadavg"):
        # Other processes on the machine slow multi-threaded BLAS down unevenly.
        print("load average (1, 5, 15 min): " + ", ".join(f"{v:.1f}" for v in os.getloadavg()))
    print(f"median of {args.repeats} calls (loop: {args.loop_repeats} on the small case, "
          f"{args.loop_repeats_large or 'skipped'} on the ResNet-like layer)\n")
    results = {}
    for name, x_shape, w_shape, stride, padding, f, s in CASES:
        large = name != "notebook"
        loop_repeats = args.loop_repeats_large if large else args.loop_repeats
        print(f"{name}: X {x_shape}, W {w_shape}, stride {stride}, padding {padding}; "
              f"pool f={f}, s={s}")
        result = benchmark_case(x_shape, w_shape, stride, padding, f, s,
                                args.repeats, loop_repeats, rng)
        print(format_table(result) + "\n")
        seconds = {op: {impl: None if np.isnan(t) else t for impl, t in times.items()}
                   for op, times in result.items()}
        results[name] = {"x_shape": x_shape, "w_shape": w_shape, "stride": stride,
                         "padding": padding, "pool_f": f, "pool_s": s, "seconds": seconds}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / "benchmark_numpy_cnn.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
