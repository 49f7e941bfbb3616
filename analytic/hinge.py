"""Mean-field theory of hinge-loss training on linearly separable data, derived with sympy.

Setting (the conventions of ``meanfield.config``; Pellegrini & Biroli 2020,
arXiv:2006.11209):

    f(x) = (alpha/M) sum_i a_i sigma(u_i),   u_i = w_i.x / sqrt(d),
    y = sign(x_par),  x_par = w*.x,  w* = e_1,
    L = (1/N) sum_mu (h - y_mu f(x_mu))_+,   d theta_i/dt = -beta M dL/d theta_i,
    a_i(0) ~ N(0, sa^2),  w_i(0) ~ N(0, sw^2 I_d).

Every result below is computed by sympy from the model (differentiation of the loss, dsolve,
expectations over the node law with ``sympy.stats``, integrals over the data law, limits);
nothing is typed in as a final formula. Steps (each a function returning sympy expressions):

1. :func:`node_equations` -- ``-beta M dL/da_i`` and ``-beta M dL/dw_il`` for one example:
   ``da/dt = beta alpha y sigma(u) theta(h - y f)``,
   ``dw_l/dt = beta alpha a y sigma'(u) x_l/sqrt(d) theta(h - y f)``; averaged over the data.
2. :func:`relu_reduction` -- for ReLU with an unsatisfied set ``U`` symmetric under ``x -> -x``:
   ``theta(u) + theta(-u) = 1`` and ``relu(u) - relu(-u) = u`` give
   ``da/dt = kappa w_par``, ``dw_par/dt = kappa a``, ``w_perp`` frozen, with
   ``kappa = beta alpha V / sqrt(d)`` and ``V = <|x_par| 1_U>/2``.
3. :func:`relu_solution` -- ``gamma = int kappa dt``; ``a = a0 cosh g + w0 sinh g``,
   ``w_par = w0 cosh g + a0 sinh g``; network output ``f = S x_par``,
   ``S = alpha E[a w_par]/(2 sqrt d) = alpha (sa^2 + sw^2) sinh(2 gamma)/(4 sqrt d)``;
   unsatisfied set ``|x_par| < X = h/S``; ``t_sat`` through ``gamma_sat``.
4. :func:`data_law` -- for ``gaussian`` and ``sphere`` (radius ``sqrt d``; ``x_par`` has density
   ``c_d (1 - x^2/d)^((d-3)/2)``): ``V(X)``, ``P(U) = P(|x_par| < X)`` (the training error,
   i.e. the fraction of unsatisfied examples), ``E[x_par^2 1_U]``, the loss
   ``h P(U) - S <|x_par| 1_U>``, the gamma equation ``d gamma/dt = beta alpha V(X(gamma))/sqrt d``,
   its early slope and its late asymptote ``d gamma/dt ~ C exp(-4 gamma)``,
   ``gamma = log(t)/4 + c``, ``c = log(4 C)/4`` (sympy limits).
5. :func:`population_integrands` -- for any activation, the single-node drives of a node
   ``(a, w_par, rho = |w_perp|/sqrt d)`` as integrands over ``s = |x_par|`` in ``U`` and over the
   unit-variance projection ``z`` of ``x_perp`` on the node's ``w_perp`` direction, for the
   population solver of :mod:`meanfield.theory`.

Numeric callables (``sympy.lambdify`` to numpy/scipy) are in :func:`numerics`; the LaTeX of the
closed forms in :func:`latex_equations` (through :func:`analytic.codegen.latex`). Units: ``t``
in mean-field time (``beta t`` is dimensionless), everything else dimensionless.
The derivation (~10 s of sympy) runs once per process and is cached on disk through
:mod:`analytic.cache` as ``srepr`` text (read back through its whitelist, never ``eval``); the
file names change with the package version, the sympy version and the source of the analytic
modules.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sympy as sp
from sympy.codegen.cfunctions import log1p
from sympy.codegen.rewriting import expm1_opt, log1p_opt, optimize
from sympy.stats import E as expectation
from sympy.stats import Normal

from analytic import cache
from analytic.activations import Activation
from analytic.activations import X as ACT_X
from analytic.codegen import latex as to_latex

# ----------------------------------------------------------------------------- symbols

alpha, beta, h, d, sa, sw, M, N = sp.symbols("alpha beta h d sa sw M N", positive=True)
t = sp.Symbol("t", nonnegative=True)
gamma = sp.Symbol("gamma", nonnegative=True)
a0, w0 = sp.symbols("a_0 w_0", real=True)
a, w_par = sp.symbols("a w_par", real=True)
rho = sp.Symbol("rho", nonnegative=True)
u = sp.Symbol("u", real=True)
f_sym = sp.Symbol("f", real=True)
y = sp.Symbol("y", real=True)
x_l = sp.Symbol("x_l", real=True)
x_par = sp.Symbol("x_par", real=True)
s = sp.Symbol("s", nonnegative=True)
z = sp.Symbol("z", real=True)
k_perp = sp.Symbol("k", positive=True)
X = sp.Symbol("X", positive=True)
V = sp.Symbol("V", positive=True)
S = sp.Symbol("S", positive=True)
kappa = sp.Symbol("kappa", positive=True)
C = sp.Symbol("C", positive=True)
sigma = sp.Function("sigma")

DATA_LAWS = ("gaussian", "sphere")


class DerivationError(RuntimeError):
    """A symbolic identity the derivation relies on did not simplify as required."""


_PROBES = (
    {"X": sp.Rational(3, 7), "d": 11, "x_par": sp.Rational(5, 3)},
    {"X": sp.Rational(13, 10), "d": sp.Rational(59, 2), "x_par": sp.Rational(1, 9)},
)


def _require_zero(expr: sp.Expr, what: str) -> None:
    """Check an identity ``expr == 0``: symbolically, or, where sympy cannot simplify powers
    with symbolic exponents, at probe points evaluated with 40 significant digits."""
    expr = sp.powsimp(sp.expand_power_base(sp.gammasimp(expr), force=True), force=True)
    if sp.simplify(expr) == 0:
        return
    for probe in _PROBES:
        values = {sym: probe.get(sym.name, sp.Rational(7, 5)) for sym in expr.free_symbols}
        if abs(sp.N(expr.subs(values), 40)) > 1e-30:
            raise DerivationError(f"{what}: expected 0, sympy left {expr}")


# ----------------------------------------------------------------------------- disk cache
#
# The derivation takes ~10 s of sympy; each step's result (an expression or a dict of them) is
# an entry of kind "hinge" in analytic.cache, keyed by the step and its arguments:
# {"single": bool, "exprs": {name: srepr}}, read back by the whitelist walker of analytic.cache
# (never eval/pickle) with sigma as the only undefined function. Unreadable or foreign entries
# are ignored and recomputed.


def _cache_file(key: str) -> Path:
    return cache.path("hinge", key)


def _cache_load(key: str) -> object | None:
    return cache.load("hinge", key, _decode)


def _decode(data: dict) -> object:
    build = {name: cache.from_srepr(text, functions={"sigma": sigma})
             for name, text in data["exprs"].items()}
    return build["_"] if data["single"] else build


def _cache_store(key: str, value: object) -> None:
    exprs = {"_": value} if isinstance(value, sp.Basic) else value
    cache.store("hinge", key, {"single": isinstance(value, sp.Basic),
                               "exprs": {name: sp.srepr(e) for name, e in exprs.items()}})


def _disk_cached(func: Callable) -> Callable:
    """Cache a derivation step (a sympy expression or a dict of them) on disk."""

    @functools.wraps(func)
    def wrapper(*args: str) -> object:
        key = ":".join([func.__name__, *args])
        cached = _cache_load(key)
        if cached is not None:
            return cached
        value = func(*args)
        _cache_store(key, value)
        return value

    return wrapper


# ----------------------------------------------------------------------------- 1. node equations


@functools.lru_cache(maxsize=1)
@_disk_cached
def node_equations() -> dict[str, sp.Expr]:
    """Per-example single-node drives, by differentiating the hinge loss of the network.

    The network is built with symbolic width ``M`` and dimension ``d`` (indexed sums); the
    returned expressions use ``u`` (the node's preactivation), ``f`` (the network output at the
    example), ``y`` (its label), ``x_l`` (a component of ``x``) and ``a`` (the node's output
    weight). The drive is the data average of these expressions:

        da/dt   = beta alpha <y sigma(u) theta(h - y f)>,
        dw_l/dt = beta alpha a <y sigma'(u) x_l / sqrt(d) theta(h - y f)>.
    """
    i, j, k, l = sp.symbols("i j k l", integer=True, positive=True)
    A = sp.IndexedBase("a")
    Wt = sp.IndexedBase("w")
    Xv = sp.IndexedBase("x")

    def pre(n: sp.Symbol) -> sp.Expr:
        return sp.Sum(Wt[n, k] * Xv[k], (k, 1, d)) / sp.sqrt(d)

    f_net = alpha / M * sp.Sum(A[i] * sigma(pre(i)), (i, 1, M))
    loss = sp.Max(0, h - y * f_net)

    def flow(param: sp.Expr) -> sp.Expr:
        out = (-beta * M * sp.diff(loss, param)).doit()
        for _ in range(3):  # the Kronecker-delta sums collapse to Piecewise in stages
            # keep the branch where the node and component indices are in range
            out = out.replace(lambda e: isinstance(e, sp.Piecewise), lambda e: e.args[0][0])
            out = out.doit()
        out = out.subs({f_net: f_sym, pre(j): u}).doit()
        return sp.simplify(out.subs({A[j]: a, Xv[l]: x_l}))

    da, dw = flow(A[j]), flow(Wt[j, l])
    if da.free_symbols - {alpha, beta, h, y, f_sym, u} or dw.free_symbols - {
        alpha, beta, h, y, f_sym, u, a, x_l, d
    }:
        raise DerivationError(f"node equations not closed in (u, f, y, a, x_l): {da}, {dw}")
    return {"da_dt": da, "dw_dt": dw}


# ----------------------------------------------------------------------------- 2. ReLU reduction


@functools.lru_cache(maxsize=1)
@_disk_cached
def relu_reduction() -> dict[str, sp.Expr]:
    """Symmetry reduction of the node equations for ReLU and a symmetric unsatisfied set.

    Under ``x -> -x`` (so ``y -> -y``, ``u -> -u``, and ``y x`` unchanged) with ``U``
    symmetric, ``<y F(u) x 1_U> = <y x (F(u) + F(-u))/2 1_U>`` and
    ``<y G(u) 1_U> = <y (G(u) - G(-u))/2 1_U>``. For ReLU, ``theta(u) + theta(-u) = 1``
    and ``relu(u) - relu(-u) = u`` (checked here by sympy), so

        <y theta(u) x 1_U> = <y x 1_U>/2 = V e_1,      <y relu(u) 1_U> = w_par V / sqrt(d),

    (``<y x_perp 1_U> = 0`` by ``x_perp -> -x_perp``; ``y x_par = |x_par|``), giving
    ``da/dt = kappa w_par``, ``dw_par/dt = kappa a``, ``dw_perp/dt = 0``, with
    ``kappa = beta alpha V / sqrt(d)``, ``V = <|x_par| 1_U>/2``.
    """
    eq = node_equations()
    relu = sp.Max(0, u)
    theta = sp.diff(relu, u)
    even_theta = sp.simplify((theta + theta.subs(u, -u)).rewrite(sp.Piecewise) / 2)
    odd_relu = sp.simplify((relu - relu.subs(u, -u)).rewrite(sp.Piecewise) / 2)
    _require_zero(even_theta - sp.Rational(1, 2), "theta(u) + theta(-u) = 1")
    _require_zero(odd_relu - u / 2, "relu(u) - relu(-u) = u")
    in_u = {sp.Heaviside(h - y * f_sym): 1}  # restricted to the unsatisfied set U
    x_perp_part = sp.Symbol("x_perp_part", real=True)  # w_perp.x_perp/sqrt(d), averages to 0
    y_abs = sp.Symbol("abs_x_par", positive=True)  # y x_par = |x_par|
    # a-drive: symmetrized sigma(u) -> odd part u/2, u = (w_par x_par)/sqrt(d) + x_perp_part
    da = eq["da_dt"].subs(in_u).subs(sigma(u), odd_relu)
    da = sp.expand(da.subs(u, w_par * x_par / sp.sqrt(d) + x_perp_part)).subs(x_perp_part, 0)
    da = da.subs(y * x_par, y_abs)
    # w_par-drive: sigma'(u) -> even part 1/2, x_l = x_par
    dw = eq["dw_dt"].subs(in_u).subs(sp.Derivative(sigma(u), u), even_theta)
    dw = dw.subs(x_l, x_par).subs(y * x_par, y_abs)
    # <|x_par| 1_U> = 2 V
    da, dw = (sp.simplify(e.subs(y_abs, 2 * V)) for e in (da, dw))
    kap = sp.simplify(dw / a)
    _require_zero(da - kap * w_par, "da/dt = kappa w_par")
    return {"kappa": kap, "da_dt": kap * w_par, "dw_par_dt": kap * a, "dw_perp_dt": sp.S.Zero,
            # the two identities above, as sympy simplified them (shown by meanfield derive)
            "theta_even": even_theta, "relu_odd": odd_relu}


# ----------------------------------------------------------------------------- 3. ReLU solution


@functools.lru_cache(maxsize=1)
@_disk_cached
def relu_solution() -> dict[str, sp.Expr]:
    """Closed-form ReLU trajectories and network output in terms of ``gamma = int kappa dt``.

    ``dsolve`` of ``da/dgamma = w_par, dw_par/dgamma = a`` (the reduced equations divided by
    ``kappa``); ``S = alpha E[a w_par]/(2 sqrt d)`` from the odd part ``u/2`` of ReLU (the even
    part ``|u|/2`` averages to 0 under the node-law symmetry ``(a, w) -> (-a, -w)``, and
    ``E[a w_perp] = 0``), with ``E`` over ``a0 ~ N(0, sa^2)``, ``w0 ~ N(0, sw^2)``;
    ``X = h/S`` from ``S X = h``; ``gamma_sat(x_par)`` from ``S(gamma) |x_par| = h``.
    """
    red = relu_reduction()
    fa, fw = sp.Function("a"), sp.Function("w_par")
    g = gamma
    system = [
        sp.Eq(fa(g).diff(g), (red["da_dt"] / red["kappa"]).subs({w_par: fw(g), a: fa(g)})),
        sp.Eq(fw(g).diff(g), (red["dw_par_dt"] / red["kappa"]).subs({w_par: fw(g), a: fa(g)})),
    ]
    sol = sp.dsolve(system, ics={fa(0): a0, fw(0): w0})
    by = {str(e.lhs.func): sp.simplify(e.rhs.rewrite(sp.cosh)) for e in sol}
    a_t, w_t = by["a"], by["w_par"]
    a_n, w_n = Normal("a0n", 0, sa), Normal("w0n", 0, sw)
    e_aw = expectation(sp.expand((a_t * w_t).subs({a0: a_n, w0: w_n})))
    e_aw = sp.simplify(e_aw.rewrite(sp.exp))
    relu = sp.Max(0, u)
    odd = sp.simplify((relu - relu.subs(u, -u)).rewrite(sp.Piecewise) / 2)
    out_per_node = alpha * a * odd.subs(u, w_par * x_par / sp.sqrt(d))
    S_expr = sp.diff(out_per_node, x_par).subs(a * w_par, sp.Symbol("E_aw"))
    S_per_e_aw = sp.simplify(S_expr / sp.Symbol("E_aw"))
    S_expr = S_expr.subs(sp.Symbol("E_aw"), e_aw)
    S_coef = sp.simplify((S_expr / sp.sinh(2 * g)).rewrite(sp.exp))
    if S_coef.has(g):
        raise DerivationError(f"S is not proportional to sinh(2 gamma): {S_expr}")
    X_expr = sp.solve(sp.Eq(S * X, h), X)[0]
    xp = sp.Symbol("x_par", positive=True)
    roots = [r for r in sp.solve(sp.Eq(S_coef * sp.sinh(2 * g) * xp, h), g) if r.is_real]
    if len(roots) != 1:
        raise DerivationError(f"gamma_sat: expected one real root, got {roots}")
    g_sat = sp.simplify(roots[0]).subs(xp, sp.Abs(x_par))
    return {
        "a": a_t,
        "w_par": w_t,
        "E_a_w_par": e_aw,
        "S": S_coef * sp.sinh(2 * g),
        "S_coef": S_coef,
        "S_per_E_a_w_par": S_per_e_aw,
        "X": X_expr,
        "gamma_sat": g_sat,
        "f": S * x_par,
    }


# ----------------------------------------------------------------------------- 4. data laws


def _density(law: str) -> tuple[sp.Expr, sp.Expr]:
    """(density of x_par, upper end of its support) for a data law."""
    x = sp.Symbol("x", real=True)
    if law == "gaussian":
        return sp.exp(-x**2 / 2) / sp.sqrt(2 * sp.pi), sp.oo
    if law == "sphere":
        v = sp.Symbol("v", positive=True)
        k = (d - 3) / 2
        # normalisation: x = sqrt(d v) maps int (1 - x^2/d)^k dx to a Beta integral
        half = sp.integrate(v ** sp.Rational(-1, 2) * (1 - v) ** k, (v, 0, 1), conds="none")
        c_d = sp.gammasimp(1 / (sp.sqrt(d) * sp.gammasimp(sp.hyperexpand(half))))
        return c_d * (1 - x**2 / d) ** k, sp.sqrt(d)
    raise ValueError(f"data must be one of {', '.join(DATA_LAWS)}; got {law!r}")


@functools.lru_cache(maxsize=2)
@_disk_cached
def density(law: str) -> sp.Expr:
    """The density of ``x_par`` under ``law``, in the variable ``x`` (the ``density`` of
    :func:`data_law`, without deriving the rest of the data law)."""
    return _density(law)[0]


@functools.lru_cache(maxsize=2)
@_disk_cached
def data_law(law: str) -> dict[str, sp.Expr]:
    """Unsatisfied-set quantities and the gamma equation for ``law`` (``gaussian``/``sphere``).

    With ``p`` the density of ``x_par`` and ``U = {|x_par| < X}`` (for ``X`` below the end of
    the support; beyond it, every example is unsatisfied):

        V(X)  = int_0^X x p(x) dx              (= <|x_par| 1_U>/2)
        P(X)  = int_{-X}^X p(x) dx             (training error: fraction unsatisfied)
        M2(X) = int_{-X}^X x^2 p(x) dx         (= E[x_par^2 1_U])
        loss  = h P - 2 S V                    (= <(h - S |x_par|) 1_U>)
        d gamma/dt = beta alpha V(h/S(gamma)) / sqrt(d),   early slope = its value at X = oo,
        C = lim_{gamma->oo} exp(4 gamma) d gamma/dt,   c = lim (gamma - log t(gamma)/4)
        with t(gamma) = int_0^gamma exp(4 g)/C dg  (so c = log(4 C)/4).

    For the sphere the antiderivatives of ``P`` and ``M2`` are the regularized incomplete beta
    functions ``I_{X^2/d}(1/2, (d-1)/2)`` and ``I_{X^2/d}(3/2, (d-1)/2)``, identified by
    checking with sympy that their X-derivatives equal ``2 p(X)`` and ``2 X^2 p(X)`` (and they
    vanish at ``X = 0``).
    """
    p, top = _density(law)
    x = sp.Symbol("x", real=True)
    px = p.subs(x, X)
    if law == "gaussian":
        V_X = sp.integrate(x * p, (x, 0, X))
        P_X = sp.integrate(p, (x, -X, X))
        M2_X = sp.simplify(sp.integrate(x**2 * p, (x, -X, X)))
    else:
        k = (d - 3) / 2
        q, lo = sp.symbols("q q_X", positive=True)  # q = 1 - x^2/d, x dx = -d dq/2
        # (1 - X^2/d)^e kept as exp(e log(1 - X^2/d)): evaluated as expm1/log1p, no cancellation
        inner = sp.together(sp.integrate(q**k, (q, lo, 1), conds="none"))
        inner = sp.powsimp(inner.subs(lo, sp.exp(sp.log(1 - X**2 / d))))
        V_X = p.subs(x, 0) * d / 2 * inner
        v_max = p.subs(x, 0) * d / 2 * sp.integrate(q**k, (q, 0, 1), conds="none")
        P_X = sp.betainc_regularized(sp.Rational(1, 2), k + 1, 0, X**2 / d)
        M2_X = sp.betainc_regularized(sp.Rational(3, 2), k + 1, 0, X**2 / d)
        _require_zero(sp.diff(P_X, X) / (2 * px) - 1, "d P/dX = 2 p(X)")
        _require_zero(sp.diff(M2_X, X) / (2 * X**2 * px) - 1, "d M2/dX = 2 X^2 p(X)")
    _require_zero(sp.diff(V_X, X) - X * px, "d V/dX = X p(X)")
    sol = relu_solution()
    kap = relu_reduction()["kappa"]
    rate = kap.subs(V, V_X)  # d gamma/dt as a function of X
    # late asymptote: sinh(2 gamma) = (1/q - q)/2 with q = exp(-2 gamma) -> 0
    qv = sp.Symbol("q", positive=True)
    rate_q = rate.subs(X, sol["X"].subs(S, sol["S_coef"] * (1 / qv - qv) / 2))
    C_expr = sp.simplify(sp.limit(rate_q / qv**2, qv, 0, "+"))
    G, g = sp.Symbol("G", positive=True), sp.Symbol("g", real=True)
    t_of_G = sp.integrate(sp.exp(4 * g) / C, (g, 0, G))
    c_of_C = sp.simplify(sp.limit(G - sp.log(t_of_G) / 4, G, sp.oo))
    if top is sp.oo:
        v_max = sp.simplify(sp.limit(V_X, X, sp.oo))
    slope0 = sp.simplify(kap.subs(V, v_max))
    return {
        "density": p,
        "support": top,
        "V": V_X,
        "V_max": v_max,
        "P_U": P_X,
        "M2_U": M2_X,
        "loss": h * P_X - 2 * S * V_X,
        "gamma_rate": rate,
        "early_slope": slope0,
        "C": C_expr,
        "c": c_of_C.subs(C, C_expr),
        "c_of_C": c_of_C,
        "t_of_G": t_of_G,  # t(G) = int_0^G exp(4 g)/C dg, the step from C to c
        # finite-N indicator: |drive orthogonal to w*| / parallel drive (see meanfield.theory)
        "perp_sq_U": (d - 1) * P_X if law == "gaussian" else d * P_X - M2_X,
    }


# ----------------------------------------------------------------------------- finite M


@functools.lru_cache(maxsize=1)
@_disk_cached
def relu_square_mean() -> sp.Expr:
    """``E_z[relu(b + r z)^2]`` for ``z ~ N(0, 1)``, ``r > 0`` (sympy integral):
    ``(b^2 + r^2) Phi(b/r) + b r phi(b/r)``; used for the finite-M spread of ``f``."""
    b = sp.Symbol("b", real=True)
    r = sp.Symbol("r", positive=True)
    zz = sp.Symbol("zz", real=True)
    out = sp.integrate((b + r * zz) ** 2 * sp.exp(-zz**2 / 2) / sp.sqrt(2 * sp.pi),
                       (zz, -b / r, sp.oo), conds="none")
    return sp.simplify(out)


# ----------------------------------------------------------------------------- 5. population


@functools.lru_cache(maxsize=16)
def population_integrands(act: Activation) -> dict[str, sp.Expr]:
    """Drives of a node ``(a, w_par, rho = |w_perp|/sqrt d)`` for any activation, as integrands.

    A data point is ``x_par = +-s`` (``y = +-1``) with the projection ``q = k z`` of ``x_perp``
    on the node's ``w_perp`` direction, ``z`` of unit variance (Gaussian data: ``k = 1``,
    ``z ~ N(0,1)``; sphere: ``k = sqrt((d - s^2)/(d - 1))``, ``z = sqrt(d-1) v`` with ``v`` of
    density ``~ (1 - v^2)^((d-4)/2)``). The preactivation is ``u = w_par x_par/sqrt(d) + rho q``.
    Summing the two signs of ``x_par`` in the node equations (:func:`node_equations`), the drives
    are ``beta alpha int_{U, s>0} p(s) E_z[F(s, z)] ds`` with ``F`` returned here for
    ``a`` (``F_a``), ``w_par`` (``F_w``, from ``x_l = x_par``) and ``rho`` (``F_rho``, from
    ``x_l = q``, divided by ``sqrt(d)`` for ``rho = |w_perp|/sqrt d``); ``F_f`` is the output
    integrand, ``f(s) = alpha E_nodes E_z[F_f]``.
    """
    eq = node_equations()
    in_u = {sp.Heaviside(h - y * f_sym): 1}
    phi = act.expr.subs(ACT_X, u)
    dphi = act.derivative(1).subs(ACT_X, u)

    def point(sign: int, expr: sp.Expr, component: sp.Expr) -> sp.Expr:
        pre = sign * w_par * s / sp.sqrt(d) + rho * k_perp * z
        e = expr.subs(in_u).subs(x_l, component).subs(y, sign)
        e = e.subs(sp.Derivative(sigma(u), u), dphi).subs(sigma(u), phi)
        return e.subs(u, pre)

    def both(expr: sp.Expr, comp_plus: sp.Expr, comp_minus: sp.Expr) -> sp.Expr:
        total = point(1, expr, comp_plus) + point(-1, expr, comp_minus)
        out = sp.expand(total / (alpha * beta))
        if out.has(alpha, beta):
            raise DerivationError(f"population integrand not proportional to alpha beta: {out}")
        return out

    F_a = both(eq["da_dt"], 0, 0)
    F_w = both(eq["dw_dt"], s, -s)
    F_rho = both(eq["dw_dt"], k_perp * z, k_perp * z) / sp.sqrt(d)
    F_f = a * phi.subs(u, w_par * s / sp.sqrt(d) + rho * k_perp * z)
    return {"F_a": F_a, "F_w": F_w, "F_rho": F_rho, "F_f": F_f}


# ----------------------------------------------------------------------------- numerics


def _numeric(expr: sp.Expr, args: tuple[sp.Symbol, ...]) -> Callable:
    """numpy/scipy callable; ``exp(x) - 1`` and ``log(1 + x)`` become ``expm1``/``log1p``
    and gamma-function ratios are taken in log space (no overflow at large ``d``)."""
    # 0**e -> 0: every such exponent here is (d - 1)/2 or d - 1 > 0 (config: d >= 2)
    expr = expr.replace(lambda e: e.is_Pow and e.base == 0, lambda e: sp.S.Zero)
    expr = expr.replace(
        lambda e: e.is_Pow and e.base.has(X) and not e.exp.is_Integer,
        lambda e: sp.exp(e.exp * log1p(sp.expand(e.base - 1))),
    )
    expr = sp.factor_terms(expr.replace(sp.gamma, lambda arg: sp.exp(sp.loggamma(arg))))
    expr = sp.powsimp(expr, combine="exp", deep=True, force=True)
    # log(exp(y)) = y for the real y here (log-gamma of positive arguments): no underflow
    expr = sp.expand_log(expr, force=True).replace(
        lambda e: isinstance(e, sp.log) and isinstance(e.args[0], sp.exp),
        lambda e: e.args[0].args[0],
    )
    expr = optimize(expr, [expm1_opt, log1p_opt])
    return sp.lambdify(args, expr, modules=["scipy", "numpy"])


@dataclass(frozen=True)
class HingeNumerics:
    """Numeric callables of the derived expressions for one data law (numpy broadcasting).

    Arguments are named as the config fields; ``X`` is the edge of the unsatisfied set.
    """

    V: Callable  # V(X, d) = <|x_par| 1_U>/2
    P_U: Callable  # P_U(X, d): fraction of unsatisfied examples
    M2_U: Callable  # M2_U(X, d) = E[x_par^2 1_U]
    perp_sq_U: Callable  # perp_sq_U(X, d) = E[|x_perp|^2 1_U]
    V_max: Callable  # V_max(d) = V at X = end of support
    support: Callable  # support(d): largest |x_par|
    density: Callable  # density(x, d) of x_par
    S_coef: Callable  # S_coef(alpha, sa, sw, d): S = S_coef sinh(2 gamma)
    S_per_E_a_w_par: Callable  # (alpha, d): S = S_per_E_a_w_par * E[a w_par]
    kappa_coef: Callable  # kappa_coef(alpha, beta, d): d gamma/dt = kappa_coef * V
    early_slope: Callable  # early_slope(alpha, beta, d)
    C: Callable  # C(alpha, beta, h, d, sa, sw)
    c: Callable  # c(alpha, beta, h, d, sa, sw)
    gamma_sat: Callable  # gamma_sat(x_par, alpha, h, d, sa, sw)
    relu_square_mean: Callable  # relu_square_mean(b, r) = E_z relu(b + r z)^2


@functools.lru_cache(maxsize=2)
def numerics(law: str) -> HingeNumerics:
    """Lambdified closed forms for ``law`` (cached; derivation runs once per process)."""
    dl = data_law(law)
    sol = relu_solution()
    red = relu_reduction()
    x = sp.Symbol("x", real=True)
    b, r = sp.Symbol("b", real=True), sp.Symbol("r", positive=True)
    top = dl["support"]
    return HingeNumerics(
        V=_numeric(dl["V"], (X, d)),
        P_U=_numeric(dl["P_U"], (X, d)),
        M2_U=_numeric(dl["M2_U"], (X, d)),
        perp_sq_U=_numeric(dl["perp_sq_U"], (X, d)),
        V_max=_numeric(dl["V_max"], (d,)),
        support=_numeric(top if top is not sp.oo else sp.Float("inf") + 0 * d, (d,)),
        density=_numeric(dl["density"], (x, d)),
        S_coef=_numeric(sol["S_coef"], (alpha, sa, sw, d)),
        S_per_E_a_w_par=_numeric(sol["S_per_E_a_w_par"], (alpha, d)),
        kappa_coef=_numeric(red["kappa"] / V, (alpha, beta, d)),
        early_slope=_numeric(dl["early_slope"], (alpha, beta, d)),
        C=_numeric(dl["C"], (alpha, beta, h, d, sa, sw)),
        c=_numeric(dl["c"], (alpha, beta, h, d, sa, sw)),
        gamma_sat=_numeric(sol["gamma_sat"], (x_par, alpha, h, d, sa, sw)),
        relu_square_mean=_numeric(relu_square_mean(), (b, r)),
    )


# ----------------------------------------------------------------------------- LaTeX


def latex_equations(law: str, activation: Activation | None = None) -> dict[str, str]:
    """LaTeX of the derived equations (name -> ``lhs = rhs``), in derivation order; with a
    non-ReLU ``activation``, also the population-solver integrands ``F_a``, ``F_w``,
    ``F_rho``, ``F_f`` (:func:`population_integrands`)."""
    eq = node_equations()
    red = relu_reduction()
    sol = relu_solution()
    dl = data_law(law)
    L = to_latex
    Vs, Ps = sp.Symbol("V"), sp.Symbol("P_U")
    rate = sp.Symbol(r"\frac{d\gamma}{dt}")
    out = {
        "node_da_dt": rf"\frac{{da}}{{dt}} = \left\langle {L(eq['da_dt'])} \right\rangle",
        "node_dw_dt": rf"\frac{{dw_l}}{{dt}} = \left\langle {L(eq['dw_dt'])} \right\rangle",
        "kappa": rf"\kappa = {L(red['kappa'])},\quad V = \tfrac12\langle |x_\parallel| 1_U\rangle",
        "reduced": rf"\frac{{da}}{{dt}} = {L(red['da_dt'])},\quad "
                   rf"\frac{{dw_\parallel}}{{dt}} = {L(red['dw_par_dt'])},\quad "
                   r"\frac{dw_\perp}{dt} = 0",
        "a_of_gamma": rf"a = {L(sol['a'])}",
        "w_par_of_gamma": rf"w_\parallel = {L(sol['w_par'])}",
        "output": rf"f(x) = S x_\parallel,\quad S = {L(sol['S'])}",
        "unsatisfied_set": rf"U = \{{|x_\parallel| < X\}},\quad X = {L(sol['X'])}",
        "density": rf"p(x_\parallel) = {L(dl['density'].subs(sp.Symbol('x', real=True), x_par))}",
        "V": rf"{L(Vs)} = {L(dl['V'])}",
        "gamma_equation": rf"{L(rate)} = {L(dl['gamma_rate'])}",
        "early_slope": rf"\left.{L(rate)}\right|_{{t=0}} = {L(dl['early_slope'])}",
        "late_asymptote": rf"{L(rate)} \sim C e^{{-4\gamma}},\quad C = {L(dl['C'])}",
        "asymptote_c": rf"\gamma = \frac{{\log t}}{{4}} + c,\quad c = {L(dl['c_of_C'])}",
        "t_sat": rf"t_{{sat}}(x_\parallel) = t(\gamma_{{sat}}),\quad "
                 rf"\gamma_{{sat}} = {L(sol['gamma_sat'])}",
        "train_error": rf"{L(Ps)} = {L(dl['P_U'])}",
        "loss": rf"\mathcal{{L}} = {L(dl['loss'])}",
    }
    if activation is not None and activation.expr != sp.Max(0, ACT_X):
        for name, expr in population_integrands(activation).items():
            out[f"population_{name}"] = rf"{name} = {L(expr)}"
    return out
