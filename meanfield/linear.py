"""Empirical NTK, linearised (Lee et al.) and early-time linear (Hu et al.) models.

Network (the kernel conventions of :mod:`analytic`):
``f(x) = v . phi(W x / sqrt(d)) / sqrt(m)``, ``W`` of shape ``(m, d)`` and ``v`` of shape
``(m,)``, standard Gaussian at initialisation. With
``Z = X W^T / sqrt(d)`` (``n x m``) the Jacobian Gram matrices are computed without forming
``J``:

    Theta1 = J_W J_W^T = (X X'^T / d) * (phi'(Z) diag(v^2) phi'(Z')^T) / m   (elementwise *)
    Theta2 = J_v J_v^T = phi(Z) phi(Z')^T / m.

Training: squared loss ``L = (1/2) sum_mu (f(x_mu) - y_mu)^2`` (no ``1/n``, matching the NTK
without ``1/n``) and gradient flow ``dW/dt = -eta lr1 dL/dW``, ``dv/dt = -eta lr2 dL/dv`` with
``lr1 = 1``, ``lr2 = R`` (``lr_ratio``), so that on the training set
``df/dt = -eta Theta (f - y)`` with ``Theta = Theta1 + R Theta2``. For a constant kernel
(the linearised model ``f_lin = f_0 + grad f_0 . (theta - theta_0)`` of Lee et al. 2019,
arXiv:1902.06720, or the affine kernel of Hu et al. 2020, arXiv:2006.14599):

    f_t(X)  = f_0(X) + (I - exp(-eta Theta t)) (y - f_0(X)),
    f_t(x)  = f_0(x) + Theta(x, X) Theta^+ (I - exp(-eta Theta t)) (y - f_0(X)),

(the pseudo-inverse is exact on the range of ``Theta``; along its null space nothing moves;
at ``t = inf`` the factor ``I - exp(-eta Theta t)`` is the projection on the range).
Times ``t`` are in the units of ``1/eta``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np
from scipy.sparse.linalg import eigsh

from analytic.kernels import (
    ALIGNED,
    NumericActivation,
    aligned_kernels,
    feature_map,
    gaussian_expectations,
    mehler_kernel,
    two_layer_kernels,
)

NumFn = Callable[[np.ndarray], np.ndarray]


# --------------------------------------------------------------------------- network


def init_params(d: int, m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Standard Gaussian ``W`` (``m x d``) and ``v`` (``m``)."""
    return rng.standard_normal((m, d)), rng.standard_normal(m)


def forward(W: np.ndarray, v: np.ndarray, X: np.ndarray, phi: NumFn) -> np.ndarray:
    """``f(X) = phi(X W^T / sqrt(d)) v / sqrt(m)``, shape ``(n,)``."""
    m, d = W.shape
    return phi(X @ W.T / math.sqrt(d)) @ v / math.sqrt(m)


def mse_gradients(
    W: np.ndarray, v: np.ndarray, X: np.ndarray, y: np.ndarray, phi: NumFn, dphi: NumFn
) -> tuple[np.ndarray, np.ndarray]:
    """``(dL/dW, dL/dv)`` of ``L = (1/2) sum_mu (f(x_mu) - y_mu)^2``."""
    m, d = W.shape
    Z = X @ W.T / math.sqrt(d)
    resid = phi(Z) @ v / math.sqrt(m) - y
    grad_v = phi(Z).T @ resid / math.sqrt(m)
    grad_W = ((dphi(Z) * v) * resid[:, None]).T @ X / math.sqrt(m * d)
    return grad_W, grad_v


def empirical_ntk(
    W: np.ndarray,
    v: np.ndarray,
    X: np.ndarray,
    phi: NumFn,
    dphi: NumFn,
    X2: np.ndarray | None = None,
    dtype: type = np.float64,
) -> tuple[np.ndarray, np.ndarray]:
    """Finite-width ``(Theta1, Theta2)`` between ``X`` (``n x d``) and ``X2`` (default ``X``),
    each ``n x n2`` (module docstring formulas). ``dtype=np.float32`` halves the cost of the
    two ``n x m x n2`` products (relative error ~1e-6); the result is float64."""
    m, d = W.shape
    W, v, X = (np.asarray(a, dtype=dtype) for a in (W, v, X))
    Z = X @ W.T / dtype(math.sqrt(d))
    Z2 = Z if X2 is None else np.asarray(X2, dtype=dtype) @ W.T / dtype(math.sqrt(d))
    X2 = X if X2 is None else np.asarray(X2, dtype=dtype)
    D = np.asarray(dphi(Z), dtype=dtype)
    D2 = D if Z2 is Z else np.asarray(dphi(Z2), dtype=dtype)
    # X2 = X: one symmetric product (BLAS syrk, half the work of a general one)
    Dv = D * np.abs(v) if Z2 is Z else D * (v * v)
    theta1 = (X @ X2.T / d) * (Dv @ (Dv if Z2 is Z else D2).T) / m
    P = np.asarray(phi(Z), dtype=dtype)
    P2 = P if Z2 is Z else np.asarray(phi(Z2), dtype=dtype)
    theta2 = P @ P2.T / m
    return theta1.astype(np.float64), theta2.astype(np.float64)


