"""Infinite-width kernels of a two-layer network and the affine NTK approximation.

Conventions: ``g ~ N(0, 1)``; network ``f(x) = v . phi(W x / sqrt(d)) / sqrt(m)``
with standard Gaussian ``W`` (``m x d``) and ``v`` (``m``) at initialisation; data with
``|x|^2 ~ d``, covariance ``Sigma``, ``t2 = tr(Sigma^2) / d^2`` (``= 1/d`` isotropic). The NTK is
``Theta = lr1 Theta1 + lr2 Theta2`` with ``Theta1 = J_W J_W^T``, ``Theta2 = J_v J_v^T`` (no
``1/n``). For two inputs with ``rho = x.x'/d``, ``q = |x|^2/d``, ``q' = |x'|^2/d`` the
pre-activations ``(u, u')`` are centred Gaussian with covariance ``[[q, rho], [rho, q']]`` and,
at infinite width,

    Theta2(x, x') = E[phi(u) phi(u')]                 (the NNGP kernel, "dual kernel" of phi)
    Theta1(x, x') = rho E[phi'(u) phi'(u')]            (phi' distributional: Stein's identity).

Three routes to these expectations, each checked against the others in ``tests/``:

- closed forms: relu (arc-cosine kernels of degree 1 and 0, Cho & Saul 2009) and erf (arcsin
  kernel, Williams 1997), as sympy expressions in ``(rho, q, q')`` and numpy functions, and
  from them ``a x + b relu(x)`` (linear, leaky relu, abs), symbolically and numerically;
  polynomials exactly by Isserlis' theorem;
- the Hermite (Mehler) series: with ``c_k(q) = E[phi(sqrt(q) g) He_k(g)]`` and
  ``r = rho / sqrt(q q')``, ``E[phi(u) phi(u')] = sum_k c_k(q) c_k(q') r^k / k!``; at
  ``q = q' = 1`` this is ``sum_k c_k^2 rho^k / k!`` with ``c_k = E[phi(g) He_k(g)]`` and, since
  ``E[phi'(g) He_k(g)] = c_{k+1}``, ``Theta1 = rho sum_k c_{k+1}^2 rho^k / k!``;
- direct Gaussian quadrature in one and two dimensions, split at the kinks of ``phi``.

The affine approximation (Hu, Xiao, Adlam & Pennington 2020, arXiv:2006.14599; the
high-dimensional linearisation of inner-product kernels of El Karoui 2010): off the diagonal
``rho = O(1/sqrt(d))`` and ``q, q' = 1 + O(1/sqrt(d))``; expanding to second order in ``rho``
at ``q = q' = 1``,

    Theta2(rho) = nu^2 + zeta^2 rho + (mu2^2 / 2) rho^2 + O(rho^3),
    Theta1(rho) = zeta^2 rho + mu2^2 rho^2 + O(rho^3),

with ``nu = E phi(g)``, ``zeta = E phi'(g)``, ``mu2 = E phi''(g)``. The matrix ``[rho_ij^2]``
is ``t2 11^T`` plus a part of small spectral norm, so its mean ``t2`` is kept in the ``11^T``
coefficient; the identity coefficient makes the diagonal (``rho = q = 1``) exact:

    first  (Theta1): ones = mu2^2 t2,          data = zeta^2,
                     identity = E_dphi2 - zeta^2 - mu2^2 t2
    second (Theta2): ones = nu^2 + mu2^2 t2/2, data = zeta^2,
                     identity = E_phi2 - nu^2 - zeta^2 - mu2^2 t2 / 2
    both:            first + R * second, normalised as lr1 = 1, lr2 = R (``lr_ratio``).

Relation to Hu et al.: the structure and the ``data`` coefficient ``zeta^2`` are theirs; here
the mean of the second-order term, ``mu2^2 t2`` (first layer) and ``mu2^2 t2 / 2`` (second
layer), is kept in ``ones``. Dropping it is harmless only when ``mu2 = 0`` (odd activations)
or ``n t2`` is small: for relu ``mu2^2 = 1/(2 pi)`` and ``mu2^2 t2 11^T`` has spectral norm
``n / (2 pi d)``, comparable to ``zeta^2 ||XX^T/d||`` when ``n = d^1.25``. Without it relu's
first-layer error stays at ~0.25 for all d (tests/test_kernels.py); with it, it falls like
``d^(-1/2)``. The coefficients are derived above and checked numerically. Not in the affine
form: the first-order effect of the norm fluctuations ``q - 1 = O(1/sqrt(d))`` of
Gaussian data (rank-two terms, relative spectral size ``O(1/sqrt(d))``; they vanish for
relu's first layer and for data on the sphere).

Kernel values are plain ``float`` / ``numpy`` arrays and sympy expressions; the affine
coefficients are ``analytic.gaussian.Value`` (``value``, ``exact``, ``expr``, ``latex``).
Units: all quantities are dimensionless (inputs enter through ``x.x'/d`` and ``|x|^2/d``;
``lr1``, ``lr2`` are relative learning rates).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any

import numpy as np
import sympy as sp

from analytic.gaussian import Value

RHO = sp.Symbol("rho", real=True)
Q = sp.Symbol("q", positive=True)
QP = sp.Symbol("q'", positive=True)

LAYERS = ("first", "second", "both")
TERMS = ("ones", "data", "identity")

NumFn = Callable[[np.ndarray], np.ndarray]


# --------------------------------------------------------------------------- quadrature


@lru_cache(maxsize=64)
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)


def gaussian_rule(
    kinks: Sequence[float] = (), cutoff: float = 12.0, piece: float = 0.5, nodes: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``g_l`` and weights ``w_l`` with ``sum_l w_l F(g_l) ~= E[F(g)]``, ``g ~ N(0,1)``.

    Composite Gauss-Legendre on ``[-cutoff, cutoff]`` with the Gaussian density folded into the
    weights, pieces of length at most ``piece`` and breakpoints at ``kinks`` (and ``0``), so a
    piecewise-smooth ``F`` with jumps or kinks only there is integrated to near machine
    precision (each piece sees an entire function). The mass outside ``|g| > 12`` is
    ``< 4e-33``; raise ``cutoff`` for integrands growing like high-order polynomials.
    """
    breaks = {-cutoff, 0.0, cutoff} | {float(k) for k in kinks if -cutoff < k < cutoff}
    edges = np.array(sorted(breaks))
    x0, w0 = _legendre(nodes)
    xs, ws = [], []
    for a, b in itertools.pairwise(edges):
        count = max(1, math.ceil((b - a) / piece))
        sub = np.linspace(a, b, count + 1)
        half = np.diff(sub)[:, None] / 2
        mid = (sub[:-1] + sub[1:])[:, None] / 2
        xs.append((mid + half * x0).ravel())
        ws.append((half * w0).ravel())
    x = np.concatenate(xs)
    w = np.concatenate(ws) * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    return x, w


