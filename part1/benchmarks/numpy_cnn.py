"""Time the NumPy CNN blocks: plain loops vs vectorised NumPy vs PyTorch (float64, CPU).

    python -m part1.benchmarks.numpy_cnn [--threads 1] [--cases notebook resnet_layer]

For each case (the shapes of ``part1/CNN.ipynb`` and a ResNet-like 3x3 layer) it prints the median time of the
convolution forward pass, both backward passes, max-pooling forward, backward, and both together (``pool_back``
finds the maxima again from ``X``, PyTorch's backward reads its forward pass's indices), and the ratios to PyTorch, and
writes ``<results_dir>/benchmark_numpy_cnn.json``. Vectorised and PyTorch calls are timed in turns; the loops,
seconds per call on the ResNet-like layer, are timed separately. NumPy's BLAS threads follow ``OMP_NUM_THREADS``.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from common.cli import make_parser, positive_int, run_cli
from common.io import write_json
from common.runs import ensure_writable
from common.runtime import set_threads
from common.timing import interleaved_medians
from part1 import numpy_cnn
from part1.numpy_cnn import loops

# name: (X shape, W shape, stride, padding, pool window f, pool stride s); "notebook" is CNN.ipynb's example.
CASES = {
    "notebook": ((2, 3, 7, 7), (4, 3, 3, 3), (2, 1), (1, 2), 3, 2),
    "resnet_layer": ((32, 64, 16, 16), (64, 64, 3, 3), (1, 1), (1, 1), 2, 2),
}
IMPLEMENTATIONS = ("loop", "vectorised", "torch")


def case_calls(case: tuple, rng: np.random.Generator) -> dict[str, dict[str, Callable[[], object]]]:
    """``{op: {implementation: call}}`` on random float64 inputs of one case's shapes."""
    x_shape, w_shape, stride, padding, f, s = case
    X, W = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    dY = rng.standard_normal(numpy_cnn.convolution2D(X, W, stride, padding).shape)
    dP = rng.standard_normal(numpy_cnn.pool_forward(X, f, s).shape)
    Xt, Wt, dYt, dPt = (torch.from_numpy(a) for a in (X, W, dY, dP))
    _, pool_indices = F.max_pool2d(Xt, f, s, return_indices=True)

    def conv_backward(mask: tuple[bool, bool, bool]) -> object:
        return torch.ops.aten.convolution_backward(dYt, Xt, Wt, None, stride, padding, (1, 1), False, (0, 0), 1, mask)

    def numpy_calls(name: str, *args: object) -> dict[str, Callable[[], object]]:
        return {impl: (lambda m=m: getattr(m, name)(*args)) for impl, m in (("loop", loops), ("vectorised", numpy_cnn))}

    def torch_pool_back(indices: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten.max_pool2d_with_indices_backward(dPt, Xt, (f, f), (s, s), (0, 0), (1, 1), False, indices)

    # PyTorch's pool backward gets the argmax indices of its forward pass; pool_back recomputes them from X.
    return {
        "conv forward": numpy_calls("convolution2D", X, W, stride, padding)
        | {"torch": lambda: F.conv2d(Xt, Wt, stride=stride, padding=padding)},
        "conv backward filter": numpy_calls("convolution2D_backward_filter", dY, X, W, stride, padding)
        | {"torch": lambda: conv_backward((False, True, False))},
        "conv backward input": numpy_calls("convolution2D_backward_input", dY, X, W, stride, padding)
        | {"torch": lambda: conv_backward((True, False, False))},
        "pool forward": numpy_calls("pool_forward", X, f, s) | {"torch": lambda: F.max_pool2d(Xt, f, s)},
        "pool back": numpy_calls("pool_back", dP, X, f, s) | {"torch": lambda: torch_pool_back(pool_indices)},
        # pool_back finds the maxima again from X; PyTorch's backward reads the indices its forward pass saved.
        "pool forward + back": {
            impl: (lambda m=m: (m.pool_forward(X, f, s), m.pool_back(dP, X, f, s)))
            for impl, m in (("loop", loops), ("vectorised", numpy_cnn))
        }
        | {"torch": lambda: torch_pool_back(F.max_pool2d(Xt, f, s, return_indices=True)[1])},
    }


def time_case(calls: dict, repeats: int, loop_repeats: int) -> dict[str, dict[str, float | None]]:
    """Median wall seconds ``{op: {implementation: s}}``; ``loop_repeats=0`` skips the loops (None)."""
    seconds: dict[str, dict[str, float | None]] = {}
    for op, fns in calls.items():
        fast = interleaved_medians({impl: fns[impl] for impl in ("vectorised", "torch")}, repeats)
        loop = interleaved_medians({"loop": fns["loop"]}, loop_repeats, warmup=0) if loop_repeats else {}
        seconds[op] = {impl: (fast | loop)[impl][0] if impl in fast | loop else None for impl in IMPLEMENTATIONS}
    return seconds


def format_table(seconds: dict[str, dict[str, float | None]]) -> str:
    """Milliseconds per op and implementation, and the ratios to PyTorch."""

    def ms(value: float | None, scale: float = 1e3, digits: int = 2) -> str:
        return "-" if value is None else f"{value * scale:.{digits}f}"

    lines = [f"  {'op':<24}{'loop ms':>11}{'vectorised ms':>15}{'torch ms':>10}{'loop/torch':>12}{'vec/torch':>11}"]
    for op, t in seconds.items():
        loop_ratio = None if t["loop"] is None else t["loop"] / t["torch"]
        lines.append(
            f"  {op:<24}{ms(t['loop']):>11}{ms(t['vectorised']):>15}{ms(t['torch']):>10}"
            f"{ms(loop_ratio, 1, 1):>12}{ms(t['vectorised'] / t['torch'], 1):>11}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Parse the options, time every case, print the tables and write the JSON."""
    parser = make_parser("python -m part1.benchmarks.numpy_cnn", __doc__)
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES), help="cases to time")
    parser.add_argument("--repeats", type=positive_int, default=15, help="timed calls per op (vectorised, PyTorch)")
    parser.add_argument("--loop_repeats", type=positive_int, default=3, help="timed loop calls on the notebook case")
    parser.add_argument("--skip_large_loops", action="store_true", help="skip the loops (seconds) on larger cases")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--results_dir", default="results/part1", help="folder for benchmark_numpy_cnn.json")
    args = parser.parse_args(argv)
    ensure_writable(args.results_dir)
    set_threads(args.threads)
    print(
        f"numpy {np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"{os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}, float64, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    rng, results = np.random.default_rng(args.seed), {}
    for name in args.cases:
        x_shape, w_shape, stride, padding, f, s = CASES[name]
        loop_repeats = args.loop_repeats if name == "notebook" else (0 if args.skip_large_loops else 1)
        print(f"\n{name}: X {x_shape}, W {w_shape}, stride {stride}, padding {padding}; pool f={f}, s={s}")
        seconds = time_case(case_calls(CASES[name], rng), args.repeats, loop_repeats)
        print(format_table(seconds))
        results[name] = {
            "x_shape": x_shape,
            "w_shape": w_shape,
            "stride": stride,
            "padding": padding,
            "pool_f": f,
            "pool_s": s,
            "seconds": seconds,
        }
    path = write_json(results, os.path.join(args.results_dir, "benchmark_numpy_cnn.json"))
    print(f"\nwrote {path}")
    return results


if __name__ == "__main__":
    run_cli(main)
