"""Numerical solution of the mean-field theory of hinge-loss training (Pellegrini & Biroli 2020).

The equations are derived symbolically in :mod:`analytic.hinge`; this module integrates them.
Conventions of :mod:`meanfield.config`: ``t`` is mean-field time (units of ``1/beta``), all other
quantities are dimensionless.

ReLU (closed form up to one scalar function):

    d gamma/dt = kappa(gamma) = beta alpha V(X(gamma)) / sqrt(d),     gamma(0) = 0,
    S = alpha (sa^2 + sw^2) sinh(2 gamma) / (4 sqrt d),   f(x) = S x_par,   X = h / S,
    a = a0 cosh(gamma) + w0 sinh(gamma),   w_par = w0 cosh(gamma) + a0 sinh(gamma),
    train_error = P(|x_par| < X),   loss = h P(U) - S <|x_par| 1_U>,
    gamma -> log(t)/4 + c,   c = log(4 C)/4,   kappa ~ C exp(-4 gamma).

``gamma(t)`` is computed two independent ways: :func:`gamma_of_t_ode` (``solve_ivp``, DOP853, in
the variable ``log(1 + t/t0)``) and :func:`gamma_of_t_quad` (Gauss-Legendre quadrature of
``t(gamma) = int_0^gamma dg / kappa(g)`` and Newton inversion); ``S`` and ``X`` are evaluated in
log space (``log sinh``), so nothing overflows up to ``t = 1e12`` and far beyond.

Finite-size indicators (both at the ``gamma`` of the flow):

- ``f_spread(t)``: root mean square over the data of the standard deviation of ``f(x)`` over
  draws of ``M = config.M`` initial nodes, ``sqrt(E_x Var_M f(x))`` (``~ 1/sqrt(M)``), in units
  of ``f``; ``f_spread_x(t, x_par)``: the same at fixed ``x_par``, over draws of the nodes and of
  ``x_perp`` (the band of the paper's Fig. 1d).
- ``validity(t)``: ``|drive orthogonal to w*| / parallel drive`` for the first-layer weights
  with ``N = config.N`` examples, ``sqrt(E[|x_perp|^2 1_U] / (2 N)) / V``; the theory holds
  while it is small. It grows like ``X^(-3/2)`` at late times.

Other activations: :func:`meanfield.population.compute_population`, a population of nodes
``(a, w_par, rho)`` (``rho = |w_perp|/sqrt d``) on a product quadrature of the initial law, in
the infinite-data limit, with the unsatisfied set found self-consistently from ``f(x_par)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special
from scipy.integrate import solve_ivp
from scipy.interpolate import CubicHermiteSpline

from analytic import hinge
from analytic.activations import is_relu
from meanfield.config import MAX_TIME, Config, ConfigError
from meanfield.files.theory import TheoryResult
from meanfield.schedule import schedule

_LOG2 = math.log(2.0)
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(20)
_PANEL = 0.125  # width in gamma of a Gauss-Legendre panel of t(gamma)


class TheoryError(ConfigError):
    """The configuration is outside what the hinge mean-field theory covers."""


# ----------------------------------------------------------------------------- checks


def check_config(config: Config, relu_only: bool = False) -> None:
    """Raise :class:`TheoryError` when the theory does not apply to ``config``."""
    if config.loss != "hinge":
        raise TheoryError(f"loss: the theory covers the linear hinge only; got {config.loss!r}")
    if config.label_noise != 0 or config.margin != 0:
        raise TheoryError("label_noise and margin must be 0 for the theory (separable data, "
                          f"no gap); got label_noise={config.label_noise}, "
                          f"margin={config.margin}")
    if relu_only and not is_relu(config.activation):
        raise TheoryError(f"activation: this part of the theory is for relu only; got "
                          f"{config.activation!r}")


# ----------------------------------------------------------------------------- ReLU gamma(t)


def _log_sinh(y: np.ndarray) -> np.ndarray:
    """``log(sinh(y))`` for ``y >= 0`` without overflow (``-inf`` at 0)."""
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(divide="ignore"):
        small = np.log(np.sinh(np.minimum(y, 1.0)))
        large = y + np.log1p(-np.exp(-2.0 * np.maximum(y, 1.0))) - _LOG2
    return np.where(y > 1.0, large, small)


@dataclass(frozen=True)
class _Relu:
    """Numbers of one config for the ReLU closed form (all from :mod:`analytic.hinge`)."""

    config: Config
    num: hinge.HingeNumerics
    log_K: float  # log of S / sinh(2 gamma)
    kappa_coef: float
    x_top: float  # largest |x_par| (inf for Gaussian data)
    rate0: float  # d gamma / dt at t = 0

    @classmethod
    def of(cls, config: Config) -> _Relu:
        check_config(config, relu_only=True)
        num = hinge.numerics(config.data)
        c = config
        return cls(
            config=c,
            num=num,
            log_K=math.log(float(num.S_coef(c.alpha, c.sa, c.sw, c.d))),
            kappa_coef=float(num.kappa_coef(c.alpha, c.beta, c.d)),
            x_top=float(num.support(c.d)),
            rate0=float(num.early_slope(c.alpha, c.beta, c.d)),
        )

    def log_S(self, gamma: np.ndarray) -> np.ndarray:
        return self.log_K + _log_sinh(2.0 * np.asarray(gamma, dtype=np.float64))

    def X(self, gamma: np.ndarray) -> np.ndarray:
        """Edge of the unsatisfied set (``inf`` at ``gamma = 0``)."""
        with np.errstate(over="ignore"):
            return np.exp(math.log(self.config.h) - self.log_S(gamma))

    def law(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """``V``, ``P_U`` and ``E[|x_perp|^2 1_U]`` at the edge ``X``; for ``X`` at or beyond
        the end of the support their limits ``V_max``, 1 and ``d - 1`` (every example
        unsatisfied), so no special function is evaluated outside its domain."""
        d = float(self.config.d)
        X = np.asarray(X, dtype=np.float64)
        inside = X < self.x_top
        Xc = np.where(inside, X, 0.5 * min(self.x_top, 1.0))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            V = np.where(inside, self.num.V(Xc, d), float(self.num.V_max(d)))
            P = np.where(inside, self.num.P_U(Xc, d), 1.0)
            perp = np.where(inside, self.num.perp_sq_U(Xc, d), d - 1.0)
        return {"V": V, "P_U": P, "perp_sq_U": perp}

    def V(self, gamma: np.ndarray) -> np.ndarray:
        return self.law(self.X(gamma))["V"]

    def rate(self, gamma: np.ndarray) -> np.ndarray:
        """``d gamma/dt``."""
        return self.kappa_coef * self.V(gamma)

    def gamma_top(self) -> float:
        """``gamma`` at which ``X`` reaches the end of the support (0 for Gaussian data)."""
        if not math.isfinite(self.x_top):
            return 0.0
        return 0.5 * math.asinh(math.exp(math.log(self.config.h / self.x_top) - self.log_K))


def gamma_of_t_ode(config: Config, t: Sequence[float] | np.ndarray) -> np.ndarray:
    """``gamma(t)`` by ``solve_ivp`` (DOP853, rtol 1e-13) of ``d gamma/dt = kappa(gamma)``.

    Integrated in ``tau = log(1 + t/t0)``, ``t0 = 1/kappa(0)``:
    ``d gamma/d tau = kappa(gamma) (t0 + t)``, bounded at all times (-> 1/4 at late times).
    """
    rel = _Relu.of(config)
    t = check_times(t)
    t0 = 1.0 / rel.rate0
    tau = np.log1p(t / t0)
    out = np.zeros_like(t)
    if tau[-1] <= 0:
        return out

    def rhs(tau_: float, g: np.ndarray) -> np.ndarray:
        return rel.rate(g) * t0 * np.exp(tau_)

    sol = solve_ivp(rhs, (0.0, float(tau[-1])), [0.0], method="DOP853", t_eval=tau,
                    rtol=1e-13, atol=1e-15)
    if not sol.success:
        raise RuntimeError(f"gamma ODE failed: {sol.message}")
    return sol.y[0]


def _panel_integral(rel: _Relu, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``int_lo^hi dg / kappa(g)`` by 20-point Gauss-Legendre (vectorised over panels)."""
    half = 0.5 * (hi - lo)
    g = 0.5 * (hi + lo)[..., None] + half[..., None] * _GL_NODES
    return half * (_GL_WEIGHTS / rel.rate(g)).sum(axis=-1)