def _hermite_normalised(x: np.ndarray, order: int) -> np.ndarray:
    """``He_k(x) / sqrt(k!)`` for ``k = 0..order``, shape ``x.shape + (order + 1,)``.

    Recurrence ``h_{k+1} = (x h_k - sqrt(k) h_{k-1}) / sqrt(k + 1)`` (stable, no overflow).
    """
    out = np.empty((*x.shape, order + 1))
    out[..., 0] = 1.0
    if order >= 1:
        out[..., 1] = x
    for k in range(1, order):
        out[..., k + 1] = (x * out[..., k] - math.sqrt(k) * out[..., k - 1]) / math.sqrt(k + 1)
    return out


def _cutoff(order: int) -> float:
    # He_k(g)^2 exp(-g^2/2) is negligible beyond |g| ~ 2 sqrt(k) + 8
    return max(12.0, 9.0 + 2.0 * math.sqrt(order))


def hermite_table(
    phi: NumFn, kinks: Sequence[float], order: int, q: np.ndarray | float = 1.0
) -> np.ndarray:
    """Normalised Hermite coefficients ``h_k(q) = E[phi(sqrt(q) g) He_k(g)] / sqrt(k!)``.

    ``q`` scalar or 1-d array (one row per value); returns shape ``q.shape + (order + 1,)``.
    Kinks of ``phi`` at ``u = k`` sit at ``g = k / sqrt(q)``; the quadrature is split there.
    """
    qs = np.atleast_1d(np.asarray(q, dtype=float))
    out = np.empty((qs.size, order + 1))
    if all(k == 0 for k in kinks):
        x, w = gaussian_rule((), cutoff=_cutoff(order))
        weighted = w[:, None] * _hermite_normalised(x, order)
        out[:] = phi(np.sqrt(qs)[:, None] * x[None, :]) @ weighted
    else:
        for i, qi in enumerate(qs):
            s = math.sqrt(qi)
            x, w = gaussian_rule([k / s for k in kinks], cutoff=_cutoff(order))
            out[i] = (w * phi(s * x)) @ _hermite_normalised(x, order)
    return out.reshape((*np.shape(q), order + 1))


def gaussian_expectation(F: NumFn, kinks: Sequence[float] = (), q: float = 1.0) -> float:
    """``E[F(u)]`` for ``u ~ N(0, q)`` by :func:`gaussian_rule` split at ``kinks`` (in ``u``)."""
    s = math.sqrt(q)
    x, w = gaussian_rule([k / s for k in kinks])
    return float(w @ F(s * x))


def gaussian_expectations(F: NumFn, kinks: Sequence[float], qs: np.ndarray) -> np.ndarray:
    """``E[F(u)]``, ``u ~ N(0, q)``, for every ``q`` in the 1-d array ``qs`` (one rule for all
    when the kinks are at 0, where they do not move with ``q``)."""
    qs = np.asarray(qs, dtype=float)
    if all(k == 0 for k in kinks):
        x, w = gaussian_rule(())
        return F(np.sqrt(qs)[:, None] * x[None, :]) @ w
    return np.array([gaussian_expectation(F, kinks, qi) for qi in qs])


