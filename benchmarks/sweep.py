"""Speed of ``meanfield sweep``: parallel efficiency and per-point overhead, as ratios measured
in one run (wall times by ``time.perf_counter``; each command in a new process, its own
OUTDIR, the Numba cache warm).

    python benchmarks/sweep.py [--quick] [--max-workers K]

Printed:

(a) paper-like points (M = 400, N = 20000, d = 100, dt = 0.5, growth = 0.02, t_max = 300,
    float64, full batch; ``--quick``: t_max = 60). ``t1`` = median wall time of one point run
    alone through the sweep's task function (:func:`meanfield.sweep.run_point`) in this
    (warm) process, 1 thread. For k = 1 .. K workers (K = the usable cores, or
    ``--max-workers``): ``T_k`` = wall time of the whole ``meanfield sweep`` command (cluster
    start, warm-up, merge included) with ``--workers k`` and P = 4k points of equal cost
    (seeds), and ``E_k = P t1 / (k T_k)``; targets E_1 >= 0.90, E_2 >= 0.80. Also: the same
    with ``--scheduler`` on a LocalCluster started here beforehand (target: within 0.05 of
    the local E_K), and ``T_seq2 / T_2`` where ``T_seq2`` runs the same P = 8 points one
    after the other with threads = 2 (one worker); it must be >= 1, else the default layout
    (single-threaded points, one per core) is wrong.
(b) tiny points (M = 40, N = 2000, d = 20, t_max = 20; 32 points, K workers): overhead per
    point ``(K T_K - P t1) / P`` (target <= 0.3 s); time from the command's start to the
    first point running (target <= 5 s); the all-done re-run of 100 points (target <= 3 s).
"""

from __future__ import annotations

# the thread policy must be set before NumPy and Numba load their pools: imports follow it
# ruff: noqa: E402
from meanfield.runtime import set_thread_policy

set_thread_policy()

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomli_w

from meanfield.sweep import THREAD_VARIABLES, run_point, usable_cores
from meanfield.sweep_spec import parse_spec

PAPER = {"M": 400, "N": 20000, "d": 100, "dt": 0.5, "growth": 0.02, "t_max": 300.0,
         "n_test": 1000}
TINY = {"M": 40, "N": 2000, "d": 20, "t_max": 20.0}
MEANFIELD = [sys.executable, "-c",
             "import sys; from cli.main import main; sys.argv[0] = 'meanfield'; main()"]


def spec_file(folder: Path, name: str, base: dict, seeds: list[int], threads: int = 1) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(tomli_w.dumps({"sweep": {"seeds": seeds},
                                   "base": {**base, "threads": threads}}))
    return path


def command(spec: Path, *options: str) -> tuple[float, dict, float]:
    """Wall time of ``meanfield sweep SPEC --json OPTIONS`` in a new process, its JSON
    document, and the Unix time it started."""
    began = time.time()
    start = time.perf_counter()
    done = subprocess.run([*MEANFIELD, "sweep", str(spec), "--json", "--no-progress",
                           *options], cwd=spec.parent, capture_output=True, text=True,
                          check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"meanfield sweep failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall, json.loads(done.stdout), began


def point_time(base: dict, seeds: list[int], folder: Path) -> float:
    """Median wall time of one point through the task function, after one warm-up point."""
    spec = parse_spec({"sweep": {"seeds": [seeds[0] + 1000, *seeds]}, "base": base})
    points = spec.points()
    out = folder / "t1"
    out.mkdir(exist_ok=True)
    run_point(points[0].config.to_json(), str(out), 1e9)
    times = []
    for p in points[1:]:
        start = time.perf_counter()
        run_point(p.config.to_json(), str(out), 1e9)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def check(value: float, target: str, ok: bool) -> str:
    return f"{value:.3f} (target {target}: {'met' if ok else 'MISSED'})"


def paper(folder: Path, K: int, quick: bool) -> None:
    base = {**PAPER, "t_max": 60.0 if quick else 300.0}
    t1 = point_time(base, [0, 1, 2], folder)
    print(f"(a) paper-like points (t_max = {base['t_max']:g}): t1 = {t1:.2f} s per point "
          "(task function, warm process, 1 thread)")
    efficiency = {}
    for k in range(1, K + 1):
        P = 4 * k
        T, doc, _ = command(spec_file(folder, f"paper{k}", base, list(range(P))),
                            "--workers", str(k))
        efficiency[k] = P * t1 / (k * T)
        target = {1: 0.90, 2: 0.80}.get(k)
        shown = (check(efficiency[k], f">= {target:.2f}", efficiency[k] >= target) if target
                 else f"{efficiency[k]:.3f}")
        print(f"    k = {k}: P = {P}, T_k = {T:.1f} s, warm-up {doc['warmup']['seconds']:.1f} "
              f"s, E_k = {shown}")
    import dask
    from distributed import Client, LocalCluster

    env = {name: "1" for name in THREAD_VARIABLES}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
        cluster = LocalCluster(n_workers=K, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None, memory_limit=0)
    client = Client(cluster)
    try:
        P = 4 * K
        T, _, _ = command(spec_file(folder, "remote", base, list(range(P))),
                          "--scheduler", cluster.scheduler_address)
    finally:
        client.close()
        cluster.close()
    remote = P * t1 / (K * T)
    print(f"    --scheduler, k = {K}: T = {T:.1f} s, E = {remote:.3f}; local - scheduler = "
          + check(efficiency[K] - remote, "<= 0.05", abs(efficiency[K] - remote) <= 0.05))
    if K >= 2:
        T2 = 8 * t1 / (2 * efficiency[2])
        Tseq, _, _ = command(spec_file(folder, "seq2", base, list(range(8)), threads=2),
                             "--workers", "1")
        print(f"    T_seq2 = {Tseq:.1f} s (8 points one after the other, threads = 2); "
              f"T_seq2 / T_2 = " + check(Tseq / T2, ">= 1", Tseq / T2 >= 1))


def tiny(folder: Path, K: int) -> None:
    t1 = point_time(TINY, list(range(5)), folder)
    P = 32
    T, doc, began = command(spec_file(folder, "tiny", TINY, list(range(P))),
                            "--workers", str(K))
    overhead = (K * T - P * t1) / P
    first = min(r["started"] for r in doc["runs"]) - began
    print(f"(b) tiny points: t1 = {t1 * 1e3:.0f} ms; {P} points on {K} workers in {T:.2f} s")
    print("    overhead per point = " + check(overhead, "<= 0.3 s", overhead <= 0.3))
    print("    start to first point running = " + check(first, "<= 5 s", first <= 5))
    many = spec_file(folder, "hundred", TINY, list(range(100)))
    command(many, "--workers", str(K))
    T100, doc, _ = command(many)
    assert doc["skipped"] == 100 and doc["workers"] == 0
    print("    all-done re-run of 100 points = " + check(T100, "<= 3 s", T100 <= 3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="paper-like points to t = 60")
    parser.add_argument("--max-workers", type=int, default=None,
                        help="largest k (default: the usable cores)")
    args = parser.parse_args()
    K = args.max_workers or usable_cores()
    print(f"meanfield sweep benchmark: {usable_cores()} usable cores, k up to {K}, "
          f"{os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        tiny(Path(tmp), K)
        paper(Path(tmp), K, args.quick)


if __name__ == "__main__":
    main()