def _t_of_gamma_table(rel: _Relu, t_needed: float) -> tuple[np.ndarray, np.ndarray]:
    """Panel edges ``gamma_k`` and cumulative times ``t(gamma_k)`` up to ``t >= t_needed``.

    Panels of width <= 1/8 in gamma (the integrand grows like ``exp(4 gamma)``: a factor
    ``e^{1/2}`` per panel) with a breakpoint where ``X`` leaves the end of the support.
    """
    g_top = rel.gamma_top()
    edges = [0.0]
    if g_top > 0:
        # X reaches the end of the support at g_top, where V(X) has a root singularity for
        # small d (d = 2: (sqrt(d) - X)^(1/2)): panels graded geometrically towards g_top
        edges = list(np.linspace(0.0, g_top, max(2, math.ceil(g_top / _PANEL) + 1)))
        edges += list(g_top + _PANEL * 0.25 ** np.arange(24, -1, -1))
    edges_arr = np.asarray(edges)
    cum = np.concatenate([[0.0], np.cumsum(_panel_integral(rel, edges_arr[:-1],
                                                           edges_arr[1:]))])
    while cum[-1] < t_needed:
        new = edges_arr[-1] + _PANEL * np.arange(1, 65)
        pieces = _panel_integral(rel, np.concatenate([[edges_arr[-1]], new[:-1]]), new)
        edges_arr = np.concatenate([edges_arr, new])
        cum = np.concatenate([cum, cum[-1] + np.cumsum(pieces)])
    return edges_arr, cum


