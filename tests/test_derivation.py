"""analytic.derivation, analytic.document, analytic.typeset: the derivation shown by
``meanfield derive``.

Every equation is checked to be the object analytic.hinge derives (its srepr read back through
the whitelisted reader), the constants against independent evaluations typed here (Gaussian
law: the hand formulas; sphere: scipy quadrature of the density written here), every equation
against matplotlib's mathtext, the LaTeX document against pdflatex (where installed).
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
import sympy as sp
from scipy.integrate import quad

from analytic import derivation as D
from analytic import document as Doc
from analytic import hinge as H
from analytic import typeset as TS
from analytic.activations import get_activation
from analytic.cache import from_srepr

LAWS = ("gaussian", "sphere")
RELU_NAMED = ("node_da_dt", "node_dw_dt", "kappa", "reduced", "a_of_gamma", "w_par_of_gamma",
              "output", "unsatisfied_set", "density", "V", "train_error", "loss",
              "gamma_equation", "early_slope", "late_asymptote", "asymptote_c", "t_sat")
DEFAULT_POINT = {"alpha": Fraction(1), "beta": Fraction(1), "h": Fraction(1),
                 "sa": Fraction(1), "sw": Fraction(1), "d": Fraction(100)}


def _hinge_objects(law: str) -> dict[str, tuple[sp.Basic, ...]]:
    """Name -> the expressions of analytic.hinge an equation must show, in order."""
    eq, red, sol, dl = H.node_equations(), H.relu_reduction(), H.relu_solution(), H.data_law(law)
    x = sp.Symbol("x", real=True)
    return {
        "node_da_dt": (eq["da_dt"],), "node_dw_dt": (eq["dw_dt"],),
        "theta_even": (red["theta_even"],), "relu_odd": (red["relu_odd"],),
        "kappa": (red["kappa"],), "reduced": (red["da_dt"], red["dw_par_dt"]),
        "gamma_system": (red["da_dt"] / red["kappa"], red["dw_par_dt"] / red["kappa"]),
        "a_of_gamma": (sol["a"],), "w_par_of_gamma": (sol["w_par"],),
        "E_a_w_par": (sol["E_a_w_par"],), "output_slope": (sol["S_per_E_a_w_par"],),
        "output": (sol["S"],), "unsatisfied_set": (sol["X"],), "t_sat": (sol["gamma_sat"],),
        "density": (dl["density"].subs(x, H.x_par),), "V": (dl["V"],),
        "train_error": (dl["P_U"],), "second_moment": (dl["M2_U"],),
        "gamma_equation": (dl["gamma_rate"],), "late_asymptote": (dl["C"],),
        "t_of_G": (dl["t_of_G"],), "asymptote_c": (dl["c_of_C"],),
        "early_slope": (dl["early_slope"],), "loss": (dl["loss"],),
    }


def _read(srepr: str) -> tuple[sp.Basic, ...]:
    back = from_srepr(srepr, functions={"sigma": H.sigma})
    return tuple(back) if isinstance(back, sp.Tuple) else (back,)


@pytest.mark.parametrize("law", LAWS)
def test_every_relu_equation_is_the_derived_object(law):
    """Each equation (named and step) reads back from its srepr, through the whitelisted
    reader, equal to the expressions analytic.hinge returns."""
    deriv = D.derive(get_activation("relu"), law)
    assert deriv.relu and deriv.named == RELU_NAMED
    objects = _hinge_objects(law)
    step_names = [n for _, _, _, names in deriv.steps for n in names]
    assert set(step_names) == set(objects) and set(deriv.named) <= set(step_names)
    for name in step_names:
        assert _read(deriv.equations[name].srepr()) == objects[name], name
        assert deriv.equations[name].reason, name


@pytest.mark.parametrize("law", LAWS)
def test_named_latex_is_that_of_theory_latex(law):
    """The named equations print exactly what ``meanfield theory --latex`` prints."""
    deriv = D.derive(get_activation("relu"), law)
    theory = H.latex_equations(law)
    assert set(theory) == set(deriv.named)
    for name in deriv.named:
        assert deriv.equations[name].latex() == theory[name], name


@pytest.mark.parametrize("law", LAWS)
def test_printed_objects_are_what_the_numerics_lambdify(law):
    """The expressions read back from the srepr of the printed equations, lambdified, give
    the numbers of analytic.hinge.numerics at probe points (the same objects)."""
    deriv = D.derive(get_activation("relu"), law)
    num = H.numerics(law)
    back = {n: _read(deriv.equations[n].srepr())[0] for n in deriv.named}
    C = back["late_asymptote"]
    c = back["asymptote_c"].subs(H.C, C)
    assert c == H.data_law(law)["c"]  # c of the printed c(C) at the printed C
    a, b, h, d, sa, sw = 1.3, 0.7, 0.9, 21.0, 0.8, 1.2
    params = (H.alpha, H.beta, H.h, H.d, H.sa, H.sw)

    def at(expr, args, values):
        return float(sp.lambdify(args, expr, modules=["scipy", "numpy"])(*values))

    assert at(C, params, (a, b, h, d, sa, sw)) == pytest.approx(
        float(num.C(a, b, h, d, sa, sw)), rel=1e-12)
    assert at(c, params, (a, b, h, d, sa, sw)) == pytest.approx(
        float(num.c(a, b, h, d, sa, sw)), rel=1e-12)
    assert at(back["early_slope"], (H.alpha, H.beta, H.d), (a, b, d)) == pytest.approx(
        float(num.early_slope(a, b, d)), rel=1e-12)
    for X in (0.3, 1.4):
        for name, fn, var in (("V", num.V, H.X), ("train_error", num.P_U, H.X),
                              ("density", num.density, H.x_par)):
            assert at(back[name], (var, H.d), (X, d)) == pytest.approx(float(fn(X, d)),
                                                                      rel=1e-12), name
    g = at(back["t_sat"], (H.x_par, H.alpha, H.h, H.d, H.sa, H.sw), (0.4, a, h, d, sa, sw))
    assert g == pytest.approx(float(num.gamma_sat(0.4, a, h, d, sa, sw)), rel=1e-12)


def test_constants_at_d_100_against_the_hand_formulas():
    """Gaussian law at d = 100, the other parameters 1: C = 16 sqrt(2) sqrt(d) h^2 beta /
    (sqrt(pi) alpha (sa^2 + sw^2)^2), c = log(4 C)/4, early slope = 1/sqrt(2 pi d)."""
    consts = D.constants("gaussian", DEFAULT_POINT)
    C = 16 * math.sqrt(2) * math.sqrt(100) / (math.sqrt(math.pi) * 4)
    assert consts["C"].value == pytest.approx(C, rel=1e-12)
    assert consts["C"].value == pytest.approx(31.9154, abs=1e-4)
    assert consts["c"].value == pytest.approx(math.log(4 * C) / 4, rel=1e-12)
    assert consts["c"].value == pytest.approx(1.21235, abs=1e-5)
    slope = 1 / math.sqrt(2 * math.pi * 100)
    assert consts["early_slope"].value == pytest.approx(slope, rel=1e-12)
    assert consts["early_slope"].value == pytest.approx(0.0398942, abs=1e-7)
    assert all(c.exact for c in consts.values())
    assert sp.simplify(consts["C"].expr - 40 * sp.sqrt(2) / sp.sqrt(sp.pi)) == 0
    # another point: every parameter enters as in the hand formula
    point = {"alpha": Fraction(2), "beta": Fraction(1, 2), "h": Fraction(3, 10),
             "sa": Fraction(7, 10), "sw": Fraction(11, 10), "d": Fraction(37)}
    consts = D.constants("gaussian", point)
    s2 = 0.7**2 + 1.1**2
    C = 16 * math.sqrt(2) * math.sqrt(37) * 0.3**2 * 0.5 / (math.sqrt(math.pi) * 2 * s2**2)
    assert consts["C"].value == pytest.approx(C, rel=1e-12)
    assert consts["c"].value == pytest.approx(math.log(4 * C) / 4, rel=1e-12)
    assert consts["early_slope"].value == pytest.approx(
        2 * 0.5 / math.sqrt(2 * math.pi * 37), rel=1e-12)


def _sphere_by_quadrature(d: float, alpha: float, beta: float, h: float, sa: float,
                          sw: float) -> dict[str, float]:
    """C, c, early slope of the sphere law from its density written here,
    p(x) ~ (1 - x^2/d)^((d-3)/2) on |x| < sqrt(d), normalised by quadrature:
    early slope = beta alpha <|x_par|>/(2 sqrt d); as X = h/S -> 0, V(X) ~ p(0) X^2/2 and
    S ~ alpha (sa^2 + sw^2) e^(2 gamma)/(8 sqrt d), so C = 32 beta h^2 sqrt(d) p(0) /
    (alpha (sa^2 + sw^2)^2); c = log(4 C)/4."""
    top = math.sqrt(d)

    def shape(x):
        return (1 - x * x / d) ** ((d - 3) / 2)

    norm = quad(shape, -top, top, epsabs=0, epsrel=1e-13)[0]
    mean_abs = 2 * quad(lambda x: x * shape(x), 0, top, epsabs=0, epsrel=1e-13)[0] / norm
    C = 32 * beta * h**2 * math.sqrt(d) / (norm * alpha * (sa**2 + sw**2) ** 2)
    return {"C": C, "c": math.log(4 * C) / 4,
            "early_slope": beta * alpha * mean_abs / (2 * math.sqrt(d))}


@pytest.mark.parametrize("point", [
    DEFAULT_POINT,
    {"alpha": Fraction(3, 2), "beta": Fraction(2), "h": Fraction(1, 4), "sa": Fraction(0),
     "sw": Fraction(9, 10), "d": Fraction(7)},
])
def test_sphere_constants_against_quadrature_of_its_density(point):
    consts = D.constants("sphere", point)
    ref = _sphere_by_quadrature(*(float(point[k]) for k in ("d", "alpha", "beta", "h",
                                                              "sa", "sw")))
    for name in ("C", "c", "early_slope"):
        assert consts[name].value == pytest.approx(ref[name], rel=1e-10), name
    gauss = D.constants("gaussian", point)
    assert consts["C"].value != pytest.approx(gauss["C"].value, rel=1e-6)


def test_large_d_is_evaluated_in_log_space():
    """d = 10^9 + 1 on the sphere: the gamma functions are not evaluated exactly (that would
    take millions of digits); the numbers agree with the numerics, labelled numeric."""
    d = 10**9 + 1
    point = {**DEFAULT_POINT, "d": Fraction(d)}
    consts = D.constants("sphere", point)
    num = H.numerics("sphere")
    assert not consts["C"].exact and consts["C"].latex() == f"{consts['C'].value:.15g}"
    assert consts["C"].value == pytest.approx(float(num.C(1, 1, 1, d, 1, 1)), rel=1e-6)
    assert consts["early_slope"].value == pytest.approx(float(num.early_slope(1, 1, d)),
                                                        rel=1e-6)
    deriv = D.derive(get_activation("relu"), "sphere")
    sub = D.substitute(deriv.equations["density"], {"d": Fraction(d)})
    assert not sub.exact and sub.exprs[0].has(sp.Float) and not sub.exprs[0].has(sp.gamma)


def test_substitution_keeps_the_other_parameters_symbolic():
    deriv = D.derive(get_activation("relu"), "gaussian")
    sub = D.substitute(deriv.equations["late_asymptote"], {"d": Fraction(100)})
    (expr,) = sub.exprs
    assert sub.exact and H.d not in expr.free_symbols
    assert {H.alpha, H.beta, H.h, H.sa, H.sw} <= expr.free_symbols
    assert sp.simplify(expr - H.data_law("gaussian")["C"].subs(H.d, 100)) == 0
    unchanged = D.substitute(deriv.equations["a_of_gamma"], {"d": Fraction(100)})
    assert unchanged.exprs == deriv.equations["a_of_gamma"].exprs
    with pytest.raises(ValueError, match="unknown parameter"):
        D.substitute(deriv.equations["V"], {"x": Fraction(1)})
    with pytest.raises(TypeError):
        D.substitute(deriv.equations["V"], {"d": "100"})


def test_relu_is_decided_by_is_relu_and_the_note_gives_the_reason():
    assert D.derive(get_activation("max(x, 0)"), "gaussian").relu
    tanh = D.derive(get_activation("tanh"), "sphere")
    assert not tanh.relu
    assert tanh.named == ("node_da_dt", "node_dw_dt", "density", "population_F_a",
                          "population_F_w", "population_F_rho", "population_F_f")
    text = D.note_text(tanh.note)
    assert "needs ReLU" in text and "theta(u) + theta(-u) = 1" in text
    assert "2/cosh(u)**2" in text and "do not close" in text
    for name in ("softplus", "leaky_relu:0.1"):  # the identities hold up to a constant factor
        assert "up to a constant factor" in D.note_text(
            D.derive(get_activation(name), "gaussian").note)
    assert H.density("sphere") == H.data_law("sphere")["density"]
    assert _read(tanh.equations["density"].srepr()) == _hinge_objects("sphere")["density"]
    ints = H.population_integrands(get_activation("tanh"))
    for key in ("F_a", "F_w", "F_rho", "F_f"):
        assert _read(tanh.equations[f"population_{key}"].srepr()) == (ints[key],)


def _mathtext_ok(latex: str) -> None:
    from matplotlib.mathtext import MathTextParser

    MathTextParser("path").parse(f"${TS.mathtext(latex)}$")


@pytest.mark.parametrize("spec, law", [("relu", "gaussian"), ("relu", "sphere"),
                                       ("tanh", "gaussian")])
def test_every_equation_renders_with_mathtext(spec, law):
    act = get_activation(spec)
    doc = _doc(act, law)
    rows = [item for s in doc.sections for item in s.items if isinstance(item, TS.Row)]
    assert len(rows) > 20
    for row in rows:
        for eq in (row.equation, row.substituted):
            if eq is not None:
                for part in eq.latex().split(r",\quad "):
                    _mathtext_ok(part)


def _doc(act, law, steps=True):
    from analytic.gaussian import moments
    from analytic.kernels import affine_coefficients, kernel_report

    m = moments(act)
    closed = {"moments": m, "kernels": kernel_report(act, m),
              "affine": affine_coefficients(m, Fraction(1, 100), Fraction(1))}
    return Doc.document(act, law, Doc.SECTIONS, steps=steps, values={"d": Fraction(100)},
                        point=DEFAULT_POINT, closed_forms=closed, where="d = 100",
                        provenance_rows=Doc.provenance("meanfield derive 'x_1' % & $ ~ é",
                                                       "1.0", "abc"))


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no TeX installation")
@pytest.mark.parametrize("spec, law", [("relu", "sphere"), ("x*tanh(x)", "gaussian")])
def test_latex_document_compiles(tmp_path, spec, law):
    tex = TS.latex_document(_doc(get_activation(spec), law))
    (tmp_path / "d.tex").write_text(tex)
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "d.tex"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]
    assert (tmp_path / "d.pdf").stat().st_size > 10_000


def test_latex_document_structure():
    tex = TS.latex_document(_doc(get_activation("relu"), "gaussian", steps=False))
    assert tex.startswith(r"\documentclass") and tex.rstrip().endswith(r"\end{document}")
    for title in ("Gaussian moments", "Infinite-width kernels", "Affine NTK",
                  "Mean-field theory of hinge-loss training", "Provenance", "Parameters"):
        assert title in tex
    assert tex.count(r"\begin{equation}") == tex.count(r"\end{equation}") > 30
    assert r"meanfield derive 'x\_\allowbreak{}1' \% \& \$ \textasciitilde{} ?" in tex
    assert H.latex_equations("gaussian")["late_asymptote"].split(r",\quad ")[1] in tex


def test_figure_png_and_pdf_without_pyplot(tmp_path):
    import matplotlib

    backend = matplotlib.get_backend()
    had_pyplot = "matplotlib.pyplot" in sys.modules
    doc = _doc(get_activation("relu"), "gaussian", steps=False)
    for name in ("d.png", "d.pdf"):
        TS.write_figure(doc, tmp_path / name)
        assert (tmp_path / name).stat().st_size > 10_000
    assert (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "d.pdf").read_bytes()[:4] == b"%PDF"
    assert matplotlib.get_backend() == backend
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.pdf", "d.png"]


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path):
    path = tmp_path / "out.tex"
    path.write_text("old")

    def fail(tmp):
        with open(tmp, "w") as fh:
            fh.write("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        TS.write_atomic(path, fail)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.tex"]
    TS.write_text(path, "new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["out.tex"]


def test_pretty_text_is_readable_math_not_latex():
    deriv = D.derive(get_activation("relu"), "gaussian")
    section = Doc.meanfield_section(deriv, steps=True)
    text = TS.section_text(section, 90)
    assert "\\frac" not in text and "Step 2. ReLU symmetry reduction" in text
    assert "why: on an unsatisfied set U symmetric under x -> -x" in text
    assert max(len(line) for line in text.splitlines()) <= 90
    ascii_text = TS.section_text(section, 90, unicode=False)
    assert ascii_text.isascii()
    order = [line.split()[0] for line in text.splitlines()
             if line.startswith("  ") and line[2:3].isdigit()]
    assert order == [f"{n}.{i}" for n, _, _, names in deriv.steps
                     for i in range(1, len(names) + 1)]


def test_unchanged_substitutions_are_not_repeated():
    deriv = D.derive(get_activation("relu"), "gaussian")
    section = Doc.meanfield_section(deriv, values={"d": Fraction(100)},
                                    constants=D.constants("gaussian", DEFAULT_POINT),
                                    point=DEFAULT_POINT)
    rows = {item.label: item for item in section.items if isinstance(item, TS.Row)}
    assert rows["a_of_gamma"].substituted is None
    assert rows["late_asymptote"].substituted is not None
    assert rows["C"].equation.latex().startswith("C = ")
    np.testing.assert_allclose(float(rows["C"].equation.exprs[0]), 31.915382432114615,
                               rtol=1e-14)
