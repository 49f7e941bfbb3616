"""``meanfield derive ACTIVATION``: closed forms for one activation.

Gaussian moments (``g ~ N(0, 1)``; ``analytic.gaussian``) and the affine NTK coefficients
``Theta ~= ones 11^T + data XX^T/d + identity I`` for first-, second- and both-layer training
(``analytic.kernels.affine_coefficients``), as a table, LaTeX or JSON. Heavy modules are
imported only when needed so that a cold ``meanfield derive relu`` stays fast.
"""

from __future__ import annotations

import json
import math
import re
from fractions import Fraction
from typing import Any

import click

from cli.common import BadInput, reports_bad_input

DEFAULT_D = 100
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_SYMBOLS = {"nu": r"\nu", "zeta": r"\zeta", "mu2": r"\mu_2", "mu3": r"\mu_3",
            "E_phi2": r"\mathbb{E}\,\phi^2", "E_dphi2": r"\mathbb{E}\,\phi'^2"}
_MEANINGS = {"nu": "E phi(g)", "zeta": "E phi'(g)", "mu2": "E phi''(g)", "mu3": "E phi'''(g)",
             "E_phi2": "E phi(g)^2", "E_dphi2": "E phi'(g)^2"}


def _number(text: str, option: str, allowed: str) -> Fraction:
    """An exact rational from a decimal / scientific literal, else :class:`BadInput`."""
    if not _NUMBER.fullmatch(text.strip()):
        raise BadInput(f"{option}={text!r} is not a number; allowed: {allowed}")
    return Fraction(text.strip())


def _resolve(d: str | None, t2: str | None, lr_ratio: str) -> tuple[int | None, Fraction,
                                                                    Fraction]:
    """Validate ``--d`` / ``--t2`` / ``--lr-ratio``: ``d >= 1`` integer, ``0 < t2 <= 1``,
    ``lr_ratio >= 0``; ``t2 = 1/d`` (isotropic data) unless given."""
    if d is not None and t2 is not None:
        raise BadInput("--d and --t2 are exclusive; allowed: one of --d D (t2 = 1/D) or --t2 T")
    ratio = _number(lr_ratio, "--lr-ratio", "a number >= 0")
    if ratio < 0:
        raise BadInput(f"--lr-ratio={lr_ratio} is negative; allowed: a number >= 0")
    if t2 is not None:
        t = _number(t2, "--t2", "0 < t2 <= 1")
        if not 0 < t <= 1:
            raise BadInput(f"--t2={t2} is out of range; allowed: 0 < t2 <= 1 "
                           "(t2 = tr(Sigma^2)/d^2)")
        return None, t, ratio
    text = str(DEFAULT_D) if d is None else d.strip()
    if not re.fullmatch(r"[+-]?\d+", text) or int(text) < 1:
        raise BadInput(f"--d={d} is not allowed; allowed: an integer d >= 1")
    return int(text), Fraction(1, int(text)), ratio


def _entry(v: Any) -> dict[str, Any]:
    """JSON of a ``Value``: ``+inf`` (not valid JSON) is written as ``null`` with exact
    ``latex`` ``\\infty``."""
    value = float(v.value)
    return {"value": value if math.isfinite(value) else None, "exact": bool(v.exact),
            "latex": v.latex}


def _closed(v: Any) -> str:
    return str(v.expr) if v.exact else "-"


def _fmt(v: Any) -> str:
    return f"{float(v.value):.15g}"


@click.command("derive")
@click.argument("activation", required=False)
@click.option("--d", "d", default=None, metavar="D",
              help=f"Input dimension; t2 = 1/D (isotropic data). [default: {DEFAULT_D}]")
@click.option("--t2", "t2", default=None, metavar="T",
              help="t2 = tr(Sigma^2)/d^2 directly, 0 < T <= 1 (exclusive with --d).")