def gamma_of_t_quad(config: Config, t: Sequence[float] | np.ndarray) -> np.ndarray:
    """``gamma(t)`` by inverting ``t(gamma) = int_0^gamma dg / kappa(g)``.

    ``t(gamma)`` is tabulated on Gauss-Legendre panels (:func:`_t_of_gamma_table`); inside the
    panel holding each target, Newton's method on ``int_{g_k}^{g} dg'/kappa - (t - t_k)``
    (convex and increasing in ``g``), started from a cubic Hermite interpolation of the table,
    to ``|dg| <= 4e-16 (1 + g)`` (a few iterations).
    """
    rel = _Relu.of(config)
    t = check_times(t)
    edges, cum = _t_of_gamma_table(rel, float(t[-1]))
    k = np.clip(np.searchsorted(cum, t, side="right") - 1, 0, len(edges) - 2)
    lo, target = edges[k], t - cum[k]
    # start: cubic Hermite interpolation of gamma(t) between the panel edges (slopes kappa)
    guess = CubicHermiteSpline(cum, edges, rel.rate(edges))(t)
    g = np.clip(guess, lo, edges[k + 1])
    active = np.ones(t.shape, dtype=bool)
    for _ in range(60):
        step = (_panel_integral(rel, lo[active], g[active]) - target[active]) * rel.rate(
            g[active])
        g[active] = np.clip(g[active] - step, lo[active], edges[k + 1][active])
        done = np.abs(step) <= 4e-16 * (1.0 + g[active])
        active[np.flatnonzero(active)[done]] = False
        if not active.any():
            break
    return np.where(t > 0, g, 0.0)


