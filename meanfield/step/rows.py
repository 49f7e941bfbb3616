"""Numba passes over the rows of a block of pre-activations ``Z`` (one row per example).

The forward pass (:func:`forward`) computes, per evaluated row, ``f``, ``g = -l'(y f) y`` and
the loss, and overwrites the rows with ``g != 0`` by ``G = g sigma'(z)``; :func:`collect`,
:func:`fill` and :func:`colsum` move those rows to the backward buffer of
:class:`meanfield.step.engine.Engine`; :func:`assign_slots` and :func:`gather` build the
gathered blocks of the skipping path. ``kind`` and ``loss`` are the codes of
:mod:`meanfield.step.params`; for the generic kind ``S``, ``P`` hold ``sigma(Z)``,
``sigma'(Z)`` (computed by the engine), otherwise they are unused.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from meanfield.step.params import (
    ERF,
    GENERIC,
    HINGE,
    LEAKY_RELU,
    LINEAR,
    RELU,
    SQUARED,
    TANH,
    TWO_OVER_SQRT_PI,
)


@njit(cache=True, inline="always")
def sig(kind: int, u: float, slope: float) -> float:
    """``sigma(u)`` of a hand-written activation."""
    if kind == RELU:
        return u if u > 0 else 0.0 * u
    if kind == LEAKY_RELU:
        return u if u > 0 else slope * u
    if kind == ERF:
        return math.erf(u)
    if kind == TANH:
        return math.tanh(u)
    return u


@njit(cache=True, inline="always")
def dsig(kind: int, u: float, slope: float) -> float:
    """``sigma'(u)`` of a hand-written activation (0 at the kink of relu)."""
    if kind == RELU:
        return 1.0 if u > 0 else 0.0
    if kind == LEAKY_RELU:
        return 1.0 if u > 0 else slope
    if kind == ERF:
        return TWO_OVER_SQRT_PI * math.exp(-u * u)
    if kind == TANH:
        t = math.tanh(u)
        return 1.0 - t * t
    return 1.0


@njit(cache=True, inline="always")
def loss_and_g(loss: int, m: float, h: float) -> tuple[float, float]:
    """``(l(m), -l'(m))`` in float64."""
    if loss == HINGE:
        if m < h:
            return h - m, 1.0
        return 0.0, 0.0
    if loss == SQUARED:
        return 0.5 * (1.0 - m) * (1.0 - m), 1.0 - m
    e = math.exp(-abs(m))
    lv = max(-m, 0.0) + math.log1p(e)
    if m >= 0:
        return lv, e / (1.0 + e)
    return lv, 1.0 / (1.0 + e)


_FM = {"reassoc", "contract"}
"""Fast-math flags of the reductions: the summation order is then chosen by the compiler, but
it is the same machine code for every row and every call, hence the same bits in the dense and
the skipping paths. The row helpers below must NOT be ``inline="always"``: Numba inlines at the
level of its own IR and the inlined loops then take the flags of the caller (none), which
leaves every row sum a serial dependency chain (4x slower, not vectorized)."""


@njit(cache=True, fastmath=_FM)
def row_sum(Z, S, r, a, kind, slope):
    """``sum_i a_i sigma(Z[r, i])`` (``S`` holds sigma(Z) for the generic kind), accumulated
    in the dtype of ``a`` for relu, leaky relu and linear (float32 data: single-precision
    SIMD; the rounding bound ``tau`` of :mod:`meanfield.step.certificate` assumes the unit
    roundoff of the dtype for this sum), in float64 for the other kinds."""
    M = Z.shape[1]
    s = a.dtype.type(0)
    if kind == RELU:
        zero = Z.dtype.type(0)
        for i in range(M):
            z = Z[r, i]
            s += a[i] * (z if z > 0 else zero)
    elif kind == LEAKY_RELU:
        sl = Z.dtype.type(slope)
        for i in range(M):
            z = Z[r, i]
            s += a[i] * (z if z > 0 else sl * z)
    elif kind == LINEAR:
        for i in range(M):
            s += a[i] * Z[r, i]
    elif kind == GENERIC:
        for i in range(M):
            s += a[i] * S[r, i]
    else:
        for i in range(M):
            s += a[i] * sig(kind, Z[r, i], slope)
    return s


@njit(cache=True, fastmath=_FM)
def row_sq(Z, S, r, kind, slope):
    """``sum_i sigma(Z[r, i])^2`` in float64."""
    M = Z.shape[1]
    s = 0.0
    if kind == GENERIC:
        for i in range(M):
            v = float(S[r, i])
            s += v * v
    else:
        for i in range(M):
            v = float(sig(kind, Z[r, i], slope))
            s += v * v
    return s


