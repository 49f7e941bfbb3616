"""The blocked forward/backward loop of a step, on BLAS and the Numba row passes.

How a step is computed (:func:`dense_velocity`, :class:`meanfield.step.FullBatchStepper`): the
examples are processed in blocks of rows (no ``(N, M)`` array); per block ``Z = X_blk (W /
sqrt d)^T`` by BLAS, then one Numba pass computes ``f``, ``g = -l'(y f) y`` and the loss, and
overwrites the rows with ``g != 0`` (for the hinge: the unsatisfied ones) by ``G = g
sigma'(z)``. Those rows are appended, in index order, to a backward buffer (``G``, the rows of
``X`` and, for activations with ``sigma(z) != z sigma'(z)``, ``g sigma(z)``); when it holds
``block`` rows it is flushed: ``acc_W += G^T X_U`` (BLAS), ``acc_a +=`` column sums (a dense
block that is entirely back-propagated is flushed in place, without copies). For relu, leaky
relu and linear, ``sigma(z) = z sigma'(z)`` gives ``acc_a[i] = (w_i / sqrt d) . acc_W[i]`` at
no cost. The flush points depend only on the sequence of back-propagated examples, so the
forward skipping of :class:`meanfield.step.FullBatchStepper` leaves every floating-point
operation of the velocities unchanged (bitwise identical to the dense path).
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from numba import njit, prange

from meanfield.step.params import GENERIC, StepParams
from meanfield.step.rows import assign_slots, collect, colsum, fill, forward, gather

DEFAULT_BLOCK = 2048
"""Rows per forward block and per backward flush."""

SMALL_WORK = 2_000_000
"""Below this many ``(example, node)`` pairs evaluated in a call, the Numba passes run on one
thread: waking a second one costs more than it saves (and much more on a busy machine)."""


_generic_cache: dict[str, Any] = {}


def generic_kernels(activation: str):
    """Numba pass ``(Z, S, P) -> S = sigma(Z), P = sigma'(Z)`` for an activation without a
    hand-written kernel, compiled from ``analytic.codegen`` (no ``cache``: exec-generated)."""
    if activation not in _generic_cache:
        from analytic.activations import get_activation
        from analytic.codegen import numba_activation

        sig, dsig = numba_activation(get_activation(activation))

        @njit(parallel=True)
        def apply(Z, S, P):
            M = Z.shape[1]
            for r in prange(Z.shape[0]):
                for i in range(M):
                    z = float(Z[r, i])
                    S[r, i] = sig(z)
                    P[r, i] = dsig(z)

        _generic_cache[activation] = apply
    return _generic_cache[activation]


_PERIODS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 192)
_period_cache: dict[tuple, int] = {}


def row_period(dtype: np.dtype, M: int, d: int, block: int) -> int:
    """The smallest ``P`` in :data:`_PERIODS` such that the BLAS product ``Z = X_blk W^T`` of
    a ``block``-row block gives, for every row, the same bits whatever the other rows are,
    provided the row stays at the same position modulo ``P`` (OpenBLAS kernels process rows
    in register tiles whose halves may accumulate in different orders). Found by experiment
    with random data (several residue-preserving shuffles per candidate) at the current
    thread count; 0 if no candidate passes. Cached per (dtype, M, d, block, BLAS threads)."""
    from threadpoolctl import threadpool_info

    threads = tuple(p.get("num_threads") for p in threadpool_info())
    key = (np.dtype(dtype).str, M, d, block, threads)
    if key in _period_cache:
        return _period_cache[key]
    rng = np.random.default_rng(12345)
    WT = rng.standard_normal((M, d)).astype(dtype).T
    found = 0
    for P in _PERIODS:
        n = -(-block // P) * P          # the engine rounds its block up to a multiple of P
        A = rng.standard_normal((n, d)).astype(dtype)
        Z = A @ WT
        ok = True
        for _ in range(4):
            perm = np.arange(n).reshape(n // P, P)
            perm = rng.permuted(perm, axis=0).ravel()   # keeps every row's residue mod P
            keep = rng.random(n) < 0.5
            A2 = np.where(keep[:, None], A[perm], rng.standard_normal((n, d)).astype(dtype))
            if not np.array_equal((A2 @ WT)[keep], Z[perm][keep]):
                ok = False
                break
        if ok:
            found = P
            break
    _period_cache[key] = found
    return found


class Engine:
    """Preallocated buffers and the blocked forward/backward loop (see the module docstring).

    Every forward GEMM has exactly ``block`` rows (padded with zero rows), and an example
    evaluated in a gathered block sits at a slot congruent to its index modulo ``period``
    (:func:`row_period`): its row of ``Z`` has the same bits as in the dense pass."""

    def __init__(self, M: int, d: int, params: StepParams, block: int, period: int = 1) -> None:
        dt = params.dtype
        self.params = params
        self.period = max(1, period)
        block = -(-block // self.period) * self.period
        self.block = block
        self.kind = params.code
        self.loss = params.loss_code
        self.Z = np.empty((block, M), dt)
        generic = self.kind == GENERIC
        self.S = np.empty((block, M), dt) if generic else np.empty((1, 1), dt)
        self.P = np.empty((block, M), dt) if generic else np.empty((1, 1), dt)
        self.homogeneous = params.homogeneous
        self.SGb = (np.empty((1, 1), dt) if self.homogeneous else np.empty((block, M), dt))
        self.Xg = np.zeros((block, d), dt)
        self.slot = np.empty(block, np.int64)
        self.f = np.empty(block, np.float64)
        self.g = np.empty(block, dt)
        self.lv = np.empty(block, np.float64)
        self.U = np.empty(block, np.int64)
        self.G = np.empty((block, M), dt)
        self.SG = np.empty((1, 1), dt) if self.homogeneous else np.empty((block, M), dt)
        self.XU = np.empty((block, d), dt)
        self.acc_W = np.empty((M, d), dt)
        self.tmp_W = np.empty((M, d), dt)
        self.acc_a = np.empty(M, dt)
        self.acc_a64 = np.empty(M, np.float64)
        self.Ws = np.empty((M, d), dt)
        self.generic = generic_kernels(params.activation) if generic else None

    def blocks(self, X: np.ndarray, rows: np.ndarray | None, W: np.ndarray):
        """Forward GEMMs: yields ``(idx, slot, Z, S, P, Xb)`` per block, ``idx`` the global
        indices of its evaluated rows (sorted), ``slot`` their rows in ``Z`` and ``Xb``."""
        N, d = X.shape
        B = self.block
        np.multiply(W, self.params.dtype.type(1.0 / math.sqrt(d)), out=self.Ws)
        WsT = self.Ws.T
        n_rows = N if rows is None else rows.shape[0]
        start = 0
        while start < n_rows:
            if rows is None:
                n = min(B, N - start)
                idx = np.arange(start, start + n)
                slot = self.slot[:n]
                slot[:] = np.arange(n)
                if n == B:
                    Xb = X[start:start + n]
                else:
                    Xb = self.Xg
                    gather(X, idx, slot, Xb)
            else:
                n = assign_slots(rows, start, B, self.period, self.slot)
                idx = rows[start:start + n]
                slot = self.slot[:n]
                Xb = self.Xg
                gather(X, idx, slot, Xb)
            np.matmul(Xb, WsT, out=self.Z)
            if self.kind == GENERIC:
                self.generic(self.Z, self.S, self.P)
            yield idx, slot, self.Z, self.S, self.P, Xb
            start += n

    def run(self, X, y, a, W, rows, v_a_out, v_W_out, record=None) -> tuple[float, int]:
        """Velocities over all rows of ``X``; the forward runs on ``rows`` only (``None`` =
        all; the others must be satisfied hinge examples). ``record(idx, slot, Z, S, yb, f)``
        is called after the forward of each block. Returns ``(L, n_unsat)`` with ``n_unsat``
        among the evaluated rows."""
        small = (X.shape[0] if rows is None else rows.shape[0]) * a.shape[0] < SMALL_WORK
        threads = numba.get_num_threads()
        if small:
            numba.set_num_threads(1)
        try:
            return self._run(X, y, a, W, rows, v_a_out, v_W_out, record)
        finally:
            numba.set_num_threads(threads)

    def _run(self, X, y, a, W, rows, v_a_out, v_W_out, record) -> tuple[float, int]:
        p = self.params
        N, d = X.shape
        M = a.shape[0]
        self.acc_W[...] = 0
        self.acc_a[...] = 0
        acc = np.zeros(2)
        pending = 0
        B = self.block
        scale = p.alpha / M
        for idx, slot, Z, S, P, Xb in self.blocks(X, rows, W):
            n = idx.shape[0]
            yb = y[idx]
            forward(Z, S, P, self.SGb, slot, a, yb, self.kind, p.slope, scale, self.loss, p.h,
                    self.f, self.g, self.lv, True)
            if record is not None:
                record(idx, slot, Z, S, yb, self.f[:n])
            k = collect(self.f, self.g, self.lv, yb, p.h, n, self.U, acc)
            if k == B and pending == 0 and rows is None:
                # the whole (dense, in order) block is one backward group: no copies
                self._flush(B, Z, self.SGb, Xb)
                continue
            u0 = 0
            while u0 < k:
                take = min(k - u0, B - pending)
                fill(Z, self.SGb, Xb, slot, self.U, u0, u0 + take, pending, self.homogeneous,
                     self.G, self.SG, self.XU)
                pending += take
                u0 += take
                if pending == B:
                    self._flush(B, self.G, self.SG, self.XU)
                    pending = 0
        if pending:
            self._flush(pending, self.G, self.SG, self.XU)
        if self.homogeneous:
            # sigma(z) = z sigma'(z): sum_mu g sigma(z_mu_i) = ws_i . (sum_mu G_mu_i x_mu)
            np.einsum("ik,ik->i", self.Ws.astype(np.float64), self.acc_W.astype(np.float64),
                      out=self.acc_a64)
            self.acc_a[...] = self.acc_a64
        v_a_out[...] = self.acc_a * p.dtype.type(p.alpha / N)
        np.multiply(self.acc_W, a[:, None], out=v_W_out)
        v_W_out *= p.dtype.type(p.alpha / (N * math.sqrt(d)))
        return float(acc[0] / N), int(acc[1])

    def outputs(self, X: np.ndarray, a: np.ndarray, W: np.ndarray) -> np.ndarray:
        """``f`` (float64) of every row of ``X``."""
        p = self.params
        out = np.empty(X.shape[0])
        for idx, slot, Z, S, _, _ in self.blocks(X, None, W):
            ones = np.ones(idx.shape[0], p.dtype)
            forward(Z, S, self.P, self.SGb, slot, a, ones, self.kind, p.slope,
                    p.alpha / a.shape[0], 0, p.h, self.f, self.g, self.lv, False)
            out[idx] = self.f[: idx.shape[0]]
        return out

    def _flush(self, n: int, G: np.ndarray, SG: np.ndarray, XU: np.ndarray) -> None:
        """``acc_W += G[:n]^T XU[:n]`` (BLAS); ``acc_a += column sums of SG[:n]``."""
        np.matmul(G[:n].T, XU[:n], out=self.tmp_W)
        self.acc_W += self.tmp_W
        if not self.homogeneous:
            colsum(SG, n, self.acc_a)


_engines: dict[tuple, Engine] = {}
"""The last few engines of :func:`dense_velocity` (mini-batch steps reuse their buffers)."""


def dense_velocity(
    X: np.ndarray,
    y: np.ndarray,
    a: np.ndarray,
    W: np.ndarray,
    params: StepParams,
    v_a_out: np.ndarray,
    v_W_out: np.ndarray,
    block: int = DEFAULT_BLOCK,
) -> tuple[float, int]:
    """Velocities over all rows of ``X`` (mini-batches, online, reference); see the module
    docstring. ``X``, ``y``, ``a``, ``W`` must have ``params.dtype``. Returns
    ``(L, n_unsat)``."""
    block = max(1, min(block, X.shape[0]))
    key = (a.shape[0], X.shape[1], params, block)
    eng = _engines.pop(key, None) or Engine(*key)
    _engines[key] = eng  # most recently used last
    while len(_engines) > 4:
        _engines.pop(next(iter(_engines)))
    return eng.run(X, y, a, W, None, v_a_out, v_W_out)