@click.option("--lr-ratio", "lr_ratio", default="1", metavar="R",
              help="Learning-rate ratio lr2/lr1 >= 0 for both-layer training. [default: 1]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--latex", "as_latex", is_flag=True, help="Print the closed forms as LaTeX.")
@click.option("--verify", is_flag=True,
              help="Also check the affine NTK against an empirical NTK as d grows (slow).")
@reports_bad_input
def derive(activation: str | None, d: str | None, t2: str | None, lr_ratio: str, as_json: bool,
           as_latex: bool, verify: bool) -> None:
    """Closed forms for ACTIVATION: a named activation (relu, leaky_relu[:SLOPE], abs, linear,
    quadratic, cubic, step, erf, tanh, sigmoid, softplus, gelu) or an expression in x, e.g.
    "x*tanh(x)".

    Prints the Gaussian moments nu = E phi, zeta = E phi', mu2 = E phi'', mu3 = E phi''',
    E_phi2 = E phi^2, E_dphi2 = E phi'^2 (g ~ N(0,1); exact or numeric), and the affine NTK
    coefficients (ones, data, identity) for first-, second- and both-layer training.
    """
    if activation is None:
        from analytic.activations import NAMES

        raise BadInput(f"missing ACTIVATION; allowed: one of {', '.join(NAMES)} "
                       "or an expression in x, e.g. \"x*tanh(x)\"")
    if as_json and as_latex:
        raise BadInput("--json and --latex are exclusive; allowed: at most one of them")
    dim, t2_value, ratio = _resolve(d, t2, lr_ratio)

    from analytic.activations import get_activation
    from analytic.gaussian import moments as gaussian_moments

    act = get_activation(activation)
    moments = gaussian_moments(act)
    affine = _affine(moments, t2_value, ratio)
    kernels = _kernels(act, moments)
    rows = _verify(act, float(ratio)) if verify else None

    if as_json:
        out = _as_json(act, moments, affine, dim, t2_value, ratio, rows)
        out["kernels"] = {k: ({f: v[f] for f in ("exact", "latex", "text")}
                              if isinstance(v, dict) else v) for k, v in kernels.items()}
        click.echo(json.dumps(out, indent=2))
    elif as_latex:
        click.echo(_as_latex(act, moments, affine))
    else:
        click.echo(_as_table(act, moments, affine, dim, t2_value, ratio, rows))
        click.echo(_kernel_table(kernels))


def _affine(moments: dict[str, Any], t2: Fraction, ratio: Fraction) -> dict[str, Any]:
    from analytic.kernels import affine_coefficients

    return affine_coefficients(moments, t2, ratio)


def _kernels(act: Any, moments: dict[str, Any]) -> dict[str, Any]:
    from analytic.kernels import kernel_report

    return kernel_report(act, moments)


def _kernel_table(kernels: dict[str, Any]) -> str:
    lines = ["", "Infinite-width NTK, rho = x.x'/d, q = |x|^2/d, q' = |x'|^2/d "
                 f"({kernels['method']}; {kernels['reference']}):"]
    for key, label in (("theta1", "Theta1 = rho E[phi'(u) phi'(u')]"),
                       ("theta2", "Theta2 = E[phi(u) phi(u')]     ")):
        lines.append(f"  {label}  {'=' if kernels[key]['exact'] else '~='} {kernels[key]['text']}")
    return "\n".join(lines)


def _verify(act: Any, ratio: float) -> list[dict[str, Any]]:
    from meanfield.linear import verify_affine

    return [row.to_dict() for row in verify_affine(act, lr_ratio=ratio)]