def dual_kernel_quadrature(
    phi: NumFn,
    psi: NumFn,
    kinks_phi: Sequence[float],
    kinks_psi: Sequence[float],
    rho: float,
    q: float = 1.0,
    qp: float = 1.0,
) -> float:
    """``E[phi(u) psi(u')]``, ``(u, u')`` centred Gaussian, covariance ``[[q, rho], [rho, qp]]``,
    by nested 2-D quadrature: ``u = sqrt(q) g1``, ``u' = a g1 + b g2`` with
    ``a = rho / sqrt(q)``, ``b = sqrt(qp - rho^2 / q)``; for each outer node the inner rule in
    ``g2`` is split where ``u'`` crosses a kink of ``psi``. Accurate to ~1e-13 for
    piecewise-smooth activations (see tests). Degenerate ``b = 0`` uses the 1-D rule.
    """
    s = math.sqrt(q)
    a = rho / s
    b2 = qp - rho * rho / q
    x1, w1 = gaussian_rule([k / s for k in kinks_phi])
    if b2 <= 1e-14 * qp:
        return float(w1 @ (phi(s * x1) * psi(a * x1)))
    b = math.sqrt(b2)
    outer = w1 * phi(s * x1)
    total = 0.0
    for g1, wg in zip(x1, outer, strict=True):
        if wg == 0.0:
            continue
        x2, w2 = gaussian_rule([(k - a * g1) / b for k in kinks_psi])
        total += wg * float(w2 @ psi(a * g1 + b * x2))
    return total


# --------------------------------------------------------------------------- closed forms


@dataclass(frozen=True)
class KernelForms:
    """Sympy expressions in ``(RHO, Q, QP)``: ``nngp = E[phi(u) phi(u')] = Theta2``,
    ``dphi = E[phi'(u) phi'(u')]``, ``theta1 = rho * dphi``, ``theta2 = nngp``."""

    name: str
    nngp: sp.Expr
    dphi: sp.Expr
    reference: str

    @property
    def theta1(self) -> sp.Expr:
        return RHO * self.dphi

    @property
    def theta2(self) -> sp.Expr:
        return self.nngp


def _relu_forms() -> KernelForms:
    s = sp.sqrt(Q * QP)
    theta = sp.acos(RHO / s)
    return KernelForms(
        name="relu",
        # arc-cosine kernel of degree 1 (Cho & Saul): sqrt(q q')/(2 pi) (sin t + (pi - t) cos t)
        nngp=(sp.sqrt(Q * QP - RHO**2) + (sp.pi - theta) * RHO) / (2 * sp.pi),
        # degree 0: E[H(u) H(u')] = (pi - t) / (2 pi)
        dphi=(sp.pi - theta) / (2 * sp.pi),
        reference="Cho & Saul 2009 (arc-cosine kernels of degree 1 and 0)",
    )


def _erf_forms() -> KernelForms:
    return KernelForms(
        name="erf",
        # Williams 1997: E[erf(u) erf(u')] = (2/pi) asin(2 rho / sqrt((1 + 2q)(1 + 2q')))
        nngp=2 / sp.pi * sp.asin(2 * RHO / sp.sqrt((1 + 2 * Q) * (1 + 2 * QP))),
        # erf' = (2/sqrt(pi)) exp(-u^2): (4/pi) E[exp(-u^2 - u'^2)] = (4/pi) det(I + 2C)^(-1/2)
        dphi=4 / (sp.pi * sp.sqrt((1 + 2 * Q) * (1 + 2 * QP) - 4 * RHO**2)),
        reference="Williams 1997 (arcsin kernel)",
    )


CLOSED_FORMS: dict[str, Callable[[], KernelForms]] = {"relu": _relu_forms, "erf": _erf_forms}


def piecewise_linear_forms(a: Any, b: Any) -> KernelForms:
    """Closed forms for ``phi(x) = a x + b relu(x)`` (linear, leaky relu, abs, relu): by
    Stein, ``E[u relu(u')] = rho E[H(u')] = rho / 2``, so with the arc-cosine kernels
    ``k1 = E[relu relu]``, ``k0 = E[H H]``:

        E[phi(u) phi(u')]   = a (a + b) rho + b^2 k1,
        E[phi'(u) phi'(u')] = a (a + b)     + b^2 k0.
    """
    relu = _relu_forms()
    a, b = sp.sympify(a), sp.sympify(b)
    return KernelForms(
        name=f"{a}*x + {b}*relu(x)",
        nngp=a * (a + b) * RHO + b**2 * relu.nngp,
        dphi=a * (a + b) + b**2 * relu.dphi,
        reference="arc-cosine kernels (Cho & Saul 2009) and Stein's identity",
    )