@njit(cache=True, fastmath=_FM)
def row_grad(Z, S, P, SGb, r, gr, kind, slope):
    """In place ``Z[r] <- g sigma'(Z[r])``; for the non-homogeneous kinds (``sigma(z) !=
    z sigma'(z)``) also ``SGb[r] <- g sigma(z)``."""
    M = Z.shape[1]
    gz = Z.dtype.type(gr)
    if kind == RELU:
        zero = Z.dtype.type(0)
        for i in range(M):
            Z[r, i] = gz if Z[r, i] > 0 else zero
    elif kind == LEAKY_RELU:
        gs = Z.dtype.type(gr * slope)
        for i in range(M):
            Z[r, i] = gz if Z[r, i] > 0 else gs
    elif kind == LINEAR:
        for i in range(M):
            Z[r, i] = gz
    elif kind == GENERIC:
        for i in range(M):
            SGb[r, i] = gr * S[r, i]
            Z[r, i] = gr * P[r, i]
    else:
        for i in range(M):
            z = Z[r, i]
            SGb[r, i] = gr * sig(kind, z, slope)
            Z[r, i] = gr * dsig(kind, z, slope)


@njit(cache=True, parallel=True)
def forward(Z, S, P, SGb, slot, a, yb, kind, slope, scale, loss, h, f, g, lv, grad):
    """Evaluated row ``j`` (row ``slot[j]`` of the block): ``f = scale sum_i a_i
    sigma(Z[slot, i])`` (float64), the loss ``lv`` and ``g = -l'(y f) y`` (dtype of ``Z``);
    if ``grad`` and ``g != 0``, the row of ``Z`` becomes ``g sigma'(z)`` (see
    :func:`row_grad`). For the generic kind ``S``, ``P`` hold sigma(Z), sigma'(Z)."""
    for j in prange(slot.shape[0]):
        r = slot[j]
        fr = scale * row_sum(Z, S, r, a, kind, slope)
        f[j] = fr
        lval, gm = loss_and_g(loss, yb[j] * fr, h)
        lv[j] = lval
        gr = gm * yb[j]
        g[j] = gr
        if grad and gr != 0:
            row_grad(Z, S, P, SGb, r, gr, kind, slope)


@njit(cache=True)
def collect(f, g, lv, yb, h, n, U, acc):
    """Serial, in index order: the rows ``j < n`` with ``g != 0`` go to ``U``;
    ``acc[0] += loss``, ``acc[1] += #(y f < h)``. Returns the number of rows in ``U``."""
    k = 0
    for j in range(n):
        if yb[j] * f[j] < h:
            acc[1] += 1.0
        if g[j] != 0:
            U[k] = j
            k += 1
            acc[0] += lv[j]
    return k


@njit(cache=True, parallel=True)
def fill(Z, SGb, Xb, slot, U, u0, u1, pos, homogeneous, G, SG, XU):
    """Backward rows ``pos + j`` for the evaluated rows ``U[u0 + j]``: copies of the rows of
    ``Z`` (already ``g sigma'(z)``), of ``SGb`` (``g sigma(z)``, non-homogeneous kinds only)
    and of ``Xb``."""
    M = Z.shape[1]
    d = Xb.shape[1]
    for j in prange(u1 - u0):
        r = slot[U[u0 + j]]
        q = pos + j
        for i in range(M):
            G[q, i] = Z[r, i]
        if not homogeneous:
            for i in range(M):
                SG[q, i] = SGb[r, i]
        for k in range(d):
            XU[q, k] = Xb[r, k]


@njit(cache=True, parallel=True)
def colsum(SG, n, out):
    """``out[i] += sum_{j < n} SG[j, i]`` (j in order for every i)."""
    M = SG.shape[1]
    nchunk = (M + 63) // 64
    for c in prange(nchunk):
        i0 = c * 64
        i1 = min(M, i0 + 64)
        for j in range(n):
            for i in range(i0, i1):
                out[i] += SG[j, i]


@njit(cache=True)
def assign_slots(rows, start, block, period, slot):
    """Place ``rows[start:]`` (sorted) into a block of ``block`` rows, row ``rows[j]`` at a slot
    ``= rows[j] mod period`` (so that every example always meets the BLAS kernel at the same
    position modulo ``period``), until a residue class is full. Fills ``slot[:n]`` and returns
    ``n``, the number of rows placed."""
    cap = block // period
    cnt = np.zeros(period, dtype=np.int64)
    n = 0
    for j in range(start, rows.shape[0]):
        res = rows[j] % period
        if cnt[res] == cap:
            break
        slot[n] = cnt[res] * period + res
        cnt[res] += 1
        n += 1
    return n


@njit(cache=True, parallel=True)
def gather(X, rows, slot, out):
    """``out[slot[j]] = X[rows[j]]``; the other rows of ``out`` are set to 0."""
    B, d = out.shape
    for q in prange(B):
        for k in range(d):
            out[q, k] = 0
    for j in prange(slot.shape[0]):
        r = rows[j]
        q = slot[j]
        for k in range(d):
            out[q, k] = X[r, k]