class KernelAccuracyError(ValueError):
    """The infinite-width kernel of an activation without a closed form cannot be evaluated
    to the requested accuracy by the truncated Mehler series (inputs too strongly
    correlated for the number of terms)."""


class InfiniteWidthNTK(NamedTuple):
    """Result of :func:`infinite_width_ntk_with_error`.

    ``theta1``, ``theta2``: the kernels (``n x n2``); ``method``: how they were computed,
    one of ``"closed form (relu)"``, ``"closed form (erf)"``,
    ``"closed form (a x + b relu(x))"`` or ``"Mehler series, N terms, error <= E"`` (then
    followed by ``"; 1-D quadrature for P aligned pairs (|r| = 1)"`` when some pairs are
    coincident or (anti)parallel); ``max_error``: a bound on the absolute truncation error
    of the series over every entry of both kernels (``0.0`` for closed forms, exact up to
    round-off, ~1e-15 relative; the 1-D quadrature of aligned pairs, ~1e-13, is not
    counted); ``max_relative_error``: the
    largest per-entry bound relative to the Cauchy-Schwarz scale of the entry
    (``sqrt(E phi(u)^2 E phi(u')^2)`` for ``Theta2``, ``|rho| sqrt(E phi'(u)^2
    E phi'(u')^2)`` for ``Theta1``), the quantity compared with ``tol``.
    """

    theta1: np.ndarray
    theta2: np.ndarray
    method: str
    max_error: float
    max_relative_error: float


def infinite_width_ntk(
    act: NumericActivation,
    X: np.ndarray,
    X2: np.ndarray | None = None,
    order: int = 40,
    tol: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray]:
    """Infinite-width ``(Theta1, Theta2)`` on the data: :func:`infinite_width_ntk_with_error`
    without the method and the error bound (it raises :class:`KernelAccuracyError` the same
    way)."""
    out = infinite_width_ntk_with_error(act, X, X2, order, tol)
    return out.theta1, out.theta2