@lru_cache(maxsize=256)
def gaussian_cross_moment(a: int, b: int) -> sp.Expr:
    """``E[u^a u'^b]`` for ``(u, u')`` centred Gaussian with covariance
    ``[[q, rho], [rho, q']]``, exactly, by Isserlis' (Wick's) theorem: pair the ``a + b``
    factors; ``k`` cross pairs (``k = a = b mod 2``) are chosen in ``C(a, k) C(b, k) k!``
    ways and the rest pair among themselves in ``(a - k - 1)!! (b - k - 1)!!`` ways, so

        E[u^a u'^b] = sum_k C(a,k) C(b,k) k! (a-k-1)!! (b-k-1)!! rho^k q^((a-k)/2) q'^((b-k)/2).
    """
    total = sp.Integer(0)
    for k in range(min(a, b) + 1):
        if (a - k) % 2 or (b - k) % 2:
            continue
        ways = (sp.binomial(a, k) * sp.binomial(b, k) * sp.factorial(k)
                * sp.factorial2(a - k - 1) * sp.factorial2(b - k - 1))
        total += ways * RHO**k * Q ** ((a - k) // 2) * QP ** ((b - k) // 2)
    return total


def _polynomial_moment(f: sp.Poly, g: sp.Poly) -> sp.Expr:
    """``E[f(u) g(u')]`` for polynomials ``f``, ``g`` (:func:`gaussian_cross_moment`)."""
    out = sp.Integer(0)
    for (i,), ci in f.terms():
        for (j,), cj in g.terms():
            out += ci * cj * gaussian_cross_moment(i, j)
    return sp.expand(out)


def polynomial_forms(expr: sp.Expr) -> KernelForms | None:
    """Exact kernels of a polynomial ``phi`` in ``(rho, q, q')``, or ``None`` if ``expr`` is
    not a polynomial in ``x``: ``E[phi(u) phi(u')]`` and ``E[phi'(u) phi'(u')]`` are
    polynomials in ``rho, q, q'`` (:func:`gaussian_cross_moment`), e.g. ``x^2``:
    ``q q' + 2 rho^2``. At ``q = q' = 1`` they equal the (finite) Mehler series."""
    from analytic.activations import X

    if not expr.is_polynomial(X):
        return None
    poly = sp.Poly(expr, X)
    deriv = poly.diff(X)
    return KernelForms(
        name=f"polynomial {expr}",
        nngp=_polynomial_moment(poly, poly),
        dphi=_polynomial_moment(deriv, deriv),
        reference="Isserlis' theorem (Wick pairings of Gaussian moments)",
    )


def _as_piecewise_linear(expr: sp.Expr) -> tuple[sp.Expr, sp.Expr] | None:
    """``(a, b)`` (exact) if ``expr`` equals ``a x + b relu(x)``: ``a = -phi(-1)``,
    ``b = phi(1) - a``, confirmed at 64 fixed points of ``[-6, 6]`` to 1e-12."""
    from analytic.activations import X

    try:
        a = -expr.subs(X, -1)
        b = expr.subs(X, 1) - a
        if not (a.is_number and b.is_number and a.is_real and b.is_real):
            return None
        a, b = sp.nsimplify(a), sp.nsimplify(b)
        fn = sp.lambdify(X, expr, "math")
        points = np.random.default_rng(20202).uniform(-6.0, 6.0, 64)
        ok = all(abs(fn(float(x)) - (float(a) * x + float(b) * max(x, 0.0)))
                 <= 1e-12 * (1 + abs(x)) for x in points)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError, NameError):
        return None
    return (a, b) if ok else None


_SNAP = 16 * np.finfo(float).eps


