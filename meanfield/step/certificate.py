"""Exact forward skipping: a rigorous certificate that an example is still satisfied.

Skipping (hinge loss, activations with a known Lipschitz constant ``Lip``): every example keeps
the margin ``m = y f - h`` of its last evaluation and an upper bound ``B`` on ``|f_now -
f_then|``, accumulated over the calls since then; it is skipped while ``B + slack < m``: it is
then certainly satisfied, its gradient is exactly zero. Between consecutive calls with weights
``(a, W) -> (a', W')``, with ``Da = a' - a``, ``DW = W' - W``:

    f' - f = (alpha/M) [ Da . sigma(z') + sum_i a_i (sigma(z_i') - sigma(z_i)) ],

and with an orthonormal basis ``Q`` (d x k) of the subspace where ``W`` moves, ``x = Q c +
x_perp`` (``c`` and ``r = |x_perp|`` kept per example), ``delta = DW Q``:

- ``|sum_i a_i (sigma(z_i') - sigma(z_i))| <= Lip/sqrt(d) [sum_j |c_j| sum_i |a_i|
  |delta_ij| + min(r sum_i |a_i| |DW_i P_perp|, |a|_2 zp)]`` with ``zp >= |DW P_perp
  x|_2`` per example, the smaller of ``|DW P_perp|_op r`` and the bound of
  :func:`perp_norms` (top ``perp_dirs`` eigenpairs of ``(DW P_perp)^T DW P_perp``, exact
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

Which examples are certified changes only the work, never a velocity: those are bitwise the
dense ones (see :mod:`meanfield.step.engine`).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from numba import njit, prange

from meanfield.step.params import StepParams
from meanfield.step.rows import row_sq, row_sum

PERP_HORIZON = 8.0
"""The tighter out-of-subspace bound (:func:`perp_norms`) costs a pass over ``x``: it is
computed only for the examples whose remaining slack the plain bound would use up within this
many steps (the others keep the plain bound)."""


COST_WEIGHTS = {"float64": (10.0, 180.0, 5.0, 6.0), "float32": (14.0, 185.0, 10.0, 10.0)}
"""Per dtype, the weights ``(fixed, row, risk, record)`` of the certificate's operation counts
against the forward GEMM's multiply-adds (one forward evaluation of an example costs ``M d``
of those, weight 1), measured once with ``benchmarks/certificate_cost.py`` with
:data:`COST_THREADS` threads. The per-example bounds are a dozen float64 passes over ``N``,
memory-bound, hence the large ``row`` weight; ``record`` includes the row gathers and copies
of the skip path. They make the cost of a call a count, not a clock reading: the skip
decisions of a run are reproducible."""

COST_THREADS = 2
"""The thread count of the calibration. The forward GEMM runs on every thread and the
certificate's passes mostly on one, so with ``T`` threads a count weighs ``T / COST_THREADS``
times as much against the forward (measured at 1 and 2 threads: the weights halve at 1)."""


def advance_counts(N: int, n_risk: int, M: int, d: int, k: int, p: int, r: int
                   ) -> tuple[int, int, int]:
    """The operations of :meth:`Certificate.advance`, unweighted: the motion's products and
    eigenvalues (``M d (k + 2) + M d^2 + d^3``), the per-example bounds (``N (k^2 + 2k + p +
    8)``) and the out-of-subspace norms of the examples at risk (``n_risk d (r + 2)``)."""
    return (M * d * (k + 2) + M * d * d + d ** 3, N * (k * k + 2 * k + p + 8),
            n_risk * d * (r + 2))


def advance_cost(N: int, n_risk: int, M: int, d: int, k: int, p: int, r: int,
                 dtype: str) -> float:
    """The work of :meth:`Certificate.advance`, in forward evaluations of one example: the
    :func:`advance_counts`, each with its weight in :data:`COST_WEIGHTS`."""
    fixed, row, risk, _ = COST_WEIGHTS[dtype]
    n_fixed, n_row, n_risk_ops = advance_counts(N, n_risk, M, d, k, p, r)
    return (fixed * n_fixed + row * n_row + risk * n_risk_ops) / (M * d)


def record_cost(rows: int, d: int, p: int, dtype: str) -> float:
    """The work of :meth:`Certificate.record` for ``rows`` evaluated rows (``V^T sigma(z)`` and
    ``|sigma(z)|_2``: ``rows M (p + 1)``), in forward evaluations of one example (``M d``)."""
    return COST_WEIGHTS[dtype][3] * rows * (p + 1) / d


class Rounding(NamedTuple):
    """Per unit ``|x|``, bounds on the rounding of a forward pass at given weights."""

    dist: float
    """On ``|z_exact - z_computed|_2`` (in units of ``Lip``)."""
    output: float
    """On ``|f_exact - f_computed|``."""


class Ledger(NamedTuple):
    """Per example (float64): ``margin = y f - h`` at the last evaluation, the accumulated
    ``bound`` on ``|f_now - f_then|``, ``dist >= |z_now - z_then|_2``, the rounding allowance
    ``tau`` of ``f_then``, ``s2 = |sigma(z_then)|_2`` and ``phi = V^T sigma(z_then)``."""

    margin: np.ndarray
    bound: np.ndarray
    dist: np.ndarray
    tau: np.ndarray
    s2: np.ndarray
    phi: np.ndarray


class Evaluated(NamedTuple):
    """One forward block: global indices ``rows``, their ``slot`` in ``Z`` (and ``S``: sigma(Z)
    of the generic kind), labels ``yb`` and outputs ``f``."""

    rows: np.ndarray
    slot: np.ndarray
    Z: np.ndarray
    S: np.ndarray
    yb: np.ndarray
    f: np.ndarray


class Motion(NamedTuple):
    """Per example, this step's ``dc >= |delta c|_2``, ``wc >= sum_j |c_j| sum_i |a_i|
    |delta_ij|`` and ``zp >= |DW_perp x|_2`` (``inf`` if not computed)."""

    dc: np.ndarray
    wc: np.ndarray
    zp: np.ndarray


class Coefficients(NamedTuple):
    """This step's scalars of the bound (see :meth:`Certificate.advance`)."""

    op_perp: float
    """``|DW P_perp|_op / sqrt d``."""
    da_perp: float
    """``|Da_perp|_2`` (the part of ``Da`` outside ``V``)."""
    lip_da: float
    """``Lip |Da|_2``."""
    lip_sd: float
    """``Lip / sqrt d``."""
    e_perp: float
    """``E_perp >= sum_i |a_i| |DW_perp,i|``."""
    scale: float
    """``alpha / M``."""
    tau_now: float
    """Rounding allowance of the outputs now, per unit ``|x|``."""
    rsd: float
    """``1 / sqrt d`` (padded)."""
    u_norm: float
    """``|V^T Da|_2``."""
    a_norm: float
    """``|a|_2`` (padded)."""


