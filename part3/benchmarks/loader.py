"""Time batching QM9 training molecules with ``GraphLoader`` against PyTorch Geometric's ``DataLoader``.

Both produce the same batches (tested in tests/test_part3_data.py); this measures only the
batching, no model. Run on an idle machine; prints a table and writes JSON::

    python -m part3.benchmarks.loader --threads 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch_geometric.loader import DataLoader

from common.cli import make_parser, positive_int, run_cli
from common.io import write_json
from common.runs import ensure_writable
from common.runtime import set_threads
from common.timing import interleaved_medians
from part3.data import check_data_dir, get_qm9
from part3.loader import GraphLoader


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = make_parser("python -m part3.benchmarks.loader", __doc__)
    parser.add_argument("--molecules", type=positive_int, default=12_800, help="training molecules batched per pass")
    parser.add_argument("--batch_size", type=positive_int, default=128, help="molecules per batch")
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed passes per loader (median reported)")
    parser.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch")
    parser.add_argument("--data_dir", default="data/", help="folder of the processed QM9 cache")
    parser.add_argument("--output", default="results/part3/benchmarks/loader.json", help="JSON file for the timings")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> dict:
    threads = set_threads(args.threads)
    ensure_writable(Path(args.output).parent)
    check_data_dir(args.data_dir)
    train = get_qm9(args.data_dir)[0][: args.molecules]
    loaders = {
        "GraphLoader": GraphLoader(train, args.batch_size, shuffle=True, generator=torch.Generator().manual_seed(0)),
        "torch_geometric DataLoader": DataLoader(train, batch_size=args.batch_size, shuffle=True),
    }
    timings = interleaved_medians({name: (lambda loader=loader: list(loader)) for name, loader in loaders.items()},
                                  repeats=args.repeats)  # fmt: skip
    fastest = min(wall for wall, _ in timings.values())
    print(f"batching {args.molecules} QM9 molecules, batch size {args.batch_size}, {threads} thread(s):")
    for name, (wall, cpu) in timings.items():
        print(f"  {name:28s} {wall:8.3f} s   ({wall / fastest:5.1f}x the fastest; CPU {cpu:.3f} s)")
    result = {"molecules": args.molecules, "batch_size": args.batch_size, "threads": threads}
    result["seconds"] = {name: wall for name, (wall, _) in timings.items()}
    write_json(result, Path(args.output))
    return result


if __name__ == "__main__":
    run_cli(lambda: main(parse_args()))
