"""The derivation document of ``meanfield derive`` (and of ``meanfield reproduce``'s
``derivation.tex``): the Gaussian moments, the infinite-width kernels, the affine NTK and the
mean-field theory of hinge-loss training of one activation, as a
:class:`analytic.typeset.Document`.

Sections (:data:`SECTIONS`): ``moments`` (``analytic.gaussian``), ``kernels`` and ``affine``
(``analytic.kernels``), ``meanfield`` (:mod:`analytic.derivation`). The closed forms of the
first three are the LaTeX lines ``meanfield derive --latex`` printed before the document existed
(``\\phi(x) = ...``, one line per moment and per affine coefficient). Parameters and provenance
are given by the caller (the command line, the package version, the git revision).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import sympy as sp

from analytic import derivation as D
from analytic.activations import Activation
from analytic.derivation import Equation, Math, Text
from analytic.typeset import Document, Heading, Note, Row, Section, note

SECTIONS = ("moments", "kernels", "affine", "meanfield")
MOMENT_SYMBOLS = {"nu": r"\nu", "zeta": r"\zeta", "mu2": r"\mu_2", "mu3": r"\mu_3",
                  "E_phi2": r"\mathbb{E}\,\phi^2", "E_dphi2": r"\mathbb{E}\,\phi'^2"}
SYMBOL_MEANINGS = ("alpha: output scale; beta: learning rate (time unit 1/beta); h: hinge "
                   "threshold; sa, sw: initial standard deviations of a and of each component "
                   "of w; d: input dimension")
TITLES = {"moments": "Gaussian moments", "kernels": "Infinite-width kernels",
          "affine": "Affine NTK", "meanfield": "Mean-field theory of hinge-loss training"}


def _line(name: str, latex: str) -> Row:
    return Row(Equation(name, (Text(latex, latex),)))


def closed_form_lines(act: Activation, moments: Mapping[str, Any],
                      affine: Mapping[str, Any] | None = None) -> list[str]:
    """``\\phi(x) = ...``, one line per moment, one per affine coefficient (if given)."""
    lines = [rf"\phi(x) = {sp.latex(act.expr)}"]
    for name, v in moments.items():
        rel = "=" if v.exact else r"\approx"
        lines.append(f"{MOMENT_SYMBOLS[name]} {rel} {v.latex}")
    for layer, terms in (affine or {}).items():
        for term, v in terms.items():
            rel = "=" if v.exact else r"\approx"
            lines.append(rf"c^{{\mathrm{{{layer}}}}}_{{\mathrm{{{term}}}}} {rel} {v.latex}")
    return lines


def moments_section(act: Activation, moments: Mapping[str, Any]) -> Section:
    lines = closed_form_lines(act, moments)
    rows = [_line("phi", lines[0])] + [_line(n, s) for n, s in zip(moments, lines[1:],
                                                                    strict=True)]
    return Section(TITLES["moments"], (
        note("g ~ N(0, 1); derivatives by Stein's identity E phi^(k)(g) = E[phi(g) He_k(g)]; "
             "'=' exact, '~' numeric (15 digits)"), *rows))


def kernels_section(kernels: Mapping[str, Any]) -> Section:
    rows = []
    where = "" if kernels.get("domain", "all").startswith("all") else r" \quad (q = q' = 1)"
    for key, sym in (("theta1", r"\Theta_1"), ("theta2", r"\Theta_2")):
        rel = "=" if kernels[key]["exact"] else r"\approx"
        rows.append(_line(key, f"{sym} {rel} {kernels[key]['latex']}{where}"))
    return Section(TITLES["kernels"], (
        note(f"Theta1 = rho E[phi'(u) phi'(u')], Theta2 = E[phi(u) phi(u')], rho = x.x'/d, "
             f"q = |x|^2/d, q' = |x'|^2/d ({kernels['method']}; {kernels['reference']})"),
        *rows))


def affine_section(act: Activation, moments: Mapping[str, Any], affine: Mapping[str, Any],
                   where: str) -> Section:
    lines = closed_form_lines(act, moments, affine)[1 + len(moments):]
    names = [f"{layer}_{term}" for layer, terms in affine.items() for term in terms]
    return Section(TITLES["affine"], (
        note(f"Theta ~= ones 11^T + data XX^T/d + identity I, coefficients c^training_term "
             f"({where})"), *(_line(n, s) for n, s in zip(names, lines, strict=True))))


def meanfield_section(deriv: D.Derivation, steps: bool = False,
                      values: Mapping[str, Fraction] | None = None,
                      constants: Mapping[str, D.Constant] | None = None,
                      point: Mapping[str, Fraction] | None = None) -> Section:
    """The mean-field section: named equations in groups, or every step with its reason
    (``steps``); each also substituted at ``values``; then the constants at ``point``."""
    at = format_values(values) if values else ""
    items: list[Heading | Note | Row] = [note(
        f"data: {D.LAW_TEXT[deriv.law]}; activation {deriv.activation}; symbols "
        f"alpha, beta, h, sa, sw, d ({SYMBOL_MEANINGS})")]
    if deriv.note:
        items.append(Note(deriv.note))

    def row(name: str, label: str, reason: str) -> Row:
        eq = deriv.equations[name]
        sub = D.substitute(eq, values) if values else None
        unchanged = sub is not None and sub.exprs == eq.exprs
        return Row(eq, label, reason, None if unchanged else sub, at)

    if steps:
        for number, title, fn, names in deriv.steps:
            items.append(Heading(f"Step {number}. {title} (analytic.hinge.{fn})"))
            items += [row(n, f"{number}.{i} {n}", deriv.equations[n].reason)
                      for i, n in enumerate(names, 1)]
    else:
        for title, names, notes in deriv.groups:
            items.append(Heading(title))
            items += [note(s) for s in notes]
            items += [row(n, n, "") for n in names]
    if constants:
        items.append(Heading(f"Constants at {format_values(point or {})}"))
        items += [Row(constant_equation(c), c.name) for c in constants.values()]
    return Section(TITLES["meanfield"], tuple(items))


def constant_equation(c: D.Constant) -> Equation:
    """``symbol = exact form ~ value`` (exact) or ``symbol ~ value`` (numeric)."""
    value = f"{c.value:.15g}"
    if not c.exact:
        return Equation(c.name, (Text(rf"{c.symbol} \approx {value}",
                                      f"{c.plain} ~= {value}  (numeric)"),), exact=False)
    return Equation(c.name, (Text(f"{c.symbol} = ", f"{c.plain} = "), Math(c.expr),
                             Text(rf" \approx {value}", f"  ~= {value}", f"  ≈ {value}")))


def format_values(values: Mapping[str, Fraction]) -> str:
    return ", ".join(f"{k} = {_number(values[k])}" for k in D.PARAMETERS if k in values)


def _number(v: Fraction) -> str:
    return str(v.numerator) if v.denominator == 1 else f"{float(v):.15g}"


def provenance(command: str, version: str, revision: str) -> tuple[tuple[str, str], ...]:
    return (("meanfield version", version), ("git revision", revision),
            ("sympy version", sp.__version__), ("command line", command),
            ("created", _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")))


def document(act: Activation, law: str, sections: tuple[str, ...], *,
             provenance_rows: tuple[tuple[str, str], ...] = (), steps: bool = False,
             values: Mapping[str, Fraction] | None = None,
             point: Mapping[str, Fraction] | None = None,
             closed_forms: Mapping[str, Any] | None = None, where: str = "") -> Document:
    """The document for ``act`` and data law ``law`` with the given ``sections``.

    ``closed_forms``: the ``moments``, ``kernels`` and ``affine`` results (needed for those
    sections); ``where``: the affine NTK's setting (``d``, ``t2``, ``lr2/lr1``); ``values``:
    the substituted parameters (``--subs``); ``point``: every parameter (``values`` over the
    defaults), where the constants are evaluated when ``values`` are given (ReLU only)."""
    cf = closed_forms or {}
    out: list[Section] = []
    if "moments" in sections:
        out.append(moments_section(act, cf["moments"]))
    if "kernels" in sections:
        out.append(kernels_section(cf["kernels"]))
    if "affine" in sections:
        out.append(affine_section(act, cf["moments"], cf["affine"], where))
    if "meanfield" in sections:
        deriv = D.derive(act, law)
        consts = D.constants(law, point) if values and point and deriv.relu else None
        out.append(meanfield_section(deriv, steps, values, consts, point))
    params = [("activation", f"{act.name}: phi(x) = {act.expr}"),
              ("data", f"{law} ({D.LAW_TEXT[law]})"), ("sections", ", ".join(sections))]
    if "affine" in sections:
        params.append(("affine NTK", where))
    if values:
        params.append(("substituted", format_values(values)))
    return Document(f"meanfield derive {act.name}", tuple(params), provenance_rows, tuple(out))
