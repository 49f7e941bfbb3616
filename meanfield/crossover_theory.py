r"""Rich to lazy in the hinge model: the exact theory in lazy time (pure functions).

Model and conventions of :mod:`meanfield.config` (Pellegrini & Biroli 2020, arXiv:2006.11209):
``f(x) = (alpha/M) sum_i a_i relu(w_i.x/sqrt d)``, teacher ``w* = e_1``, ``y = sign(x_par)``,
linear hinge ``(h - y f)_+``, gradient flow ``d theta_i/dt = -beta M dL/d theta_i`` in
mean-field time ``t`` (units ``1/beta``), ``a_i(0) ~ N(0, sa^2)``, ``w_i(0) ~ N(0, sw^2 I_d)``.
Everything else is dimensionless. At ``M, N = inf`` the network is ``f(x) = S x_par``.

Derivation of the lazy-time result
----------------------------------
1. *The P&B solution* (:mod:`analytic.hinge`, :mod:`meanfield.theory`). For ReLU and an
   unsatisfied set ``U = {|x_par| < X}``, ``X = h/S``, every node moves on a hyperbola,
   ``a = a0 cosh g + w0 sinh g``, ``w_par = w0 cosh g + a0 sinh g`` (``w0 = w_par(0)``,
   ``w_perp`` frozen), with ``d gamma/dt = beta alpha V(X)/sqrt d``,
   ``V(X) = int_0^X x p(x) dx = <|x_par| 1_U>/2`` (``p`` the density of ``x_par``), and
   ``S = alpha E[a w_par]/(2 sqrt d) = S* sinh(2 gamma)``.
   Write ``m(X) = 2 V(X) = <|x_par| 1_U>``; Gaussian data: ``m(X) = sqrt(2/pi) (1 - e^{-X^2/2})``
   and the training error is ``P(|x_par| < X) = erf(X/sqrt 2)``; the sphere law uses the
   theory module's own ``V`` and ``P_U`` (a regularized incomplete beta function).
2. *Lazy time.* With ``S* = alpha (sa^2 + sw^2)/(4 sqrt d)`` and
   ``tau = alpha^2 beta (sa^2 + sw^2) t/(4 d) = (alpha beta S*/sqrt d) t``,

       dS/dt = 2 S* cosh(2 gamma) d gamma/dt = 2 S* sqrt(1 + (S/S*)^2) beta alpha V/sqrt d,
       dS/dtau = m(h/S) sqrt(1 + (S/S*)^2),          S(0) = 0.                          (F)

   ``alpha`` now enters only through ``S*``. At ``S = 0`` every example is unsatisfied and
   ``m = m_max = 2 V_max`` (``sqrt(2/pi)`` for Gaussian data), so ``S ~ m_max tau`` at first.
3. *Lazy limit* (``alpha -> inf`` at fixed ``tau``: ``S* -> inf`` while ``S = O(1)``):

       dS/dtau = m(h/S).                                                                  (L)

   It is exactly the ``M, N = inf`` limit of the weight-space linearization
   ``f_lin = f_0 + grad f_0 . (theta - theta_0)`` with ``f_0 = 0``: under the flow,
   ``df(x)/dt = beta alpha^2 E_x'[K_0(x, x') y' 1_U(x')]`` with the node-averaged tangent
   kernel ``K_0`` of :func:`tangent_kernel`. Pairing ``x'`` with ``-x'`` (``U`` is symmetric)
   keeps only the part of ``K_0`` odd in ``x'``: ``relu(u') -> u'/2``, ``H(u') -> 1/2``
   against ``y' x'``, and ``E[y' x' 1_U] = m e_1``; Stein's lemma
   ``E[w_par relu(u)] = sw^2 x_par/(2 sqrt d)`` and ``E[a^2 H(u)] = sa^2/2`` then give
   ``df_lin/dt = beta alpha^2 (sa^2 + sw^2) m x_par/(4 d)``, i.e. ``f_lin = S x_par`` with
   (L). The rate is the data coefficient ``c_X = (sa^2 + sw^2)/4`` of the affine NTK
   (Hu et al. 2020): ``K_0 ~ c_1 + c_X x.x'/d + ...``.
4. *Crossover.* (F) is lazy while ``S << S*``. At training error ``eps`` the slope is
   ``S = h/X_eps`` (``X_eps = sqrt 2 erfinv(eps)`` for Gaussian data), so the crossover scale
   is ``alpha_c = 4 sqrt(d) h/(sa^2 + sw^2)`` (``S* = h``), and from ``S = S* sinh 2 gamma``

       gamma_eps(alpha) = (1/2) asinh(h/(S* X_eps))
                        = (1/2) asinh(4 sqrt(d) h/(alpha (sa^2 + sw^2) X_eps)),

   ``~ 2 sqrt(d) h/(alpha (sa^2+sw^2) X_eps)`` (lazy) and ``~ log(1/alpha)/2`` (rich).
5. *Late times* (Gaussian, ``X -> 0``: ``m ~ X^2/sqrt(2 pi)``, error ``~ sqrt(2/pi) X``):
   (L) gives ``S^2 dS = h^2 dtau/sqrt(2 pi)``, ``S^3 = 3 h^2 tau/sqrt(2 pi)``, error
   ``~ tau^(-1/3)``; (F) with ``sqrt(1 + (S/S*)^2) ~ S/S*`` gives
   ``S^2 = 2 h^2 tau/(sqrt(2 pi) S*)``, error ``~ tau^(-1/2)``, i.e. the known
   ``(2d/pi)^(1/4) (alpha beta t)^(-1/2)``.
6. *Solution by quadrature.* (F) and (L) separate:
   ``tau(S) = int_0^S dS'/(m(h/S') r(S'))`` with ``r = sqrt(1 + (S/S*)^2)`` or ``r = 1``.
   Where ``m`` is constant (``X >= 9`` for Gaussian data, where ``1 - m/m_max < 3e-18``;
   ``X >= sqrt d`` exactly for the sphere) the integral is closed,
   ``(S*/m_max) asinh(S/S*)`` or ``S/m_max``; beyond, it is taken in ``l = log S`` on
   20-point Gauss-Legendre panels of width 1/8 (graded geometrically towards ``X = sqrt d``
   for the sphere, where ``V`` has a ``(sqrt d - X)^((d-1)/2)`` singularity), and inverted
   by Newton's method inside the panel of each target. :func:`solve_S` also offers
   ``solve_ivp`` (DOP853, rtol 1e-12) as an independent second method.

Frankle measures at ``gamma`` (Frankle, Schwab & Morcos 2020), population values
----------------------------------------------------------------------------------
With ``ch, sh = cosh gamma, sinh gamma`` and ``E a0 w0 = 0``:
``E(a - a0)^2 = (ch - 1)^2 sa^2 + sh^2 sw^2``, so ``a_distance = |a - a0|/|a0|`` is
``sqrt(((ch-1)^2 sa^2 + sh^2 sw^2)/sa^2)``; only ``w_par`` moves among the ``d`` components of
``w``: ``W_distance = sqrt(((ch-1)^2 sw^2 + sh^2 sa^2)/(d sw^2))``; ``w_par`` changes sign
when ``w0`` and ``w0 + a0 tanh gamma`` differ in sign, the angle between the two directions
``(0, sw)`` and ``(sa tanh gamma, sw)`` of the standard pair over ``pi``:
``w_par_sign_flip_fraction = atan((sa/sw) tanh gamma)/pi`` (and that over ``d`` for all of
``W``); ``anisotropy = rms(w_par)/rms(w_perp) = sqrt(sw^2 ch^2 + sa^2 sh^2)/sw``.

Rewinding (restarted theory)
----------------------------
Nodes reset at ``tau_k`` to ``(a', w')`` whose law is symmetric under
``(a', w_par', w_perp') -> -(a', w_par', w_perp')`` (so ``E[a' |u'|] = 0`` and ``f`` is again
``S x_par``) move on the hyperbolae from ``gamma' = 0``:
``E[a w_par] = maw' cosh 2 gamma' + mp' sinh 2 gamma'`` with ``mp' = (E a'^2 + E w_par'^2)/2``,
``maw' = E[a' w_par']``, so ``S = A cosh 2 gamma' + B sinh 2 gamma'``,
``A = alpha maw'/(2 sqrt d)``, ``B = alpha mp'/(2 sqrt d)``. As ``(dS/d 2gamma')^2 = S^2 + C^2``,
``C^2 = B^2 - A^2`` (``> 0`` as ``mp' > |maw'|``), in lazy time

    dS/dtau = m(h/S) sqrt(S^2 + C^2)/S*,      S(tau_k) = A,                              (R)

which is (F) for ``A = 0, C = S*`` (and reproduces (F) after ``tau_k`` when the moments are the
unperturbed ones, ``maw' = (sa^2+sw^2) sinh(2 gamma_k)/2``, ``mp' = (sa^2+sw^2) cosh(2
gamma_k)/2``). While ``S <= 0`` every example is unsatisfied (``m = m_max``). The arms, with
``gamma_k = gamma_theory(tau_k)`` and ``a_k, w_k`` the nodes there (:func:`rewind_moments`):
``signs`` (``|initial value|`` with the sign at ``tau_k``): ``mp' = (sa^2+sw^2)/2``,
``maw' = E[|a0| |w0| sgn(a_k) sgn(w_k)]``; ``signs_random`` (fresh magnitudes):
``maw' = (2 sa sw/pi) E[sgn(a_k) sgn(w_k)] = (2 sa sw/pi) (2/pi) asin(rho_k)``,
``rho_k`` the correlation of ``(a_k, w_k)``; ``shuffle`` (``a`` permuted among nodes):
``maw' = 0``, ``mp' = (sa^2+sw^2) cosh(2 gamma_k)/2``.

Node-wise kernel
----------------
The tangent kernel of a network state, node-averaged and without ``alpha``,
``K(x, x') = (1/M) sum_i [relu(u_i) relu(u_i') + a_i^2 H(u_i) H(u_i') x.x'/d]``,
``u_i = w_i.x/sqrt d``, is ``(M/alpha^2) J J^T`` with ``J`` the Jacobian of ``f`` with
respect to all of ``(a, W)``; the flow moves ``f`` as
``df(x)/dt = (beta alpha^2/N) sum_mu K(x, x_mu) y_mu 1[y_mu f(x_mu) < h]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special
from scipy.integrate import solve_ivp
from scipy.interpolate import CubicHermiteSpline

from meanfield.config import Config
from meanfield.theory import _Relu

ArrayLike = float | Sequence[float] | np.ndarray

REWIND_ARMS = ("signs", "signs_random", "shuffle")
"""The rewinding arms of :func:`rewind_moments` and :func:`rewind_theory`."""

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(20)
_PANEL = 0.125  # width in log S of a Gauss-Legendre panel of tau(S)
_X_FLAT_GAUSSIAN = 9.0  # beyond it 1 - m(X)/m_max = exp(-X^2/2) < 3e-18


# ----------------------------------------------------------------------------- lazy time


def lazy_time_rate(config: Config) -> float:
    """``dtau/dt = alpha^2 beta (sa^2 + sw^2)/(4 d)`` (units of ``beta``)."""
    c = config
    return c.alpha**2 * c.beta * (c.sa**2 + c.sw**2) / (4.0 * c.d)


def lazy_time(config: Config, t: ArrayLike) -> np.ndarray:
    """Lazy time ``tau = alpha^2 beta (sa^2 + sw^2) t/(4 d)`` of mean-field time ``t``
    (dimensionless)."""
    return lazy_time_rate(config) * np.asarray(t, dtype=np.float64)


def mean_field_time(config: Config, tau: ArrayLike) -> np.ndarray:
    """Inverse of :func:`lazy_time`: ``t = 4 d tau/(alpha^2 beta (sa^2 + sw^2))`` (units
    ``1/beta``)."""
    return np.asarray(tau, dtype=np.float64) / lazy_time_rate(config)


def S_star(config: Config) -> float:
    """``S* = alpha (sa^2 + sw^2)/(4 sqrt d)``: ``S = S* sinh(2 gamma)`` (dimensionless)."""
    c = config
    return c.alpha * (c.sa**2 + c.sw**2) / (4.0 * math.sqrt(c.d))


def alpha_c(config: Config) -> float:
    """Crossover scale ``alpha_c = 4 sqrt(d) h/(sa^2 + sw^2)``, where ``S* = h``."""
    c = config
    return 4.0 * math.sqrt(c.d) * c.h / (c.sa**2 + c.sw**2)


# ----------------------------------------------------------------------------- data law


def _relu(config: Config) -> _Relu:
    return _Relu.of(config)


def m_of_X(config: Config, X: ArrayLike) -> np.ndarray:
    """``m(X) = 2 V(X) = <|x_par| 1[|x_par| < X]>`` of the config's data law (``V`` of
    :mod:`meanfield.theory`); Gaussian: ``sqrt(2/pi) (1 - exp(-X^2/2))``; ``m_max`` at
    ``X = inf`` (and beyond the sphere's support)."""
    return 2.0 * _relu(config).law(np.asarray(X, dtype=np.float64))["V"]


def train_error_of_X(config: Config, X: ArrayLike) -> np.ndarray:
    """Training error ``P(|x_par| < X)`` (fraction of unsatisfied examples) of the data law:
    ``erf(X/sqrt 2)`` for Gaussian data, the theory module's ``P_U`` for the sphere; 1 at
    ``X = inf``."""
    X = np.asarray(X, dtype=np.float64)
    if config.data == "gaussian":
        return special.erf(X / math.sqrt(2.0))
    return _relu(config).law(X)["P_U"]


def X_at_error(config: Config, eps: ArrayLike) -> np.ndarray:
    """Edge ``X_eps`` with ``P(|x_par| < X_eps) = eps`` (``0 < eps < 1``): ``sqrt 2 erfinv(eps)``
    (Gaussian), ``sqrt(d I^-1_eps(1/2, (d-1)/2))`` (sphere)."""
    eps = np.asarray(eps, dtype=np.float64)
    if np.any(~((eps > 0) & (eps < 1))):
        raise ValueError(f"eps: a training error in (0, 1); got {eps}")
    if config.data == "gaussian":
        return math.sqrt(2.0) * special.erfinv(eps)
    d = float(config.d)
    return np.sqrt(d * special.betaincinv(0.5, (d - 1.0) / 2.0, eps))


# ----------------------------------------------------------------------------- the flows


def _check_tau(tau: ArrayLike) -> np.ndarray:
    tau = np.atleast_1d(np.asarray(tau, dtype=np.float64))
    if tau.ndim != 1 or not np.all(np.isfinite(tau)) or np.any(tau < 0):
        raise ValueError("tau: a 1-d array of finite, non-negative lazy times")
    return tau


@dataclass(frozen=True)
class _Flow:
    """``dS/dtau = m(h/S) r(S)`` from ``S(tau0) = S0``, with ``r = sqrt(S^2 + C^2)/S*`` or,
    lazy (``C = None``), ``r = 1``."""

    rel: _Relu
    S_star: float
    C: float | None
    S0: float = 0.0
    tau0: float = 0.0

    @property
    def h(self) -> float:
        return self.rel.config.h

    @property
    def m_max(self) -> float:
        return 2.0 * float(self.rel.num.V_max(float(self.rel.config.d)))

    @property
    def S_flat(self) -> float:
        """Largest ``S`` up to which ``m = m_max`` (to rounding)."""
        x_flat = min(self.rel.x_top, _X_FLAT_GAUSSIAN)
        return self.h / x_flat

    def r(self, S: np.ndarray) -> np.ndarray:
        if self.C is None:
            return np.ones_like(S)
        return np.hypot(S, self.C) / self.S_star

    def rate(self, S: np.ndarray) -> np.ndarray:
        """``dS/dtau``; ``m = m_max`` where ``S <= 0``."""
        S = np.asarray(S, dtype=np.float64)
        with np.errstate(divide="ignore"):
            X = np.where(S > 0, self.h / np.where(S > 0, S, 1.0), np.inf)
        return 2.0 * self.rel.law(X)["V"] * self.r(S)

    # closed form where m = m_max
    def _F(self, S: np.ndarray) -> np.ndarray:
        if self.C is None:
            return S / self.m_max
        return self.S_star / self.m_max * np.arcsinh(S / self.C)

    def _F_inv(self, F: np.ndarray) -> np.ndarray:
        if self.C is None:
            return F * self.m_max
        return self.C * np.sinh(F * self.m_max / self.S_star)

    def _start(self) -> tuple[float, float, bool]:
        """(``l`` where the panels start, ``tau`` there, whether the first panel edge is the
        end of the sphere's support)."""
        if self.S0 >= self.S_flat:
            return math.log(self.S0), self.tau0, False
        tau_flat = self.tau0 + float(self._F(np.float64(self.S_flat))
                                     - self._F(np.float64(self.S0)))
        return math.log(self.S_flat), tau_flat, self.rel.x_top <= _X_FLAT_GAUSSIAN

    def _g(self, l: np.ndarray) -> np.ndarray:
        """``dtau/dl = S/(m(h/S) r(S))``, ``S = e^l``."""
        S = np.exp(l)
        return S / self.rate(S)

    def _panels(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        half = 0.5 * (hi - lo)
        l = 0.5 * (hi + lo)[..., None] + half[..., None] * _GL_NODES
        return half * (_GL_WEIGHTS * self._g(l)).sum(axis=-1)

    def _table(self, tau_needed: float = -np.inf, l_needed: float = -np.inf
               ) -> tuple[np.ndarray, np.ndarray]:
        """Panel edges ``l_k`` and ``tau(l_k)`` reaching ``tau_needed`` and ``l_needed``."""
        l_start, tau_start, graded = self._start()
        edges = np.array([l_start])
        if graded:  # X = sqrt d at l_start: panels graded towards it
            edges = l_start + _PANEL * np.concatenate([[0.0], 0.25 ** np.arange(24, -1, -1)])
        cum = np.concatenate([[tau_start],
                              tau_start + np.cumsum(self._panels(edges[:-1], edges[1:]))])
        while cum[-1] < tau_needed or edges[-1] < l_needed:
            new = edges[-1] + _PANEL * np.arange(1, 65)
            pieces = self._panels(np.concatenate([[edges[-1]], new[:-1]]), new)
            edges = np.concatenate([edges, new])
            cum = np.concatenate([cum, cum[-1] + np.cumsum(pieces)])
        return edges, cum

    def tau_of_S(self, S: np.ndarray) -> np.ndarray:
        """``tau(S)`` for ``S >= S0`` (closed form, then panels)."""
        S = np.asarray(S, dtype=np.float64)
        if np.any(S < self.S0):
            raise ValueError(f"S: at least the starting value {self.S0}")
        l_start, _, _ = self._start()
        out = self.tau0 + self._F(np.minimum(S, max(self.S_flat, self.S0))) - self._F(
            np.float64(self.S0))
        beyond = S > math.exp(l_start)
        if beyond.any():
            l = np.log(S[beyond])
            edges, cum = self._table(l_needed=float(l.max()))
            k = np.clip(np.searchsorted(edges, l, side="right") - 1, 0, len(edges) - 2)
            out[beyond] = cum[k] + self._panels(edges[k], l)
        return out

    def S_of_tau_quad(self, tau: np.ndarray) -> np.ndarray:
        """``S(tau)`` for ``tau >= tau0``: the closed form while ``m = m_max``, then Newton on
        ``tau(l) - tau`` inside the panel of each target, started from a cubic Hermite
        interpolation of the table, to ``|dl| <= 4e-16 (1 + |l|)``."""
        _, tau_start, _ = self._start()
        out = np.empty_like(tau)
        early = tau <= tau_start
        out[early] = self._F_inv(self._F(np.float64(self.S0)) + tau[early] - self.tau0)
        late = ~early
        if not late.any():
            return out
        t = tau[late]
        edges, cum = self._table(tau_needed=float(t.max()))
        k = np.clip(np.searchsorted(cum, t, side="right") - 1, 0, len(edges) - 2)
        lo, hi, target = edges[k], edges[k + 1], t - cum[k]
        keep = np.concatenate([[True], np.diff(cum) > 0])  # graded panels may add nothing
        guess = CubicHermiteSpline(cum[keep], edges[keep], 1.0 / self._g(edges[keep]))(t)
        l = np.clip(guess, lo, hi)
        active = np.ones(t.shape, dtype=bool)
        for _ in range(60):
            step = (self._panels(lo[active], l[active]) - target[active]) / self._g(l[active])
            l[active] = np.clip(l[active] - step, lo[active], hi[active])
            done = np.abs(step) <= 4e-16 * (1.0 + np.abs(l[active]))
            active[np.flatnonzero(active)[done]] = False
            if not active.any():
                break
        out[late] = np.exp(l)
        return out

    def S_of_tau_ode(self, tau: np.ndarray) -> np.ndarray:
        """``S(tau)`` for ``tau >= tau0``: the closed form while ``m = m_max`` (up to the kink of
        ``m`` at the end of the sphere's support), then ``solve_ivp`` (DOP853, rtol 1e-12) in
        ``s = log(1 + (tau - tau_1)/T)``, ``T = min(h, S*)/m_max``, from the end ``tau_1`` of
        the closed form (``dS/ds = rate(S) (T + tau - tau_1)`` stays bounded in relative
        terms at late times)."""
        l_start, tau_start, _ = self._start()
        S_start = math.exp(l_start)
        out = np.empty_like(tau)
        early = tau <= tau_start
        out[early] = self._F_inv(self._F(np.float64(self.S0)) + tau[early] - self.tau0)
        if early.all():
            return out
        scale = (self.h if self.C is None else min(self.h, self.S_star)) / self.m_max
        late = np.flatnonzero(~early)
        order = late[np.argsort(tau[late])]
        s = np.log1p((tau[order] - tau_start) / scale)

        def rhs(s_: float, y: np.ndarray) -> np.ndarray:
            return self.rate(y) * scale * math.exp(s_)

        sol = solve_ivp(rhs, (0.0, float(s[-1])), [S_start], method="DOP853", t_eval=s,
                        rtol=1e-12, atol=1e-15 * S_start)
        if not sol.success:
            raise RuntimeError(f"S ODE failed: {sol.message}")
        out[order] = sol.y[0]
        return out


def _full_flow(config: Config) -> _Flow:
    s_star = S_star(config)
    return _Flow(_relu(config), s_star, s_star)


def _lazy_flow(config: Config) -> _Flow:
    return _Flow(_relu(config), S_star(config), None)


def solve_S(config: Config, tau: ArrayLike, lazy: bool = False, method: str = "quad"
            ) -> np.ndarray:
    """``S(tau)`` of the full theory (F), ``dS/dtau = m(h/S) sqrt(1 + (S/S*)^2)``, or with
    ``lazy`` of the lazy limit (L), ``dS/dtau = m(h/S)``; ``S(0) = 0``.

    ``method``: ``quad`` (quadrature ``tau(S)`` and Newton inversion; relative accuracy
    ~1e-15) or ``ode`` (the same closed form while ``m = m_max``, then ``solve_ivp``, DOP853,
    rtol 1e-12; ~1e-11). ``tau`` in lazy time, any order.
    """
    tau = _check_tau(tau)
    flow = _lazy_flow(config) if lazy else _full_flow(config)
    if method == "quad":
        return flow.S_of_tau_quad(tau)
    if method == "ode":
        return flow.S_of_tau_ode(tau)
    raise ValueError(f"method must be quad or ode; got {method!r}")


def tau_of_S(config: Config, S: ArrayLike, lazy: bool = False) -> np.ndarray:
    """Lazy time at which the slope reaches ``S >= 0``:
    ``tau(S) = int_0^S dS'/(m(h/S') sqrt(1 + (S'/S*)^2))`` (full) or
    ``int_0^S dS'/m(h/S')`` (lazy)."""
    flow = _lazy_flow(config) if lazy else _full_flow(config)
    return flow.tau_of_S(np.atleast_1d(np.asarray(S, dtype=np.float64)))


def gamma_of_S(config: Config, S: ArrayLike) -> np.ndarray:
    """``gamma = asinh(S/S*)/2`` (inverse of ``S = S* sinh 2 gamma``)."""
    return 0.5 * np.arcsinh(np.asarray(S, dtype=np.float64) / S_star(config))


def X_of_S(config: Config, S: ArrayLike) -> np.ndarray:
    """Edge of the unsatisfied set ``X = h/S`` (``inf`` for ``S <= 0``)."""
    S = np.asarray(S, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(S > 0, config.h / np.where(S > 0, S, 1.0), np.inf)


@dataclass(frozen=True)
class CrossoverTheory:
    """The theory of one config on a grid of lazy times ``tau`` (all arrays ``[tau]``).

    ``gamma`` (full theory; ``S = S* sinh 2 gamma``), ``S``/``S_lazy`` (slope of
    ``f = S x_par``), ``X``/``X_lazy`` (``h/S``), ``train_error``/``train_error_lazy``
    (``P(|x_par| < X)``), ``S_star``, ``alpha_c``."""

    tau: np.ndarray
    gamma: np.ndarray
    S: np.ndarray
    S_lazy: np.ndarray
    X: np.ndarray
    X_lazy: np.ndarray
    train_error: np.ndarray
    train_error_lazy: np.ndarray
    S_star: float
    alpha_c: float


def crossover_theory(config: Config, tau: ArrayLike, method: str = "quad") -> CrossoverTheory:
    """Full (F) and lazy (L) theory on the lazy times ``tau`` (see :func:`solve_S`)."""
    tau = _check_tau(tau)
    S = solve_S(config, tau, method=method)
    S_l = solve_S(config, tau, lazy=True, method=method)
    X, X_l = X_of_S(config, S), X_of_S(config, S_l)
    return CrossoverTheory(
        tau=tau, gamma=gamma_of_S(config, S), S=S, S_lazy=S_l, X=X, X_lazy=X_l,
        train_error=train_error_of_X(config, X), train_error_lazy=train_error_of_X(config, X_l),
        S_star=S_star(config), alpha_c=alpha_c(config))


def gamma_theory(config: Config, tau: ArrayLike, method: str = "quad") -> np.ndarray:
    """``gamma(tau)`` of the full theory."""
    return gamma_of_S(config, solve_S(config, tau, method=method))


def gamma_at_error(config: Config, eps: float, alpha: ArrayLike | None = None) -> np.ndarray:
    """``gamma_eps(alpha) = (1/2) asinh(4 sqrt(d) h/(alpha (sa^2+sw^2) X_eps))``: ``gamma`` when
    the full theory's training error is ``eps`` (``alpha`` defaults to ``config.alpha``)."""
    c = config
    al = np.asarray(c.alpha if alpha is None else alpha, dtype=np.float64)
    X_eps = X_at_error(config, eps)
    return 0.5 * np.arcsinh(4.0 * math.sqrt(c.d) * c.h / (al * (c.sa**2 + c.sw**2) * X_eps))


def tau_at_error(config: Config, eps: float, lazy: bool = False) -> float:
    """Lazy time at which the training error of the full (or lazy) theory reaches ``eps``:
    ``tau(h/X_eps)``."""
    S_eps = config.h / float(X_at_error(config, eps))
    return float(tau_of_S(config, S_eps, lazy=lazy)[0])


# ----------------------------------------------------------------------------- Frankle measures


def frankle_measures(config: Config, gamma: ArrayLike) -> dict[str, np.ndarray]:
    """Population Frankle measures of the nodes moved by ``gamma`` (``ch, sh = cosh, sinh
    gamma``; dimensionless):

    - ``a_distance = sqrt(((ch-1)^2 sa^2 + sh^2 sw^2)/sa^2)`` (``|a - a0|/|a0|``),
    - ``W_distance = sqrt(((ch-1)^2 sw^2 + sh^2 sa^2)/(d sw^2))`` (``|W - W0|_F/|W0|_F``),
    - ``w_par_sign_flip_fraction = atan((sa/sw) tanh gamma)/pi``,
    - ``sign_flip_fraction = w_par_sign_flip_fraction/d`` (all of ``W``: ``w_perp`` is frozen),
    - ``anisotropy = sqrt(sw^2 ch^2 + sa^2 sh^2)/sw`` (``rms(w_par)/rms(w_perp)``).

    ``sa = 0`` (or ``sw = 0``) gives the honest ``inf``/``nan`` of the ratios.
    """
    c = config
    g = np.asarray(gamma, dtype=np.float64)
    ch, sh = np.cosh(g), np.sinh(g)
    cm1 = 2.0 * np.sinh(g / 2.0) ** 2  # cosh g - 1 without cancellation
    sa2, sw2 = c.sa**2, c.sw**2
    with np.errstate(divide="ignore", invalid="ignore"):
        flip = np.arctan2(c.sa * np.tanh(g), c.sw) / math.pi
        return {
            "a_distance": np.sqrt((cm1**2 * sa2 + sh**2 * sw2) / sa2),
            "W_distance": np.sqrt((cm1**2 * sw2 + sh**2 * sa2) / (c.d * sw2)),
            "w_par_sign_flip_fraction": flip,
            "sign_flip_fraction": flip / c.d,
            "anisotropy": np.sqrt(sw2 * ch**2 + sa2 * sh**2) / c.sw,
        }


# ----------------------------------------------------------------------------- rewinding


def _abs_sin2_antiderivative(phi: np.ndarray) -> np.ndarray:
    """``G(phi) = int_0^phi |sin 2x|/2 dx`` on ``[0, pi]``."""
    return np.where(phi <= math.pi / 2, (1.0 - np.cos(2.0 * phi)) / 4.0,
                    0.5 + (1.0 + np.cos(2.0 * phi)) / 4.0)


def _signs_maw(sa: float, sw: float, gamma: np.ndarray) -> np.ndarray:
    """``E[|a0| |w0| sgn(a0 ch + w0 sh) sgn(w0 ch + a0 sh)]`` exactly: with
    ``(a0, w0) = (sa r cos phi, sw r sin phi)``, ``E r^2 = 2``, ``phi`` uniform and the
    integrand of period ``pi``, it is ``(2 sa sw/pi) int_0^pi s(phi) |sin 2 phi|/2 dphi``, ``s``
    piecewise constant between ``0, pi/2`` and the zeros of the two signs,
    ``atan2(sa ch, -sw sh)`` and ``atan2(sa sh, -sw ch)``."""
    ch, sh = np.cosh(gamma), np.sinh(gamma)
    p_zero = np.arctan2(sa * ch, -sw * sh)
    q_zero = np.arctan2(sa * sh, -sw * ch)
    n = gamma.size
    cuts = np.sort(np.stack([np.zeros(n), np.full(n, math.pi / 2), p_zero, q_zero,
                             np.full(n, math.pi)], axis=-1), axis=-1)
    lo, hi = cuts[:, :-1], cuts[:, 1:]
    mid = 0.5 * (lo + hi)
    sign = (np.sign(sa * np.cos(mid) * ch[:, None] + sw * np.sin(mid) * sh[:, None])
            * np.sign(sw * np.sin(mid) * ch[:, None] + sa * np.cos(mid) * sh[:, None]))
    integral = (sign * (_abs_sin2_antiderivative(hi) - _abs_sin2_antiderivative(lo))).sum(-1)
    return 2.0 * sa * sw / math.pi * integral


def sign_correlation(config: Config, gamma: ArrayLike) -> np.ndarray:
    """``E[sgn(a) sgn(w_par)]`` of the moved nodes, ``(2/pi) asin(rho)`` with
    ``rho = (sa^2+sw^2) ch sh/sqrt((sa^2 ch^2 + sw^2 sh^2)(sw^2 ch^2 + sa^2 sh^2))``."""
    c = config
    g = np.asarray(gamma, dtype=np.float64)
    ch, sh = np.cosh(g), np.sinh(g)
    sa2, sw2 = c.sa**2, c.sw**2
    rho = (sa2 + sw2) * ch * sh / np.sqrt((sa2 * ch**2 + sw2 * sh**2)
                                          * (sw2 * ch**2 + sa2 * sh**2))
    return 2.0 / math.pi * np.arcsin(np.clip(rho, -1.0, 1.0))


def rewind_moments(config: Config, gamma_k: ArrayLike, arm: str) -> tuple[np.ndarray, np.ndarray]:
    """``(mp', maw')`` of the nodes rewound at ``gamma_k`` (population values):

    - ``signs``: ``mp' = (sa^2+sw^2)/2``, ``maw' = E[|a0| |w0| sgn(a_k) sgn(w_k)]`` (exact
      angular integral; ``(2 s^2/pi)(1 - sech 2 gamma_k)`` for ``sa = sw = s``),
    - ``signs_random``: ``mp' = (sa^2+sw^2)/2``, ``maw' = (2 sa sw/pi) E[sgn(a_k) sgn(w_k)]``
      (``(8 s^2/pi^2) atan(tanh gamma_k)`` for ``sa = sw = s``),
    - ``shuffle``: ``mp' = (sa^2+sw^2) cosh(2 gamma_k)/2``, ``maw' = 0``,

    with ``a_k = a0 cosh gamma_k + w0 sinh gamma_k``, ``w_k = w0 cosh gamma_k + a0 sinh gamma_k``.
    """
    c = config
    g = np.atleast_1d(np.asarray(gamma_k, dtype=np.float64))
    s2 = c.sa**2 + c.sw**2
    if arm == "signs":
        return np.full(g.shape, s2 / 2.0), _signs_maw(c.sa, c.sw, g)
    if arm == "signs_random":
        return (np.full(g.shape, s2 / 2.0),
                2.0 * c.sa * c.sw / math.pi * sign_correlation(config, g))
    if arm == "shuffle":
        return s2 * np.cosh(2.0 * g) / 2.0, np.zeros(g.shape)
    raise ValueError(f"arm must be one of {', '.join(REWIND_ARMS)}; got {arm!r}")


def restart_S(config: Config, tau: ArrayLike, tau_k: float, mp: float, maw: float,
              method: str = "quad") -> np.ndarray:
    """``S(tau)`` of the theory restarted at ``tau_k`` (``gamma' = 0``) from nodes with moments
    ``mp' = (E a'^2 + E w_par'^2)/2`` and ``maw' = E[a' w_par']`` (``mp' > |maw'|``):
    ``dS/dtau = m(h/S) sqrt(S^2 + C^2)/S*``, ``S(tau_k) = A``, ``A = alpha maw'/(2 sqrt d)``,
    ``C^2 = (alpha/(2 sqrt d))^2 (mp'^2 - maw'^2)``; NaN before ``tau_k``."""
    tau = _check_tau(tau)
    if not mp > abs(maw):
        raise ValueError(f"moments: need mp' > |maw'|; got mp'={mp}, maw'={maw}")
    k = config.alpha / (2.0 * math.sqrt(config.d))
    C = k * math.sqrt((mp - maw) * (mp + maw))
    flow = _Flow(_relu(config), S_star(config), C, S0=k * maw, tau0=float(tau_k))
    if method not in ("quad", "ode"):
        raise ValueError(f"method must be quad or ode; got {method!r}")
    out = np.full(tau.shape, np.nan)
    after = tau >= tau_k
    if after.any():
        run = flow.S_of_tau_quad if method == "quad" else flow.S_of_tau_ode
        out[after] = run(tau[after])
    return out


@dataclass(frozen=True)
class RewindTheory:
    """Restarted theory of one arm: ``S``, ``train_error`` (``[tau]``, NaN before ``tau_k``),
    the arm's moments ``mp``, ``maw`` and ``gamma_k = gamma_theory(tau_k)``."""

    arm: str
    tau_k: float
    gamma_k: float
    mp: float
    maw: float
    S: np.ndarray
    train_error: np.ndarray


def rewind_theory(config: Config, tau: ArrayLike, tau_k: float, arm: str,
                  method: str = "quad") -> RewindTheory:
    """The P&B theory restarted at ``tau_k`` with the moments of ``arm`` at
    ``gamma_k = gamma_theory(tau_k)`` (:func:`rewind_moments`, :func:`restart_S`)."""
    if not tau_k > 0:
        raise ValueError(f"tau_k: a positive lazy time; got {tau_k}")
    g_k = float(gamma_theory(config, [tau_k])[0])
    mp, maw = (float(v[0]) for v in rewind_moments(config, g_k, arm))
    S = restart_S(config, tau, tau_k, mp, maw, method=method)
    err = np.where(np.isnan(S), np.nan, train_error_of_X(config, X_of_S(config, S)))
    return RewindTheory(arm=arm, tau_k=float(tau_k), gamma_k=g_k, mp=mp, maw=maw, S=S,
                        train_error=err)


# ----------------------------------------------------------------------------- node-wise kernel


def move_nodes(a0: np.ndarray, W0: np.ndarray, gamma: float, teacher: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Nodes moved along their hyperbolae by ``gamma``: ``a = a0 cosh g + w0 sinh g``,
    ``w_par = w0 cosh g + a0 sinh g`` (``w0 = W0 . w*``, ``w* = teacher``, default ``e_1``),
    the rest of ``w`` unchanged."""
    a0 = np.asarray(a0, dtype=np.float64)
    W0 = np.asarray(W0, dtype=np.float64)
    d = W0.shape[1]
    e = np.eye(d)[0] if teacher is None else np.asarray(teacher, dtype=np.float64)
    w0 = W0 @ e
    ch, sh = math.cosh(gamma), math.sinh(gamma)
    a = a0 * ch + w0 * sh
    W = W0 + np.outer(w0 * (ch - 1.0) + a0 * sh, e)
    return a, W


def tangent_kernel(a: np.ndarray, W: np.ndarray, X: np.ndarray,
                   X2: np.ndarray | None = None) -> np.ndarray:
    """``K(x, x') = (1/M) sum_i [relu(u_i) relu(u_i') + a_i^2 H(u_i) H(u_i') x.x'/d]``,
    ``u_i = w_i.x/sqrt d`` (``H`` the step, ``H(0) = 0``), between the rows of ``X`` and of
    ``X2`` (default ``X``): ``(M/alpha^2) J J^T`` for the Jacobian ``J`` of ``f`` in
    ``(a, W)``."""
    a = np.asarray(a, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    X2 = X if X2 is None else np.asarray(X2, dtype=np.float64)
    M, d = W.shape
    U, U2 = X @ W.T / math.sqrt(d), X2 @ W.T / math.sqrt(d)
    H, H2 = (U > 0).astype(np.float64), (U2 > 0).astype(np.float64)
    relu_part = np.maximum(U, 0.0) @ np.maximum(U2, 0.0).T
    step_part = ((H * a**2) @ H2.T) * (X @ X2.T / d)
    return (relu_part + step_part) / M


def kernel_change(K: np.ndarray, K0: np.ndarray) -> float:
    """``|K - K0|_F/|K0|_F`` (not finite, without a warning, when ``K0 = 0``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.linalg.norm(K - K0) / np.linalg.norm(K0))


def kernel_distance(K: np.ndarray, K0: np.ndarray) -> float:
    """Fort et al.'s kernel distance ``1 - <K, K0>_F/(|K|_F |K0|_F)`` (not finite, without a
    warning, when either kernel is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(1.0 - np.vdot(K, K0) / (np.linalg.norm(K) * np.linalg.norm(K0)))


def nodewise_kernel_theory(a0: np.ndarray, W0: np.ndarray, X: np.ndarray, gamma: ArrayLike,
                           teacher: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``kernel_change`` and ``kernel_distance`` ``[gamma]`` of the tangent kernel on the probe
    inputs ``X`` when the nodes ``(a0, W0)`` are moved by each ``gamma`` (:func:`move_nodes`),
    relative to the kernel of ``(a0, W0)``."""
    K0 = tangent_kernel(a0, W0, X)
    g = np.atleast_1d(np.asarray(gamma, dtype=np.float64))
    change, distance = np.empty(g.shape), np.empty(g.shape)
    for i, gi in enumerate(g):
        K = tangent_kernel(*move_nodes(a0, W0, float(gi), teacher), X)
        change[i], distance[i] = kernel_change(K, K0), kernel_distance(K, K0)
    return {"kernel_change": change, "kernel_distance": distance}
