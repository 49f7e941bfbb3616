"""Full-batch gradient descent on the squared loss: the network step, and the exact discrete-time
solution of every model that is linear in its parameters.

Loss ``L = (1/2n) sum_mu (f(x_mu) - y_mu)^2``; a model linear in its parameters with (constant)
tangent kernel ``K`` (``n x n`` on the training set, no ``1/n``) trained by GD with learning rate
``lr`` moves as ``f <- f - (lr/n) K (f - y)``, hence after ``t`` steps (``K = U diag(lam) U^T``)

    f_t(X) = f_0(X) + (I - (I - lr K/n)^t) (y - f_0(X)),
    f_t(x) = f_0(x) + K(x, X) K^+ (I - (I - lr K/n)^t) (y - f_0(X)),

with ``K^+ (I - (I - lr K/n)^t) = U diag(g_t(lam)/lam) U^T``, ``g_t(lam) = 1 - (1 - lr lam/n)^t``
and the limit ``g_t(lam)/lam -> lr t / n`` on the null space (there the training outputs do not
move). This is exact for Lee et al.'s linearisation ``f_0 + J_0 (theta - theta_0)``
(``K = Theta_0``), for the infinite-width NTK and for Hu et al.'s linear model ``f_0 +
beta . psi(x)`` (``K = Psi Psi^T``). GD on the linear model diverges when ``lr lam_max / n >= 2``:
the largest stable rate is ``lr_max = 2 n / lam_max`` (as ``neural_tangents.predict
.max_learning_rate`` defines it).

Lee et al.'s output distribution over initialisations (``f_0 ~ GP(0, Kf)``, ``Kf`` the NNGP
kernel, trained with the infinite-width NTK): ``f_t(x) = f_0(x) + A_t(x) (y - f_0(X))`` with
``A_t(x) = Theta(x, X) Theta^+ (I - (I - lr Theta/n)^t)``, so

    mean = A_t y,    var = Kf(x, x) - 2 A_t Kf(X, x) + A_t Kf(X, X) A_t^T.

Steps are integers; every quantity is dimensionless.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

NumFn = Callable[[np.ndarray], np.ndarray]


def record_steps(steps: int, n_times: int, times: tuple[int, ...] = ()) -> np.ndarray:
    """The record steps: ``0``, ``steps`` and either ``times`` or ``n_times`` log-spaced
    integers in ``[1, steps]`` (rounded; repeats merged), sorted, as int64."""
    chosen = set(times) if times else set(
        np.round(np.geomspace(1, steps, n_times)).astype(np.int64).tolist())
    return np.array(sorted(chosen | {0, steps}), dtype=np.int64)


def max_learning_rate(K: np.ndarray, n: int) -> float:
    """``2 n / lam_max(K)``: GD on a model with kernel ``K`` diverges at or above it."""
    lam_max = float(np.linalg.eigvalsh(K)[-1])
    return math.inf if lam_max <= 0 else 2.0 * n / lam_max


def growth(lam: np.ndarray, lr: float, n: int, steps: np.ndarray) -> np.ndarray:
    """``g_t(lam) = 1 - (1 - lr lam / n)^t``, shape ``steps.shape + lam.shape``; accurate for
    small ``lr lam / n`` (``-expm1(t log1p(-a))``), ``0`` on zero eigenvalues, ``1`` for
    ``t >= 1`` at ``a = 1``, and growing without bound (``inf`` past overflow) for ``a > 2``."""
    a = lr * np.asarray(lam, dtype=float) / n
    t = np.asarray(steps, dtype=float)[..., None]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        below = -np.expm1(t * np.log1p(-np.minimum(a, 0.5)))
        above = 1.0 - np.power(1.0 - a, t)
        return np.where(a < 0.5, below, above)


@dataclass(frozen=True)
class KernelGD:
    """A model linear in its parameters with training kernel ``K``, trained by GD from
    ``f_0`` (module docstring): the eigendecomposition ``K = U diag(lam) U^T`` is computed once
    and every record step is one matrix product.

    Example:
        >>> K = np.array([[2.0, 0.5], [0.5, 1.0]])
        >>> gd = KernelGD.fit(K, y=np.array([1.0, -1.0]), f0=np.zeros(2), lr=0.5)
        >>> f = np.zeros(2)
        >>> for _ in range(3):
        ...     f = f - 0.5 / 2 * K @ (f - np.array([1.0, -1.0]))
        >>> bool(np.allclose(gd.train(np.array([3]))[0], f, rtol=0, atol=1e-14))
        True
    """

    lam: np.ndarray
    U: np.ndarray
    r0: np.ndarray     # U^T (y - f_0(X))
    f0: np.ndarray
    lr: float
    n: int

    @classmethod
    def fit(cls, K: np.ndarray, y: np.ndarray, f0: np.ndarray, lr: float) -> KernelGD:
        """Eigenvalues below ``n eps lam_max`` (rounding of a singular kernel) count as 0."""
        lam, U = np.linalg.eigh(K)
        n = len(y)
        floor = n * np.finfo(float).eps * max(float(lam[-1]), 0.0)
        lam = np.where(lam > floor, lam, 0.0)
        return cls(lam, U, U.T @ (y - f0), np.asarray(f0, dtype=float), float(lr), n)

    def restarted(self, y: np.ndarray, f0: np.ndarray) -> KernelGD:
        """The same kernel and rate from other initial outputs ``f_0`` (no new
        eigendecomposition)."""
        return KernelGD(self.lam, self.U, self.U.T @ (y - f0), np.asarray(f0, dtype=float),
                        self.lr, self.n)

    def per_eigen(self, steps: np.ndarray) -> np.ndarray:
        """``g_t(lam) / lam`` (``lr t / n`` on the null space), shape ``(T, n)``."""
        steps = np.asarray(steps)
        g = growth(self.lam, self.lr, self.n, steps)
        safe = np.where(self.lam > 0, self.lam, 1.0)
        limit = self.lr * steps[:, None].astype(float) / self.n
        return np.where(self.lam > 0, g / safe, limit)

    def train(self, steps: np.ndarray) -> np.ndarray:
        """Training outputs ``f_t(X)``, shape ``(T, n)``."""
        return self.f0 + (growth(self.lam, self.lr, self.n, steps) * self.r0) @ self.U.T

    def test(self, K_cross: np.ndarray, f0_cross: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Outputs ``f_t(x)`` on points with cross kernel ``K_cross = K(x, X)``
        (``n_test x n``), shape ``(T, n_test)``."""
        return f0_cross + (self.per_eigen(steps) * self.r0) @ (K_cross @ self.U).T

    def weights(self, K_cross: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """``A_t = K(x, X) K^+ (I - (I - lr K/n)^t)``, shape ``(T, n_test, n)``."""
        KU = K_cross @ self.U
        return np.einsum("ik,tk,jk->tij", KU, self.per_eigen(steps), self.U, optimize=True)


def gp_moments(A: np.ndarray, y: np.ndarray, nngp: np.ndarray, nngp_cross: np.ndarray,
               nngp_test_diag: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``A_t y`` and variance ``Kf(x,x) - 2 A_t Kf(X,x) + A_t Kf(X,X) A_t^T`` (diagonal)
    of the trained outputs over ``f_0 ~ GP(0, Kf)``; ``A`` from :meth:`KernelGD.weights`,
    ``nngp = Kf(X, X)``, ``nngp_cross = Kf(x, X)``, ``nngp_test_diag = Kf(x, x)``. Shapes
    ``(T, n_test)``."""
    mean = A @ y
    var = (nngp_test_diag - 2.0 * np.einsum("tij,ij->ti", A, nngp_cross)
           + np.einsum("tij,jk,tik->ti", A, nngp, A, optimize=True))
    return mean, var


class NetworkGD:
    """Full-batch GD of ``f(x) = v . phi(W x / sqrt d) / sqrt m`` on
    ``L = (1/2n) sum (f - y)^2``: ``W <- W - lr lr1 dL/dW``, ``v <- v - lr lr2 dL/dv``, both
    gradients at the same point. With ``Z = X W^T / sqrt d`` and ``r = (f - y)/n``:

        dL/dv = phi(Z)^T r / sqrt m,    dL/dW = (phi'(Z) diag(v) * r)^T X / sqrt(m d).

    The forward and backward passes run in ``dtype`` (two GEMMs of ``n x m x d``); the weights
    are kept and updated in float64.

    In float64, when ``phi`` and ``phi'`` are relu and its step (``phi'(0) = 0``), recognised
    by their bits at probe points spanning every binade (:meth:`relu_convention`), the
    elementwise passes run as two fused parallel Numba kernels in one ``n x m`` buffer kept
    between steps (``Z``, then ``phi(Z)`` in place, then ``G``) instead of four NumPy passes
    into new arrays; every operation is the one NumPy performs, in the same order, so the
    weights are bitwise those of the NumPy passes. Other activations, float32 and
    ``fused=False`` use NumPy.
    """

    #: the fused relu kernels, compiled (or loaded from Numba's cache) on first use
    _kernels: tuple[Callable, Callable] | None = None

    def __init__(self, W0: np.ndarray, v0: np.ndarray, X: np.ndarray, y: np.ndarray,
                 phi: NumFn, dphi: NumFn, lr: float, lr1: float, lr2: float,
                 dtype: str = "float64", fused: bool = True) -> None:
        self.W = np.array(W0, dtype=np.float64)
        self.v = np.array(v0, dtype=np.float64)
        self.m, self.d = self.W.shape
        self.dtype = np.dtype(dtype)
        self.Xs = np.ascontiguousarray(X / math.sqrt(self.d), dtype=self.dtype)
        self.y = np.asarray(y, dtype=np.float64)
        self.phi, self.dphi = phi, dphi
        self.rate_W = lr * lr1
        self.rate_v = lr * lr2
        self.steps_taken = 0
        self._relu = (self.relu_convention(phi, dphi) if fused and self.dtype == np.float64
                      else None)
        self._buffer: np.ndarray | None = None

    @staticmethod
    def relu_convention(phi: NumFn, dphi: NumFn) -> bool | None:
        """``None`` unless ``phi(x)`` is bitwise ``x`` for ``x > 0`` or NaN and ``+0`` for
        ``x < 0`` or ``x = +0``, and ``dphi(x)`` bitwise ``1.0`` for ``x > 0`` and ``+0.0``
        otherwise (NaN included), at the probe points: three mantissas times every power of
        two (subnormals included), both signs, zeros, infinities, NaN and 64 points of
        ``[-6, 6]``; then whether ``phi(-0.0)`` is ``-0.0`` (``True``) or ``+0.0``."""
        e = np.arange(-1074, 1024)
        pos = np.concatenate([np.ldexp(mant, e) for mant in (1.0, 1.2345678901, 1.9876543210)])
        x = np.concatenate([pos, -pos, [0.0, math.inf, -math.inf, math.nan],
                            np.random.default_rng(20201).uniform(-6.0, 6.0, 64)])
        try:
            with np.errstate(all="ignore"):
                p = np.asarray(phi(x), dtype=np.float64)
                dp = np.asarray(dphi(x), dtype=np.float64)
                p0 = np.asarray(phi(np.full(17, -0.0)), dtype=np.float64)
                dp0 = np.asarray(dphi(np.full(17, -0.0)), dtype=np.float64)
        except Exception:  # an activation undefined somewhere is simply not relu
            return None
        if (p.shape, dp.shape, p0.shape, dp0.shape) != (x.shape, x.shape, (17,), (17,)):
            return None
        p_ref = np.where((x > 0) | np.isnan(x), x, 0.0)
        dp_ref = np.where(x > 0, 1.0, 0.0)
        if not (np.array_equal(p.view(np.uint64), p_ref.view(np.uint64))
                and np.array_equal(dp.view(np.uint64), dp_ref.view(np.uint64))
                and np.all(p0 == 0.0)
                and np.array_equal(dp0.view(np.uint64), np.zeros(17, np.uint64))):
            return None
        negzero = np.signbit(p0)
        if negzero.any() and not negzero.all():
            return None
        return bool(negzero[0])

    @classmethod
    def _relu_kernels(cls) -> tuple[Callable, Callable]:
        if cls._kernels is None:
            import numba

            @numba.njit(parallel=True, fastmath=False, cache=True)
            def relu_forward(Z: np.ndarray, keep_negzero: bool) -> None:  # Z <- phi(Z)
                n, m = Z.shape
                for i in numba.prange(n):
                    for j in range(m):
                        z = Z[i, j]
                        keep = z > 0.0 or z != z or (keep_negzero and z == 0.0)
                        Z[i, j] = z if keep else 0.0

            @numba.njit(parallel=True, fastmath=False, cache=True)
            def relu_backward(P: np.ndarray, v: np.ndarray, r: np.ndarray) -> None:
                # P = phi(Z) <- (phi'(Z) * v) * r[:, None]; phi'(Z) = 1 exactly where P > 0
                n, m = P.shape
                for i in numba.prange(n):
                    ri = r[i]
                    for j in range(m):
                        dz = 1.0 if P[i, j] > 0.0 else 0.0
                        P[i, j] = (dz * v[j]) * ri

            cls._kernels = (relu_forward, relu_backward)
        return cls._kernels

    def _weights(self) -> tuple[np.ndarray, np.ndarray]:
        if self.dtype == np.float64:
            return self.W, self.v
        return self.W.astype(self.dtype), self.v.astype(self.dtype)

    def step(self) -> None:
        """One GD step."""
        if self._relu is not None:
            self._step_relu(self._relu)
            return
        W, v = self._weights()
        Z = self.Xs @ W.T
        P = self.phi(Z)
        scale = 1.0 / math.sqrt(self.m)
        f = (P @ v).astype(np.float64) * scale
        r = ((f - self.y) / len(self.y)).astype(self.dtype)
        if self.rate_v:
            grad_v = (P.T @ r).astype(np.float64) * scale
        if self.rate_W:
            G = self.dphi(Z) * v
            G *= r[:, None]
            grad_W = (G.T @ self.Xs).astype(np.float64) * scale
            self.W -= self.rate_W * grad_W
        if self.rate_v:
            self.v -= self.rate_v * grad_v
        self.steps_taken += 1

    def _step_relu(self, keep_negzero: bool) -> None:
        """:meth:`step` for relu in float64, with the fused kernels (class docstring)."""
        forward, backward = self._relu_kernels()
        if self._buffer is None:
            self._buffer = np.empty((len(self.Xs), self.m))
        B = self._buffer
        np.matmul(self.Xs, self.W.T, out=B)
        forward(B, keep_negzero)
        scale = 1.0 / math.sqrt(self.m)
        f = (B @ self.v) * scale
        r = (f - self.y) / len(self.y)
        if self.rate_v:
            grad_v = (B.T @ r) * scale
        if self.rate_W:
            backward(B, self.v, r)
            grad_W = (B.T @ self.Xs) * scale
            self.W -= self.rate_W * grad_W
        if self.rate_v:
            self.v -= self.rate_v * grad_v
        self.steps_taken += 1

    def outputs(self, X: np.ndarray) -> np.ndarray:
        """``f(X)`` at the current weights (float64)."""
        W, v = self._weights()
        Xs = np.asarray(X / math.sqrt(self.d), dtype=self.dtype)
        return (self.phi(Xs @ W.T) @ v).astype(np.float64) / math.sqrt(self.m)


def kernel_distance(A: np.ndarray, B: np.ndarray) -> float:
    """Fort et al. 2020's kernel distance ``1 - <A, B>_F / (|A|_F |B|_F)`` (0 for parallel
    kernels, in ``[0, 1]`` for PSD ones); NaN when either is zero."""
    na, nb = float(np.linalg.norm(A)), float(np.linalg.norm(B))
    if na == 0 or nb == 0:
        return math.nan
    return 1.0 - float(np.vdot(A, B)) / (na * nb)


def loglog_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of ``log y`` against ``log x``; NaN for fewer than two points or a
    non-positive or non-finite ``y``."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or not np.all(np.isfinite(y)) or np.any(y <= 0):
        return math.nan
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def escape_step(steps: np.ndarray, disc: np.ndarray, change: np.ndarray, tol: float) -> float:
    """The first record step ``t >= 1`` from which ``disc > tol * change`` holds at that and
    every later record step (a model left for good); ``inf`` when the last record is within
    ``tol``."""
    later = np.asarray(steps) >= 1
    left = (np.asarray(disc) > tol * np.asarray(change))[later]
    t = np.asarray(steps)[later]
    if len(t) == 0 or not left[-1]:
        return math.inf
    within = np.flatnonzero(~left)
    return float(t[0] if len(within) == 0 else t[within[-1] + 1])
