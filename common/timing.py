"""Timing for the benchmarks: variants timed in turns, so load from other processes hits all alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_medians(
    functions: dict[str, Callable[[], object]], repeats: int, warmup: int = 1
) -> dict[str, tuple[float, float]]:
    """Median ``(wall seconds, process CPU seconds)`` of each function, timed in turns after ``warmup`` calls."""
    for function in functions.values():
        for _ in range(warmup):
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