@njit(cache=True, parallel=True)
def _record(ev, VT, kind, slope, h, xnorm, rnd, led):
    """Skip bookkeeping for the evaluated rows (global indices ``ev.rows``): margin ``y f - h``,
    rounding allowances ``dist = rnd.dist |x|`` and ``tau = rnd.output |x|``; for satisfied
    rows also ``s2 = |sigma(z)|_2`` and ``phi = V^T sigma(z)`` (``VT`` = ``V^T``, contiguous);
    reset the accumulated bound."""
    Z, S, slot, yb, f, rows = ev.Z, ev.S, ev.slot, ev.yb, ev.f, ev.rows
    margin, s2, phi, bound, dist, tau = led.margin, led.s2, led.phi, led.bound, led.dist, led.tau
    d0, tau0 = rnd.dist, rnd.output
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
            phi[r, c] = row_sum(Z, S, z, VT[c], kind, slope)
        s2[r] = math.sqrt(row_sq(Z, S, z, kind, slope)) * (1.0 + 1e-12)


@njit(cache=True, parallel=True)
def _advance(mo, R, xnorm, led, u, coef):
    """Add one step's rigorous bound on ``|f_new - f_old|`` to ``led.bound`` for every example
    with a positive margin; return the mask of certified examples ``bound + slack < margin``
    (``R``: ``|x_perp|``, ``u = V^T Da``)."""
    dc, wc, zp = mo.dc, mo.wc, mo.zp
    margin, s2, phi, bound, dist, tau = led.margin, led.s2, led.phi, led.bound, led.dist, led.tau
    N = dc.shape[0]
    p = u.shape[0]
    out = np.zeros(N, dtype=np.bool_)
    isd, dap, lda, lisd, eperp = coef.op_perp, coef.da_perp, coef.lip_da, coef.lip_sd, \
        coef.e_perp
    scale, tau_now, rsd, unorm, anorm = coef.scale, coef.tau_now, coef.rsd, coef.u_norm, \
        coef.a_norm
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


