"""Population solver of the mean-field theory for any continuous activation.

A population of nodes ``(a, w_par, rho)`` (``rho = |w_perp|/sqrt d``) on a product quadrature
of the initial law (:func:`population_quadrature`), in the infinite-data, infinite-width limit;
each node moves by ``beta alpha int_U p(s) E_z[F(s, z)] ds``
(:func:`analytic.hinge.population_integrands`) with the unsatisfied set
``U = {s = |x_par| : f(s) < h}`` found self-consistently from ``f(x_par)``. For ReLU the
closed form of :mod:`meanfield.theory` is used instead (and this solver reproduces it: see
the tests). Times in mean-field units of ``1/beta``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special
from scipy.integrate import solve_ivp
from scipy.optimize import brentq

from analytic import hinge
from analytic.activations import X as ACT_X
from analytic.activations import get_activation
from meanfield.config import Config
from meanfield.files.theory import TheoryResult
from meanfield.theory import MAX_POPULATION_TIMES, TheoryError, check_config, check_times

#: the most evaluations of the drives one solve may take (ordinary runs need 100 to 600; a
#: stiff population, e.g. erf at d = 3, would otherwise run for many minutes)
MAX_DRIVE_EVALUATIONS = 2000


@dataclass(frozen=True)
class _Quadratures:
    """Node population (weights sum to 1) and the law of ``z`` for one config."""

    a0: np.ndarray
    w0: np.ndarray
    rho0: np.ndarray
    weight: np.ndarray
    z: np.ndarray
    z_weight: np.ndarray


def population_quadrature(config: Config, n_node: int = 12, n_rho: int = 3, n_z: int = 48
                          ) -> _Quadratures:
    """Deterministic population from the initial law: ``n_node x n_node`` Gauss-Hermite
    points for ``(a0, w0)`` times ``n_rho`` generalized Gauss-Laguerre points for
    ``rho0 = sw sqrt(chi^2_{d-1}/d)``; the law of ``z`` (Gauss-Hermite for Gaussian data,
    Gauss-Jacobi of ``(1 - v^2)^((d-4)/2)`` scaled by ``sqrt(d-1)`` for the sphere). The point
    sets are symmetric under sign changes, so the population keeps the symmetry
    ``(a, w) -> (-a, -w)`` exactly."""
    c = config
    g, gw = special.roots_hermitenorm(n_node)
    gw = gw / gw.sum()
    lag, lw = special.roots_genlaguerre(n_rho, (c.d - 1) / 2.0 - 1.0)
    lw = lw / lw.sum()
    a0 = np.repeat(c.sa * g, n_node * n_rho)
    w0 = np.tile(np.repeat(c.sw * g, n_rho), n_node)
    rho0 = np.tile(c.sw * np.sqrt(2.0 * lag / c.d), n_node * n_node)
    weight = np.repeat(gw, n_node * n_rho) * np.tile(np.repeat(gw, n_rho), n_node) * np.tile(
        lw, n_node * n_node)
    if c.data == "gaussian":
        z, zw = special.roots_hermitenorm(n_z)
    elif c.d == 2:
        z, zw = np.array([-1.0, 1.0]), np.array([0.5, 0.5])
    else:
        v, zw = special.roots_jacobi(n_z, (c.d - 4) / 2.0, (c.d - 4) / 2.0)
        z = math.sqrt(c.d - 1.0) * v
    return _Quadratures(a0, w0, rho0, weight, z, zw / zw.sum())


@functools.lru_cache(maxsize=16)
def _population_functions(spec: str) -> dict[str, Callable]:
    import sympy

    def elementwise(expr: sympy.Expr) -> sympy.Expr:
        # numpy's printer turns Max/Min into amax/amin over a tuple, which builds object
        # arrays when the arguments broadcast; use |a - b| forms instead (same values)
        expr = expr.replace(lambda e: isinstance(e, sympy.Max),
                            lambda e: functools.reduce(lambda p, q: (p + q + abs(p - q)) / 2,
                                                       e.args))
        expr = expr.replace(lambda e: isinstance(e, sympy.Min),
                            lambda e: functools.reduce(lambda p, q: (p + q - abs(p - q)) / 2,
                                                       e.args))
        # Heaviside(x) = (1 + sign(x))/2, value 1/2 at 0 as in analytic.activations
        return expr.replace(lambda e: isinstance(e, sympy.Heaviside),
                            lambda e: (1 + sympy.sign(e.args[0])) / 2)

    ints = hinge.population_integrands(get_activation(spec))
    args = (hinge.a, hinge.w_par, hinge.rho, hinge.s, hinge.z, hinge.k_perp, hinge.d)
    out = {k: sympy.lambdify(args, elementwise(v), modules=["scipy", "numpy"])
           for k, v in ints.items()}
    # the three drives share sigma(u+-), sigma'(u+-): one function with common subexpressions
    out["drives"] = sympy.lambdify(
        args, [elementwise(ints[k]) for k in ("F_a", "F_w", "F_rho")],
        modules=["scipy", "numpy"], cse=True)
    return out


class _Population:
    """Drives of the node population in the infinite-data limit (see
    :func:`analytic.hinge.population_integrands`)."""

    def __init__(self, config: Config, quad: _Quadratures, n_grid: int = 96,
                 panel: float = 1.0, n_s: int = 16) -> None:
        self.c = config
        self.q = quad
        self.fn = _population_functions(config.activation)
        self.num = hinge.numerics(config.data)
        top = float(self.num.support(config.d))
        self.s_top = top if math.isfinite(top) else 10.0  # Gaussian tail beyond 10: < 1e-22
        self.grid = np.linspace(0.0, self.s_top, n_grid)
        self.panel, self.n_s = panel, n_s
        self.gl = np.polynomial.legendre.leggauss(n_s)

    def k(self, s: np.ndarray) -> np.ndarray:
        if self.c.data == "gaussian":
            return np.ones_like(s)
        return np.sqrt(np.maximum(self.c.d - s**2, 0.0) / (self.c.d - 1.0))

    def _eval(self, name: str, state: tuple[np.ndarray, ...], s: np.ndarray
              ) -> np.ndarray | list[np.ndarray]:
        """``E_z F(node, s, z)`` as ``[node, s]`` (a list of them for ``drives``)."""
        a, w, rho = (x[:, None, None] for x in state)
        ss = s[None, :, None]
        zz = self.q.z[None, None, :]
        val = self.fn[name](a, w, rho, ss, zz, self.k(s)[None, :, None], float(self.c.d))
        shape = (a.shape[0], s.size, zz.size)
        if name == "drives":
            return [np.broadcast_to(v, shape) @ self.q.z_weight for v in val]
        return np.broadcast_to(val, shape) @ self.q.z_weight

    def f(self, state: tuple[np.ndarray, ...], s: np.ndarray) -> np.ndarray:
        """Network output ``f(s) = alpha E_nodes E_z[a sigma(u)]`` at ``x_par = s``."""
        return self.c.alpha * (self.q.weight @ self._eval("F_f", state, s))

    def unsatisfied(self, state: tuple[np.ndarray, ...]) -> list[tuple[float, float]]:
        """Intervals of ``s in [0, s_top]`` with ``f(s) < h`` (edges by Brent's method)."""
        h = self.c.h
        g = self.f(state, self.grid) - h
        out, start = [], (0.0 if g[0] < 0 else None)
        for i in range(len(g) - 1):
            if (g[i] < 0) != (g[i + 1] < 0):
                root = brentq(lambda x: float(self.f(state, np.array([x]))[0] - h),
                              self.grid[i], self.grid[i + 1], xtol=1e-14, rtol=1e-14)
                if g[i] < 0:
                    out.append((start, root))
                    start = None
                else:
                    start = root
        if start is not None:
            out.append((start, self.s_top))
        return out

    def s_nodes(self, intervals: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
        """Gauss-Legendre nodes on the intervals (panels of length <= ``panel``) and weights
        times the density of ``x_par``."""
        xs, ws = [], []
        for lo, hi in intervals:
            n_pan = max(1, math.ceil((hi - lo) / self.panel))
            edges = np.linspace(lo, hi, n_pan + 1)
            half = 0.5 * np.diff(edges)[:, None]
            xs.append((0.5 * (edges[:-1] + edges[1:]))[:, None] + half * self.gl[0])
            ws.append(half * self.gl[1])
        if not xs:
            return np.zeros(0), np.zeros(0)
        x = np.concatenate([v.ravel() for v in xs])
        w = np.concatenate([v.ravel() for v in ws])
        with np.errstate(divide="ignore", invalid="ignore"):
            dens = np.nan_to_num(np.asarray(self.num.density(x, float(self.c.d)), np.float64))
        return x, w * dens

    def drive(self, state: tuple[np.ndarray, ...]) -> np.ndarray:
        """``(da/dt, dw_par/dt, drho/dt)`` stacked, from ``beta alpha int_U p E_z F``."""
        s, ws = self.s_nodes(self.unsatisfied(state))
        pref = self.c.beta * self.c.alpha
        if s.size == 0:
            return np.zeros(3 * state[0].size)
        parts = [pref * (v @ ws) for v in self._eval("drives", state, s)]
        return np.concatenate(parts)

    def observables(self, state: tuple[np.ndarray, ...]) -> dict[str, float]:
        """``S`` (least-squares slope ``E[x_par f]/E[x_par^2]``), ``X`` (first edge of U),
        ``train_error`` (P(U)), ``loss`` (``2 int_U (h - f) p ds``); ``X = inf`` while every
        example is unsatisfied."""
        intervals = self.unsatisfied(state)
        s_all, w_all = self.s_nodes([(0.0, self.s_top)])
        f_all = self.f(state, s_all)
        S = 2.0 * float(w_all @ (s_all * f_all)) / (2.0 * float(w_all @ s_all**2))
        s, ws = self.s_nodes(intervals)
        P = 2.0 * float(ws.sum())
        loss = 2.0 * float(ws @ (self.c.h - self.f(state, s))) if s.size else 0.0
        X = next((hi for lo, hi in intervals if lo == 0.0), 0.0)
        return {"S": S, "X": X if X < self.s_top else math.inf, "train_error": P,
                "loss": loss}


def _check_no_jump(spec: str) -> None:
    """The population drives use the classical derivative; an activation with a jump (its
    derivative has Dirac deltas, e.g. ``step``, ``sign``) would lose the deltas' drive."""
    import sympy

    if sympy.diff(get_activation(spec).expr, ACT_X).has(sympy.DiracDelta):
        raise TheoryError(f"activation: {spec!r} has a jump; the population solver needs a "
                          "continuous activation (relu, tanh, erf, ...)")


def _first_crossings(reached: np.ndarray, t: np.ndarray, tau: np.ndarray, t0: float,
                     gap: Callable[[float, int], float]) -> np.ndarray:
    """Per column ``j`` of ``reached`` ``[t, j]``: the time ``t0 expm1(tau)`` at which
    ``gap(tau, j)`` (``f - h`` of the dense solution) crosses 0 inside the first grid interval
    at whose end it is reached (``t[0]`` if reached at once, ``inf`` if never)."""
    out = np.full(reached.shape[1], np.inf)
    for j in np.flatnonzero(reached.any(axis=0)):
        i = int(np.argmax(reached[:, j]))
        if i == 0:
            out[j] = t[0]
            continue
        tau_sat = brentq(gap, tau[i - 1], tau[i], args=(j,), xtol=1e-13, rtol=1e-13)
        out[j] = t0 * math.expm1(tau_sat)
    return out


def compute_population(config: Config, times: Sequence[float] | np.ndarray,
                       x_par: Sequence[float] | np.ndarray | None = None,
                       n_node: int = 12, n_rho: int = 3, n_z: int = 48, rtol: float = 1e-8,
                       ) -> TheoryResult:
    """Population solver for any activation (infinite data, ``M -> infinity``).

    Nodes ``(a, w_par, rho = |w_perp|/sqrt d)`` on :func:`population_quadrature`; each moves by
    ``beta alpha int_U p(s) E_z[F(s, z)] ds`` (:func:`analytic.hinge.population_integrands`),
    with ``U = {s = |x_par| : f(s) < h}`` recomputed at every evaluation. Time integration by
    ``solve_ivp`` (DOP853) in ``tau = log(1 + t/t0)``. Closure: ``f`` is taken at fixed
    ``x_par`` averaged over ``x_perp`` (exact on the sphere, where ``|x_perp|`` is fixed by
    ``x_par``, and for ReLU; for Gaussian data and other activations exact as ``d -> infinity``).
    The ``z`` quadrature converges geometrically but slowly for saturating activations with
    large ``rho`` (tanh, ``rho = 1.6``: 6% error at 16 points, 1e-4 at 48, 1e-6 at 96); for
    ReLU it is exact at any size (symmetric points). ``gamma`` is the simulator's estimator
    ``log(E[(a + w)(a0 + w0)] / E[(a0 + w0)^2])`` on the population; ``validity`` and
    ``f_spread`` are not computed (NaN); ``t_sat`` is the time at which ``f(|x_par|)``
    reaches ``h`` inside the first interval of the time grid at whose end it is reached (root
    of the dense ODE output; ``inf`` if never reached on the grid).
    """
    check_config(config)
    c = config
    if np.size(times) > MAX_POPULATION_TIMES:
        raise TheoryError(f"times: the population solver takes at most {MAX_POPULATION_TIMES} "
                          f"record times (it keeps the dense solution at each); got "
                          f"{np.size(times)}")
    t = check_times(times)
    _check_no_jump(c.activation)
    quad = population_quadrature(c, n_node, n_rho, n_z)
    pop = _Population(c, quad)
    n = quad.a0.size
    t0 = math.sqrt(c.d) / (c.alpha * c.beta)
    tau = np.log1p(t / t0)

    def split(y_: np.ndarray) -> tuple[np.ndarray, ...]:
        return y_[:n], y_[n:2 * n], y_[2 * n:]

    evaluations = [0]

    def rhs(tau_: float, y_: np.ndarray) -> np.ndarray:
        evaluations[0] += 1
        if evaluations[0] > MAX_DRIVE_EVALUATIONS:  # a stiff or diverging population
            raise TheoryError(
                f"activation: the population solver needed more than {MAX_DRIVE_EVALUATIONS} "
                f"evaluations of the drives for {c.activation!r} at d = {c.d} (stiff or "
                "diverging dynamics; ordinary runs need a few hundred); the closed form "
                "covers relu")
        with np.errstate(over="ignore", invalid="ignore"):
            return pop.drive(split(y_)) * t0 * math.exp(tau_)

    y0 = np.concatenate([quad.a0, quad.w0, quad.rho0])
    if tau[-1] > 0:
        sol = solve_ivp(rhs, (0.0, float(tau[-1])), y0, method="DOP853", t_eval=tau,
                        rtol=rtol, atol=rtol * 1e-2, dense_output=True)
        if not sol.success:
            raise RuntimeError(f"population solver failed: {sol.message}")
        ys = sol.y.T
    else:
        ys = y0[None, :]
    u0 = quad.a0 + quad.w0
    obs = [pop.observables(split(y_)) for y_ in ys]
    gamma = np.array([math.log(float(quad.weight @ ((y_[:n] + y_[n:2 * n]) * u0)) /
                               float(quad.weight @ u0**2)) for y_ in ys])
    S = np.array([o["S"] for o in obs])
    xp = None if x_par is None else np.abs(np.asarray(x_par, dtype=np.float64))
    tsat = None
    if xp is not None:
        f_t = np.array([pop.f(split(y_), xp) for y_ in ys])
        tsat = _first_crossings(
            f_t >= c.h, t, tau, t0,
            lambda tau_, j: float(pop.f(split(sol.sol(tau_)), xp[j:j + 1])[0] - c.h))
    nan = np.full(t.shape, np.nan)
    # d gamma/d log t = t E[(da + dw) u0] / E[(a + w) u0], from the drives themselves
    rate = np.array([float(quad.weight @ ((dr[:n] + dr[n:2 * n]) * u0))
                     / float(quad.weight @ ((y_[:n] + y_[n:2 * n]) * u0))
                     for y_, dr in ((y_, pop.drive(split(y_))) for y_ in ys)])
    return TheoryResult(
        t=t, gamma=gamma, S=S, X=np.array([o["X"] for o in obs]),
        train_error=np.array([o["train_error"] for o in obs]),
        loss=np.array([o["loss"] for o in obs]), slope=t * rate,
        validity=nan, f_spread=nan, asymptote_C=math.nan, asymptote_c=math.nan, config=c,
        latex=hinge.latex_equations(c.data, get_activation(c.activation)),
        method=f"population solver ({n} nodes, {c.activation})", x_par=xp,
        t_sat=tsat, extra={"a": ys[:, :n], "w_par": ys[:, n:2 * n], "rho": ys[:, 2 * n:],
                           "node_weight": quad.weight},
    )