def _as_json(act: Any, moments: dict[str, Any], affine: dict[str, Any], d: int | None,
             t2: Fraction, ratio: Fraction, rows: list | None) -> dict[str, Any]:
    import sympy

    from meanfield import __version__

    out: dict[str, Any] = {
        "activation": act.name,
        "expression": str(act.expr),
        "expression_latex": sympy.latex(act.expr),
        "kinks": list(act.kinks),
        "moments": {name: _entry(v) for name, v in moments.items()},
        "affine": {layer: {term: _entry(v) for term, v in terms.items()}
                   for layer, terms in affine.items()},
        "d": d,
        "t2": float(t2),
        "lr_ratio": float(ratio),
        "version": __version__,
    }
    if rows is not None:
        out["verify"] = rows
    return out


def _as_latex(act: Any, moments: dict[str, Any], affine: dict[str, Any]) -> str:
    import sympy

    lines = [rf"\phi(x) = {sympy.latex(act.expr)}"]
    for name, v in moments.items():
        rel = "=" if v.exact else r"\approx"
        lines.append(f"{_SYMBOLS[name]} {rel} {v.latex}")
    for layer, terms in affine.items():
        for term, v in terms.items():
            rel = "=" if v.exact else r"\approx"
            lines.append(rf"c^{{\mathrm{{{layer}}}}}_{{\mathrm{{{term}}}}} {rel} {v.latex}")
    return "\n".join(lines)


def _as_table(act: Any, moments: dict[str, Any], affine: dict[str, Any], d: int | None,
              t2: Fraction, ratio: Fraction, rows: list | None) -> str:
    kinks = ", ".join(f"{k:g}" for k in act.kinks) or "none"
    lines = [f"activation {act.name}:  phi(x) = {act.expr}   (kinks: {kinks})", "",
             "Gaussian moments, g ~ N(0, 1) (derivatives by Stein's identity):"]
    lines.append(f"  {'name':<8} {'':<12} {'value':>22}  {'kind':<8} closed form")
    for name, v in moments.items():
        lines.append(f"  {name:<8} {_MEANINGS[name]:<12} {_fmt(v):>22}  "
                     f"{'exact' if v.exact else 'numeric':<8} {_closed(v)}")
    where = f"d = {d}, t2 = 1/d" if d is not None else f"t2 = {t2}"
    lines += ["", f"Affine NTK  Theta ~= ones 11^T + data XX^T/d + identity I   "
                  f"({where}, lr2/lr1 = {ratio}):"]
    lines.append(f"  {'training':<9} {'ones':>22} {'data':>22} {'identity':>22}")
    for layer, terms in affine.items():
        cells = " ".join(f"{_fmt(terms[t]) + ('' if terms[t].exact else '*'):>22}"
                         for t in ("ones", "data", "identity"))
        lines.append(f"  {layer:<9} {cells}")
    if any(not v.exact for terms in affine.values() for v in terms.values()):
        lines.append("  (* numeric)")
    if rows is not None:
        lines += ["", "Verification: relative spectral-norm errors on n = d^1.25 Gaussian inputs "
                      "(t2 = 1/d), network width m:",
                  "  error    ||Theta_emp - Theta_affine|| / ||Theta_emp||  (empirical NTK)",
                  "  inf      ||Theta_inf - Theta_affine|| / ||Theta_inf||  (infinite-width NTK "
                  "on the same data)",
                  "  width    ||Theta_emp - Theta_inf|| / ||Theta_inf||     (finite-width part; "
                  "it does not fall at fixed m/n",
                  "           when the kernel has high effective rank, e.g. the second layer of "
                  "odd activations)"]
        lines.append(f"  {'d':>5} {'n':>5} {'m':>6}  {'training':<9} "
                     f"{'error':>9} {'inf':>9} {'width':>9}")
        for r in rows:
            for i, k in enumerate(affine):
                size = f"{r['d']:>5} {r['n']:>5} {r['m']:>6}" if i == 0 else " " * 18
                cells = " ".join(f"{r[key][k]:>9.4f}"
                                 for key in ("error", "error_infinite", "width_error"))
                lines.append(f"  {size}  {k:<9} {cells}")
    return "\n".join(lines)