def rounding(params: StepParams, a: np.ndarray, W: np.ndarray) -> Rounding:
    """Per unit ``|x|``: bounds on ``|z_exact - z_computed|_2`` (in units of ``Lip``) and on
    ``|f_exact - f_computed|`` at the weights ``(a, W)``."""
    M, d = W.shape
    unit = float(np.finfo(params.dtype).eps) / 2
    norms = np.linalg.norm(W.astype(np.float64), axis=1)
    lip = max(params.lipschitz, 1.0)
    d0 = (d + 8) * unit * float(np.linalg.norm(norms)) / math.sqrt(d) * (1 + 1e-6)
    wsum = float(np.abs(a.astype(np.float64)) @ norms)
    tau0 = (d + M + 8) * unit * params.alpha / M * lip * wsum / math.sqrt(d) * (1 + 1e-6)
    return Rounding(d0, tau0)


def motion_basis(directions: np.ndarray, motion: np.ndarray, max_dirs: int) -> np.ndarray:
    """Orthonormal ``Q`` (d x k): the given directions plus the top right singular vectors of
    ``motion`` (the motion of ``W`` since the last refresh), at most ``max_dirs`` in all."""
    cols = [q for q in directions]
    if np.any(motion):
        _, sv, vt = np.linalg.svd(motion, full_matrices=False)
        n_new = max_dirs - len(cols)
        cols += [vt[j] for j in range(min(n_new, len(sv))) if sv[j] > 1e-3 * sv[0]]
    if not cols:
        return np.zeros((motion.shape[1], 0))
    q, rr = np.linalg.qr(np.array(cols).T)
    keep = np.abs(np.diag(rr)) > 1e-8
    return q[:, keep]


