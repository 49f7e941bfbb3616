"""Wall-clock timing shared by the benchmarks: the best of several calls."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


def best_time(fn: Callable[[], object], repeat: int) -> float:
    """Smallest wall time of ``repeat`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def best_times(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """:func:`best_time` of every function, the calls interleaved in rounds (one call of each
    per round, after one warm-up round) so that a slow spell of the machine hits all alike."""
    for fn in fns.values():
        fn()
    times = {k: math.inf for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k] = min(times[k], time.perf_counter() - t)
    return times
