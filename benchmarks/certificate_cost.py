"""The weights of the skipping certificate's cost model, measured (meanfield.step.certificate).

    python benchmarks/certificate_cost.py [--N N] [--M M] [--d D] [--dtype float32] [--steps K]

The policy of :mod:`meanfield.step.policy` compares the certificate's work with the forward
evaluations it saves, both as counts: the certificate's operations, weighted by the four
weights of ``COST_WEIGHTS[dtype]`` (fixed, per example, per example at risk, per evaluated
row), against the forward GEMM's ``M d`` multiply-adds per example (weight 1). This script runs
``K`` Euler steps of a real skipping run (the certificate always on; geometric schedule) with
timers around the certificate's parts and the skip path's own row copies, and prints, per
part, its time per counted operation over the time per multiply-add of the dense forward pass
(``Engine.outputs``), beside the weight in use:

- fixed: the eigenvalues of the motion's Gram matrix (:func:`gram_eigen`), per
  ``M d (k + 2) + M d^2 + d^3``;
- row: the rest of :meth:`Certificate.begin` (the per-example bounds), per
  ``N (k^2 + 2k + p + 8)``;
- risk: :func:`perp_norms`, per ``n_risk d (r + 2)``;
- record: :meth:`Certificate.record` plus the gathers and row copies that the skip path does
  and the dense path does not, per ``n_evaluated M (p + 1)``.

A weight within a factor of two of its measure leaves the decisions close to the clock's: the
policy needs the sign of (saving - cost), not its size.
"""

from __future__ import annotations

# the thread policy must be set before NumPy and Numba load their pools: imports follow it
# ruff: noqa: E402
from meanfield.runtime import set_thread_policy

set_thread_policy()

import argparse
import time

import numpy as np
from timing import best_time

from meanfield.step import FullBatchStepper, StepParams
from meanfield.step import certificate as cert_mod
from meanfield.step import engine as engine_mod
from meanfield.step.certificate import advance_counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, default=20_000)
    ap.add_argument("--M", type=int, default=400)
    ap.add_argument("--d", type=int, default=100)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--dt", type=float, default=0.5)
    ap.add_argument("--growth", type=float, default=0.02)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="0: all usable cores")
    args = ap.parse_args()
    N, M, d = args.N, args.M, args.d
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, d)).astype(args.dtype)
    y = np.where(X[:, 0] >= 0, 1.0, -1.0).astype(args.dtype)
    a = rng.standard_normal(M).astype(args.dtype)
    W = rng.standard_normal((M, d)).astype(args.dtype)
    p = StepParams("relu", "hinge", 1.0, 1.0, args.dtype)
    st = FullBatchStepper(X, y, p, threads=args.threads, directions=np.eye(1, d),
                          adaptive=False)
    eng = st._get_engine(M)
    t_mac = best_time(lambda: eng.outputs(X, a, W), args.repeat) / (N * M * d)

    seconds = dict.fromkeys(("begin", "gram", "perp", "record", "copies"), 0.0)
    ops = dict.fromkeys(("fixed", "row", "risk", "record"), 0.0)

    def timed(name, fn, count=None):
        def call(*args_, **kw):
            start = time.perf_counter()
            out = fn(*args_, **kw)
            seconds[name] += time.perf_counter() - start
            if count is not None:
                count(*args_, **kw)
            return out
        return call

    def counts(n_risk):
        c = st.certificate
        return advance_counts(N, n_risk, M, d, c.Q.shape[1], c.V.shape[1],
                              min(c.perp_dirs, d - 1))

    def count_fixed(A):
        ops["fixed"] += counts(0)[0]

    def count_risk(X_, xnorm, *_, rows=None, **__):
        ops["risk"] += counts(xnorm.shape[0])[2]

    def count_begin(a_, W_):
        ops["row"] += counts(0)[1]

    def count_record(rows, *_):
        ops["record"] += rows.shape[0] * M * (st.certificate.V.shape[1] + 1)

    cert_mod.gram_eigen = timed("gram", cert_mod.gram_eigen, count_fixed)
    cert_mod.perp_norms = timed("perp", cert_mod.perp_norms, count_risk)
    c = st.certificate
    c.begin = timed("begin", c.begin)
    c.record = timed("record", c.record, count_record)
    engine_mod.gather = timed("copies", engine_mod.gather)
    engine_mod.fill = timed("copies", engine_mod.fill)
    va, vW = np.empty_like(a), np.empty_like(W)
    t = 0.0
    for n in range(args.steps):
        if n == 2:  # the first two calls evaluate everything: not counted
            seconds.update(dict.fromkeys(seconds, 0.0))
            ops.update(dict.fromkeys(ops, 0.0))
        calls = c.calls
        st.velocity(a, W, va, vW)
        if calls >= 2:
            count_begin(a, W)
        h = np.dtype(args.dtype).type(max(args.dt, args.growth * t) * M)
        t += max(args.dt, args.growth * t)
        a = a + h * va
        W = W + h * vW
    measured = {
        "fixed": seconds["gram"] / ops["fixed"],
        "row": (seconds["begin"] - seconds["gram"] - seconds["perp"]) / ops["row"],
        "risk": seconds["perp"] / max(ops["risk"], 1.0),
        "record": (seconds["record"] + seconds["copies"]) / ops["record"],
    }
    in_use = cert_mod.COST_WEIGHTS[np.dtype(args.dtype).name]
    print(f"N={N} M={M} d={d} {args.dtype}, {st.threads} threads, {args.steps} steps to "
          f"t={t:.0f}: forward "
          f"{t_mac * 1e12:.1f} ps per multiply-add; certificate {seconds['begin']:.2f} s, "
          f"record and row copies {seconds['record'] + seconds['copies']:.2f} s")
    for (name, value), w in zip(measured.items(), in_use, strict=True):
        print(f"  {name:7s} measured {value / t_mac:7.2f}   in use {w:6.2f}")


if __name__ == "__main__":
    main()
