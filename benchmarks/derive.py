"""Cold and warm wall time of ``meanfield derive NAME --json`` for each named activation.

Cold: a fresh process with an empty cache directory (``XDG_CACHE_HOME`` set to a new temporary
directory). Warm: a second fresh process reusing that cache. Both include interpreter start-up
and imports, i.e. what a user waits for. Aim: cold under 2 s.

    python benchmarks/derive.py [NAME ...]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

from analytic.activations import NAMES


def command() -> list[str]:
    exe = shutil.which("meanfield")
    if exe is not None:
        return [exe]
    return [sys.executable, "-c", "from cli.main import main; main()"]


def timed(args: list[str], cache: str) -> float:
    env = {**os.environ, "XDG_CACHE_HOME": cache}
    start = time.perf_counter()
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(names: list[str]) -> None:
    base = command()
    baseline_args = [sys.executable, "-c", "pass"]
    with tempfile.TemporaryDirectory() as empty:
        python_start = timed(baseline_args, empty)
    print(f"python start-up alone: {python_start:.2f} s")
    print(f"{'activation':<12} {'cold [s]':>9} {'warm [s]':>9} {'cold/warm':>10}")
    worst = 0.0
    for name in names:
        with tempfile.TemporaryDirectory() as cache:
            cold = timed([*base, "derive", name, "--json"], cache)
            warm = timed([*base, "derive", name, "--json"], cache)
        worst = max(worst, cold)
        print(f"{name:<12} {cold:>9.2f} {warm:>9.2f} {cold / warm:>10.2f}")
    print(f"slowest cold run: {worst:.2f} s ({'within' if worst < 2 else 'over'} the 2 s aim)")


if __name__ == "__main__":
    main(sys.argv[1:] or list(NAMES))
