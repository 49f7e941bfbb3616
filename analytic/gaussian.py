"""Gaussian expectations ``E[F(g)]``, ``g ~ N(0, 1)``, exact when possible.

    E[F(g)] = int F(x) exp(-x^2/2) / sqrt(2 pi) dx.

Exact route (no ``sympy.integrate``, so it is fast and cannot hang). ``F`` is cut at the zeros
of the arguments of ``Abs``, ``sign``, ``Heaviside``, ``Max``, ``Min`` (innermost first), so that
on each interval ``[a, b]`` it is smooth; each piece is expanded into terms

    x^n exp(q2 x^2 + q1 x + q0) prod_i erf(alpha_i x + beta_i)

and integrated in closed form: without ``erf`` on any interval (completing the square; the
moments ``J_k = int_A^B y^k exp(-c y^2) dy`` obey ``J_k = [-y^(k-1) exp(-c y^2) / (2c)]_A^B +
(k - 1) J_(k-2) / (2c)``), with one or two ``erf`` on the whole line by integrating by parts
(``x exp(-c x^2) = -(exp(-c x^2))' / (2c)``, ``erf(u)' = 2 u' exp(-u^2) / sqrt(pi)``) down to

    int exp(-c y^2) erf(alpha y + beta) dy = sqrt(pi/c) erf(beta / sqrt(1 + alpha^2 / c)),
    int exp(-c y^2) erf(a1 y) erf(a2 y) dy
        = sqrt(pi/c) (2/pi) asin(2 b1 b2 / sqrt((1 + 2 b1^2)(1 + 2 b2^2))),  b_i = a_i / sqrt(2c),

the second being ``E[erf(a g) erf(b g)] = (2/pi) asin(2ab / sqrt((1 + 2a^2)(1 + 2b^2)))``.
Terms of ``F`` without switches are integrated over the whole line, the others piece by piece.
``sin`` and ``cos`` are complex exponentials (whole line only). ``sympy.integrate`` is not used:
it is slow, can hang, and misses or gets wrong several of these integrals.

Anything else (``tanh``, ``sigmoid``, ``softplus``, ``erf`` on a half-line, ...) is integrated
numerically: adaptive Gauss-Legendre on each smooth piece of ``[-L, L]`` (``L = 40``; the tail
beyond is checked to be negligible), accuracy ~1e-14 of ``E|F|``. An odd integrand gives an
exact 0; a numeric value that looks like a simple fraction is proved, when possible, through the
even part ``E F = E[F(g) + F(-g)] / 2`` (``sigmoid(x) + sigmoid(-x) = 1``). Every result is a
:class:`Value` labelled exact or numeric.

Moments of an activation ``phi`` (names are a contract with ``analytic.kernels``):

    nu = E phi,  zeta = E phi',  mu2 = E phi'',  mu3 = E phi''',  E_phi2 = E phi^2,
    E_dphi2 = E phi'^2,

with derivatives through Stein's identity ``E phi^(k)(g) = E[phi(g) He_k(g)]`` (probabilists'
Hermite polynomials), so kinks and jumps (Dirac deltas in ``phi^(k)``) are handled exactly.
``E_dphi2`` uses the classical ``phi'`` (a jump in ``phi'`` is harmless) and is ``+inf`` when
``phi`` itself jumps (``step``: ``phi' = delta``). Hermite coefficients ``c_k = E[phi He_k]``.

All quantities are dimensionless (``g`` is a standard normal variable, ``phi`` a function of
it). Results are cached in-process and on disk through :mod:`analytic.cache` (entries of kind
``gauss`` keyed by the integrand's ``srepr``; file names change with the package version, the
sympy version and the source of the analytic modules); exact values are stored as ``srepr``
text and read back by its whitelist AST walker with ``x`` as the only symbol (never ``eval``).
Corrupt or unreadable cache files are ignored; writes are atomic.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sympy

from analytic import cache
from analytic.activations import Activation, ActivationError, X, get_activation
from analytic.cache import cache_dir as cache_dir  # re-exported: earlier home of cache_dir

MOMENT_NAMES = ("nu", "zeta", "mu2", "mu3", "E_phi2", "E_dphi2")
L_CUT = 40.0  # numeric quadrature on [-L_CUT, L_CUT]; phi(40) ~ 1e-348
MAX_PIECES = 200
MAX_TERMS = 600
_SWITCHES = (sympy.Abs, sympy.sign, sympy.Heaviside, sympy.Max, sympy.Min)


class ExpectationError(ActivationError):
    """``E[F(g)]`` does not exist (divergent, or not real) or cannot be computed reliably."""


class _NoClosedForm(Exception):
    """The exact route does not apply to this integrand."""


@dataclass(frozen=True)
class Value:
    """A number with its provenance: ``exact`` results carry the sympy ``expr``; ``latex`` is
    the closed form (exact) or the number to 15 digits (numeric)."""

    value: float
    exact: bool
    expr: sympy.Expr | None
    latex: str

    def __float__(self) -> float:
        return self.value


def _exact_value(expr: sympy.Expr) -> Value:
    return Value(_to_float(expr), True, expr, sympy.latex(expr))


def _numeric_value(value: float) -> Value:
    return Value(value, False, None, f"{value:.15g}")


def _to_float(expr: sympy.Expr) -> float:
    z = complex(sympy.N(expr, 30))
    if abs(z.imag) > 1e-25 * max(1.0, abs(z.real)):
        raise ExpectationError(f"expectation {expr} is not real")
    return z.real


# ---------------------------------------------------------------------------- public API


def hermite(k: int) -> sympy.Expr:
    """Probabilists' Hermite polynomial ``He_k(x)``: ``He_0 = 1``, ``He_1 = x``,
    ``He_(k+1) = x He_k - k He_(k-1)``; orthogonal with ``E[He_j He_k] = k! delta_jk``."""
    return _hermite(int(k))


@functools.lru_cache(maxsize=128)
def _hermite(k: int) -> sympy.Expr:
    if k < 0:
        raise ValueError(f"Hermite order k={k}: allowed: k >= 0")
    prev, cur = sympy.S.One, X
    if k == 0:
        return prev
    for j in range(1, k):
        prev, cur = cur, sympy.expand(X * cur - j * prev)
    return cur


def expectation(expr: sympy.Expr | Activation | str) -> Value:
    """``E[F(g)]``, ``g ~ N(0, 1)``, for a sympy expression ``F`` in :data:`X` (or an
    :class:`Activation`, or text for the whitelist parser): exact if the closed-form route
    applies, else numeric (~1e-13 relative).

    Raises :class:`ExpectationError` if the expectation diverges or is not real.
    """
    if isinstance(expr, Activation):
        expr = expr.expr
    elif isinstance(expr, str):  # user text goes through the whitelist parser, never sympify
        from analytic.activations import parse_expression

        expr = parse_expression(expr)
    elif not isinstance(expr, sympy.Basic):
        raise TypeError(f"expected a sympy expression in x, got {type(expr).__name__}")
    return _expectation(expr)


def moments(activation: Activation | str) -> dict[str, Value]:
    """The six Gaussian moments of ``phi`` (see the module docstring):
    ``nu, zeta, mu2, mu3, E_phi2, E_dphi2`` (Stein's identity for the derivatives)."""
    act = get_activation(activation) if isinstance(activation, str) else activation
    return dict(_moments(act.expr))


def hermite_coefficients(activation: Activation | str, order: int) -> list[Value]:
    """``[c_0, ..., c_order]`` with ``c_k = E[phi(g) He_k(g)] = E phi^(k)(g)`` (so
    ``phi = sum_k c_k He_k / k!`` in ``L^2`` of the Gaussian). Numeric coefficients have an
    absolute error ~1e-14 ``E|phi He_k|`` (<= 1e-14 ``sqrt(k! E phi^2)``): for smooth ``phi``,
    whose ``c_k`` decay fast, the relative error grows with ``k``."""
    if isinstance(order, bool) or not isinstance(order, int) or order < 0:
        raise ValueError(f"order={order!r}: allowed: an integer >= 0")
    act = get_activation(activation) if isinstance(activation, str) else activation
    return [_expectation(sympy.expand(act.expr * hermite(k))) for k in range(order + 1)]


@functools.lru_cache(maxsize=64)
def _moments(phi: sympy.Expr) -> tuple[tuple[str, Value], ...]:
    out = {
        "nu": _expectation(phi),
        "zeta": _expectation(sympy.expand(phi * hermite(1))),
        "mu2": _expectation(sympy.expand(phi * hermite(2))),
        "mu3": _expectation(sympy.expand(phi * hermite(3))),
        "E_phi2": _expectation(phi**2),
    }
    if _has_jump(phi):
        out["E_dphi2"] = _exact_value(sympy.oo)
    else:
        dphi = sympy.diff(phi, X).replace(lambda e: isinstance(e, sympy.DiracDelta),
                                          lambda e: sympy.S.Zero)
        out["E_dphi2"] = _expectation(dphi**2)
    return tuple((name, out[name]) for name in MOMENT_NAMES)


@functools.lru_cache(maxsize=1024)
def _expectation(F: sympy.Expr) -> Value:
    key = sympy.srepr(F)
    cached = _cache_load(key)
    if cached is not None:
        return cached
    value = _compute(F)
    _cache_store(key, value)
    return value


def _compute(F: sympy.Expr) -> Value:
    if not F.has(X):
        return _exact_value(F)
    pieces, exact_bounds = _split(F)
    if exact_bounds:
        try:
            total = _exact_total(F)
        except _NoClosedForm:
            pass
        else:
            return _exact_value(_tidy(_real_part(total) / sympy.sqrt(2 * sympy.pi)))
    weight = sympy.exp(-X**2 / 2) / sympy.sqrt(2 * sympy.pi)
    for t in (-L_CUT, L_CUT):
        _check_tail(F * weight, t)
    if sympy.expand(F.xreplace({X: -X}) + F) == 0:
        return _exact_value(sympy.S.Zero)  # odd and integrable
    value = _numeric(pieces)
    confirmed = _confirm_rational(F, value)
    return _exact_value(confirmed) if confirmed is not None else _numeric_value(value)


def _confirm_rational(F: sympy.Expr, value: float) -> sympy.Expr | None:
    """If the numeric ``E F`` looks like a simple fraction (denominator <= 12), try to prove
    it: ``E F(g) = E G(g) / 2`` with the even part ``G(x) = F(x) + F(-x)``, which often
    simplifies to something the exact route integrates (``sigmoid(x) + sigmoid(-x) = 1``,
    ``x (softplus(x) - softplus(-x)) = x^2``). Returns the exact value or ``None``."""
    from fractions import Fraction

    guess = Fraction(value).limit_denominator(12)
    if abs(value - float(guess)) > 1e-12 * max(1.0, abs(value)):
        return None
    try:
        total = _exact_total(_even_part(F)) / (2 * sympy.sqrt(2 * sympy.pi))
    except (_NoClosedForm, ExpectationError):
        return None
    if total.has(X) or abs(_to_float(total) - value) > 1e-11 * max(1.0, abs(value)):
        return None
    return _tidy(total)


def _even_part(F: sympy.Expr) -> sympy.Expr:
    """``F(x) + F(-x)``, simplified cheaply (~0.05 s, unlike ``sympy.simplify``): in
    ``t = exp(x)``, logarithms of rational functions of ``t`` expanded, then ``cancel``."""
    t = sympy.Dummy("t", positive=True)
    G = (F + F.xreplace({X: -X})).rewrite(sympy.exp).subs(sympy.exp(X), t)
    G = G.replace(lambda e: isinstance(e, sympy.log),
                  lambda e: sympy.log(sympy.together(e.args[0])))
    G = sympy.expand_log(G, force=True)
    return sympy.cancel(sympy.expand(G.subs(t, sympy.exp(X))))


def _exact_total(F: sympy.Expr) -> sympy.Expr:
    """``int F(x) exp(-x^2/2) dx`` in closed form: the terms of ``F`` without switches over the
    whole line (where ``erf`` factors have closed forms), the others piece by piece."""
    smooth, switched = [], []
    for term in sympy.Add.make_args(sympy.expand(F)):
        (switched if _innermost_switch(term) is not None else smooth).append(term)
    total = _exact_piece(sympy.Add(*smooth), sympy.S.NegativeInfinity, sympy.S.Infinity)
    if switched:
        pieces, _ = _split(sympy.Add(*switched))
        total += sympy.Add(*(_exact_piece(f, a, b) for a, b, f in pieces))
    return total


def _real_part(total: sympy.Expr) -> sympy.Expr:
    """The real part of a result built with complex exponentials (``sin``, ``cos``); the
    imaginary part of the expectation of a real ``F`` must vanish."""
    if not total.has(sympy.I):
        return total
    re_part, im_part = sympy.expand_complex(total).as_real_imag()
    if abs(complex(sympy.N(im_part, 30))) > 1e-25 * max(1.0, abs(_to_float(re_part))):
        raise ExpectationError(f"expectation {total} is not real")
    return re_part


def _tidy(expr: sympy.Expr) -> sympy.Expr:
    """A compact form of an exact result (expand, combine powers, pull out common factors:
    25 times faster than ``sympy.simplify`` and about as short on these results)."""
    tidy = sympy.factor_terms(sympy.powsimp(sympy.expand(expr)))
    try:  # the automatically evaluated form, identical to what the disk cache rebuilds
        return from_srepr(sympy.srepr(tidy))
    except (ValueError, TypeError, SyntaxError):
        return tidy


# ---------------------------------------------------------------------------- pieces


def _split(F: sympy.Expr) -> tuple[list[tuple[sympy.Expr, sympy.Expr, sympy.Expr]], bool]:
    """``F`` as smooth pieces ``[(a, b, F_ab)]`` covering the real line, and whether all
    breakpoints are exact (else some are floats from a numeric root scan)."""
    pieces: list[tuple[sympy.Expr, sympy.Expr, sympy.Expr]] = []
    exact = True
    stack = [(sympy.S.NegativeInfinity, sympy.S.Infinity, F)]
    while stack:
        a, b, f = stack.pop()
        node = _innermost_switch(f)
        if node is None:
            pieces.append((a, b, f))
            continue
        points, pts_exact = _breakpoints(node, a, b)
        exact &= pts_exact
        bounds = [a, *points, b]
        for lo, hi in itertools.pairwise(bounds):
            stack.append((lo, hi, f.xreplace({node: _branch(node, _inside(lo, hi))})))
        if len(stack) + len(pieces) > MAX_PIECES:
            raise ExpectationError(f"{F} has more than {MAX_PIECES} smooth pieces")
    pieces.sort(key=lambda p: float(p[0]) if p[0].is_finite else -math.inf)
    return pieces, exact


def _innermost_switch(f: sympy.Expr) -> sympy.Expr | None:
    for node in sympy.postorder_traversal(f):
        if isinstance(node, _SWITCHES) and node.has(X):
            return node
    return None


def _sites(node: sympy.Expr) -> list[sympy.Expr]:
    if isinstance(node, sympy.Max | sympy.Min):
        args = node.args
        return [u - v for i, u in enumerate(args) for v in args[i + 1:]]
    return [node.args[0]]


def _breakpoints(node: sympy.Expr, a: sympy.Expr, b: sympy.Expr) -> tuple[list[sympy.Expr], bool]:
    """Zeros in ``(a, b)`` of the sites of a switch ``node`` (exact for polynomial sites)."""
    from analytic.activations import _scan_zeros, exact_real_zeros

    found: dict[float, sympy.Expr] = {}
    exact = True
    for site in _sites(node):
        if not site.has(X):
            continue
        roots = exact_real_zeros(site)
        if roots is None:
            zeros = _scan_zeros(site)
            if zeros is None:
                raise ExpectationError(f"cannot locate the kinks of {site}") from None
            roots = [sympy.Float(z, 30) for z in zeros]
            exact = False
        for r in roots:
            rf = float(r)
            if float(a) < rf < float(b):
                found.setdefault(rf, r)
    return [found[k] for k in sorted(found)], exact


def _inside(a: sympy.Expr, b: sympy.Expr) -> float:
    """A point strictly inside ``(a, b)`` (possibly unbounded)."""
    if a.is_infinite and b.is_infinite:
        return 0.0
    if a.is_infinite:
        return float(b) - 1.0
    if b.is_infinite:
        return float(a) + 1.0
    return 0.5 * (float(a) + float(b))


def _branch(node: sympy.Expr, point: float) -> sympy.Expr:
    """The smooth expression that the switch ``node`` equals near ``point``."""
    at = {X: sympy.Float(point, 30)}

    def val(e: sympy.Expr) -> float:
        return float(sympy.N(e.xreplace(at), 30))

    if isinstance(node, sympy.Max | sympy.Min):
        pick = max if isinstance(node, sympy.Max) else min
        return pick(node.args, key=val)
    s = val(node.args[0])
    if isinstance(node, sympy.Abs):
        return node.args[0] if s > 0 else -node.args[0]
    if isinstance(node, sympy.sign):
        return sympy.S.One if s > 0 else sympy.S.NegativeOne
    return sympy.S.One if s > 0 else sympy.S.Zero  # Heaviside


def _has_jump(phi: sympy.Expr) -> bool:
    """Whether ``phi`` is discontinuous at one of its breakpoints (then ``E phi'^2 = inf``)."""
    pieces, _ = _split(phi)
    for (_, b, left), (_, _, right) in itertools.pairwise(pieces):
        at = {X: b}
        lv, rv = complex(sympy.N(left.xreplace(at), 30)), complex(sympy.N(right.xreplace(at), 30))
        if abs(lv - rv) > 1e-12 * (1 + abs(lv)):
            return True
    return False


# ---------------------------------------------------------------------------- exact route


def _exact_piece(f: sympy.Expr, a: sympy.Expr, b: sympy.Expr) -> sympy.Expr:
    """``int_a^b f(x) exp(-x^2/2) dx`` in closed form, or :class:`_NoClosedForm`."""
    whole = a.is_infinite and b.is_infinite
    if f.has(sympy.sinh, sympy.cosh):
        f = f.rewrite(sympy.sinh, sympy.exp).rewrite(sympy.cosh, sympy.exp)
    if f.has(sympy.sin, sympy.cos):
        if not whole:
            raise _NoClosedForm
        # exp(i w x) on the whole line: the Gaussian formulas hold for complex shifts
        f = f.rewrite(sympy.sin, sympy.exp).rewrite(sympy.cos, sympy.exp)
    f = f.replace(lambda e: isinstance(e, sympy.erfc), lambda e: 1 - sympy.erf(e.args[0]))
    expanded = sympy.expand(f)
    terms = sympy.Add.make_args(expanded)
    if len(terms) > MAX_TERMS:
        raise _NoClosedForm
    total = sympy.S.Zero
    for term in terms:
        coeff, n, (q2, q1, q0), erfs = _parse_term(term, complex_shift=whole)
        if erfs and not whole:
            raise _NoClosedForm
        c = sympy.Rational(1, 2) - q2
        if not c.is_positive:
            if c.is_zero or (a.is_finite and b.is_finite):
                raise _NoClosedForm  # numeric route (its tail check catches divergence)
            raise ExpectationError(f"E[{f}] diverges: the integrand grows like exp(x^2/2) "
                                   "or faster; allowed: functions growing slower")
        total += coeff * sympy.exp(q0) * _gauss_moment(n, c, q1, a, b, tuple(erfs))
    return total


def _parse_term(term: sympy.Expr, complex_shift: bool = False
                ) -> tuple[sympy.Expr, int, tuple, list]:
    """``term = coeff * x^n * exp(q2 x^2 + q1 x + q0) * prod erf(alpha x + beta)``, with
    real ``q2`` and (unless ``complex_shift``, allowed on the whole line) real ``q1, q0``."""
    coeff, n, exparg, erfs = sympy.S.One, 0, sympy.S.Zero, []
    for fac in sympy.Mul.make_args(term):
        base, power = fac.as_base_exp()
        if not fac.has(X):
            coeff *= fac
        elif base == X and power.is_Integer and power >= 0:
            n += int(power)
        elif isinstance(base, sympy.exp) and power.is_Integer:
            exparg += base.args[0] * power
        elif isinstance(fac, sympy.exp):
            exparg += fac.args[0]
        elif isinstance(base, sympy.erf) and power.is_Integer and power > 0:
            line = _linear(base.args[0])
            erfs.extend([line] * int(power))
        else:
            raise _NoClosedForm
    try:
        poly = sympy.Poly(sympy.expand(exparg), X)
    except sympy.PolynomialError:
        raise _NoClosedForm from None
    if poly.degree() > 2:
        raise _NoClosedForm
    q0, q1, q2 = (poly.coeff_monomial(X**k) for k in range(3))
    if not q2.is_real or not (complex_shift or (q1.is_real and q0.is_real)):
        raise _NoClosedForm
    return coeff, n, (q2, q1, q0), erfs


def _linear(u: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr]:
    try:
        poly = sympy.Poly(u, X)
    except sympy.PolynomialError:
        raise _NoClosedForm from None
    if poly.degree() > 1:
        raise _NoClosedForm
    return poly.coeff_monomial(X), poly.coeff_monomial(1)


def _gauss_moment(n: int, c: sympy.Expr, d: sympy.Expr, a: sympy.Expr, b: sympy.Expr,
                  erfs: tuple[tuple[sympy.Expr, sympy.Expr], ...]) -> sympy.Expr:
    """``int_a^b x^n exp(-c x^2 + d x) prod erf(alpha x + beta) dx`` (``c > 0``); with erfs
    only on the whole line. Centred at ``mu = d / (2c)``: ``-c x^2 + d x = -c y^2 + d^2/(4c)``.
    """
    mu = d / (2 * c)
    shifted = tuple((al, be + al * mu) for al, be in erfs)
    total = sympy.S.Zero
    for k in range(n + 1):
        weight = sympy.binomial(n, k) * mu ** (n - k)
        if weight == 0:
            continue
        if erfs or (a.is_infinite and b.is_infinite):
            total += weight * _line_integral(k, c, shifted)
        else:
            total += weight * _interval_moment(k, c, a - mu, b - mu)
    return sympy.exp(d**2 / (4 * c)) * total


def _boundary(t: sympy.Expr, k: int, c: sympy.Expr) -> sympy.Expr:
    """``t^(k-1) exp(-c t^2)``, zero at infinite ``t``."""
    return sympy.S.Zero if t.is_infinite else t ** (k - 1) * sympy.exp(-c * t**2)


@functools.lru_cache(maxsize=4096)
def _interval_moment(k: int, c: sympy.Expr, A: sympy.Expr, B: sympy.Expr) -> sympy.Expr:
    """``J_k = int_A^B y^k exp(-c y^2) dy``."""
    if k == 0:
        return sympy.sqrt(sympy.pi) / (2 * sympy.sqrt(c)) * (
            sympy.erf(sympy.sqrt(c) * B) - sympy.erf(sympy.sqrt(c) * A))
    head = (_boundary(A, k, c) - _boundary(B, k, c)) / (2 * c)
    if k == 1:
        return head
    return head + (k - 1) * _interval_moment(k - 2, c, A, B) / (2 * c)


@functools.lru_cache(maxsize=4096)
def _line_integral(n: int, c: sympy.Expr,
                   erfs: tuple[tuple[sympy.Expr, sympy.Expr], ...]) -> sympy.Expr:
    """``int_R y^n exp(-c y^2) prod_i erf(alpha_i y + beta_i) dy`` by parts (docstring)."""
    const = sympy.S.One
    live = []
    for al, be in erfs:
        if al == 0:
            const *= sympy.erf(be)
        else:
            live.append((al, be))
    m = len(live)
    if all(be == 0 for _, be in live) and (n + m) % 2 == 1:
        return sympy.S.Zero  # odd integrand
    if m == 0:
        return const * sympy.gamma(sympy.Rational(n + 1, 2)) / c ** sympy.Rational(n + 1, 2)
    if n == 0:
        if m == 1:
            al, be = live[0]
            return const * sympy.sqrt(sympy.pi / c) * sympy.erf(be / sympy.sqrt(1 + al**2 / c))
        if m == 2 and live[0][1] == 0 and live[1][1] == 0:
            b1, b2 = (al / sympy.sqrt(2 * c) for al, _ in live)
            arg = 2 * b1 * b2 / sympy.sqrt((1 + 2 * b1**2) * (1 + 2 * b2**2))
            return const * sympy.sqrt(sympy.pi / c) * 2 / sympy.pi * sympy.asin(arg)
        raise _NoClosedForm
    total = sympy.S.Zero
    if n >= 2:
        total += (n - 1) * _line_integral(n - 2, c, tuple(live))
    for i, (al, be) in enumerate(live):
        rest = tuple(live[:i] + live[i + 1:])
        # erf(al y + be)' = 2 al / sqrt(pi) * exp(-be^2) * exp(-al^2 y^2 - 2 al be y)
        factor = 2 * al / sympy.sqrt(sympy.pi) * sympy.exp(-be**2)
        total += factor * _gauss_moment(n - 1, c + al**2, -2 * al * be,
                                        sympy.S.NegativeInfinity, sympy.S.Infinity, rest)
    return const * total / (2 * c)


# ---------------------------------------------------------------------------- numeric route


def _numeric(pieces: Sequence[tuple[sympy.Expr, sympy.Expr, sympy.Expr]]) -> float:
    """Sum over the smooth pieces of ``int f(x) phi(x) dx`` on ``[-L_CUT, L_CUT]`` (the tails
    beyond were checked by :func:`_check_tail`) by adaptive Gauss-Legendre: each panel is
    integrated with 32 and 64 nodes; panels where the two differ by more than ``1e-14 E|F|``
    are halved. Panels start at the kinks and at 0, +-3, +-6, +-12. NumPy only (``scipy`` is
    imported only for ``erf``), to keep a cold ``meanfield derive`` fast."""
    import numpy as np

    weight = sympy.exp(-X**2 / 2) / sympy.sqrt(2 * sympy.pi)
    extra = (-12.0, -6.0, -3.0, 0.0, 3.0, 6.0, 12.0)
    panels = []
    for a, b, f in pieces:
        lo = max(float(a), -L_CUT) if a.is_finite else -L_CUT
        hi = min(float(b), L_CUT) if b.is_finite else L_CUT
        if hi <= lo:
            continue
        func = _vectorised(f * weight)
        cuts = [lo, *(p for p in extra if lo < p < hi), hi]
        panels.extend((func, u, v) for u, v in itertools.pairwise(cuts))
    rule = _gauss_legendre()
    scale = sum(abs(_panel(lambda t, fn=fn: np.abs(fn(t)), u, v, rule)[1]) for fn, u, v in panels)
    tol = 1e-14 * max(scale, 1e-300)  # per panel; the 64-node value is far better than this
    total, error, count = 0.0, 0.0, 0
    stack = list(panels)
    while stack:
        fn, u, v = stack.pop()
        coarse, fine = _panel(fn, u, v, rule)
        count += 1
        if abs(fine - coarse) <= tol or count > 5000 or v - u < 1e-9:
            total += fine
            error += abs(fine - coarse)
        else:
            mid = 0.5 * (u + v)
            stack += [(fn, u, mid), (fn, mid, v)]
    if not math.isfinite(total) or error > 1e-11 * max(scale, 1e-300):
        raise ExpectationError(f"quadrature did not converge (error estimate {error:.2g}); "
                               "the expectation may not exist")
    return total


@functools.lru_cache(maxsize=1)
def _gauss_legendre() -> tuple:
    import numpy as np

    return tuple(np.polynomial.legendre.leggauss(n) for n in (32, 64))


def _panel(fn: Callable, u: float, v: float, rule: tuple) -> tuple[float, float]:
    """Integrals of ``fn`` over ``[u, v]`` with the 32- and the 64-node Gauss-Legendre rule."""
    import numpy as np

    out = []
    for nodes, weights in rule:
        t = 0.5 * (v - u) * nodes + 0.5 * (u + v)
        with np.errstate(all="ignore"):
            y = np.broadcast_to(np.asarray(fn(t), dtype=float), t.shape)
        if not np.all(np.isfinite(y)):
            raise ExpectationError("the integrand is not finite; the expectation may not exist")
        out.append(0.5 * (v - u) * float(weights @ y))
    return out[0], out[1]


def _vectorised(expr: sympy.Expr) -> Callable:
    """NumPy function of ``x`` computing ``expr`` (``erf``/``erfc`` from scipy if present)."""
    modules: list = ["numpy"]
    if expr.has(sympy.erf, sympy.erfc):
        from scipy import special

        modules.insert(0, {"erf": special.erf, "erfc": special.erfc})
    return sympy.lambdify(X, expr, modules=modules)


def _check_tail(integrand: sympy.Expr, t: float) -> None:
    """``|f(t) phi(t)|`` at the cut ``t = +-L_CUT`` must be negligible (else heavy tails)."""
    try:
        # bounded working precision: a cancellation (1 + erf(-28)) gives ~0, its true size
        z = complex(integrand.xreplace({X: sympy.Float(t, 30)}).evalf(20, maxn=60))
    except (TypeError, ValueError):
        raise ExpectationError("the integrand cannot be evaluated in the tails") from None
    if not (abs(z) < 1e-40):
        raise ExpectationError(f"E[F(g)] diverges or has heavy tails (|F phi| = {abs(z):.3g} "
                               f"at x = {t:g}); allowed: F growing slower than exp(x^2/4)")


# ---------------------------------------------------------------------------- disk cache
#
# Entries of kind "gauss" in analytic.cache, keyed by the srepr of the integrand F:
# {"value": float, "exact": bool, "expr": srepr of the exact value or null}.


def _cache_load(key: str) -> Value | None:
    return cache.load("gauss", key, _decode)


def _decode(data: dict) -> Value:
    value = float(data["value"])
    if data["exact"]:
        expr = from_srepr(data["expr"])
        return Value(value, True, expr, sympy.latex(expr))
    return _numeric_value(value)


def _cache_store(key: str, value: Value) -> None:
    cache.store("gauss", key, {"value": value.value, "exact": value.exact,
                               "expr": sympy.srepr(value.expr) if value.exact else None})


def from_srepr(text: str) -> sympy.Expr:
    """Rebuild an exact value (or an expression in :data:`X`) from its ``srepr``:
    :func:`analytic.cache.from_srepr` with :data:`X` as the only symbol and no undefined
    functions, never ``eval``; :class:`analytic.cache.SreprError` (a ``ValueError``) otherwise."""
    return cache.from_srepr(text, symbols=(X,))