def gamma_of_t(config: Config, t: Sequence[float] | np.ndarray, method: str = "quad"
               ) -> np.ndarray:
    """``gamma(t)`` (ReLU) by ``method`` = ``quad`` (default) or ``ode``."""
    if method == "quad":
        return gamma_of_t_quad(config, t)
    if method == "ode":
        return gamma_of_t_ode(config, t)
    raise ValueError(f"method must be quad or ode; got {method!r}")


def t_sat(config: Config, x_par: Sequence[float] | np.ndarray) -> np.ndarray:
    """First time at which an example with this ``|x_par|`` is satisfied, ``S(t)|x_par| >= h``:
    ``t(gamma_sat)`` with ``gamma_sat = asinh(h/(S_coef |x_par|))/2`` (``inf`` at 0, and for
    an ``x_par`` so small that it is satisfied only after ``MAX_TIME``)."""
    rel = _Relu.of(config)
    c = config
    xp = np.abs(np.asarray(x_par, dtype=np.float64))
    with np.errstate(divide="ignore", over="ignore"):
        g_sat = np.asarray(rel.num.gamma_sat(xp, c.alpha, c.h, c.d, c.sa, c.sw), np.float64)
    out = np.full(xp.shape, np.inf)
    # beyond the largest supported time the answer is labelled inf (tiny x_par, ~1e-150 and
    # below, would otherwise need t far past the float range)
    ok = np.isfinite(g_sat) & (g_sat <= gamma_of_t_quad(config, [MAX_TIME])[0])
    if ok.any():
        edges, cum = _t_of_gamma_table(rel, 0.0)
        while edges[-1] < g_sat[ok].max():
            edges, cum = _t_of_gamma_table(rel, 4.0 * cum[-1] + 1.0)
        k = np.clip(np.searchsorted(edges, g_sat[ok], side="right") - 1, 0, len(edges) - 2)
        out[ok] = cum[k] + _panel_integral(rel, edges[k], g_sat[ok])
    return out


# ----------------------------------------------------------------------------- observables