def _cosine(rho: np.ndarray, q: np.ndarray, qp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(c, s)`` with ``s = sqrt(q q')`` and ``c = rho / s`` in ``[-1, 1]``, snapped to
    exactly ``+-1`` when ``1 - |c| <= 16 eps`` (``rho^2 = q q'`` to rounding: coincident or
    (anti)parallel inputs, whose ``rho`` and ``q`` were summed in different orders).

    Snapping moves ``theta = arccos(c)`` by at most ``sqrt(32 eps) ~ 8e-8`` where the
    inputs cannot tell ``|c| = 1`` from ``|c| = 1 - 16 eps`` anyway; without it the
    diagonal of the degree-0 kernel loses ``sqrt(2 eps) / (2 pi) ~ 3e-9`` per ulp of ``c``.
    """
    s = np.sqrt(q * qp)
    # a zero input (s = 0, rho = 0) is uncorrelated with everything: c = 0
    ratio = np.divide(rho, s, out=np.zeros(np.broadcast(rho, s).shape), where=s > 0)
    c = np.clip(ratio, -1.0, 1.0)
    c = np.where(1.0 - np.abs(c) <= _SNAP, np.sign(c), c)
    return c, s


def relu_kernels(rho: Any, q: Any = 1.0, qp: Any = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Numeric ``(E[relu(u) relu(u')], E[H(u) H(u')])`` (arc-cosine kernels, degrees 1, 0).

    ``pi - theta = pi - arccos(c)`` is evaluated as ``2 atan2(sqrt(1 + c), sqrt(1 - c))`` and
    ``sin(theta)`` as ``sqrt((1 - c)(1 + c))``: a few ulps for every ``c``, also near
    ``c = +-1`` where ``arccos`` of a rounded ``c`` loses half the digits. At ``x' = x``
    (``c = 1``, see :func:`_cosine`) ``pi - theta = pi`` exactly: ``k0 = 1/2``, ``k1 = q / 2``;
    at ``x' = -x`` it is ``0``: ``k0 = k1 = 0``.
    """
    rho, q, qp = (np.asarray(a, dtype=float) for a in (rho, q, qp))
    c, s = _cosine(rho, q, qp)
    lo, hi = 1.0 - c, 1.0 + c
    rest = 2.0 * np.arctan2(np.sqrt(hi), np.sqrt(lo))  # pi - theta
    nngp = s * (np.sqrt(lo * hi) + rest * c) / (2 * np.pi)
    return nngp, rest / (2 * np.pi)


def erf_kernels(rho: Any, q: Any = 1.0, qp: Any = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Numeric ``(E[erf(u) erf(u')], E[erf'(u) erf'(u')])`` (Williams' arcsin kernel).

    With ``p = (1 + 2q)(1 + 2q')`` and ``z = 2 rho / sqrt(p)``: ``arcsin(z)`` is evaluated as
    ``atan2(2 rho, sqrt(p - 4 rho^2))`` with ``p - 4 rho^2 = 1 + 2q + 2q' + 4 (q q' - rho^2)``
    and ``q q' - rho^2 = s^2 (1 - c)(1 + c) >= 0`` (:func:`_cosine`): no cancellation as
    ``|z| -> 1`` (large ``q``) and never a negative square root at ``rho^2 = q q'``.
    """
    rho, q, qp = (np.asarray(a, dtype=float) for a in (rho, q, qp))
    c, s = _cosine(rho, q, qp)
    gap = 1 + 2 * q + 2 * qp + 4 * (s * s) * ((1.0 - c) * (1.0 + c))  # p - 4 rho^2
    root = np.sqrt(gap)
    nngp = 2 / np.pi * np.arctan2(2 * rho, root)
    return nngp, 4 / (np.pi * root)


def relu_mix_kernels(
    a: float, b: float, rho: Any, q: Any = 1.0, qp: Any = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Numeric ``(E[phi(u) phi(u')], E[phi'(u) phi'(u')])`` for ``phi = a x + b relu(x)``
    (:func:`piecewise_linear_forms`): ``a (a + b) rho + b^2 k1`` and ``a (a + b) + b^2 k0``
    with the arc-cosine kernels ``k1, k0`` of :func:`relu_kernels`."""
    rho = np.asarray(rho, dtype=float)
    k1, k0 = relu_kernels(rho, q, qp)
    return a * (a + b) * rho + b * b * k1, a * (a + b) + b * b * k0


RELU_MIX = "a x + b relu(x)"
_NUMERIC_CLOSED = {"relu": relu_kernels, "erf": erf_kernels}


def _reference_fns() -> dict[str, NumFn]:
    from scipy.special import erf  # imported here: keeps ``import analytic.kernels`` light

    return {"relu": lambda x: np.maximum(x, 0.0), "erf": erf}


# --------------------------------------------------------------------------- activations


@dataclass(frozen=True)
class NumericActivation:
    """Vectorised numpy callables for ``phi`` and ``phi'`` with the kinks of ``phi``
    (``phi'`` may jump there), and the name of a closed-form kernel if ``phi`` has one:
    ``"relu"``, ``"erf"`` or :data:`RELU_MIX` (``"a x + b relu(x)"``, with ``(a, b)`` in
    ``relu_mix``: linear, leaky relu, abs, ...)."""

    phi: NumFn
    dphi: NumFn
    kinks: tuple[float, ...] = ()
    closed_form: str | None = None
    relu_mix: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.closed_form not in (None, RELU_MIX, *_NUMERIC_CLOSED):
            raise ValueError(f"closed_form must be None, {RELU_MIX!r} or one of "
                             f"{sorted(_NUMERIC_CLOSED)}, got {self.closed_form!r}")
        if (self.closed_form == RELU_MIX) != (self.relu_mix is not None):
            raise ValueError(f"relu_mix = (a, b) is given exactly when closed_form is "
                             f"{RELU_MIX!r}")


def identify_closed_form(phi: NumFn) -> str | None:
    """``"relu"`` or ``"erf"`` if ``phi`` equals that function at 64 fixed, irrational-looking
    points of ``[-6, 6]`` to 1e-13 (robust to how the expression is written: ``Max(x, 0)``,
    ``x*Heaviside(x)``, ``(x + Abs(x))/2`` all match), else ``None``."""
    x = np.random.default_rng(20201).uniform(-6.0, 6.0, 64)
    y = np.asarray(phi(x), dtype=float)
    for name, ref in _reference_fns().items():
        if np.all(np.abs(y - ref(x)) <= 1e-13 * (1 + np.abs(ref(x)))):
            return name
    return None


def identify_relu_mix(phi: NumFn) -> tuple[float, float] | None:
    """``(a, b)`` if ``phi(x) = a x + b relu(x)`` (linear ``(1, 0)``, leaky relu with slope
    ``s``: ``(s, 1 - s)``, abs ``(-1, 2)``, relu ``(0, 1)``), else ``None``: ``a = -phi(-1)``,
    ``b = phi(1) - a``, confirmed at 64 fixed points of ``[-6, 6]`` to
    ``1e-13 (1 + |a x + b relu(x)|)`` (round-off of the expression only)."""
    ends = np.asarray(phi(np.array([-1.0, 1.0])), dtype=float)
    a = float(-ends[0])
    b = float(ends[1]) - a
    if not (math.isfinite(a) and math.isfinite(b)):
        return None
    x = np.random.default_rng(20201).uniform(-6.0, 6.0, 64)
    with np.errstate(all="ignore"):
        y = np.asarray(phi(x), dtype=float)
    ref = a * x + b * np.maximum(x, 0.0)
    if np.all(np.abs(y - ref) <= 1e-13 * (1 + np.abs(ref))):
        return a, b
    return None


def closed_form_kernels(
    act: NumericActivation, rho: Any, q: Any = 1.0, qp: Any = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """``(E[phi(u) phi(u')], E[phi'(u) phi'(u')])`` by ``act.closed_form`` (which must be
    set): :func:`relu_kernels`, :func:`erf_kernels` or :func:`relu_mix_kernels`."""
    if act.closed_form == RELU_MIX:
        a, b = act.relu_mix  # type: ignore[misc]
        return relu_mix_kernels(a, b, rho, q, qp)
    if act.closed_form is None:
        raise ValueError("the activation has no closed-form kernel")
    return _NUMERIC_CLOSED[act.closed_form](rho, q, qp)


def numeric_activation(activation: Any) -> NumericActivation:
    """Numpy callables of an ``analytic.activations.Activation`` (via ``codegen.to_numpy``).

    Raises ``ActivationError`` if ``phi`` jumps at a kink: then ``phi'`` contains a Dirac
    delta, ``E[phi'(u)^2]`` is infinite and so is the first-layer NTK on the diagonal.
    """
    from analytic.activations import ActivationError
    from analytic.codegen import to_numpy

    phi = _vectorised(to_numpy(activation.expr))
    dphi = _vectorised(to_numpy(activation.derivative(1)))
    kinks = tuple(float(k) for k in activation.kinks)
    for k in kinks:
        eps = 1e-7 * max(1.0, abs(k))
        if abs(float(phi(np.array(k + eps)) - phi(np.array(k - eps)))) > 1e-4:
            raise ActivationError(
                f"activation {activation.name!r} jumps at x={k:g}: phi' has a delta there and "
                "the first-layer NTK is infinite; allowed: activations continuous in x")
    closed = identify_closed_form(phi)
    mix = identify_relu_mix(phi) if closed is None else None
    return NumericActivation(phi, dphi, kinks, RELU_MIX if mix else closed, mix)


def _vectorised(fn: Callable) -> NumFn:
    def call(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        return np.broadcast_to(np.asarray(fn(x), dtype=float), x.shape)

    return call


# --------------------------------------------------------------------------- numeric kernels


def mehler_kernel(
    phi: NumFn,
    kinks: Sequence[float],
    rho: np.ndarray,
    q: np.ndarray,
    qp: np.ndarray,
    order: int = 40,
    psi: NumFn | None = None,
    kinks_psi: Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``E[phi(u) psi(u')]`` by the Mehler series truncated after ``order``, with a bound.

    ``rho`` has shape ``(n, n2)``, ``q`` shape ``(n,)``, ``qp`` shape ``(n2,)``; ``psi``
    defaults to ``phi``. With ``h_k(q) = c_k(q)/sqrt(k!)`` and ``r = rho/sqrt(q q')``:
    ``sum_{k<=order} h_k(q) h'_k(q') r^k``. By Cauchy-Schwarz the truncation error is at most
    ``|r|^(order+1) sqrt(T(q) T'(q'))`` with ``T(q) = E[phi(sqrt(q) g)^2] - sum_k h_k(q)^2``,
    returned as the second array (a rigorous bound up to quadrature error ~1e-13).
    """
    if psi is None:
        psi, kinks_psi = phi, kinks
    q = np.asarray(q, dtype=float)
    qp = np.asarray(qp, dtype=float)
    h = hermite_table(phi, kinks, order, q)
    hp = hermite_table(psi, kinks_psi or (), order, qp)
    rho = np.asarray(rho, dtype=float)
    scale = np.sqrt(q[:, None] * qp[None, :])
    # a zero input (q = 0, so rho = 0) has r = 0: only c_0 = phi(0) survives
    r = np.divide(rho, scale, out=np.zeros(np.broadcast(rho, scale).shape), where=scale > 0)
    total = np.zeros_like(r)
    power = np.ones_like(r)
    for k in range(order + 1):
        total += np.outer(h[:, k], hp[:, k]) * power
        power = power * r
    tail = gaussian_expectations(lambda u: phi(u) ** 2, kinks, q)
    tailp = gaussian_expectations(lambda u: psi(u) ** 2, kinks_psi or (), qp)
    tail = np.maximum(tail - np.sum(h * h, axis=1), 0.0)
    tailp = np.maximum(tailp - np.sum(hp * hp, axis=1), 0.0)
    bound = np.abs(power) * np.sqrt(np.outer(tail, tailp))
    return total, bound


def two_layer_kernels(
    act: NumericActivation, rho: Any, q: Any = 1.0, qp: Any = 1.0, order: int = 40
) -> tuple[np.ndarray, np.ndarray]:
    """Infinite-width ``(Theta1, Theta2)`` at scalar or broadcastable ``(rho, q, q')``.

    Closed form when ``act.closed_form`` is set (:func:`closed_form_kernels`); otherwise the
    Mehler series (``order`` terms) off the diagonal and 1-D quadrature where
    ``rho^2 = q q'`` (``u' = +-sqrt(q'/q) u``, where the series converges slowly); the
    series' truncation error is not reported here (``meanfield.linear.infinite_width_ntk``
    bounds it). Returns ``Theta1 = rho E[phi' phi']``, ``Theta2 = E[phi phi]``.
    """
    rho, q, qp = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (rho, q, qp)))
    if act.closed_form is not None:
        nngp, dd = closed_form_kernels(act, rho, q, qp)
        return rho * dd, nngp
    shape = rho.shape
    rho, q, qp = rho.ravel(), q.ravel(), qp.ravel()
    nngp = np.empty(rho.size)
    dd = np.empty(rho.size)
    for i in range(rho.size):
        nngp[i], dd[i] = _pair(act, rho[i], q[i], qp[i], order)
    return (rho * dd).reshape(shape), nngp.reshape(shape)


ALIGNED = 1e-12
"""Pairs with ``|1 - r^2| <= ALIGNED`` (``r = rho / sqrt(q q')``) are treated as aligned,
``u' = +-sqrt(q'/q) u`` (coincident or (anti)parallel inputs up to rounding): there the Mehler
series converges slowly and one-dimensional quadrature is exact. Treating such a pair as
``|r| = 1`` moves ``E[phi' phi']`` by at most ``arccos(|r|) / (2 pi) <= 1.6e-7`` of its scale
where ``phi'`` jumps (its degree-0 arc-cosine part), and the rest by ``O(1 - r^2) <= 1e-12``."""


def aligned_kernels(act: NumericActivation, sign: float, q: float, qp: float) -> tuple:
    """``(E[phi(u) phi(u')], E[phi'(u) phi'(u')])`` for ``u' = sign sqrt(q'/q) u``,
    ``u ~ N(0, q)`` (``rho = sign sqrt(q q')``), by the 1-D rule split at the kinks of both
    factors: accurate to ~1e-13 for piecewise-smooth ``phi``."""
    s = math.sqrt(qp / q) * (1.0 if sign >= 0 else -1.0)
    # fn(s u) has its kinks at k / s
    kinks = sorted({*act.kinks, *(k / s for k in act.kinks)})

    def both(fn: NumFn) -> float:
        return gaussian_expectation(lambda u: fn(u) * fn(s * u), kinks, q)

    return both(act.phi), both(act.dphi)


def _pair(act: NumericActivation, rho: float, q: float, qp: float, order: int) -> tuple:
    if abs(q * qp - rho * rho) <= ALIGNED * q * qp:
        return aligned_kernels(act, rho, q, qp)
    one = np.array([[rho]])
    qa, qb = np.array([q]), np.array([qp])
    nngp = mehler_kernel(act.phi, act.kinks, one, qa, qb, order)[0][0, 0]
    dd = mehler_kernel(act.dphi, act.kinks, one, qa, qb, order)[0][0, 0]
    return nngp, dd


# --------------------------------------------------------------------------- Mehler (symbolic)


def mehler_series(coefficients: Sequence[Any]) -> dict[str, sp.Expr]:
    """Symbolic Mehler series at ``q = q' = 1`` from ``c_k = E[phi(g) He_k(g)]``, k = 0..K:

        Theta2(rho) = sum_{k=0}^{K}   c_k^2     rho^k / k!
        Theta1(rho) = sum_{k=0}^{K-1} c_{k+1}^2 rho^(k+1) / k!

    ``coefficients`` are numbers, sympy expressions, or ``Value``-like objects (``.expr`` if
    exact, else ``.value``). Exact coefficients give exact polynomials in ``RHO``.
    """
    c = [_as_expr(v) for v in coefficients]
    theta2 = sum((ck**2 * RHO**k / sp.factorial(k) for k, ck in enumerate(c)), sp.Integer(0))
    theta1 = sum((c[k + 1] ** 2 * RHO ** (k + 1) / sp.factorial(k) for k in range(len(c) - 1)),
                 sp.Integer(0))
    return {"theta1": sp.expand(theta1), "theta2": sp.expand(theta2)}


def _as_expr(v: Any) -> sp.Expr:
    if hasattr(v, "exact"):
        return sp.sympify(v.expr) if v.exact else sp.Float(v.value, 15)
    if isinstance(v, float):
        return sp.Float(v, 15)
    return sp.sympify(v)


# --------------------------------------------------------------------------- affine NTK


def _exact_number(x: Any) -> sp.Expr | None:
    """Exact sympy number for int / Fraction / sympy rational, ``None`` for floats."""
    if isinstance(x, bool):
        raise TypeError("expected a number")
    if isinstance(x, int):
        return sp.Integer(x)
    if isinstance(x, Fraction):
        return sp.Rational(x.numerator, x.denominator)
    if isinstance(x, sp.Basic) and x.is_number and x.is_rational:
        return sp.nsimplify(x)
    return None


def affine_coefficients(
    moments: Mapping[str, Any], t2: Any, lr_ratio: Any = 1
) -> dict[str, dict[str, Value]]:
    """Coefficients of ``Theta ~= ones 11^T + data XX^T/d + identity I`` (module docstring).

    ``moments``: mapping with ``nu, zeta, mu2, E_phi2, E_dphi2`` to ``Value``-like objects
    (``.value``, ``.exact``, ``.expr``) or plain numbers; ``t2 = tr(Sigma^2)/d^2``;
    ``lr_ratio = R = lr2/lr1`` with the normalisation ``lr1 = 1``, ``lr2 = R``. Returns
    ``{"first"|"second"|"both": {"ones"|"data"|"identity": Value}}`` (``analytic.gaussian.Value``:
    ``value``, ``exact``, ``expr``, ``latex``); a coefficient is exact when every moment it
    uses is exact and ``t2`` (and ``R`` for ``both``) is rational (int, ``Fraction`` or sympy
    rational; floats give numeric results, ``expr = None``).
    """
    names = ("nu", "zeta", "mu2", "E_phi2", "E_dphi2")
    exact_m = {k: _moment_expr(moments[k]) for k in names}
    value_m = {k: _moment_value(moments[k]) for k in names}
    t2e, re = _exact_number(t2), _exact_number(lr_ratio)

    def layers(m: Mapping[str, Any], t: Any, r: Any) -> dict[str, dict[str, Any]]:
        nu, zeta, mu2, ephi2, edphi2 = (m[k] for k in names)
        first = {"ones": mu2**2 * t, "data": zeta**2,
                 "identity": edphi2 - zeta**2 - mu2**2 * t}
        second = {"ones": nu**2 + mu2**2 * t / 2, "data": zeta**2,
                  "identity": ephi2 - nu**2 - zeta**2 - mu2**2 * t / 2}
        both = {k: first[k] + r * second[k] for k in TERMS}
        return {"first": first, "second": second, "both": both}

    values = layers(value_m, float(t2), float(lr_ratio))
    exprs = None
    if t2e is not None and all(v is not None for v in exact_m.values()):
        exprs = layers(exact_m, t2e, re if re is not None else sp.Float(float(lr_ratio), 17))
    out: dict[str, dict[str, Value]] = {}
    for layer in LAYERS:
        out[layer] = {}
        for term in TERMS:
            value = float(values[layer][term])
            if exprs is not None and (layer != "both" or re is not None):
                expr = _tidy(exprs[layer][term])
                out[layer][term] = Value(float(sp.N(expr, 20)), True, expr, sp.latex(expr))
            else:
                out[layer][term] = Value(value, False, None, f"{value:.15g}")
    return out


def _moment_expr(v: Any) -> sp.Expr | None:
    if hasattr(v, "exact"):
        return sp.sympify(v.expr) if v.exact else None
    return _exact_number(v)


def _moment_value(v: Any) -> float:
    return float(v.value) if hasattr(v, "value") else float(v)


def _tidy(expr: sp.Expr) -> sp.Expr:
    return sp.together(sp.expand(expr))


def feature_map(coefficients: Mapping[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    """Early-time linear model features ``psi(x) = [sqrt(ones), sqrt(data) x / sqrt(d)]``.

    ``coefficients``: one layer's ``{"ones", "data", ...}`` (``Value`` or float). The
    returned function maps ``X`` (``n x d``) to ``Psi`` (``n x (d + 1)``) with
    ``Psi Psi^T = ones 11^T + data XX^T / d``, the non-identity part of the affine kernel.
    """
    ones = _moment_value(coefficients["ones"])
    data = _moment_value(coefficients["data"])
    if ones < 0 or data < 0:
        raise ValueError(f"feature map needs ones >= 0 and data >= 0, got {ones}, {data}")

    def psi(X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        n, d = X.shape
        return np.hstack([np.full((n, 1), math.sqrt(ones)), math.sqrt(data / d) * X])

    return psi


# --------------------------------------------------------------------------- report


def kernel_report(activation: Any, moments: Mapping[str, Any]) -> dict[str, Any]:
    """Infinite-width ``Theta1``, ``Theta2`` for ``meanfield derive``.

    Exact in ``(rho, q, q')`` (``exact`` when its coefficients are exact numbers, not
    floats): erf (recognised by the expression ``erf(x)``), ``a x + b relu(x)`` (relu, leaky
    relu, abs, linear; :func:`piecewise_linear_forms`) and polynomials of any degree
    (:func:`polynomial_forms`). Any other activation: the Mehler series at ``q = q' = 1``
    only, through ``rho^3``, from ``c_0..c_3 = nu, zeta, mu2, mu3``,
    ``Theta2 = sum_{k<=3} c_k^2 rho^k/k! + O(rho^4)``,
    ``Theta1 = sum_{k<=2} c_{k+1}^2 rho^(k+1)/k! + O(rho^4)``: never ``exact`` (truncated,
    and off the sphere the coefficients change with ``q``); ``coefficients_exact`` says
    whether its coefficients are. Returns ``{"method", "reference", "truncated",
    "coefficients_exact", "domain", "theta1", "theta2"}``, ``domain`` being
    ``"all (rho, q, q')"`` or ``"q = q' = 1 only"``, each kernel as
    ``{"expr": sympy, "exact": bool, "latex": str, "text": str}``.
    """
    from analytic.activations import X

    expr = activation.expr
    pl = None if expr == sp.erf(X) else _as_piecewise_linear(expr)
    forms = _erf_forms() if expr == sp.erf(X) else None
    if pl is not None:
        forms = _relu_forms() if pl == (0, 1) else piecewise_linear_forms(*pl)
        method = "closed form in (rho, q, q')"
    elif forms is not None:
        method = "closed form in (rho, q, q')"
    else:
        forms = polynomial_forms(expr)
        method = "Gaussian moments of a polynomial, exact in (rho, q, q')"
    if forms is not None:
        exprs = {"theta1": forms.theta1, "theta2": forms.theta2}
        if forms.reference.startswith("Isserlis"):
            exprs = {k: sp.expand(v) for k, v in exprs.items()}
        out: dict[str, Any] = {"method": method, "reference": forms.reference,
                               "truncated": False,
                               "coefficients_exact": not any(e.has(sp.Float)
                                                             for e in exprs.values()),
                               "domain": "all (rho, q, q')"}
    else:
        coeffs = [moments[k] for k in ("nu", "zeta", "mu2", "mu3")]
        exprs = mehler_series(coeffs)
        out = {"method": "Mehler series through rho^3, valid at q = q' = 1 only",
               "reference": "Hermite expansion, c_k = E[phi(g) He_k(g)]",
               "truncated": True,
               "coefficients_exact": all(getattr(c, "exact", False) for c in coeffs),
               "domain": "q = q' = 1 only"}
    tail = (" + O(rho^4)", r" + O(\rho^{4})") if out["truncated"] else ("", "")
    for key, kernel in exprs.items():
        exact = not out["truncated"] and out["coefficients_exact"]
        out[key] = {"expr": kernel, "exact": exact,
                    "latex": sp.latex(kernel) + tail[1], "text": str(kernel) + tail[0]}
    return out
