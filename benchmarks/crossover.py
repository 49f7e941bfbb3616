"""Speed of ``meanfield crossover``: its linearized twin's step against the network's step, as
ratios measured side by side in one run (float64, best of k calls after one warm-up round,
the calls interleaved in rounds, ``time.perf_counter``), and the wall time of its reproduce
targets.

    python benchmarks/crossover.py [--quick] [--threads T] [--repeat K]

Printed:

(a) one step of the linearized twin (:meth:`meanfield.crossover_run.LinearizedTwin.velocity`:
    its forward ``f_lin`` and its velocities) against one step of the network
    (:func:`meanfield.step.dense_velocity`, relu, linear hinge) at M = 400, N = 2e4, d = 50, at
    three stages of training: every example unsatisfied (early training), about half, about
    10%; target: the twin at most 1.2x the network at every stage. The stages are set by the
    margin ``h``: the network at i.i.d. initial nodes and the twin at a random displacement
    from them, each with ``h`` at the quantile of its own margins ``y f`` that leaves the
    wanted fraction unsatisfied (``h = 1`` and ``f = 0`` for "every example");
(b) without ``--quick``: the wall time of ``meanfield reproduce pb-crossover --quick`` and
    ``meanfield reproduce frankle-rewind --quick`` (target <= 120 s each on 2 cores), each in a
    new process; a target the command does not know yet is reported as skipped.

Timings use ``--threads`` threads (default 0: every core) for BLAS and Numba alike.
"""

from __future__ import annotations

# the thread policy must be set before NumPy and Numba load their pools: imports follow it
# ruff: noqa: E402
from meanfield.runtime import set_thread_policy

set_thread_policy()

import argparse
import math
import subprocess
import sys
import tempfile
import time

import numpy as np
from timing import best_times

from meanfield.crossover_run import LinearizedTwin
from meanfield.step import StepParams, dense_velocity, set_threads, thread_settings

TARGETS = ("pb-crossover", "frankle-rewind")
STAGES = (("every example", 1.0), ("about half", 0.5), ("about 10%", 0.1))


def problem(N: int, M: int, d: int, seed: int = 0):
    """Gaussian inputs, labels ``sign(x_1)``, i.i.d. standard normal nodes (float64)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, d))
    y = np.where(X[:, 0] >= 0, 1.0, -1.0)
    a = rng.standard_normal(M)
    W = rng.standard_normal((M, d))
    da = 0.3 * rng.standard_normal(M)
    dW = 0.3 * rng.standard_normal((M, d))
    return X, y, a, W, da, dW


def margin_for(margins: np.ndarray, fraction: float) -> float:
    """``h`` such that about ``fraction`` of ``margins`` are below it (unsatisfied)."""
    return float(np.quantile(margins, fraction))


def part_a(repeat: int) -> bool:
    M, N, d, alpha = 400, 20_000, 50, 1.0
    X, y, a, W, da, dW = problem(N, M, d)
    v_a, v_W = np.empty(M), np.empty((M, d))
    u_a, u_W = np.empty(M), np.empty((M, d))
    zero_a, zero_W = np.zeros(M), np.zeros((M, d))
    twin = LinearizedTwin(X, y, a, W, alpha, 1.0)
    m_lin = y * twin.outputs(da, dW).copy()
    net_outputs = np.maximum(X @ W.T / math.sqrt(d), 0.0) @ a * (alpha / M)
    m_net = y * net_outputs
    print(f"(a) one step at M = {M}, N = {N}, d = {d}, float64, relu, hinge "
          f"(best of {repeat}, ms)")
    print(f"    {'stage':<15} {'unsat net':>10} {'unsat twin':>10} {'network':>9} "
          f"{'twin':>9} {'twin/net':>9}  target <= 1.2")
    ok = True
    for name, fraction in STAGES:
        if fraction >= 1.0:
            # the antisymmetric-pair start of the crossover: f = 0 < h = 1 everywhere
            h_net = h_lin = 1.0
            a_net = np.concatenate([a[: M // 2], -a[: M // 2]])
            W_net = np.concatenate([W[: M // 2], W[: M // 2]])
            twin = LinearizedTwin(X, y, a_net, W_net, alpha, h_lin)
            sa, sW = zero_a, zero_W
        else:
            h_net = margin_for(m_net, fraction)
            h_lin = margin_for(m_lin, fraction)
            a_net, W_net = a, W
            twin = LinearizedTwin(X, y, a, W, alpha, h_lin)
            sa, sW = da, dW
        params = StepParams(activation="relu", loss="hinge", h=h_net, alpha=alpha,
                            dtype="float64")
        n_net = dense_velocity(X, y, a_net, W_net, params, v_a, v_W)[1]
        n_lin = twin.velocity(sa, sW, u_a, u_W)[1]
        t = best_times({
            "net": lambda a_net=a_net, W_net=W_net, params=params: dense_velocity(
                X, y, a_net, W_net, params, v_a, v_W),
            "twin": lambda twin=twin, sa=sa, sW=sW: twin.velocity(sa, sW, u_a, u_W),
        }, repeat)
        ratio = t["twin"] / t["net"]
        ok &= ratio <= 1.2
        print(f"    {name:<15} {n_net / N:>10.3f} {n_lin / N:>10.3f} {1e3 * t['net']:>9.2f} "
              f"{1e3 * t['twin']:>9.2f} {ratio:>9.2f}  {'ok' if ratio <= 1.2 else 'MISSED'}")
    return ok


def part_b(timeout: float) -> None:
    command = [sys.executable, "-c", "from cli.main import main; main()"]
    for name in TARGETS:
        with tempfile.TemporaryDirectory() as out:
            t = time.perf_counter()
            try:
                proc = subprocess.run([*command, "reproduce", name, "--quick", "--out", out],
                                      capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                print(f"(b) reproduce {name} --quick: stopped after {timeout:.0f} s "
                      "(target 120 s): MISSED")
                continue
            wall = time.perf_counter() - t
        if proc.returncode == 2 and "must be one of" in proc.stderr.lower():
            print(f"(b) reproduce {name} --quick: skipped, not a known target yet")
            continue
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or [""])[-1]
            print(f"(b) reproduce {name} --quick: failed (exit {proc.returncode}) after "
                  f"{wall:.1f} s: {tail}")
            continue
        verdict = next((line.strip() for line in proc.stdout.splitlines()
                        if "verdict" in line.lower()), "")
        print(f"(b) reproduce {name} --quick: {wall:.1f} s wall (target <= 120 s: "
              f"{'ok' if wall <= 120 else 'MISSED'}){'; ' + verdict if verdict else ''}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="part (a) only, fewer repeats")
    p.add_argument("--threads", type=int, default=0, help="threads (0: every core)")
    p.add_argument("--repeat", type=int, default=0, help="calls per timing (best of)")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds before a reproduce run is stopped")
    args = p.parse_args()
    n = set_threads(args.threads)
    blas = thread_settings()["blas"]
    kernel = ", ".join(f"{b.get('internal_api')} {b.get('architecture')}" for b in blas)
    print(f"threads: {n} (Numba and BLAS; {kernel})")
    repeat = args.repeat or (5 if args.quick else 15)
    part_a(repeat)
    if not args.quick:
        part_b(args.timeout)


if __name__ == "__main__":
    main()