def infinite_width_ntk_with_error(
    act: NumericActivation,
    X: np.ndarray,
    X2: np.ndarray | None = None,
    order: int = 40,
    tol: float = 1e-6,
) -> InfiniteWidthNTK:
    """Infinite-width ``(Theta1, Theta2)`` evaluated exactly on the data (no ``m``), with the
    method used and a bound on its error.

    Closed forms for relu, erf and ``a x + b relu(x)`` (``act.closed_form``; linear, leaky
    relu, abs). Otherwise: pairs with ``|r| = 1`` to rounding (``1 - r^2 <=
    analytic.kernels.ALIGNED``, ``r = rho / sqrt(q q')``: the diagonal of a Gram matrix,
    coincident or (anti)parallel inputs, where ``u' = +-sqrt(q'/q) u``) by exact 1-D
    quadrature; the others by the Mehler series with per-point coefficients ``c_k(q_i)``
    (``analytic.kernels.mehler_kernel``) truncated after ``K = min(order, first K with
    max|r|^(K+1) < 1e-13)`` terms, with its Cauchy-Schwarz bound ``|r|^(K+1) sqrt(T(q)
    T(q'))`` on the neglected tail. If that bound exceeds ``tol`` times the entry's scale
    (:class:`InfiniteWidthNTK`) anywhere, raises :class:`KernelAccuracyError` (one line)
    rather than return a kernel that is wrong by more: the series converges like
    ``|r|^K`` times a tail that decays only like ``K^(-1/2)`` for a kinked ``phi``, so at
    ``|r| = 0.98`` 40 terms are not enough.
    """
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    same = X2 is None
    X2 = X if same else X2
    d = X.shape[1]
    rho = X @ X2.T / d
    if same:
        # the diagonal of rho itself: rho_ii = q_i to the last bit, so c = 1 exactly there
        q = np.diag(rho).copy()
        qp = q
    else:
        q = np.einsum("ij,ij->i", X, X) / d
        qp = np.einsum("ij,ij->i", X2, X2) / d
    if act.closed_form is not None:
        t1, t2 = two_layer_kernels(act, rho, q[:, None], qp[None, :])
        return InfiniteWidthNTK(t1, t2, f"closed form ({act.closed_form})", 0.0, 0.0)
    qq = np.outer(q, qp)
    aligned = (np.abs(qq - rho * rho) <= ALIGNED * qq) & (qq > 0)
    if same:
        aligned[np.diag_indices_from(aligned)] = False  # filled below, all at once
    rho_off = np.where(aligned, 0.0, rho)
    if same:
        np.fill_diagonal(rho_off, 0.0)
    r = np.divide(np.abs(rho_off), np.sqrt(qq), out=np.zeros_like(qq), where=qq > 0)
    r_max = float(np.max(r, initial=0.0))
    if r_max >= 1:
        raise ValueError(f"inputs with |x.x'| > |x| |x'| (r = {r_max:.17g}): not a Gram matrix")
    if 0 < r_max < 1:
        order = min(order, max(4, math.ceil(math.log(1e-13) / math.log(r_max))))
    nngp, bound2 = mehler_kernel(act.phi, act.kinks, rho_off, q, qp, order)
    dd, bound_d = mehler_kernel(act.dphi, act.kinks, rho_off, q, qp, order)
    theta1, theta2, bound1 = rho * dd, nngp, np.abs(rho_off) * bound_d
    # Cauchy-Schwarz scales of the entries, and the diagonal u = u' of a Gram matrix
    e2 = gaussian_expectations(lambda u: act.phi(u) ** 2, act.kinks, q)
    ed = gaussian_expectations(lambda u: act.dphi(u) ** 2, act.kinks, q)
    e2p, edp = (e2, ed) if same else (
        gaussian_expectations(lambda u: act.phi(u) ** 2, act.kinks, qp),
        gaussian_expectations(lambda u: act.dphi(u) ** 2, act.kinks, qp))
    pairs = np.argwhere(aligned)
    for i, j in pairs:
        theta2[i, j], dd_ij = aligned_kernels(act, rho[i, j], q[i], qp[j])
        theta1[i, j] = rho[i, j] * dd_ij
    bound1[aligned] = bound2[aligned] = 0.0
    if same:
        np.fill_diagonal(theta1, q * ed)  # Theta1 = q E[phi'(u)^2], Theta2 = E[phi(u)^2]
        np.fill_diagonal(theta2, e2)
        bound1[np.diag_indices_from(bound1)] = bound2[np.diag_indices_from(bound2)] = 0.0
    relative = max(_relative(bound2, np.sqrt(np.outer(e2, e2p))),
                   _relative(bound1, np.abs(rho_off) * np.sqrt(np.outer(ed, edp))))
    max_error = float(max(np.max(bound1, initial=0.0), np.max(bound2, initial=0.0)))
    if relative > tol:
        raise KernelAccuracyError(
            f"infinite-width kernel: the Mehler series with {order + 1} terms is accurate only "
            f"to {relative:.1e} (relative) at |r| = {r_max:.6g} between inputs, above "
            f"tol = {tol:g}; raise order (now {order}) or tol, or use an activation with a "
            "closed form (relu, erf, a x + b relu(x))")
    method = f"Mehler series, {order + 1} terms, error <= {max_error:.1e}"
    count = len(pairs) + (len(X) if same else 0)
    if count:
        method += f"; 1-D quadrature for {count} aligned pairs (|r| = 1)"
    return InfiniteWidthNTK(theta1, theta2, method, max_error, relative)


def _relative(bound: np.ndarray, scale: np.ndarray) -> float:
    """``max(bound / scale)`` over the entries with ``scale > 0`` (``bound`` is ``0`` where
    ``scale`` is: a ``phi`` that vanishes on the whole line at that ``q``)."""
    ratio = np.divide(bound, scale, out=np.zeros_like(bound), where=scale > 0)
    return float(np.max(ratio, initial=0.0))


# --------------------------------------------------------------------------- kernel flows


def affine_kernel(
    coefficients: Mapping[str, Any], X: np.ndarray, X2: np.ndarray | None = None
) -> np.ndarray:
    """``ones 11^T + data X X2^T / d + identity I``; the identity term only for a Gram
    matrix (``X2`` is ``None``): it acts on coinciding training points only."""
    c = {k: float(getattr(v, "value", v)) for k, v in coefficients.items()}
    d = X.shape[1]
    X2m = X if X2 is None else X2
    K = c["ones"] + c["data"] * (X @ X2m.T) / d
    if X2 is None:
        K[np.diag_indices_from(K)] += c["identity"]
    return K