def node_trajectories(a0: np.ndarray, w0: np.ndarray, gamma: np.ndarray,
                      gamma_minus: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """ReLU trajectories ``[t, node]``: ``a = a0 cosh g + w0 sinh g``,
    ``w_par = w0 cosh g + a0 sinh g``, evaluated as ``e^g ((a0 + w0) +- (a0 - w0) e^{-2g})/2``
    (finite whenever the result is; ``gamma >= 0``).

    With ``gamma_minus`` (the Euler push, where ``a + w_par`` grows by ``e^{gamma_+}`` and
    ``a - w_par`` decays by ``e^{-gamma_-}`` exactly, ``gamma_+ != gamma_-``):
    ``a, w_par = ((a0 + w0) e^{gamma_+} +- (a0 - w0) e^{-gamma_-}) / 2``, valid while every
    step has ``eps_n = dt_n kappa_n < 1`` (else ``a - w_par`` changes sign at that step)."""
    a0 = np.asarray(a0, dtype=np.float64)[None, :]
    w0 = np.asarray(w0, dtype=np.float64)[None, :]
    g = np.asarray(gamma, dtype=np.float64)[:, None]
    g_minus = g if gamma_minus is None else np.asarray(gamma_minus, dtype=np.float64)[:, None]
    half_up = np.exp(g - _LOG2)
    down = np.exp(-g - g_minus)
    return (half_up * ((a0 + w0) + (a0 - w0) * down),
            half_up * ((a0 + w0) - (a0 - w0) * down))


def _node_moments(config: Config, gamma: np.ndarray) -> dict[str, np.ndarray]:
    """Population moments of ``(a, w_par)`` at ``gamma`` (jointly Gaussian, linear in the
    initial values): ``E a^2``, ``E w^2``, ``E a w``."""
    c = config
    ch2, sh2 = np.cosh(gamma) ** 2, np.sinh(gamma) ** 2
    s2 = c.sa**2 + c.sw**2
    return {"a2": c.sa**2 * ch2 + c.sw**2 * sh2, "w2": c.sw**2 * ch2 + c.sa**2 * sh2,
            "aw": s2 * np.sinh(2.0 * gamma) / 2.0}


def f_spread(config: Config, gamma: np.ndarray, S: np.ndarray) -> np.ndarray:
    """``sqrt(E_x Var_M f(x))`` over draws of ``M = config.M`` nodes (ReLU), in units of f.

    Per node ``E_x relu(w.x/sqrt d)^2 = |w|^2/(2d)`` for both data laws (``E x x^T = I``), and
    ``E_x f_mean^2 = S^2 E x_par^2 = S^2``, so with Isserlis for the Gaussian ``(a, w_par)``:
    ``Var = (alpha^2 (E a^2 w^2 + E a^2 sw^2 (d - 1)) / (2 d) - S^2) / M``,
    ``E a^2 w^2 = E a^2 E w^2 + 2 (E a w)^2``.
    """
    c = config
    m = _node_moments(config, np.asarray(gamma, dtype=np.float64))
    e_a2w2 = m["a2"] * m["w2"] + 2.0 * m["aw"] ** 2
    var1 = c.alpha**2 * (e_a2w2 + m["a2"] * c.sw**2 * (c.d - 1)) / (2.0 * c.d) - S**2
    return np.sqrt(np.maximum(var1, 0.0) / c.M)


def f_spread_x(config: Config, gamma: np.ndarray, x_par: np.ndarray, order: int = 32
               ) -> np.ndarray:
    """Std of ``f(x)`` at fixed ``x_par`` ``[t, x_par]`` over draws of ``M`` nodes and of
    ``x_perp`` (``|x_perp|^2 = d - 1`` Gaussian, ``d - x_par^2`` sphere): per node
    ``alpha^2 E[a^2 E_z relu(w_par x_par/sqrt d + r z)^2] - (S x_par)^2``, ``r = sw |x_perp|/
    sqrt d``, with ``E_z`` in closed form (:func:`analytic.hinge.relu_square_mean`) and the
    expectation over ``(a0, w0)`` by ``order x order`` Gauss-Hermite quadrature."""
    c = config
    num = hinge.numerics(c.data)
    nodes, weights = special.roots_hermitenorm(order)
    weights = weights / weights.sum()
    a0 = c.sa * nodes[:, None]
    w0 = c.sw * nodes[None, :]
    wt = weights[:, None] * weights[None, :]
    g = np.asarray(gamma, dtype=np.float64)[:, None, None]
    a = a0 * np.cosh(g) + w0 * np.sinh(g)
    w = w0 * np.cosh(g) + a0 * np.sinh(g)
    xp = np.asarray(x_par, dtype=np.float64)
    perp2 = (c.d - 1.0) * np.ones_like(xp) if c.data == "gaussian" else c.d - xp**2
    # r > 0 keeps the closed form defined when sw = 0 (its r -> 0 limit is relu(b)^2);
    # r^2 stays a normal float, b^2/r^2 may overflow to inf, which the formula takes exactly
    r = np.maximum(c.sw * np.sqrt(np.maximum(perp2, 0.0) / c.d), 1e-150)
    b = w[..., None] * xp / math.sqrt(c.d)
    with np.errstate(over="ignore"):
        sq = num.relu_square_mean(b, r)
    second = c.alpha**2 * (wt[..., None] * a[..., None] ** 2 * sq).sum(axis=(1, 2))
    mean = c.alpha * (wt[..., None] * a[..., None] * b).sum(axis=(1, 2)) / 2.0
    return np.sqrt(np.maximum(second - mean**2, 0.0) / c.M)


def _curves(rel: _Relu, gamma: np.ndarray, S: np.ndarray, X: np.ndarray
            ) -> dict[str, np.ndarray]:
    """``train_error``, ``loss``, ``validity`` from ``S`` and ``X``."""
    c = rel.config
    law = rel.law(X)
    V, P, perp = law["V"], law["P_U"], law["perp_sq_U"]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        loss = c.h * P - 2.0 * S * V
        validity = np.sqrt(perp / (2.0 * c.N)) / V
    loss = np.where(S == 0, c.h * P, loss)  # t = 0: f = 0
    return {"train_error": P, "loss": loss, "validity": validity}


def _asymptote(rel: _Relu) -> tuple[float, float]:
    c = rel.config
    args = (c.alpha, c.beta, c.h, c.d, c.sa, c.sw)
    return float(rel.num.C(*args)), float(rel.num.c(*args))


# ----------------------------------------------------------------------------- compute


def check_times(t: Sequence[float] | np.ndarray) -> np.ndarray:
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    if t.ndim != 1 or t.size == 0:
        raise TheoryError("times must be a non-empty list of numbers")
    if not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(np.diff(t) <= 0):
        raise TheoryError(f"times must be finite, non-negative and strictly increasing; "
                          f"got {t.tolist()[:8]}")
    return t


MAX_SCHEDULE_STEPS = 10_000_000
"""Largest step schedule built for the record times of the ``t_max`` path (80 MB of float64),
and the most steps :func:`compute_on_schedule` pushes through (a Python loop of about 30 us a
step: minutes, and five float64 arrays of that length)."""

MAX_TIMES = 1_000_000
#: the most (time, x_par) pairs of the finite-M spread at fixed x_par (~5 minutes)
MAX_SPREAD_PAIRS = 2_000_000
"""Most record times of the closed form (:func:`compute`) besides ``t = 0``, and most
``n_times``: about 1 KB of arrays per time, evaluated in chunks of :data:`CHUNK` times (1e6
times to 1e12: about 6 s and 160 MB above the interpreter's; with ``x_par``, ``f_spread_x``
adds about 0.15 ms per time and ``x_par`` value)."""

MAX_POPULATION_TIMES = 10_000
"""Most record times of the population solver: it keeps the dense ODE solution (3 x 432
float64 per time, twice) and solves for the unsatisfied set at every time (milliseconds each)."""

CHUNK = 65_536
"""Times evaluated together by the closed form (more are done chunk by chunk, so its
temporaries, e.g. ``[t, 20]`` Gauss-Legendre panels, stay bounded)."""


def default_times(config: Config) -> np.ndarray:
    """The record times of :func:`meanfield.schedule.schedule` for ``config``, without building
    any schedule it does not need: explicit ``config.times`` are themselves (plus ``t = 0``,
    sorted: the schedule lands on each of them); for the ``t_max`` path, the schedule's record
    times, or, when that schedule would have more than ``MAX_SCHEDULE_STEPS`` steps (e.g.
    ``t_max = 1e12`` with a uniform step), ``t = 0`` and ``n_times`` log-spaced times in
    ``[dt, t_max]`` instead (the theory needs no steps)."""
    from meanfield.schedule import count_steps

    c = config
    if c.times:
        return np.asarray(sorted({0.0, *c.times}), dtype=np.float64)
    if c.n_times > MAX_TIMES:
        raise TheoryError(f"n_times: at most {MAX_TIMES} record times; got {c.n_times}")
    if ((c.growth == 0 and c.t_max / c.dt > MAX_SCHEDULE_STEPS)
            or count_steps(c.dt, c.growth, c.t_max) > MAX_SCHEDULE_STEPS):
        return np.concatenate([[0.0], np.geomspace(min(c.dt, c.t_max), c.t_max, c.n_times)])
    steps, record = schedule(config)
    return steps[record]


def _chunked(fn: Callable[[np.ndarray], np.ndarray], t: np.ndarray, size: int | None = None
             ) -> np.ndarray:
    """``fn(t)`` for a 1-d ``t``, evaluated on pieces of at most ``size`` (default
    :data:`CHUNK`, at least 1) entries and concatenated along the first axis (one call when
    ``t`` is no longer: the same numbers as ``fn(t)``)."""
    size = max(1, CHUNK if size is None else size)
    if t.shape[0] <= size:
        return fn(t)
    return np.concatenate([fn(t[i:i + size]) for i in range(0, t.shape[0], size)])


_SPREAD_PAIRS = 4096
"""``(t, x_par)`` pairs per call of :func:`f_spread_x` in :func:`compute` (8 KB of
temporaries each)."""


def _spread_x(config: Config, gamma: np.ndarray, xp: np.ndarray) -> np.ndarray:
    """:func:`f_spread_x` ``[t, x_par]`` by blocks of at most ``_SPREAD_PAIRS`` pairs (one call
    when there are no more)."""
    if xp.size <= _SPREAD_PAIRS:
        return _chunked(lambda g: f_spread_x(config, g, xp), gamma, _SPREAD_PAIRS // xp.size)
    return np.concatenate([
        np.concatenate([f_spread_x(config, gamma[i:i + 1], xp[j:j + _SPREAD_PAIRS])
                        for j in range(0, xp.size, _SPREAD_PAIRS)], axis=1)
        for i in range(gamma.size)])


def compute(config: Config, times: Sequence[float] | np.ndarray | None = None,
            x_par: Sequence[float] | np.ndarray | None = None, method: str = "quad",
            ) -> TheoryResult:
    """The theory for ``config`` on ``times`` (default: its record times).

    ReLU: the closed form with ``gamma(t)`` by ``method`` (``quad`` or ``ode``); any other
    activation: :func:`meanfield.population.compute_population`. ``x_par`` (default:
    ``config.x_par`` when not empty) adds ``t_sat(x_par)`` and ``f_spread_x(t, x_par)``.

    Returns:
        A :class:`meanfield.files.theory.TheoryResult` on ``t``; write it with
        :func:`meanfield.files.theory.write_theory`.

    Example:
        >>> from meanfield.config import make_config
        >>> r = compute(make_config(d=100), times=[0.0, 10.0, 1e6])
        >>> float(r.X[0])  # f = 0 at t = 0: every example unsatisfied
        inf
        >>> bool(abs(r.gamma[-1] - (math.log(1e6) / 4 + r.asymptote_c)) < 1e-3)
        True
    """
    check_config(config)
    t = check_times(default_times(config) if times is None else times)
    if x_par is None and config.x_par:
        x_par = config.x_par
    if not is_relu(config.activation):
        from meanfield.population import compute_population

        return compute_population(config, t, x_par=x_par)
    if t.size > MAX_TIMES + 1:
        raise TheoryError(f"times: the closed form takes at most {MAX_TIMES} record times "
                          f"besides t = 0; got {t.size - (t[0] == 0)}")
    pairs = 0 if x_par is None else t.size * len(x_par)
    if pairs > MAX_SPREAD_PAIRS:
        raise TheoryError(f"x_par: the spread f_spread_x(t, x_par) takes at most "
                          f"{MAX_SPREAD_PAIRS:.0e} (time, x_par) pairs (about 0.15 ms each); "
                          f"got {t.size} times x {len(x_par)} values")
    rel = _Relu.of(config)
    gamma = _chunked(lambda part: gamma_of_t(config, part, method), t)
    S = np.exp(rel.log_S(gamma))
    X = rel.X(gamma)
    C, c = _asymptote(rel)
    xp = None if x_par is None else np.asarray(x_par, dtype=np.float64)
    return TheoryResult(
        t=t, gamma=gamma, S=S, X=X, slope=t * rel.rate(gamma),
        f_spread=f_spread(config, gamma, S), asymptote_C=C, asymptote_c=c, config=config,
        latex=hinge.latex_equations(config.data), method=f"relu closed form, gamma by {method}",
        x_par=xp, t_sat=None if xp is None else t_sat(config, xp),
        f_spread_x=None if xp is None else _spread_x(config, gamma, xp),
        **_curves(rel, gamma, S, X),
    )


def compute_on_schedule(config: Config, step_times: Sequence[float] | np.ndarray,
                        init_moments: Mapping[str, float] | None = None,
                        record: Sequence[int] | np.ndarray | None = None) -> TheoryResult:
    """The ReLU theory pushed through the explicit Euler schedule ``step_times``.

    With ``eps_n = (t_{n+1} - t_n) kappa(X_n)``, ``kappa = beta alpha V(X)/sqrt d`` and
    ``X_n = h/S_n``, every node's ``a + w_par`` is multiplied by ``1 + eps_n`` and ``a - w_par``
    by ``1 - eps_n`` (the Euler step of ``da/dt = kappa w_par``, ``dw_par/dt = kappa a``), so
    with ``gamma_+ = sum log(1 + eps)``, ``gamma_- = -sum log|1 - eps|``:

        E[a w_par] = (e^{2 gamma_+} E(a0 + w0)^2 - e^{-2 gamma_-} E(a0 - w0)^2) / 4,
        S = alpha E[a w_par] / (2 sqrt d),

    where ``E(a0 +- w0)^2 = a2 + w2 +- 2 aw`` from ``init_moments`` (keys ``a2``, ``w2``,
    ``aw``: a finite sample's own ``<a0^2>``, ``<w0^2>``, ``<a0 w0>``) or the population values
    ``sa^2, sw^2, 0``. This is the exact ``M, N -> infinity`` limit of a simulation with that
    schedule. ``gamma`` is ``gamma_+`` (what ``log(sum (a+w)(a0+w0) / sum (a0+w0)^2)``
    measures), ``gamma_minus`` is ``gamma_-``. Values at every step time, or at
    ``step_times[record]``.
    """
    rel = _Relu.of(config)
    c = config
    if np.size(step_times) > MAX_SCHEDULE_STEPS + 1:
        raise TheoryError(f"step_times: the Euler push takes at most {MAX_SCHEDULE_STEPS} steps "
                          f"(one Python step each); got {np.size(step_times) - 1}")
    times = check_times(step_times)
    if times[0] != 0:
        raise TheoryError("step_times must start at t = 0")
    m = init_moments or {"a2": c.sa**2, "w2": c.sw**2, "aw": 0.0}
    m_plus = m["a2"] + m["w2"] + 2.0 * m["aw"]
    m_minus = m["a2"] + m["w2"] - 2.0 * m["aw"]
    s_per = float(rel.num.S_per_E_a_w_par(c.alpha, c.d))
    law, top, h = rel.law, rel.x_top, c.h
    n = len(times)
    lp, lq, S_arr = np.zeros(n), np.zeros(n), np.zeros(n)
    kap = np.zeros(n)
    dts = np.diff(times)
    lp_n = lq_n = 0.0
    for i in range(n):
        eaw = (math.exp(2 * lp_n) * m_plus - math.exp(2 * lq_n) * m_minus) / 4.0
        S_n = s_per * eaw
        X_n = top if S_n <= 0 else min(h / S_n, top)
        kappa_n = rel.kappa_coef * float(law(X_n)["V"])
        lp[i], lq[i], S_arr[i], kap[i] = lp_n, lq_n, S_n, kappa_n
        if i < n - 1:
            eps = dts[i] * kappa_n
            lp_n += math.log1p(eps)
            lq_n += math.log(abs(1.0 - eps))
    idx = np.arange(n) if record is None else np.asarray(record)
    t, gamma, S = times[idx], lp[idx], S_arr[idx]
    with np.errstate(divide="ignore"):
        X = np.where(S > 0, h / np.where(S > 0, S, 1.0), np.inf)
    Cc, cc = _asymptote(rel)
    return TheoryResult(
        t=t, gamma=gamma, S=S, X=X, slope=t * kap[idx],
        f_spread=f_spread(config, gamma, np.maximum(S, 0.0)), asymptote_C=Cc, asymptote_c=cc,
        config=config, latex=hinge.latex_equations(config.data),
        method="relu, explicit Euler push", gamma_minus=-lq[idx],
        **_curves(rel, gamma, np.maximum(S, 0.0), X),
    )