def project(X: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``X``: ``c = Q^T x``, ``|c|`` and (padded) ``r = |x - Q c|``."""
    N, k = X.shape[0], Q.shape[1]
    C = np.empty((N, k))
    absC = np.empty((N, k))
    R = np.empty(N)
    for s in range(0, N, 8192):
        Xb = X[s:s + 8192].astype(np.float64)
        Cb = Xb @ Q
        C[s:s + 8192] = Cb
        absC[s:s + 8192] = np.abs(Cb)
        res = Xb - Cb @ Q.T
        R[s:s + 8192] = np.sqrt(np.einsum("ij,ij->i", res, res)) * (1 + 1e-12)
    return C, absC, R


def gram_eigen(A: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Eigenpairs ``(lam, U)`` (ascending) of ``A^T A`` (float64) and ``err``, a bound on the
    distance of every computed eigenvalue from the exact one: the Gram matrix's rounding is
    at most ``gamma_n |A|_F^2`` in norm (``|(|A|^T |A|)|_F <= |A|_F^2``), the symmetric
    eigensolver's a small multiple of ``d u |A^T A|``; ``err = 1e-12 lam_max + (n + 4d + 16) u
    |A|_F^2`` covers both (``u`` the float64 unit roundoff, ``n x d`` the shape of ``A``)."""
    n, d = A.shape
    lam, U = np.linalg.eigh(A.T @ A)
    fro2 = float(np.einsum("ij,ij->", A, A))
    unit = float(np.finfo(np.float64).eps) / 2
    err = 1e-12 * max(float(lam[-1]), 0.0) + (n + 4 * d + 16) * unit * fro2 * (1 + 1e-6)
    return lam, U, err


def perp_norms(X: np.ndarray, xnorm: np.ndarray, dW_perp: np.ndarray, pad: float,
               perp_dirs: int,
               eigen: tuple[np.ndarray, np.ndarray, float] | None = None,
               rows: np.ndarray | None = None) -> np.ndarray:
    """Per row ``x`` of ``X`` (norm ``xnorm``) an upper bound ``zp >= |DW_perp x|_2`` from the
    top ``perp_dirs`` eigenpairs ``(lam_j, u_j)`` of ``DW_perp^T DW_perp``: ``|DW_perp x|_2^2 <=
    sum_{j<=r} lam_j (u_j . x)^2 + lam_{r+1} (|x|^2 - sum_{j<=r} (u_j . x)^2)`` (exact for an
    exactly orthonormal ``u``). The out-of-subspace motion is often of low effective rank (the
    gradient of few unsatisfied examples): then this is far below ``|DW_perp|_op |x|``.
    Rounding (Gram matrix, eigenpairs, projections) is covered by the ``err`` of
    :func:`gram_eigen` added to every eigenvalue, ``1e-10 lam_max |x|^2`` added to the
    square, and ``pad |x|``. ``eigen``: :func:`gram_eigen` of ``dW_perp`` if already computed;
    ``rows``: the rows of ``X`` to bound (``xnorm`` is then theirs), gathered a block at a time
    into one buffer. ``inf`` (unused) when ``perp_dirs`` is 0."""
    d = X.shape[1]
    n = X.shape[0] if rows is None else rows.shape[0]
    r = min(perp_dirs, d - 1)
    if r <= 0:
        return np.full(n, np.inf)
    lam, U, err = gram_eigen(dW_perp) if eigen is None else eigen
    lmax = max(float(lam[-1]), 0.0)
    if lmax == 0.0:
        return pad * xnorm * (1 + 1e-9)
    top = np.maximum(lam[-r:], 0.0) + err
    rest = max(float(lam[-r - 1]), 0.0) + err
    Ur = np.ascontiguousarray(U[:, -r:])
    x2 = xnorm * xnorm
    q = np.empty(n)
    buf = None if rows is None else np.empty((min(n, 8192), d), X.dtype)
    for s in range(0, n, 8192):
        if rows is None:
            Xb = X[s:s + 8192]
        else:
            idx = rows[s:s + 8192]
            Xb = np.take(X, idx, axis=0, out=buf[:idx.shape[0]])
        b2 = Xb.astype(np.float64, copy=False) @ Ur
        b2 *= b2
        xb = x2[s:s + 8192]
        q[s:s + 8192] = (b2 @ top + rest * np.maximum(xb - b2.sum(axis=1), 0.0)
                         + 1e-10 * lmax * xb)
    return np.sqrt(q) * (1 + 1e-9) + pad * xnorm * (1 + 1e-9)


def subspace_coefficients(delta: np.ndarray, abs_a: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray, float]:
    """From the motion in the subspace ``delta = DW Q`` (M x k): ``B`` (k x k) with ``|delta
    c|_2 = |B^T c|_2``, ``B = U sqrt(lam)`` for ``delta^T delta = U lam U^T``; ``v = (|a|^T
    |delta|)`` padded, with ``sum_j |c_j| sum_i |a_i| |delta_ij| = |c| . v``; and ``extra``:
    the eigenvalues' rounding, covered by ``extra |x| >= ...``, ``extra = sqrt(|lam_min| +
    1e-12 lam_max)`` (see :func:`_motion`)."""
    k = delta.shape[1]
    if not k:
        return np.zeros((0, 0)), np.zeros(0), 0.0
    lam, U = np.linalg.eigh(delta.T @ delta)
    B = np.ascontiguousarray(U * np.sqrt(np.maximum(lam, 0.0)))
    extra = math.sqrt(abs(min(lam.min(), 0.0)) + 1e-12 * max(lam.max(), 0.0))
    v = (abs_a @ np.abs(delta)) * (1 + 1e-9)
    return B, v, extra


@njit(cache=True, parallel=True)
def _motion(C, absC, B, v, extra, xnorm, R, led, tau_now, inc_coef, horizon, mo, risky):
    """Per example with a positive margin (one pass): ``dc >= |delta c|_2`` (``|B^T c|``,
    padded, plus ``extra |x|``), ``wc >= sum_j |c_j| sum_i |a_i| |delta_ij|`` (``|c| . v``,
    padded), ``zp = inf`` (the plain bound), and ``risky``: whether the plain out-of-subspace
    bound (``inc_coef |x_perp|`` per step, ``R = |x_perp|``) would use up the remaining slack
    within ``horizon`` steps."""
    dc, wc, zp = mo.dc, mo.wc, mo.zp
    margin, bound, tau = led.margin, led.bound, led.tau
    N, k = C.shape
    for r in prange(N):
        zp[r] = np.inf
        if margin[r] <= 0:
            dc[r] = 0.0
            wc[r] = 0.0
            risky[r] = False
            continue
        y2 = 0.0
        for j in range(k):
            yj = 0.0
            for i in range(k):
                yj += C[r, i] * B[i, j]
            y2 += yj * yj
        dc[r] = math.sqrt(y2) * (1 + 1e-9) + extra * xnorm[r]
        w = 0.0
        for i in range(k):
            w += absC[r, i] * v[i]
        wc[r] = w * (1 + 1e-9)
        slack = margin[r] - bound[r] - tau[r] - tau_now * xnorm[r]
        risky[r] = slack <= horizon * inc_coef * R[r]


class Certificate:
    """The skipping bookkeeping of a fixed training set ``X`` (see the module docstring).

    Per call: :meth:`begin` at the new weights (the certified mask, ``None`` for the first two
    calls) or :meth:`rearm` (evaluate all, after calls without the certificate), :meth:`record`
    for every evaluated block, :meth:`end`. :attr:`cost` is then the call's work, counted."""

    _STATE = ("margin", "bound", "dist", "tau", "s2", "phi", "V", "Q", "a_prev", "W_prev",
              "W_anchor")

    def __init__(self, X: np.ndarray, params: StepParams, directions: np.ndarray | None = None,
                 max_dirs: int = 4, refresh: int = 25, perp_dirs: int = 8) -> None:
        self.X = X
        self.params = params
        self.N, self.d = X.shape
        self.max_dirs = max_dirs
        self.refresh = refresh
        self.perp_dirs = perp_dirs
        self.directions = (np.zeros((0, self.d)) if directions is None
                           else np.atleast_2d(np.asarray(directions, dtype=np.float64)))
        self.xnorm = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
        self.round_now = Rounding(0.0, 0.0)
        self.cost = 0.0
        """The work of the current call so far (:func:`advance_cost`, :func:`record_cost`),
        in forward evaluations of one example."""
        self.reset()

    def reset(self) -> None:
        """Forget everything (the next call evaluates every example)."""
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
        self._dc, self._wc, self._zp = np.empty(N), np.empty(N), np.empty(N)
        self._risky = np.empty(N, dtype=np.bool_)
        self.a_prev: np.ndarray | None = None
        self.W_prev: np.ndarray | None = None
        self.W_anchor: np.ndarray | None = None

    def get_state(self) -> dict[str, Any]:
        """Per-example bookkeeping, for checkpoints (arrays, integers and ``None``; copies)."""
        if self.a_prev is None:
            return {"calls": 0}
        out: dict[str, Any] = {key: None if getattr(self, key) is None
                               else getattr(self, key).copy() for key in self._STATE}
        out.update(calls=self.calls, p=self.V.shape[1], k=self.Q.shape[1])
        return out

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`get_state` (extra keys are ignored)."""
        self.reset()
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
            value = state[key]
            setattr(self, key, None if value is None else np.array(value, dtype=self.params.dtype))
        self.calls = int(state["calls"])

    def begin(self, a: np.ndarray, W: np.ndarray) -> np.ndarray | None:
        """A call at the weights ``(a, W)``: the mask of the examples certified satisfied
        (their forward pass may be skipped); ``None`` at the first two calls (evaluate all)."""
        self.round_now = rounding(self.params, a, W)
        self.cost = 0.0
        if self.calls == 0:
            self.V = np.zeros((a.shape[0], 0))
            self.VT = np.zeros((0, a.shape[0]))
            return None
        if self.calls == 1:
            self._first_subspaces(a, W)
            return None
        certified = self.advance(a, W)
        if self.refresh and self.calls % self.refresh == 0:
            self._set_Q(motion_basis(self.directions, self._motion(W), self.max_dirs))
            self.W_anchor = W.copy()
        return certified

    def rearm(self, a: np.ndarray, W: np.ndarray) -> None:
        """A call at ``(a, W)`` that evaluates and records every example, after calls that
        left the bookkeeping stale (no :meth:`begin`): every margin is fresh after it, so the
        next call may :meth:`begin` again. Only after the first two calls."""
        if self.calls < 2:
            raise RuntimeError("rearm before the subspaces exist")
        self.round_now = rounding(self.params, a, W)
        self.cost = 0.0

    def record(self, rows, slot, Z, S, yb, f) -> None:
        """Bookkeeping of the evaluated rows ``rows`` of a forward block (the engine's
        ``record`` callback)."""
        p = self.params
        self.cost += record_cost(rows.shape[0], self.d, self.VT.shape[0], p.dtype.name)
        led = Ledger(self.margin, self.bound, self.dist, self.tau, self.s2, self.phi)
        _record(Evaluated(rows, slot, Z, S, yb, f), self.VT, p.code, p.slope, p.h, self.xnorm,
                self.round_now, led)

    def end(self, a: np.ndarray, W: np.ndarray) -> None:
        """The call at ``(a, W)`` is complete."""
        self.a_prev = a.copy()
        self.W_prev = W.copy()
        self.calls += 1

    def _motion(self, W: np.ndarray) -> np.ndarray:
        return W.astype(np.float64) - self.W_anchor.astype(np.float64)

    def _set_Q(self, Q: np.ndarray) -> None:
        """Adopt the orthonormal basis ``Q``; recompute ``c = Q^T x`` and ``r = |x - Q c|``."""
        self.Q = Q
        self.C, self.absC, self.R = project(self.X, Q)

    def _first_subspaces(self, a: np.ndarray, W: np.ndarray) -> None:
        """Second call: ``Q`` from the first step's motion, ``V`` = span of ``a`` and ``W Q``."""
        self.W_anchor = self.W_prev
        self._set_Q(motion_basis(self.directions, self._motion(W), self.max_dirs))
        self.W_anchor = W.copy()
        cols = [a.astype(np.float64)] + [W.astype(np.float64) @ q for q in self.Q.T]
        q, rr = np.linalg.qr(np.array(cols).T)
        self.V = q[:, np.abs(np.diag(rr)) > 1e-8 * np.abs(rr[0, 0])]
        self.VT = np.ascontiguousarray(self.V.T)
        self.phi = np.zeros((self.N, self.V.shape[1]))

    def advance(self, a: np.ndarray, W: np.ndarray) -> np.ndarray:
        """Advance the bounds by the motion since the previous call; the certified mask."""
        p = self.params
        M, d = W.shape
        lip = p.lipschitz
        a0 = self.a_prev.astype(np.float64)
        da = a.astype(np.float64) - a0
        dW = W.astype(np.float64) - self.W_prev.astype(np.float64)
        delta = dW @ self.Q                                # (M, k)
        dW_perp = dW - delta @ self.Q.T
        # pads of 1e-9 of the whole motion cover the rounding of c = Q^T x and r = |x_perp|
        pad = 1e-9 * float(np.linalg.norm(dW))
        # |DW P_perp|_op from the eigenvalues of its Gram matrix (shared with perp_norms)
        eigen = gram_eigen(dW_perp)
        op_perp = math.sqrt(max(float(eigen[0][-1]), 0.0) + eigen[2]) * (1 + 1e-9) + pad
        u = self.V.T @ da
        da_perp = float(np.linalg.norm(da - self.V @ u))
        abs_a = np.abs(a0)
        e_perp = min(float(abs_a @ np.linalg.norm(dW_perp, axis=1)),
                     float(np.linalg.norm(a0)) * op_perp) + pad * float(abs_a.sum())
        tau_now = self.round_now.output
        coef = Coefficients(
            op_perp=float(op_perp / math.sqrt(d) * (1 + 1e-9)),
            da_perp=da_perp * (1 + 1e-9),
            lip_da=lip * float(np.linalg.norm(da)) * (1 + 1e-9),
            lip_sd=lip / math.sqrt(d),
            e_perp=float(e_perp * (1 + 1e-9)),
            scale=p.alpha / M,
            tau_now=tau_now,
            rsd=(1 + 1e-9) / math.sqrt(d),
            u_norm=float(np.linalg.norm(u)),
            a_norm=float(np.linalg.norm(a0)) * (1 + 1e-9),
        )
        # the tighter out-of-subspace bound only where the plain one would use up the slack
        # within PERP_HORIZON steps (which rows get it changes only work, never a velocity)
        B, v, extra = subspace_coefficients(delta, abs_a)
        led = Ledger(self.margin, self.bound, self.dist, self.tau, self.s2, self.phi)
        mo = Motion(self._dc, self._wc, self._zp)
        _motion(self.C, self.absC, B, v, extra, self.xnorm, self.R, led, tau_now,
                p.alpha / M * lip / math.sqrt(d) * e_perp, PERP_HORIZON, mo, self._risky)
        risk = np.flatnonzero(self._risky)
        if risk.shape[0]:
            mo.zp[risk] = perp_norms(self.X, self.xnorm[risk], dW_perp, pad, self.perp_dirs,
                                     eigen, rows=risk)
        self.cost = advance_cost(self.N, risk.shape[0], M, d, self.Q.shape[1], self.V.shape[1],
                                 min(self.perp_dirs, d - 1), p.dtype.name)
        return _advance(mo, self.R, self.xnorm, led, u, coef)