def kernel_mse_flow(
    K: np.ndarray,
    y: np.ndarray,
    f0: np.ndarray,
    eta: float,
    t: float | Sequence[float],
    K_cross: np.ndarray | None = None,
    f0_cross: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Closed-form solution of ``df/dt = -eta K (f - y)`` on the training set, and of the test
    outputs ``df(x)/dt = -eta K(x, X) (f(X) - y)``, at times ``t`` (scalar or sequence).

    ``K`` symmetric PSD ``n x n``; ``K_cross`` ``n_test x n``. Returns ``(f_train, f_test)``
    of shapes ``t.shape + (n,)`` and ``t.shape + (n_test,)`` (``f_test`` is ``None`` without
    ``K_cross``). Uses ``K = U diag(lam) U^T``: ``(I - e^{-eta K t}) = U diag(-expm1(-eta lam
    t)) U^T`` and, for the test outputs, ``-expm1(-eta lam t)/lam``.

    Eigenvalues ``lam <= n eps max(lam)`` (round-off of a singular ``K``, e.g. relu with
    parallel inputs) are the null space: nothing moves along it on the training set. For the
    test outputs the null-space term is its exact limit ``eta t`` at finite ``t`` (it
    multiplies ``K(x, X) u``, which vanishes for a null vector ``u`` when ``K(x, X)`` comes
    from the same PSD kernel), and at ``t = inf`` the pseudo-inverse limit: ``1/lam`` on the
    range, ``0`` on the null space, i.e. ``f_inf(x) = f_0(x) + K(x, X) K^+ (y - f_0(X))``.
    No ``0 * inf``: the result is finite for every ``t`` in ``[0, inf]``.
    """
    lam, U = np.linalg.eigh(K)
    top = max(float(np.max(lam, initial=0.0)), 0.0)
    live = lam > len(lam) * np.finfo(float).eps * top
    lam = np.where(live, lam, 1.0)  # placeholder on the null space, masked below
    ts = np.asarray(t, dtype=float)
    eta_t = np.zeros_like(ts) if eta == 0 else eta * ts
    r0 = U.T @ (y - f0)
    growth = np.where(live, -np.expm1(-np.multiply.outer(eta_t, lam)), 0.0)  # t.shape + (n,)
    f_train = f0 + (growth * r0) @ U.T
    if K_cross is None:
        return f_train, None
    null = np.where(np.isinf(eta_t), 0.0, eta_t)[..., None]
    per_lam = np.where(live, growth / lam, null)
    f_test = f0_cross + (per_lam * r0) @ (K_cross @ U).T
    return f_train, f_test


def linearized_flow(
    W: np.ndarray,
    v: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    act: NumericActivation,
    eta: float,
    t: float | Sequence[float],
    lr_ratio: float = 1.0,
    X_test: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Lee et al.'s linearised network trained by MSE gradient flow, in closed form through
    the empirical NTK ``Theta = Theta1 + R Theta2`` at ``(W, v)``: outputs on ``X`` and
    ``X_test`` at times ``t`` (see :func:`kernel_mse_flow`)."""
    t1, t2 = empirical_ntk(W, v, X, act.phi, act.dphi)
    f0 = forward(W, v, X, act.phi)
    if X_test is None:
        return kernel_mse_flow(t1 + lr_ratio * t2, y, f0, eta, t)
    c1, c2 = empirical_ntk(W, v, X_test, act.phi, act.dphi, X)
    return kernel_mse_flow(t1 + lr_ratio * t2, y, f0, eta, t, c1 + lr_ratio * c2,
                           forward(W, v, X_test, act.phi))


def early_time_linear_flow(
    coefficients: Mapping[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    eta: float,
    t: float | Sequence[float],
    X_test: np.ndarray | None = None,
    f0: np.ndarray | None = None,
    f0_test: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Hu et al.'s early-time linear model ``g(x) = f_0(x) + beta . psi(x)``, ``beta(0) = 0``,
    ``psi`` the affine features (``analytic.kernels.feature_map``), trained by the same MSE
    gradient flow: its kernel is ``Psi Psi^T = ones 11^T + data XX^T/d`` (the affine kernel
    without the identity part). ``f0``/``f0_test`` default to zero."""
    psi = feature_map(coefficients)
    P = psi(X)
    f0 = np.zeros(len(X)) if f0 is None else f0
    if X_test is None:
        return kernel_mse_flow(P @ P.T, y, f0, eta, t)
    f0_test = np.zeros(len(X_test)) if f0_test is None else f0_test
    return kernel_mse_flow(P @ P.T, y, f0, eta, t, psi(X_test) @ P.T, f0_test)


# --------------------------------------------------------------------------- verification


def spectral_norm(A: np.ndarray) -> float:
    """Largest ``|eigenvalue|`` of a symmetric matrix (Lanczos for large ``A``)."""
    if A.shape[0] <= 200:
        return float(np.max(np.abs(np.linalg.eigvalsh(A))))
    return float(abs(eigsh(A, k=1, which="LM", return_eigenvectors=False, tol=1e-8)[0]))


def relative_error(approx: np.ndarray, reference: np.ndarray) -> float:
    """``||approx - reference||_2 / ||reference||_2`` (spectral norms)."""
    return spectral_norm(approx - reference) / spectral_norm(reference)


@dataclass(frozen=True)
class VerifyRow:
    """One dimension of :func:`verify_affine`: ``d``, ``n = round(d^1.25)``, width ``m``, and
    per layer (``first``, ``second``, ``both``) the relative spectral errors of the affine
    kernel against the empirical NTK (``error``) and against the infinite-width NTK on the
    same data (``error_infinite``), and the finite-width error of the empirical NTK
    (``width_error = ||Theta_emp - Theta_inf|| / ||Theta_inf||``)."""

    d: int
    n: int
    m: int
    error: dict[str, float]
    error_infinite: dict[str, float]
    width_error: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"d": self.d, "n": self.n, "m": self.m, "error": self.error,
                "error_infinite": self.error_infinite, "width_error": self.width_error}


def sample_inputs(n: int, d: int, rng: np.random.Generator, data: str = "gaussian") -> np.ndarray:
    """``n x d`` inputs: ``N(0, I_d)`` (``"gaussian"``) or uniform on the sphere of radius
    ``sqrt(d)`` (``"sphere"``); both have ``t2 = 1/d``."""
    X = rng.standard_normal((n, d))
    if data == "sphere":
        X *= math.sqrt(d) / np.linalg.norm(X, axis=1, keepdims=True)
    elif data != "gaussian":
        raise ValueError(f"data must be 'gaussian' or 'sphere', got {data!r}")
    return X


def verify_affine(
    activation: Any,
    ds: Sequence[int] = (50, 100, 200, 400),
    seed: int = 0,
    width: int | None = None,
    lr_ratio: float = 1.0,
    data: str = "gaussian",
    moments: Mapping[str, Any] | None = None,
) -> list[VerifyRow]:
    """Relative spectral-norm error of the affine NTK against the NTK on data.

    For each ``d`` in ``ds``: ``n = round(d^1.25)`` inputs (``data``), ``t2 = 1/d``, a network
    of width ``m = width or 4 n`` with standard Gaussian weights (seeded by ``seed`` and
    ``d``), and the affine coefficients of ``analytic.kernels.affine_coefficients`` (moments
    from ``analytic.gaussian.moments(activation)`` unless given). ``activation`` is an
    ``analytic.activations.Activation`` (numpy callables by ``codegen.to_numpy``) or a
    :class:`NumericActivation` (then ``moments`` is required).
    """
    from analytic.kernels import affine_coefficients, numeric_activation

    if isinstance(activation, NumericActivation):
        if moments is None:
            raise ValueError("moments are required with a NumericActivation")
        act = activation
    else:
        act = numeric_activation(activation)
        if moments is None:
            from analytic.gaussian import moments as gaussian_moments

            moments = gaussian_moments(activation)
    rows = []
    for d in ds:
        rng = np.random.default_rng([seed, d])
        n = round(d**1.25)
        m = width or 4 * n
        X = sample_inputs(n, d, rng, data)
        W, v = init_params(d, m, rng)
        coeffs = affine_coefficients(moments, Fraction(1, d), lr_ratio)
        e1, e2 = empirical_ntk(W, v, X, act.phi, act.dphi, dtype=np.float32)
        i1, i2 = infinite_width_ntk(act, X)
        emp = {"first": e1, "second": e2, "both": e1 + lr_ratio * e2}
        inf = {"first": i1, "second": i2, "both": i1 + lr_ratio * i2}
        err, err_inf, werr = {}, {}, {}
        for layer in ("first", "second", "both"):
            K = affine_kernel(coeffs[layer], X)
            norm_emp, norm_inf = spectral_norm(emp[layer]), spectral_norm(inf[layer])
            err[layer] = spectral_norm(K - emp[layer]) / norm_emp
            err_inf[layer] = spectral_norm(K - inf[layer]) / norm_inf
            werr[layer] = spectral_norm(emp[layer] - inf[layer]) / norm_inf
        rows.append(VerifyRow(d, n, m, err, err_inf, werr))
    return rows
