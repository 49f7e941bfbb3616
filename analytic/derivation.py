"""The mean-field theory of hinge-loss training as a derivation to read and check.

Every equation that :mod:`analytic.hinge` derives, in the order it derives them (its steps 1-5),
each with the one-line reason it holds. An :class:`Equation` is a row of pieces: fixed notation
(:class:`Text`, written in LaTeX, plain text and unicode) and derived sympy expressions
(:class:`Math`). The expressions are the very objects that :mod:`analytic.hinge` returns and its
numerics lambdify (read from its disk cache when warm), never retyped here; ``srepr`` of an
equation is ``sympy.srepr`` of its expression, or of a ``Tuple`` of them when it shows several,
and reads back through :func:`analytic.cache.from_srepr`.

Named equations (the names of ``meanfield theory --latex``; for these the LaTeX is exactly that
of :func:`analytic.hinge.latex_equations`):

- ``node_da_dt``, ``node_dw_dt``: the single-node drives, for any activation;
- ReLU: ``kappa``, ``reduced``, ``a_of_gamma``, ``w_par_of_gamma``, ``output``,
  ``unsatisfied_set`` (reduction and solution); ``density``, ``V``, ``train_error``, ``loss``
  (data law); ``gamma_equation``, ``early_slope``, ``late_asymptote``, ``asymptote_c``,
  ``t_sat`` (dynamics);
- any other activation: ``density`` and the population drives ``population_F_a``,
  ``population_F_w``, ``population_F_rho``, ``population_F_f`` as integrals, after a note on why
  the closed-form reduction needs ReLU (:func:`relu_note`).

The steps (``--steps``) add the intermediate results: the two ReLU identities, the equations in
``gamma``, ``E[a w_par]``, ``S`` per ``E[a w_par]``, ``E[x_par^2 1_U]`` and ``t(G)``.

:func:`substitute` puts numbers for some of the parameters ``alpha, beta, h, sa, sw, d`` (exact
rationals) and simplifies; :func:`constants` evaluates ``C``, ``c`` and the early slope at a full
parameter point. Both are exact where sympy finds a short closed form, else numeric (15 digits)
and labelled so. Above :data:`EXACT_D` the gamma functions of the sphere law are evaluated in
log space (mpmath, 30 digits) instead of exactly. Units: those of :mod:`analytic.hinge` (time in
mean-field units of ``1/beta``; everything else dimensionless).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import replace as _replace
from fractions import Fraction

import sympy as sp

from analytic import hinge as H
from analytic.activations import Activation, is_relu
from analytic.activations import X as ACT_X
from analytic.codegen import latex as to_latex

PARAMETERS = ("alpha", "beta", "h", "sa", "sw", "d")
SYMBOLS: dict[str, sp.Symbol] = {"alpha": H.alpha, "beta": H.beta, "h": H.h, "sa": H.sa,
                                 "sw": H.sw, "d": H.d}
EXACT_D = 10_000  # larger d: gamma functions of the sphere law in log space, not exactly
MAX_DIGITS = 30  # an exact substituted form with a longer integer is shown numerically
_SIMPLIFY_OPS = 400  # larger substituted forms are not passed to sympy.simplify
_MAX_POWER = 64  # nor forms with integer powers beyond this (simplify would expand them)


# ----------------------------------------------------------------------------- equations


@dataclass(frozen=True)
class Text:
    """Fixed notation: ``latex`` (math mode), ``plain`` (ASCII) and ``unicode`` (default
    ``plain``)."""

    latex: str
    plain: str
    unicode: str = ""

    @property
    def uni(self) -> str:
        return self.unicode or self.plain


@dataclass(frozen=True)
class Math:
    """A derived expression; ``mean``: shown as the data average ``<expr>``."""

    expr: sp.Basic
    mean: bool = False


def T(latex: str, plain: str | None = None, unicode: str = "") -> Text:
    return Text(latex, latex if plain is None else plain, unicode)


@dataclass(frozen=True)
class Equation:
    """One equation: pieces of notation and derived expressions, the reason it holds,
    whether its numbers are exact (``False``: evaluated to 15 digits by :func:`substitute`) and
    whether :func:`substitute` may call ``sympy.simplify`` on it (not on expressions of a user
    activation, where it can take unbounded time)."""

    name: str
    pieces: tuple[Text | Math, ...]
    reason: str = ""
    exact: bool = True
    simplify: bool = True  # False: substitute without sympy.simplify (user activations)

    @property
    def exprs(self) -> tuple[sp.Basic, ...]:
        return tuple(p.expr for p in self.pieces if isinstance(p, Math))

    def latex(self) -> str:
        out = []
        for p in self.pieces:
            if isinstance(p, Text):
                out.append(p.latex)
            else:
                tex = to_latex(p.expr)
                out.append(rf"\left\langle {tex} \right\rangle" if p.mean else tex)
        return "".join(out)

    def text(self) -> str:
        return "".join(p.plain if isinstance(p, Text) else
                       (f"<{sp.sstr(p.expr)}>" if p.mean else sp.sstr(p.expr))
                       for p in self.pieces)

    def srepr(self) -> str:
        exprs = self.exprs
        return sp.srepr(exprs[0] if len(exprs) == 1 else sp.Tuple(*exprs))

    def to_json(self) -> dict[str, str]:
        return {"latex": self.latex(), "text": self.text(), "srepr": self.srepr()}

    def with_exprs(self, exprs: tuple[sp.Basic, ...], exact: bool) -> Equation:
        it = iter(exprs)
        pieces = tuple(p if isinstance(p, Text) else Math(next(it), p.mean)
                       for p in self.pieces)
        return _replace(self, pieces=pieces, exact=exact)


# ----------------------------------------------------------------------------- notation

_RATE = to_latex(sp.Symbol(r"\frac{d\gamma}{dt}"))
_PAR = (r"\parallel", "par", "∥")


def _eq(name: str, *pieces: Text | Math, reason: str = "", simplify: bool = True) -> Equation:
    return Equation(name, tuple(pieces), reason, simplify=simplify)


def _node_equations() -> dict[str, Equation]:
    eq = H.node_equations()
    return {
        "node_da_dt": _eq("node_da_dt", T(r"\frac{da}{dt} = ", "da/dt = "),
                          Math(eq["da_dt"], mean=True), reason=REASONS["node_da_dt"]),
        "node_dw_dt": _eq("node_dw_dt", T(r"\frac{dw_l}{dt} = ", "dw_l/dt = "),
                          Math(eq["dw_dt"], mean=True), reason=REASONS["node_dw_dt"]),
    }


def _relu_equations() -> dict[str, Equation]:
    red, sol = H.relu_reduction(), H.relu_solution()
    kap = red["kappa"]
    rows = [
        ("theta_even", T(r"\tfrac12\left(\theta(u) + \theta(-u)\right) = ",
                         "(theta(u) + theta(-u))/2 = ", "½(θ(u) + θ(-u)) = "),
         Math(red["theta_even"])),
        ("relu_odd", T(r"\tfrac12\left(\mathrm{relu}(u) - \mathrm{relu}(-u)\right) = ",
                       "(relu(u) - relu(-u))/2 = ", "½(relu(u) - relu(-u)) = "),
         Math(red["relu_odd"])),
        ("kappa", T(r"\kappa = ", "kappa = ", "κ = "), Math(kap),
         T(r",\quad V = \tfrac12\langle |x_\parallel| 1_U\rangle", ",  V = <|x_par| 1_U>/2",
           ",   V = ½⟨|x∥| 1_U⟩")),
        ("reduced", T(r"\frac{da}{dt} = ", "da/dt = "), Math(red["da_dt"]),
         T(r",\quad \frac{dw_\parallel}{dt} = ", ",  dw_par/dt = ", ",   dw∥/dt = "),
         Math(red["dw_par_dt"]),
         T(r",\quad \frac{dw_\perp}{dt} = 0", ",  dw_perp/dt = 0", ",   dw⊥/dt = 0")),
        ("gamma_system", T(r"\gamma = \int_0^t \kappa\, dt',\quad \frac{da}{d\gamma} = ",
                           "gamma = int_0^t kappa dt',  da/dgamma = ", "γ = ∫ κ dt',   da/dγ = "),
         Math(red["da_dt"] / kap),
         T(r",\quad \frac{dw_\parallel}{d\gamma} = ", ",  dw_par/dgamma = ", ",   dw∥/dγ = "),
         Math(red["dw_par_dt"] / kap)),
        ("a_of_gamma", T("a = "), Math(sol["a"])),
        ("w_par_of_gamma", T(r"w_\parallel = ", "w_par = ", "w∥ = "), Math(sol["w_par"])),
        ("E_a_w_par", T(r"\mathbb{E}[a w_\parallel] = ", "E[a w_par] = ", "E[a w∥] = "),
         Math(sol["E_a_w_par"])),
        ("output_slope", T("S = "), Math(sol["S_per_E_a_w_par"]),
         T(r"\, \mathbb{E}[a w_\parallel]", " E[a w_par]", " E[a w∥]")),
        ("output", T(r"f(x) = S x_\parallel,\quad S = ", "f(x) = S x_par,  S = ",
                     "f(x) = S x∥,   S = "), Math(sol["S"])),
        ("unsatisfied_set", T(r"U = \{|x_\parallel| < X\},\quad X = ", "U = {|x_par| < X},  X = ",
                              "U = {|x∥| < X},   X = "), Math(sol["X"])),
        ("t_sat", T(r"t_{sat}(x_\parallel) = t(\gamma_{sat}),\quad \gamma_{sat} = ",
                    "t_sat(x_par) = t(gamma_sat),  gamma_sat = ",
                    "t_sat(x∥) = t(γ_sat),   γ_sat = "),
         Math(sol["gamma_sat"])),
    ]
    return {name: _eq(name, *pieces, reason=REASONS[name]) for name, *pieces in rows}


def _density(law: str, relu: bool = True) -> Equation:
    """The density of ``x_par``: from the data law (ReLU, which derives it all) or alone."""
    p = H.data_law(law)["density"] if relu else H.density(law)
    p = p.subs(sp.Symbol("x", real=True), H.x_par)
    return _eq("density", T(r"p(x_\parallel) = ", "p(x_par) = ", "p(x∥) = "), Math(p),
               reason=REASONS[f"density_{law}"])


def _law_equations(law: str) -> dict[str, Equation]:
    dl = H.data_law(law)
    rate = T(f"{_RATE} = ", "dgamma/dt = ", "dγ/dt = ")
    rows = [
        ("V", T("V = "), Math(dl["V"])),
        ("train_error", T(f"{to_latex(sp.Symbol('P_U'))} = ", "P_U = "), Math(dl["P_U"])),
        ("second_moment", T(r"\mathbb{E}[x_\parallel^2 1_U] = ", "E[x_par^2 1_U] = ",
                            "E[x∥² 1_U] = "), Math(dl["M2_U"])),
        ("gamma_equation", rate, Math(dl["gamma_rate"])),
        ("late_asymptote", T(rf"{_RATE} \sim C e^{{-4\gamma}},\quad C = ",
                             "dgamma/dt ~ C exp(-4 gamma),  C = ", "dγ/dt ~ C exp(-4γ),   C = "),
         Math(dl["C"])),
        ("t_of_G", T(r"t(G) = \int_0^G \frac{e^{4g}}{C}\, dg = ",
                     "t(G) = int_0^G exp(4 g)/C dg = ", "t(G) = ∫ exp(4g)/C dg (0 to G) = "),
         Math(dl["t_of_G"])),
        ("asymptote_c", T(r"\gamma = \frac{\log t}{4} + c,\quad c = ",
                          "gamma = log(t)/4 + c,  c = ", "γ = log(t)/4 + c,   c = "),
         Math(dl["c_of_C"])),
        ("early_slope", T(rf"\left.{_RATE}\right|_{{t=0}} = ", "dgamma/dt (t = 0) = ",
                          "dγ/dt (t = 0) = "), Math(dl["early_slope"])),
        ("loss", T(r"\mathcal{L} = ", "L = "), Math(dl["loss"])),
    ]
    out = {"density": _density(law)}
    for name, *pieces in rows:
        out[name] = _eq(name, *pieces, reason=REASONS.get(f"{name}_{law}", REASONS.get(name, "")))
    return out


_DRIVES = {
    "F_a": (r"\frac{da}{dt}", "da/dt", "da/dt"),
    "F_w": (r"\frac{dw_\parallel}{dt}", "dw_par/dt", "dw∥/dt"),
    "F_rho": (r"\frac{d\rho}{dt}", "drho/dt", "dρ/dt"),
}


def _population_equations(act: Activation) -> dict[str, Equation]:
    ints = H.population_integrands(act)
    out = {}
    for key, (tex, plain, uni) in _DRIVES.items():
        sub = key[2:] if key != "F_rho" else r"\rho"
        name = f"population_{key}"
        out[name] = _eq(name, T(
            rf"{tex} = \alpha\beta \int_{{U,\, s>0}} p(s)\, \mathbb{{E}}_z\!\left[F_{{{sub}}}"
            rf"\right] ds,\quad F_{{{sub}}} = ",
            f"{plain} = alpha beta int_(U, s>0) p(s) E_z[{key}] ds,  {key} = ",
            f"{uni} = α β ∫_(U, s>0) p(s) E_z[{key}] ds,   {key} = "),
            Math(ints[key]), reason=REASONS[name], simplify=False)
    out["population_F_f"] = _eq("population_F_f", T(
        r"f(s) = \alpha\, \mathbb{E}_{\mathrm{nodes}} \mathbb{E}_z\!\left[F_f\right],\quad F_f = ",
        "f(s) = alpha E_nodes E_z[F_f],  F_f = ", "f(s) = α E_nodes E_z[F_f],   F_f = "),
        Math(ints["F_f"]), reason=REASONS["population_F_f"], simplify=False)
    return out


# ----------------------------------------------------------------------------- reasons

_SYMMETRY = ("on an unsatisfied set U symmetric under x -> -x (so y -> -y, u -> -u), "
             "theta(u) + theta(-u) = 1 and relu(u) - relu(-u) = u")
_POPULATION = ("x_par = +s (y = +1) and x_par = -s (y = -1) summed in the node equations with "
               "sigma = phi and u = +-w_par s/sqrt(d) + rho k z")

REASONS: dict[str, str] = {
    "node_da_dt": "-beta M dL/da_j for L = <(h - y f)_+>: d(h - y f)_+/df = -y theta(h - y f), "
                  "df/da_j = (alpha/M) sigma(u_j) (sympy diff of the indexed-sum network)",
    "node_dw_dt": "-beta M dL/dw_jl: df/dw_jl = (alpha/M) a_j sigma'(u_j) x_l/sqrt(d), "
                  "u_j = w_j.x/sqrt(d)",
    "theta_even": "relu' = theta, and theta(u) + theta(-u) = 1 (sympy, on the Piecewise form)",
    "relu_odd": "relu(u) - relu(-u) = u (sympy, on the Piecewise form)",
    "kappa": f"{_SYMMETRY} give <y theta(u) x 1_U> = <y x 1_U>/2 = V e_1 and "
             "<y relu(u) 1_U> = w_par V/sqrt(d) (<y x_perp 1_U> = 0, y x_par = |x_par|)",
    "reduced": "the two averages in the node equations; w_perp is not driven "
               "(<y x_perp 1_U> = 0 by x_perp -> -x_perp)",
    "gamma_system": "the reduced equations divided by kappa, with gamma = int_0^t kappa dt "
                    "(the time change that absorbs V(t))",
    "a_of_gamma": "sympy dsolve of the linear system with a(0) = a_0, w_par(0) = w_0",
    "w_par_of_gamma": "sympy dsolve of the linear system with a(0) = a_0, w_par(0) = w_0",
    "E_a_w_par": "a_0 ~ N(0, sa^2) and w_0 ~ N(0, sw^2) independent (sympy.stats expectation)",
    "output_slope": "f = alpha E[a relu(u)]: the odd part u/2 of relu gives "
                    "alpha a w_par x_par/(2 sqrt d); the even part |u|/2 averages to 0 under "
                    "(a, w) -> (-a, -w), and E[a w_perp] = 0",
    "output": "E[a w_par] of the solution: S is proportional to sinh(2 gamma)",
    "unsatisfied_set": "an example is unsatisfied while y f = S |x_par| < h, i.e. |x_par| < h/S",
    "t_sat": "S(gamma_sat) |x_par| = h (the one real root, sympy solve): the example at x_par "
             "is satisfied from then on; t(gamma) from the gamma equation",
    "density_gaussian": "x_par = w*.x is N(0, 1) for x ~ N(0, I_d)",
    "density_sphere": "marginal of the uniform law on the sphere of radius sqrt(d); the "
                      "normalisation c_d from a Beta integral (sympy)",
    "V": "V = <|x_par| 1_U>/2 = int_0^X x p(x) dx (sympy; dV/dX = X p(X) checked)",
    "train_error_gaussian": "P(U) = int_{-X}^{X} p(x) dx, the fraction of unsatisfied examples",
    "train_error_sphere": "P(U) = int_{-X}^{X} p(x) dx, the fraction of unsatisfied examples: "
                          "the regularized incomplete beta function (dP/dX = 2 p(X) checked)",
    "second_moment_gaussian": "E[x_par^2 1_U] = int_{-X}^{X} x^2 p(x) dx (for the finite-N "
                              "indicator of the theory)",
    "second_moment_sphere": "E[x_par^2 1_U] = int_{-X}^{X} x^2 p(x) dx: the regularized "
                            "incomplete beta function (dM2/dX = 2 X^2 p(X) checked)",
    "gamma_equation": "d gamma/dt = kappa, with V at the edge X = h/S(gamma) of the "
                      "unsatisfied set",
    "late_asymptote": "with q = exp(-2 gamma) -> 0, sinh(2 gamma) = (1/q - q)/2 and X -> 0: "
                      "C = lim (d gamma/dt)/q^2 (sympy limit)",
    "t_of_G": "d gamma/dt = C exp(-4 gamma) integrated from gamma = 0 (sympy)",
    "asymptote_c": "c = lim_{G -> oo} (G - log t(G)/4) (sympy limit): gamma = log(t)/4 + c "
                   "at late times",
    "early_slope": "S(0) = 0, so at t = 0 every example is unsatisfied (X at the end of the "
                   "support) and V = <|x_par|>/2",
    "loss": "<(h - y f)_+> = <(h - S |x_par|) 1_U> = h P(U) - 2 S V",
    "population_F_a": f"{_POPULATION}, in node_da_dt",
    "population_F_w": f"{_POPULATION}, in node_dw_dt with x_l = x_par",
    "population_F_rho": f"{_POPULATION}, in node_dw_dt with x_l = k z, divided by sqrt(d) "
                        "(rho = |w_perp|/sqrt(d))",
    "population_F_f": "the output f = alpha E[a phi(u)] at x_par = s (y = +1)",
}

# ----------------------------------------------------------------------------- the plan

#: the steps of analytic.hinge: (number, title, hinge function, equations in computed order)
RELU_STEPS = (
    ("1", "Single-node equations from the hinge loss", "node_equations",
     ("node_da_dt", "node_dw_dt")),
    ("2", "ReLU symmetry reduction", "relu_reduction",
     ("theta_even", "relu_odd", "kappa", "reduced")),
    ("3", "Hyperbolic solution in gamma", "relu_solution",
     ("gamma_system", "a_of_gamma", "w_par_of_gamma", "E_a_w_par", "output_slope", "output",
      "unsatisfied_set", "t_sat")),
    ("4", "Data law and the gamma equation", "data_law",
     ("density", "V", "train_error", "second_moment", "gamma_equation", "late_asymptote",
      "t_of_G", "asymptote_c", "early_slope", "loss")),
)
POPULATION_STEPS = (
    RELU_STEPS[0],
    ("4", "Data law", "data_law", ("density",)),
    ("5", "Population drives", "population_integrands",
     ("population_F_a", "population_F_w", "population_F_rho", "population_F_f")),
)
#: the named equations, grouped as they are shown without --steps
RELU_GROUPS = (
    ("Single-node equations", ("node_da_dt", "node_dw_dt")),
    ("ReLU: reduction and solution",
     ("kappa", "reduced", "a_of_gamma", "w_par_of_gamma", "output", "unsatisfied_set")),
    ("Data law", ("density", "V", "train_error", "loss")),
    ("Dynamics", ("gamma_equation", "early_slope", "late_asymptote", "asymptote_c", "t_sat")),
)
POPULATION_GROUPS = (
    RELU_GROUPS[0],
    ("Data law", ("density",)),
    ("Population drives", ("population_F_a", "population_F_w", "population_F_rho",
                           "population_F_f")),
)
LAW_TEXT = {"gaussian": "x ~ N(0, I_d)", "sphere": "x uniform on the sphere of radius sqrt(d)"}
NOTES = {
    "Single-node equations": "u = w.x/sqrt(d) is the node's preactivation, f the network "
                             "output, y = sign(x_par) the label, theta the Heaviside step; "
                             "<.> averages over the data",
    "ReLU: reduction and solution": "V = <|x_par| 1_U>/2 over the unsatisfied set U; "
                                    "gamma = int_0^t kappa dt; a_0, w_0: a and w_par at t = 0",
    "Population drives": "U = {s = |x_par| : f(s) < h}, found self-consistently; "
                         "u = +-w_par s/sqrt(d) + rho k z, rho = |w_perp|/sqrt(d), z the unit-"
                         "variance projection of x_perp on the node's w_perp",
    "Population drives gaussian": "Gaussian data: k = 1, z ~ N(0, 1)",
    "Population drives sphere": "sphere: k = sqrt((d - s^2)/(d - 1)), z = sqrt(d - 1) v with "
                                "v of density proportional to (1 - v^2)^((d - 4)/2)",
}


@dataclass(frozen=True)
class Derivation:
    """The equations of the mean-field theory for one activation and data law.

    ``equations``: every equation by name (named and intermediate); ``groups``: (title, names,
    notes) of the named ones; ``steps``: (number, title, hinge function, names) in the order
    :mod:`analytic.hinge` computes them; ``note``: why the closed form needs ReLU (empty for
    ReLU), as :class:`Text` and :class:`Math` pieces (``Text.latex`` in text mode).
    """

    activation: str
    law: str
    relu: bool
    equations: dict[str, Equation]
    groups: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]
    steps: tuple[tuple[str, str, str, tuple[str, ...]], ...]
    note: tuple[Text | Math, ...] = ()

    @property
    def named(self) -> tuple[str, ...]:
        return tuple(name for _, names, _ in self.groups for name in names)


def derive(act: Activation, law: str) -> Derivation:
    """The derivation for activation ``act`` and data law ``law`` (``gaussian``/``sphere``):
    ReLU (:func:`analytic.activations.is_relu`) gets the closed form, any other activation the
    node equations, the density and the population drives."""
    if law not in H.DATA_LAWS:
        raise ValueError(f"data must be one of {', '.join(H.DATA_LAWS)}; got {law!r}")
    relu = is_relu(act)
    eqs = _node_equations()
    if relu:
        eqs.update(_relu_equations())
        eqs.update(_law_equations(law))
    else:
        eqs["density"] = _density(law, relu=False)
        eqs.update(_population_equations(act))
    plan = RELU_GROUPS if relu else POPULATION_GROUPS
    groups = []
    for title, names in plan:
        notes = tuple(NOTES[k] for k in (title, f"{title} {law}") if k in NOTES)
        label = f"{title}: {LAW_TEXT[law]}" if title == "Data law" else title
        groups.append((label, names, notes))
    steps = RELU_STEPS if relu else POPULATION_STEPS
    steps = tuple((n, f"{title}: {LAW_TEXT[law]}" if fn == "data_law" else title, fn, names)
                  for n, title, fn, names in steps)
    return Derivation(act.name, law, relu, eqs, tuple(groups), steps,
                      () if relu else relu_note(act))


def relu_note(act: Activation) -> tuple[Text | Math, ...]:
    """Why the closed-form reduction needs ReLU (the symmetry argument), with the two
    combinations of ``phi`` it rests on computed for ``act``."""
    u = H.u
    phi = act.expr.subs(ACT_X, u)
    dphi = act.derivative(1).subs(ACT_X, u)
    even = _simplest(dphi + dphi.subs(u, -u))
    odd = _simplest(phi - phi.subs(u, -u))
    closes = not even.free_symbols and sp.simplify(odd - even * u) == 0
    tail = (", the same identities up to a constant factor, so the reduction would go through "
            "as well; the closed form is derived and used for ReLU only, and the theory "
            "integrates the population drives below." if closes else
            ", not a constant and a multiple of u, so the drives do not close on (a, w_par): "
            "the theory integrates the population drives below.")
    return (
        T("The closed-form reduction (steps 2 and 3) needs ReLU. Under x -> -x (y -> -y, "
          "u -> -u) on a symmetric unsatisfied set the drives involve only "
          "phi'(u) + phi'(-u) and phi(u) - phi(-u); for ReLU these are 1 and u "
          "(theta(u) + theta(-u) = 1, relu(u) - relu(-u) = u), so the equations close on "
          "(a, w_par) as da/dt = kappa w_par, dw_par/dt = kappa a. For "
          f"{act.name} they are "),
        Math(even), T(" and "), Math(odd), T(tail),
    )


def _simplest(expr: sp.Expr) -> sp.Expr:
    """``expr`` simplified, through its Piecewise form when that removes every switch."""
    piecewise = sp.simplify(expr.rewrite(sp.Piecewise))
    return piecewise if not piecewise.has(sp.Piecewise) else sp.simplify(expr)


def note_text(pieces: tuple[Text | Math, ...]) -> str:
    """The note as one line of plain text."""
    return "".join(p.plain if isinstance(p, Text) else sp.sstr(p.expr) for p in pieces)


# ----------------------------------------------------------------------------- numbers


def substitute(eq: Equation, values: Mapping[str, sp.Rational]) -> Equation:
    """``eq`` with the parameters in ``values`` (name -> exact number) substituted and
    simplified; ``exact`` is False when the numbers had to be evaluated (see the module
    docstring)."""
    subs = _exact_values(values)
    new, exact = [], True
    for expr in eq.exprs:
        out, ok = _substituted(expr, subs, eq.simplify)
        new.append(out)
        exact = exact and ok
    return eq.with_exprs(tuple(new), exact)


def _exact_values(values: Mapping[str, object]) -> dict[sp.Symbol, sp.Rational]:
    """Parameter symbols -> exact sympy numbers (from ``Fraction``, ``int`` or sympy
    rationals; never from text or floats)."""
    out = {}
    for name, v in values.items():
        if name not in SYMBOLS:
            raise ValueError(f"unknown parameter {name!r}; allowed: {', '.join(PARAMETERS)}")
        if isinstance(v, Fraction):
            out[SYMBOLS[name]] = sp.Rational(v.numerator, v.denominator)
        elif isinstance(v, int | sp.Rational) and not isinstance(v, bool):
            out[SYMBOLS[name]] = sp.Rational(v)
        else:
            raise TypeError(f"parameter {name}: an exact number (Fraction, int), got {v!r}")
    return out


def _substituted(expr: sp.Basic, subs: dict[sp.Symbol, sp.Basic], simplify: bool = True
                 ) -> tuple[sp.Basic, bool]:
    if not expr.free_symbols & set(subs):
        return expr, True
    if _large_d(expr, subs):
        return _evaluated(expr, subs), False
    out = expr.subs(subs)
    out = _tidy(out) if simplify else out
    if _too_long(out):
        return sp.N(out, 15), False
    return out, True


def _large_d(expr: sp.Basic, subs: dict[sp.Symbol, sp.Basic]) -> bool:
    return H.d in subs and subs[H.d] > EXACT_D and expr.has(sp.gamma)


def _tidy(expr: sp.Basic) -> sp.Basic:
    """``sympy.simplify`` when it is safe (no large integer powers to expand, a moderate size)
    and gives a smaller form; else ``expr``."""
    powers = [p.exp for p in expr.atoms(sp.Pow) if p.exp.is_Integer]
    if sp.count_ops(expr) > _SIMPLIFY_OPS or any(abs(int(e)) > _MAX_POWER for e in powers):
        return expr
    simple = sp.simplify(expr)
    if _too_long(simple) and not _too_long(expr):
        return expr
    return simple if sp.count_ops(simple) < sp.count_ops(expr) else expr


def _too_long(expr: sp.Basic) -> bool:
    limit = 10**MAX_DIGITS
    return any(abs(r.p) >= limit or r.q >= limit for r in expr.atoms(sp.Rational))


_GAMMA = sp.Function("Gamma_numeric")


def _evaluated(expr: sp.Basic, subs: dict[sp.Symbol, sp.Basic]) -> sp.Basic:
    """Substitution with the gamma functions evaluated in log space (mpmath, 30 digits),
    never exactly (``gamma(d/2)`` has millions of digits for large ``d``), to 15 digits."""
    import mpmath

    def value(arg: sp.Basic) -> sp.Float:
        q = sp.Rational(arg)
        with mpmath.workdps(30):
            return sp.Float(mpmath.exp(mpmath.loggamma(mpmath.mpf(q.p) / q.q)), 30)

    out = expr.replace(sp.gamma, _GAMMA).subs(subs)
    return sp.N(out.replace(_GAMMA, value), 15)


@dataclass(frozen=True)
class Constant:
    """A constant at a parameter point: ``expr`` (exact, or a Float when numeric), ``value``,
    ``exact``; ``symbol`` names it in LaTeX, ``plain`` in text."""

    name: str
    symbol: str
    plain: str
    expr: sp.Basic
    value: float
    exact: bool

    def latex(self) -> str:
        return to_latex(self.expr) if self.exact else f"{self.value:.15g}"

    def to_json(self) -> dict[str, object]:
        return {"value": self.value, "exact": self.exact, "latex": self.latex()}


CONSTANTS = (
    ("C", "C", "C"),
    ("c", "c", "c"),
    ("early_slope", rf"\left.{_RATE}\right|_{{t=0}}", "dgamma/dt (t = 0)"),
)


def constants(law: str, point: Mapping[str, sp.Rational]) -> dict[str, Constant]:
    """``C``, ``c`` and the early slope of the ReLU closed form at a full parameter point
    (every name of :data:`PARAMETERS`)."""
    missing = set(PARAMETERS) - set(point)
    if missing:
        raise ValueError(f"constants need every parameter; missing {', '.join(sorted(missing))}")
    dl = H.data_law(law)
    subs = _exact_values(point)
    out = {}
    for name, symbol, plain in CONSTANTS:
        expr, exact = _substituted(dl[name], subs)
        if exact:
            expr = _shortest(expr)
        value = float(sp.N(expr, 30))
        out[name] = Constant(name, symbol, plain, expr, value, exact and not expr.has(sp.Float))
    return out


def _shortest(expr: sp.Basic) -> sp.Basic:
    """The shorter of a number expression and its simplified form."""
    candidates = [expr, sp.simplify(expr), sp.simplify(sp.expand_log(expr, force=True))]
    return min(candidates, key=lambda e: (len(sp.sstr(e)), candidates.index(e)))

