"""Velocities of the two-layer network under gradient flow (the simulator's hot loop).

Model (DESIGN.md, section 2), for rows ``x_mu`` of ``X`` (shape ``(N, d)``), labels
``y_mu = +-1``, second-layer weights ``a`` (shape ``(M,)``) and first-layer weights ``W``
(shape ``(M, d)``):

    z_mu_i = w_i . x_mu / sqrt(d),      f(x_mu) = (alpha / M) sum_i a_i sigma(z_mu_i),
    L = (1/N) sum_mu l(y_mu f(x_mu)).

Losses ``l(m)`` of the signed output ``m = y f``:

- ``hinge``: ``l = max(h - m, 0)``; ``l'(m) = -1`` if ``m < h`` and ``0`` if ``m >= h``
  (the subgradient 0 is taken at the kink ``m = h``). An example is *satisfied* when
  ``y f >= h``; satisfied examples contribute nothing to the velocities.
- ``squared``: ``l = (1 - m)^2 / 2`` (equal to ``(y - f)^2 / 2`` for ``y = +-1``);
  ``l'(m) = m - 1``. ``h`` is not used by the loss.
- ``logistic``: ``l = log(1 + exp(-m))``, evaluated as ``max(-m, 0) + log1p(exp(-|m|))``;
  ``l'(m) = -1 / (1 + exp(m))``, evaluated without overflow. ``h`` is not used by the loss.

For every loss ``n_unsat`` counts the examples with ``y f < h``. Losses are accumulated in
float64 whatever the dtype.

Velocities (NOT gradients, and WITHOUT the rate ``beta``, which the driver multiplies in):
the flow is ``d theta/dt = beta * v`` with ``v = -M dL/dtheta``, i.e.

    v_a[i] = -(alpha/N) sum_mu l'(y_mu f_mu) y_mu sigma(z_mu_i),
    v_W[i] = -(alpha/N) a_i sum_mu l'(y_mu f_mu) y_mu sigma'(z_mu_i) x_mu / sqrt(d).

Units: ``v`` is per unit of mean-field time ``t`` divided by ``beta``.

How a step is computed (:func:`dense_velocity`, :class:`FullBatchStepper`): the examples are
processed in blocks of rows (no ``(N, M)`` array); per block ``Z = X_blk (W / sqrt d)^T`` by
BLAS, then one Numba pass computes ``f``, ``g = -l'(y f) y`` and the loss, and overwrites the
rows with ``g != 0`` (for the hinge: the unsatisfied ones) by ``G = g sigma'(z)``. Those rows
are appended, in index order, to a backward buffer (``G``, the rows of ``X`` and, for
activations with ``sigma(z) != z sigma'(z)``, ``g sigma(z)``); when it holds ``block`` rows it is
flushed: ``acc_W += G^T X_U`` (BLAS), ``acc_a +=`` column sums (a dense block that is entirely
back-propagated is flushed in place, without copies). For relu, leaky relu and linear,
``sigma(z) = z sigma'(z)`` gives ``acc_a[i] = (w_i / sqrt d) . acc_W[i]`` at no cost. The
flush points depend only on the sequence of back-propagated examples, so the forward skipping
of :class:`FullBatchStepper` leaves every floating-point operation of the velocities
unchanged (bitwise identical to the dense path).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
from numba import njit, prange

ACTIVATIONS = ("relu", "leaky_relu", "erf", "tanh", "linear")
"""Activations with hand-written kernels; any other expression goes through the generic path."""

LOSSES = ("hinge", "squared", "logistic")

_KIND = {"relu": 0, "leaky_relu": 1, "erf": 2, "tanh": 3, "linear": 4, "generic": 5}
_GENERIC = 5
_LOSS = {"hinge": 0, "squared": 1, "logistic": 2}
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)

DEFAULT_BLOCK = 2048
"""Rows per forward block and per backward flush."""

SMALL_WORK = 2_000_000
"""Below this many ``(example, node)`` pairs evaluated in a call, the Numba passes run on one
thread: waking a second one costs more than it saves (and much more on a busy machine)."""


@dataclass(frozen=True)
class StepParams:
    """Everything the kernels need to know about the model, besides the weights.

    ``activation`` is a name or an expression accepted by
    :func:`analytic.activations.get_activation` (``"leaky_relu:0.1"`` gives the slope).
    ``dtype`` is ``"float32"`` or ``"float64"``: the dtype of ``X``, ``a``, ``W`` and the
    velocities. Derived: ``kind`` (hand-written kernel or ``"generic"``), ``slope`` (leaky
    ReLU), ``lipschitz`` (a Lipschitz constant of ``sigma``, ``None`` if not known: then the
    forward skipping is off).
    """

    activation: str = "relu"
    loss: str = "hinge"
    h: float = 1.0
    alpha: float = 1.0
    dtype: Any = "float64"
    kind: str = field(init=False)
    slope: float = field(init=False)
    lipschitz: float | None = field(init=False)

    def __post_init__(self) -> None:
        from analytic.activations import X, get_activation

        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {self.loss!r}")
        if np.dtype(self.dtype) not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64; got {self.dtype!r}")
        act = get_activation(self.activation)
        base = act.name.split(":")[0]
        kind = base if base in ACTIVATIONS else "generic"
        slope = float(-act.expr.subs(X, -1)) if base == "leaky_relu" else 0.0
        # sup |sigma'|: relu, leaky (slope < 1), linear: 1; tanh: 1; erf: 2/sqrt(pi)
        lip = {"erf": _TWO_OVER_SQRT_PI, "generic": None}.get(kind, 1.0)
        object.__setattr__(self, "dtype", np.dtype(self.dtype))
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "slope", slope)
        object.__setattr__(self, "lipschitz", lip)


# ---------------------------------------------------------------------------------------------
# plain NumPy reference


def _np_activation(params: StepParams):
    """NumPy callables ``(sigma, sigma')`` of the activation."""
    k, s = params.kind, params.slope
    if k == "relu":
        return (lambda u: np.maximum(u, 0)), (lambda u: (u > 0).astype(u.dtype))
    if k == "leaky_relu":
        return ((lambda u: np.where(u > 0, u, u.dtype.type(s) * u)),
                (lambda u: np.where(u > 0, 1.0, s).astype(u.dtype)))
    if k == "erf":
        from scipy.special import erf

        c = _TWO_OVER_SQRT_PI
        return erf, (lambda u: (c * np.exp(-u * u)).astype(u.dtype))
    if k == "tanh":
        return np.tanh, (lambda u: 1 - np.tanh(u) ** 2)
    if k == "linear":
        return (lambda u: u), (lambda u: np.ones_like(u))
    import sympy

    from analytic.activations import X, get_activation

    act = get_activation(params.activation)
    f = sympy.lambdify(X, act.expr, modules=["scipy", "numpy"])
    df = sympy.lambdify(X, act.derivative(1), modules=["scipy", "numpy"])

    def sigma(u: np.ndarray) -> np.ndarray:
        return np.broadcast_to(f(u), u.shape).astype(u.dtype)

    def dsigma(u: np.ndarray) -> np.ndarray:
        return np.broadcast_to(df(u), u.shape).astype(u.dtype)

    return sigma, dsigma


def _np_loss(params: StepParams, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Loss ``l(m)`` and derivative ``l'(m)`` (float64) of the signed outputs ``m = y f``."""
    m = m.astype(np.float64)
    if params.loss == "hinge":
        return np.maximum(params.h - m, 0.0), np.where(m < params.h, -1.0, 0.0)
    if params.loss == "squared":
        return 0.5 * (1.0 - m) ** 2, m - 1.0
    e = np.exp(-np.abs(m))
    loss = np.maximum(-m, 0.0) + np.log1p(e)
    dl = np.where(m >= 0, -e / (1.0 + e), -1.0 / (1.0 + e))
    return loss, dl


def numpy_velocity(
    X: np.ndarray,
    y: np.ndarray,
    a: np.ndarray,
    W: np.ndarray,
    params: StepParams,
    v_a_out: np.ndarray,
    v_W_out: np.ndarray,
) -> tuple[float, int]:
    """Reference implementation, plain NumPy: fills ``v_a_out``, ``v_W_out`` with the
    velocities of the module docstring over the rows of ``X``; returns ``(L, n_unsat)``.

    Builds the full ``(N, M)`` pre-activation matrix: obvious, readable, memory-hungry.
    """
    sigma, dsigma = _np_activation(params)
    N, d = X.shape
    M = a.shape[0]
    Z = X @ W.T / math.sqrt(d)
    S = sigma(Z)
    f = (params.alpha / M) * (S.astype(np.float64) @ a.astype(np.float64))
    m = y * f
    loss, dl = _np_loss(params, m)
    g = (-dl * y).astype(X.dtype)  # -l'(y f) y
    v_a_out[...] = (params.alpha / N) * (S.T @ g)
    G = dsigma(Z) * g[:, None]
    v_W_out[...] = (params.alpha / (N * math.sqrt(d))) * a[:, None] * (G.T @ X)
    return float(loss.mean()), int(np.count_nonzero(m < params.h))


def numpy_outputs(a: np.ndarray, W: np.ndarray, X: np.ndarray, params: StepParams) -> np.ndarray:
    """``f(x_mu)`` (float64) for every row of ``X`` (plain NumPy)."""
    sigma, _ = _np_activation(params)
    Z = X @ W.T / math.sqrt(X.shape[1])
    return (params.alpha / a.shape[0]) * (sigma(Z).astype(np.float64) @ a.astype(np.float64))


# ---------------------------------------------------------------------------------------------
# Numba kernels


@njit(cache=True, inline="always")
def _sig(kind: int, u: float, slope: float) -> float:
    if kind == 0:
        return u if u > 0 else 0.0 * u
    if kind == 1:
        return u if u > 0 else slope * u
    if kind == 2:
        return math.erf(u)
    if kind == 3:
        return math.tanh(u)
    return u


@njit(cache=True, inline="always")
def _dsig(kind: int, u: float, slope: float) -> float:
    if kind == 0:
        return 1.0 if u > 0 else 0.0
    if kind == 1:
        return 1.0 if u > 0 else slope
    if kind == 2:
        return _TWO_OVER_SQRT_PI * math.exp(-u * u)
    if kind == 3:
        t = math.tanh(u)
        return 1.0 - t * t
    return 1.0


@njit(cache=True, inline="always")
def _loss_and_g(loss: int, m: float, h: float) -> tuple[float, float]:
    """``(l(m), -l'(m))`` in float64."""
    if loss == 0:
        if m < h:
            return h - m, 1.0
        return 0.0, 0.0
    if loss == 1:
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
def _row_sum(Z, S, r, a, kind, slope):
    """``sum_i a_i sigma(Z[r, i])`` (``S`` holds sigma(Z) for the generic kind), accumulated
    in the dtype of ``a`` for relu, leaky relu and linear (float32 data: single-precision
    SIMD; the rounding bound ``tau`` of :class:`FullBatchStepper` assumes the unit roundoff of
    the dtype for this sum), in float64 for the other kinds."""
    M = Z.shape[1]
    s = a.dtype.type(0)
    if kind == 0:
        zero = Z.dtype.type(0)
        for i in range(M):
            z = Z[r, i]
            s += a[i] * (z if z > 0 else zero)
    elif kind == 1:
        sl = Z.dtype.type(slope)
        for i in range(M):
            z = Z[r, i]
            s += a[i] * (z if z > 0 else sl * z)
    elif kind == 4:
        for i in range(M):
            s += a[i] * Z[r, i]
    elif kind == _GENERIC:
        for i in range(M):
            s += a[i] * S[r, i]
    else:
        for i in range(M):
            s += a[i] * _sig(kind, Z[r, i], slope)
    return s


@njit(cache=True, fastmath=_FM)
def _row_sq(Z, S, r, kind, slope):
    """``sum_i sigma(Z[r, i])^2`` in float64."""
    M = Z.shape[1]
    s = 0.0
    if kind == _GENERIC:
        for i in range(M):
            v = float(S[r, i])
            s += v * v
    else:
        for i in range(M):
            v = float(_sig(kind, Z[r, i], slope))
            s += v * v
    return s


@njit(cache=True, fastmath=_FM)
def _row_grad(Z, S, P, SGb, r, gr, kind, slope):
    """In place ``Z[r] <- g sigma'(Z[r])``; for the non-homogeneous kinds (``sigma(z) !=
    z sigma'(z)``) also ``SGb[r] <- g sigma(z)``."""
    M = Z.shape[1]
    gz = Z.dtype.type(gr)
    if kind == 0:
        zero = Z.dtype.type(0)
        for i in range(M):
            Z[r, i] = gz if Z[r, i] > 0 else zero
    elif kind == 1:
        gs = Z.dtype.type(gr * slope)
        for i in range(M):
            Z[r, i] = gz if Z[r, i] > 0 else gs
    elif kind == 4:
        for i in range(M):
            Z[r, i] = gz
    elif kind == _GENERIC:
        for i in range(M):
            SGb[r, i] = gr * S[r, i]
            Z[r, i] = gr * P[r, i]
    else:
        for i in range(M):
            z = Z[r, i]
            SGb[r, i] = gr * _sig(kind, z, slope)
            Z[r, i] = gr * _dsig(kind, z, slope)


@njit(cache=True, parallel=True)
def _forward(Z, S, P, SGb, slot, a, yb, kind, slope, scale, loss, h, f, g, lv, grad):
    """Evaluated row ``j`` (row ``slot[j]`` of the block): ``f = scale sum_i a_i
    sigma(Z[slot, i])`` (float64), the loss ``lv`` and ``g = -l'(y f) y`` (dtype of ``Z``);
    if ``grad`` and ``g != 0``, the row of ``Z`` becomes ``g sigma'(z)`` (see
    :func:`_row_grad`). For the generic kind ``S``, ``P`` hold sigma(Z), sigma'(Z)."""
    for j in prange(slot.shape[0]):
        r = slot[j]
        fr = scale * _row_sum(Z, S, r, a, kind, slope)
        f[j] = fr
        lval, gm = _loss_and_g(loss, yb[j] * fr, h)
        lv[j] = lval
        gr = gm * yb[j]
        g[j] = gr
        if grad and gr != 0:
            _row_grad(Z, S, P, SGb, r, gr, kind, slope)


@njit(cache=True)
def _collect(f, g, lv, yb, h, n, U, acc):
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
def _fill(Z, SGb, Xb, slot, U, u0, u1, pos, homogeneous, G, SG, XU):
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
def _colsum(SG, n, out):
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
def _assign_slots(rows, start, block, period, slot):
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
def _gather(X, rows, slot, out):
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


@njit(cache=True, parallel=True)
def _record(Z, S, slot, yb, f, rows, VT, kind, slope, h, xnorm, d0, tau0, margin, s2, phi,
             bound, dist, tau):
    """Skip bookkeeping for the evaluated rows (global indices ``rows``): margin ``y f - h``,
    rounding allowances ``dist = d0 |x|`` (on ``|z_exact - z_computed|_2``) and
    ``tau = tau0 |x|`` (on ``|f_exact - f_computed|``); for satisfied rows also
    ``s2 = |sigma(z)|_2`` and ``phi = V^T sigma(z)`` (``VT`` = ``V^T``, contiguous); reset the
    accumulated bound."""
    p = VT.shape[0]
    for j in prange(slot.shape[0]):
        r = rows[j]
        z = slot[j]
        mj = yb[j] * f[j] - h
        margin[r] = mj
        bound[r] = 0.0
        dist[r] = d0 * xnorm[r]
        tau[r] = tau0 * xnorm[r]
        if mj <= 0:
            continue
        for c in range(p):
            phi[r, c] = _row_sum(Z, S, z, VT[c], kind, slope)
        s2[r] = math.sqrt(_row_sq(Z, S, z, kind, slope)) * (1.0 + 1e-12)


@njit(cache=True, parallel=True)
def _advance(dc, wc, R, zp, xnorm, margin, s2, phi, bound, dist, tau, u, coef):
    """Add one step's rigorous bound on ``|f_new - f_old|`` to ``bound`` for every example with
    a positive margin; return the mask of certified examples ``bound + slack < margin``.

    Per example: ``dc >= |delta c|_2``, ``wc >= sum_j |c_j| sum_i |a_i| |delta_ij|`` and
    ``zp >= |DW_perp x|_2`` (``inf`` if not computed).
    ``coef`` = [|DW P_perp|_op / sqrt d, |Da_perp|_2, Lip |Da|_2, Lip / sqrt d, E_perp,
    alpha / M, tau_now (per unit |x|), 1 / sqrt d, |u|_2, |a|_2] (see
    :meth:`FullBatchStepper._certify`)."""
    N = dc.shape[0]
    p = u.shape[0]
    out = np.zeros(N, dtype=np.bool_)
    isd, dap, lda, lisd, eperp = coef[0], coef[1], coef[2], coef[3], coef[4]
    scale, tau_now, rsd, unorm, anorm = coef[5], coef[6], coef[7], coef[8], coef[9]
    for r in prange(N):
        if margin[r] <= 0:
            continue
        # |Delta z|_2 <= (|delta c|_2 + min(|DW P_perp|_op |x_perp|, zp)) / sqrt d
        dist[r] += dc[r] * rsd + min(isd * R[r], zp[r] * rsd)
        # Delta a . sigma(z_new): the part along V exactly, the rest by Cauchy-Schwarz
        up = 0.0
        for c in range(p):
            up += u[c] * phi[r, c]
        t1 = abs(up) + 1e-10 * unorm * s2[r] + dap * s2[r] + lda * dist[r]
        # sum_i |a_i| |DW_perp,i x| <= min(E_perp |x_perp|, |a|_2 |DW_perp x|_2)
        t2 = lisd * (wc[r] + min(eperp * R[r], anorm * zp[r]))
        bound[r] += scale * (t1 + t2) * (1.0 + 1e-9)
        out[r] = bound[r] + tau[r] + tau_now * xnorm[r] < margin[r]
    return out


# ---------------------------------------------------------------------------------------------
# threads


def set_threads(threads: int) -> int:
    """Set both thread pools (Numba's and the BLAS one, via threadpoolctl) to ``threads``
    (0 = all cores, capped by Numba's maximum). Process-wide; SciPy's own BLAS is loaded first
    so that it is limited too. Returns the count used."""
    import scipy.linalg  # noqa: F401  (loads SciPy's BLAS, if it has its own)
    from threadpoolctl import threadpool_limits

    n = numba.config.NUMBA_NUM_THREADS if threads <= 0 else min(threads,
                                                                 numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(n)
    threadpool_limits(limits=n, user_api="blas")
    return n


def thread_settings() -> dict[str, Any]:
    """The thread settings in force, for the output file: Numba's thread count and threading
    layer, every BLAS pool that threadpoolctl sees (library, kernel, threads), and the waiting
    policy environment variables."""
    from threadpoolctl import threadpool_info

    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        layer = "not yet chosen"
    return {
        "numba_threads": int(numba.get_num_threads()),
        "numba_threading_layer": layer,
        "blas": [
            {k: p.get(k) for k in ("internal_api", "version", "architecture", "num_threads",
                                   "threading_layer")}
            for p in threadpool_info()
            if p.get("user_api") == "blas"
        ],
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", ""),
        "OPENBLAS_THREAD_TIMEOUT": os.environ.get("OPENBLAS_THREAD_TIMEOUT", ""),
    }


# ---------------------------------------------------------------------------------------------
# blocked dense engine


_generic_cache: dict[str, Any] = {}


def _generic_kernels(activation: str):
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


class _Engine:
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
        self.kind = _KIND[params.kind]
        self.loss = _LOSS[params.loss]
        self.Z = np.empty((block, M), dt)
        generic = self.kind == _GENERIC
        self.S = np.empty((block, M), dt) if generic else np.empty((1, 1), dt)
        self.P = np.empty((block, M), dt) if generic else np.empty((1, 1), dt)
        self.homogeneous = params.kind in ("relu", "leaky_relu", "linear")
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
        self.generic = _generic_kernels(params.activation) if generic else None

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
                    _gather(X, idx, slot, Xb)
            else:
                n = _assign_slots(rows, start, B, self.period, self.slot)
                idx = rows[start:start + n]
                slot = self.slot[:n]
                Xb = self.Xg
                _gather(X, idx, slot, Xb)
            np.matmul(Xb, WsT, out=self.Z)
            if self.kind == _GENERIC:
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
        fill = 0
        B = self.block
        scale = p.alpha / M
        for idx, slot, Z, S, P, Xb in self.blocks(X, rows, W):
            n = idx.shape[0]
            yb = y[idx]
            _forward(Z, S, P, self.SGb, slot, a, yb, self.kind, p.slope, scale, self.loss, p.h,
                     self.f, self.g, self.lv, True)
            if record is not None:
                record(idx, slot, Z, S, yb, self.f[:n])
            k = _collect(self.f, self.g, self.lv, yb, p.h, n, self.U, acc)
            if k == B and fill == 0 and rows is None:
                # the whole (dense, in order) block is one backward group: no copies
                self._flush(B, Z, self.SGb, Xb)
                continue
            u0 = 0
            while u0 < k:
                take = min(k - u0, B - fill)
                _fill(Z, self.SGb, Xb, slot, self.U, u0, u0 + take, fill, self.homogeneous,
                      self.G, self.SG, self.XU)
                fill += take
                u0 += take
                if fill == B:
                    self._flush(B, self.G, self.SG, self.XU)
                    fill = 0
        if fill:
            self._flush(fill, self.G, self.SG, self.XU)
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
            _forward(Z, S, self.P, self.SGb, slot, a, ones, self.kind, p.slope,
                     p.alpha / a.shape[0], 0, p.h, self.f, self.g, self.lv, False)
            out[idx] = self.f[: idx.shape[0]]
        return out

    def _flush(self, n: int, G: np.ndarray, SG: np.ndarray, XU: np.ndarray) -> None:
        """``acc_W += G[:n]^T XU[:n]`` (BLAS); ``acc_a += column sums of SG[:n]``."""
        np.matmul(G[:n].T, XU[:n], out=self.tmp_W)
        self.acc_W += self.tmp_W
        if not self.homogeneous:
            _colsum(SG, n, self.acc_a)


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
    eng = _engines.pop(key, None) or _Engine(*key)
    _engines[key] = eng  # most recently used last
    while len(_engines) > 4:
        _engines.pop(next(iter(_engines)))
    return eng.run(X, y, a, W, None, v_a_out, v_W_out)


_engines: dict[tuple, _Engine] = {}
"""The last few engines of :func:`dense_velocity` (mini-batch steps reuse their buffers)."""


# ---------------------------------------------------------------------------------------------
# full batch with exact forward skipping


class FullBatchStepper:
    """Full-batch velocities over a fixed training set, with exact forward skipping.

    ``velocity(a, W, v_a_out, v_W_out) -> (L, n_unsat)`` gives the velocities of the module
    docstring, bitwise equal to the dense computation. After a call, ``satisfied`` holds
    ``y f >= h`` of every example at the weights of that call (evaluated now, or certified) and
    ``n_evaluated`` the number of examples whose forward pass ran.

    Skipping (hinge loss, activations with a known Lipschitz constant ``Lip``; ``skip=True``):
    every example keeps the margin ``m = y f - h`` of its last evaluation and an upper bound
    ``B`` on ``|f_now - f_then|``, accumulated over the calls since then; it is skipped while
    ``B + slack < m``: it is then certainly satisfied, its gradient is exactly zero. Between
    consecutive calls with weights ``(a, W) -> (a', W')``, with ``Da = a' - a``,
    ``DW = W' - W``:

        f' - f = (alpha/M) [ Da . sigma(z') + sum_i a_i (sigma(z_i') - sigma(z_i)) ],

    and with an orthonormal basis ``Q`` (d x k) of the subspace where ``W`` moves, ``x = Q c +
    x_perp`` (``c`` and ``r = |x_perp|`` kept per example), ``delta = DW Q``:

    - ``|sum_i a_i (sigma(z_i') - sigma(z_i))| <= Lip/sqrt(d) [sum_j |c_j| sum_i |a_i|
      |delta_ij| + min(r sum_i |a_i| |DW_i P_perp|, |a|_2 zp)]`` with ``zp >= |DW P_perp
      x|_2`` per example, the smaller of ``|DW P_perp|_op r`` and the bound of
      :meth:`_perp_norms` (top ``perp_dirs`` eigenpairs of ``(DW P_perp)^T DW P_perp``, exact
      projections of ``x`` on them, the next eigenvalue for the rest);
    - with an orthonormal basis ``V`` (M x p) fixed at the second call (span of ``a``, ``W Q``),
      ``phi = V^T sigma(z_then)`` and ``s2 = |sigma(z_then)|_2`` stored at evaluation, and
      ``D >= |z' - z_then|_2`` accumulated from ``|Dz|_2 <= (|delta c|_2 + |DW P_perp|_op r) /
      sqrt(d)`` (with ``zp`` in place of ``|DW P_perp|_op r`` when smaller): ``|Da .
      sigma(z')| <= |(V^T Da) . phi| + |Da_perp|_2 s2 + Lip |Da|_2 D``.

    ``slack = tau_then + tau_now`` bounds the floating-point error of the two computed
    outputs, ``tau = (d + M + 8) u (alpha/M) Lip' |x| sum_i |a_i| |w_i| / sqrt(d)`` (first-order
    error bounds of the dot products, the activation and the sum; ``u`` the unit roundoff of the
    dtype, ``Lip' = max(Lip, 1)``); ``D`` starts at the rounding bound of ``z_then``,
    ``(d + 8) u |W|_F |x| / sqrt(d)``. Every coefficient is padded upwards (relative 1e-9, and
    1e-9 of the whole motion for the rounding of ``c`` and ``r``).
    ``Q`` (at most ``max_dirs`` directions: the given ``directions``, e.g. the teacher, plus the
    top right singular vectors of the motion of ``W`` since the last refresh) is refreshed every
    ``refresh`` calls. The first two calls evaluate everything.

    Bitwise equality with the dense path (``skip=False``) rests on the BLAS product giving every
    row of ``Z`` the same bits whatever the other rows of its block: blocks always have
    ``block`` rows and an example always sits at a row congruent to its index modulo the period
    measured by :func:`row_period`; if no period is found, skipping is turned off.
    """

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        params: StepParams,
        threads: int = 0,
        skip: bool = True,
        directions: np.ndarray | None = None,
        block: int = DEFAULT_BLOCK,
        max_dirs: int = 4,
        refresh: int = 25,
        perp_dirs: int = 8,
    ) -> None:
        self.X = np.ascontiguousarray(X, dtype=params.dtype)
        self.y = np.ascontiguousarray(y, dtype=params.dtype)
        self.params = params
        self.threads = set_threads(threads)
        self.skip = bool(skip and params.loss == "hinge" and params.lipschitz is not None)
        N, d = self.X.shape
        self.N, self.d = N, d
        self.block = max(1, min(block, N))
        self.max_dirs = max_dirs
        self.refresh = refresh
        self.perp_dirs = perp_dirs
        self.directions = (np.zeros((0, d)) if directions is None
                           else np.atleast_2d(np.asarray(directions, dtype=np.float64)))
        self.satisfied = np.zeros(N, dtype=bool)
        self.n_evaluated = 0
        self._engine: _Engine | None = None
        self.period = 0
        self.xnorm = np.sqrt(np.einsum("ij,ij->i", self.X, self.X, dtype=np.float64))
        self._reset_state()

    # -- bookkeeping ---------------------------------------------------------------------------

    def _reset_state(self) -> None:
        N = self.N
        self.calls = 0
        self.margin = np.full(N, -1.0)
        self.bound = np.zeros(N)
        self.dist = np.zeros(N)
        self.tau = np.zeros(N)
        self.s2 = np.zeros(N)
        self.V = np.zeros((0, 0))
        self.VT = np.zeros((0, 0))
        self.phi = np.zeros((N, 0))
        self.Q = np.zeros((self.d, 0))
        self.C = np.zeros((N, 0))
        self.absC = np.zeros((N, 0))
        self.R = self.xnorm.copy()
        self.a_prev: np.ndarray | None = None
        self.W_prev: np.ndarray | None = None
        self.W_anchor: np.ndarray | None = None

    _STATE = ("margin", "bound", "dist", "tau", "s2", "phi", "V", "Q", "a_prev", "W_prev",
              "W_anchor", "satisfied")

    def get_state(self) -> dict[str, Any]:
        """Per-example bookkeeping, for checkpoints (arrays and integers only; copies)."""
        if self.a_prev is None:
            return {"calls": 0}
        out: dict[str, Any] = {key: getattr(self, key).copy() for key in self._STATE}
        out.update(calls=self.calls, p=self.V.shape[1], k=self.Q.shape[1])
        return out

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`get_state`. The velocities never depend on this state (they are
        bitwise those of the dense path); it only saves work."""
        self._reset_state()
        if int(state.get("calls", 0)) == 0:
            return
        M = np.asarray(state["a_prev"]).shape[0]
        p, k = int(state["p"]), int(state["k"])
        for key in ("margin", "bound", "dist", "tau", "s2"):
            setattr(self, key, np.array(state[key], dtype=np.float64))
        self.phi = np.array(state["phi"], dtype=np.float64).reshape(self.N, p)
        self.V = np.array(state["V"], dtype=np.float64).reshape(M, p)
        self.VT = np.ascontiguousarray(self.V.T)
        self._set_Q(np.array(state["Q"], dtype=np.float64).reshape(self.d, k))
        for key in ("a_prev", "W_prev", "W_anchor"):
            setattr(self, key, np.array(state[key], dtype=self.params.dtype))
        self.satisfied[:] = np.asarray(state["satisfied"], dtype=bool)
        self.calls = int(state["calls"])

    def _set_Q(self, Q: np.ndarray) -> None:
        """Adopt the orthonormal basis ``Q``; recompute ``c = Q^T x`` and ``r = |x - Q c|``."""
        self.Q = Q
        k = Q.shape[1]
        self.C = np.empty((self.N, k))
        self.absC = np.empty((self.N, k))
        self.R = np.empty(self.N)
        for s in range(0, self.N, 8192):
            Xb = self.X[s:s + 8192].astype(np.float64)
            Cb = Xb @ Q
            self.C[s:s + 8192] = Cb
            self.absC[s:s + 8192] = np.abs(Cb)
            res = Xb - Cb @ Q.T
            self.R[s:s + 8192] = np.sqrt(np.einsum("ij,ij->i", res, res)) * (1 + 1e-12)

    def _new_Q(self, W: np.ndarray) -> np.ndarray:
        """Given directions plus the top right singular vectors of ``W - W_anchor``."""
        motion = (W.astype(np.float64) - self.W_anchor.astype(np.float64))
        cols = [q for q in self.directions]
        if np.any(motion):
            _, sv, vt = np.linalg.svd(motion, full_matrices=False)
            n_new = self.max_dirs - len(cols)
            cols += [vt[j] for j in range(min(n_new, len(sv))) if sv[j] > 1e-3 * sv[0]]
        if not cols:
            return np.zeros((self.d, 0))
        q, rr = np.linalg.qr(np.array(cols).T)
        keep = np.abs(np.diag(rr)) > 1e-8
        return q[:, keep]

    def _rounding(self, a: np.ndarray, W: np.ndarray) -> tuple[float, float]:
        """Per unit ``|x|``: ``(d0, tau0)``, bounds on ``|z_exact - z_computed|_2`` (in units
        of ``Lip``) and on ``|f_exact - f_computed|`` at the weights ``(a, W)``."""
        p = self.params
        M, d = W.shape
        unit = float(np.finfo(p.dtype).eps) / 2
        norms = np.linalg.norm(W.astype(np.float64), axis=1)
        lip = max(p.lipschitz, 1.0)
        d0 = (d + 8) * unit * float(np.linalg.norm(norms)) / math.sqrt(d) * (1 + 1e-6)
        wsum = float(np.abs(a.astype(np.float64)) @ norms)
        tau0 = (d + M + 8) * unit * p.alpha / M * lip * wsum / math.sqrt(d) * (1 + 1e-6)
        return d0, tau0

    def _certify(self, a: np.ndarray, W: np.ndarray) -> np.ndarray:
        """Advance the bounds by the motion since the previous call; the certified mask."""
        p = self.params
        M, d = W.shape
        lip = p.lipschitz
        a0 = self.a_prev.astype(np.float64)
        da = a.astype(np.float64) - a0
        dW = W.astype(np.float64) - self.W_prev.astype(np.float64)
        Q = self.Q
        delta = dW @ Q                                     # (M, k)
        dW_perp = dW - delta @ Q.T
        # pads of 1e-9 of the whole motion cover the rounding of c = Q^T x and r = |x_perp|
        pad = 1e-9 * float(np.linalg.norm(dW))
        op_perp = (np.linalg.norm(dW_perp, 2) if dW_perp.size else 0.0) + pad
        u = self.V.T @ da
        da_perp = float(np.linalg.norm(da - self.V @ u))
        abs_a = np.abs(a0)
        e_perp = min(float(abs_a @ np.linalg.norm(dW_perp, axis=1)),
                     float(np.linalg.norm(a0)) * op_perp) + pad * float(abs_a.sum())
        tau_now = self._round_now[1]
        coef = np.array([
            op_perp / math.sqrt(d) * (1 + 1e-9),
            da_perp * (1 + 1e-9),
            lip * float(np.linalg.norm(da)) * (1 + 1e-9),
            lip / math.sqrt(d),
            e_perp * (1 + 1e-9),
            p.alpha / M,
            tau_now,
            (1 + 1e-9) / math.sqrt(d),
            float(np.linalg.norm(u)),
            float(np.linalg.norm(a0)) * (1 + 1e-9),
        ])
        # |delta c|_2 = |Y_r| with Y = C U sqrt(lam), delta^T delta = U lam U^T (BLAS); the
        # eigenvalues' rounding is covered by sqrt(|lam_min| + 1e-12 lam_max) |x| >= ... |c|
        if Q.shape[1]:
            lam, U = np.linalg.eigh(delta.T @ delta)
            Y = self.C @ (U * np.sqrt(np.maximum(lam, 0.0)))
            extra = math.sqrt(abs(min(lam.min(), 0.0)) + 1e-12 * max(lam.max(), 0.0))
            dc = np.sqrt(np.einsum("ij,ij->i", Y, Y)) * (1 + 1e-9) + extra * self.xnorm
            wc = self.absC @ ((abs_a @ np.abs(delta)) * (1 + 1e-9)) * (1 + 1e-9)
        else:
            dc = wc = np.zeros(self.N)
        # the tighter out-of-subspace bound costs a pass over x: only for the examples whose
        # remaining slack the old bound would use up within PERP_HORIZON steps (the others keep
        # the old bound: zp = inf; which rows get it changes only work, never a velocity)
        slack = self.margin - self.bound - self.tau - tau_now * self.xnorm
        inc = (p.alpha / M * lip / math.sqrt(d) * e_perp) * self.R
        risk = np.flatnonzero((self.margin > 0) & (slack <= self.PERP_HORIZON * inc))
        zp = np.full(self.N, np.inf)
        if risk.shape[0]:
            zp[risk] = self._perp_norms(dW_perp, pad, risk)
        return _advance(dc, wc, self.R, zp, self.xnorm, self.margin, self.s2, self.phi,
                        self.bound, self.dist, self.tau, u, coef)

    PERP_HORIZON = 25.0

    def _perp_norms(self, dW_perp: np.ndarray, pad: float,
                    rows: np.ndarray | None = None) -> np.ndarray:
        """Per example an upper bound ``zp >= |DW_perp x|_2`` from the top ``perp_dirs``
        eigenpairs ``(lam_j, u_j)`` of ``DW_perp^T DW_perp``: ``|DW_perp x|_2^2 <= sum_{j<=r}
        lam_j (u_j . x)^2 + lam_{r+1} (|x|^2 - sum_{j<=r} (u_j . x)^2)`` (exact for an exactly
        orthonormal ``u``). The out-of-subspace motion is often of low effective rank (the
        gradient of few unsatisfied examples): then this is far below ``|DW_perp|_op |x|``.
        Rounding (Gram matrix, eigenpairs, projections) is covered by ``1e-12 lam_max`` added to
        every eigenvalue, ``1e-10 lam_max |x|^2`` added to the square, and ``pad |x|``.
        ``inf`` (unused) when ``perp_dirs`` is 0. For the examples ``rows`` (default: all)."""
        X = self.X if rows is None else self.X[rows]
        xnorm = self.xnorm if rows is None else self.xnorm[rows]
        n = X.shape[0]
        r = min(self.perp_dirs, self.d - 1)
        if r <= 0:
            return np.full(n, np.inf)
        lam, U = np.linalg.eigh(dW_perp.T @ dW_perp)     # ascending
        lmax = max(float(lam[-1]), 0.0)
        if lmax == 0.0:
            return pad * xnorm * (1 + 1e-9)
        top = np.maximum(lam[-r:], 0.0) + 1e-12 * lmax
        rest = max(float(lam[-r - 1]), 0.0) + 1e-12 * lmax
        Ur = np.ascontiguousarray(U[:, -r:])
        x2 = xnorm * xnorm
        q = np.empty(n)
        for s in range(0, n, 8192):
            b2 = X[s:s + 8192].astype(np.float64, copy=False) @ Ur
            b2 *= b2
            xb = x2[s:s + 8192]
            q[s:s + 8192] = (b2 @ top + rest * np.maximum(xb - b2.sum(axis=1), 0.0)
                             + 1e-10 * lmax * xb)
        return np.sqrt(q) * (1 + 1e-9) + pad * xnorm * (1 + 1e-9)

    def _record(self, rows, slot, Z, S, yb, f) -> None:
        p = self.params
        d0, tau0 = self._round_now
        _record(Z, S, slot, yb, f, rows, self.VT, _KIND[p.kind], p.slope, p.h, self.xnorm, d0, tau0,
                self.margin, self.s2, self.phi, self.bound, self.dist, self.tau)

    # -- the step ------------------------------------------------------------------------------

    def velocity(
        self, a: np.ndarray, W: np.ndarray, v_a_out: np.ndarray, v_W_out: np.ndarray
    ) -> tuple[float, int]:
        """Velocities of the training set at ``(a, W)``; returns ``(L, n_unsat)``."""
        eng = self._get_engine(a.shape[0])
        if not self.skip:
            out = eng.run(self.X, self.y, a, W, None, v_a_out, v_W_out, record=self._mark)
            self.n_evaluated = self.N
            return out
        certified = None
        self._round_now = self._rounding(a, W)
        if self.calls == 1:
            self.W_anchor = self.W_prev  # Q from the first step's motion
            self._set_Q(self._new_Q(W))
            self.W_anchor = W.copy()
            cols = [a.astype(np.float64)] + [W.astype(np.float64) @ q for q in self.Q.T]
            q, rr = np.linalg.qr(np.array(cols).T)
            self.V = q[:, np.abs(np.diag(rr)) > 1e-8 * np.abs(rr[0, 0])]
            self.VT = np.ascontiguousarray(self.V.T)
            self.phi = np.zeros((self.N, self.V.shape[1]))
        elif self.calls >= 2:
            certified = self._certify(a, W)
            if self.refresh and self.calls % self.refresh == 0:
                self._set_Q(self._new_Q(W))
                self.W_anchor = W.copy()
        if certified is None or self.calls < 2:
            rows = None
            self.satisfied[:] = False
            self.n_evaluated = self.N
        else:
            rows = np.flatnonzero(~certified)
            self.satisfied[:] = certified
            self.n_evaluated = rows.shape[0]
        if self.calls == 0:
            self.V = np.zeros((a.shape[0], 0))
            self.VT = np.zeros((0, a.shape[0]))
        out = eng.run(self.X, self.y, a, W, rows, v_a_out, v_W_out,
                      record=self._record_and_mark)
        self.a_prev = a.copy()
        self.W_prev = W.copy()
        self.calls += 1
        return out

    def _get_engine(self, M: int) -> _Engine:
        """The engine (created at the first call: the BLAS row period is measured then)."""
        if self._engine is None:
            period = row_period(self.params.dtype, M, self.d, self.block)
            if period == 0:
                self.skip = False
            self._engine = _Engine(M, self.d, self.params, self.block, period)
            self.period = period
        return self._engine

    def _mark(self, rows, slot, Z, S, yb, f) -> None:
        self.satisfied[rows] = yb * f >= self.params.h

    def _record_and_mark(self, rows, slot, Z, S, yb, f) -> None:
        self._mark(rows, slot, Z, S, yb, f)
        self._record(rows, slot, Z, S, yb, f)

    def outputs(self, a: np.ndarray, W: np.ndarray, X: np.ndarray | None = None) -> np.ndarray:
        """Dense forward ``f(x)`` (float64) of the training set (or of the rows of ``X``)."""
        if X is None:
            return self._get_engine(a.shape[0]).outputs(self.X, a, W)
        X = np.ascontiguousarray(X, dtype=self.params.dtype)
        eng = _Engine(a.shape[0], self.d, self.params, max(1, min(self.block, X.shape[0])))
        return eng.outputs(X, a, W)
