"""Wall time of ``meanfield reproduce pb-fig1`` and of each of its parts.

    python benchmarks/reproduce.py            # full size: M = 400, N = 10^5, d = 100
    python benchmarks/reproduce.py --quick    # the quick setting

Prints the seconds of each stage (derive, theory, simulate, compare, figure), its share of the
total, and the verdict with the metrics table, all measured in this one run. Files go to a
temporary folder unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    from meanfield.runtime import set_thread_policy

    set_thread_policy()  # before numpy and numba load their thread pools
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick setting")
    parser.add_argument("--out", default=None, help="keep the files in this folder")
    args = parser.parse_args()

    from meanfield.compare.report import format_report
    from meanfield.reproduce import figure_config, reproduce

    config = figure_config("pb-fig1", quick=args.quick)
    print(f"pb-fig1 {'quick' if args.quick else 'full size'}: M={config.M} N={config.N} "
          f"d={config.d} dt={config.dt} growth={config.growth} t_max={config.t_max:g} "
          f"on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        start = time.perf_counter()
        rep = reproduce("pb-fig1", out, config=config)
        total = time.perf_counter() - start
        print(f"{'stage':<10}{'seconds':>10}{'share':>8}")
        for stage, seconds in rep.seconds.items():
            print(f"{stage:<10}{seconds:>10.2f}{seconds / total:>8.1%}")
        print(f"{'total':<10}{total:>10.2f}{1:>8.0%}")
        print()
        print(format_report(rep.comparison))


if __name__ == "__main__":
    main()
