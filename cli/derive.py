"""``meanfield derive ACTIVATION``: what the project derives for one activation.

Sections (``--section``, default ``all``): the Gaussian moments (``g ~ N(0, 1)``;
``analytic.gaussian``), the infinite-width kernels and the affine NTK coefficients
``Theta ~= ones 11^T + data XX^T/d + identity I`` for first-, second- and both-layer training
(``analytic.kernels``), and the mean-field theory of hinge-loss training (``analytic.derivation``
over ``analytic.hinge``: the single-node equations, for ReLU the symmetry reduction, the
hyperbolic solution, the data law and the gamma equation with its asymptotes, for other
activations the population drives). ``--steps`` shows every step with its reason; ``--subs``
substitutes parameters and evaluates the constants ``C``, ``c`` and the early slope.

Formats: a table and pretty-printed equations (terminal), ``--json``, ``--latex`` (a complete
LaTeX document), ``-o FILE.png|.pdf`` (a figure drawn with matplotlib's mathtext). ``-o FILE``
writes atomically; its suffix ``.tex``/``.json`` selects the format as ``--latex``/``--json``
would. ``--subs d=N`` sets ``d`` for every section: the affine NTK uses it as ``--d N`` would
(a different ``--d``, or ``--t2``, with it is an error). Heavy modules are imported only when
needed so that a cold ``meanfield derive relu --section moments`` stays fast.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shlex
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import click

from cli.common import BadInput, overwrite_option, reports_bad_input

DEFAULT_D = 100
SECTIONS = ("moments", "kernels", "affine", "meanfield")
DATA_LAWS = ("gaussian", "sphere")
FIGURE_SUFFIXES = (".png", ".pdf")
#: written into every derivation file, followed by the request's identity (:func:`_identity`)
DERIVE_TAG = "meanfield-derive-identity:"
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_SUBS_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,2})?")
_SUBS_INTEGER = re.compile(r"\+?\d{1,13}")
_SUBS_ALLOWED = ("comma-separated NAME=NUMBER with NAME one of alpha, beta, h, sa, sw, d "
                 "(d an integer), e.g. d=100,alpha=2")
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


def parse_subs(text: str) -> dict[str, Fraction]:
    """``--subs``: ``NAME=NUMBER`` items, names from ``alpha, beta, h, sa, sw, d`` (each once),
    numbers as decimal literals read exactly (never evaluated), in the ranges of
    ``meanfield.config`` (``d >= 2`` integer, ``h, alpha, beta > 0``, ``sa, sw >= 0`` not both
    0, within the supported magnitudes). Anything else is :class:`BadInput`."""
    from meanfield.config import ConfigError, make_config, range_text

    if len(text) > 300:
        raise BadInput(f"--subs is {len(text)} characters long; allowed: {_SUBS_ALLOWED}")
    values: dict[str, Fraction] = {}
    for item in text.split(","):
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not name:
            raise BadInput(f"--subs item {item.strip()!r} is not NAME=NUMBER; "
                           f"allowed: {_SUBS_ALLOWED}")
        if name not in ("alpha", "beta", "h", "sa", "sw", "d"):
            raise BadInput(f"--subs: unknown parameter {name!r}; allowed: {_SUBS_ALLOWED}")
        if name in values:
            raise BadInput(f"--subs: {name} given twice; allowed: {_SUBS_ALLOWED}")
        pattern = _SUBS_INTEGER if name == "d" else _SUBS_NUMBER
        if not pattern.fullmatch(value):
            kind = "an integer" if name == "d" else "a number"
            raise BadInput(f"--subs: {name}={value!r} is not {kind}; allowed: {_SUBS_ALLOWED}")
        values[name] = Fraction(value)
    try:
        make_config(**{k: int(v) if k == "d" else float(v) for k, v in values.items()})
    except ConfigError as err:
        ranges = "; ".join(f"{k} {range_text(k)}" for k in values)
        raise BadInput(f"--subs: {err}; allowed: {ranges}") from None
    return values


def _subs_d(values: dict[str, Fraction], d: str | None, t2: str | None) -> str | None:
    """``--d`` after ``--subs d=N``: N unless ``--d`` was given (it must then be N)."""
    if "d" not in values:
        return d
    n = int(values["d"])
    if t2 is not None:
        raise BadInput(f"--subs d={n} and --t2 are exclusive; allowed: --subs d=N (the affine "
                       "NTK then uses t2 = 1/N) or --t2 T without d in --subs")
    if d is not None and (not re.fullmatch(r"\+?\d+", d.strip()) or int(d) != n):
        raise BadInput(f"--d {d} and --subs d={n} disagree; allowed: one of them, or the same "
                       "value in both")
    return str(n)


def _output(output: str | None, as_json: bool, as_latex: bool) -> tuple[Path | None, str]:
    """The output file (checked before any computation) and the format: ``text``, ``json``,
    ``latex`` or ``figure``."""
    fmt = "json" if as_json else "latex" if as_latex else "text"
    if output is None:
        return None, fmt
    path = Path(output)
    suffix = path.suffix.lower()
    if suffix in FIGURE_SUFFIXES:
        if as_json or as_latex:
            raise BadInput(f"-o {output}: a {suffix} file holds the figure; allowed: "
                           "-o FILE.png|.pdf without --json/--latex, or another suffix")
        fmt = "figure"
    elif (suffix == ".tex" and as_json) or (suffix == ".json" and as_latex):
        raise BadInput(f"-o {output} does not match the format asked for; allowed: "
                       "--json with .json, --latex with .tex, or another suffix")
    elif suffix in (".tex", ".json"):
        fmt = "latex" if suffix == ".tex" else "json"
    if suffix in (".h5", ".nc"):
        raise BadInput(f"-o {output}: {suffix} files hold meanfield data; allowed: .tex, "
                       ".json, .png, .pdf or a text file")
    from meanfield.io import check_writable  # missing folder, a folder, a refused name

    return check_writable(path), fmt


def _choice(value: str, option: str, allowed: tuple[str, ...]) -> str:
    """A plain-string choice with the one-line message and exit status 2 of the project."""
    if value not in allowed:
        raise BadInput(f"{option}={value!r} is not allowed; allowed: one of {', '.join(allowed)}")
    return value


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
@click.option("--data", "data", default="gaussian", metavar="LAW",
              help="Data law of the mean-field section: gaussian (x ~ N(0, I_d)) or sphere "
                   "(uniform on the sphere of radius sqrt(d)). [default: gaussian]")
@click.option("--section", "section", default="all", metavar="NAME",
              help="What to show: moments, kernels, affine, meanfield or all. [default: all]")
@click.option("--steps", is_flag=True,
              help="Mean-field section: every derivation step with the reason it holds, in "
                   "the order analytic.hinge computes them.")
@click.option("--subs", "subs", default=None, metavar="NAME=VALUE,...",
              help="Also show every mean-field equation with these parameters substituted "
                   "(alpha, beta, h, sa, sw, d; e.g. d=100,alpha=2) and evaluate C, c and the "
                   "early slope there (the other parameters at the defaults of meanfield "
                   "theory). d=N also sets the affine section's d.")
@click.option("--d", "d", default=None, metavar="D",
              help=f"Input dimension of the affine NTK; t2 = 1/D (isotropic data). "
                   f"[default: {DEFAULT_D}, or d of --subs]")
@click.option("--t2", "t2", default=None, metavar="T",
              help="t2 = tr(Sigma^2)/d^2 directly, 0 < T <= 1 (exclusive with --d).")
@click.option("--lr-ratio", "lr_ratio", default="1", metavar="R",
              help="Learning-rate ratio lr2/lr1 >= 0 for both-layer training. [default: 1]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--latex", "as_latex", is_flag=True,
              help="Print a complete LaTeX document (sections, equations, parameters, "
                   "provenance).")
@click.option("-o", "--output", default=None, metavar="FILE",
              help="Write to FILE instead (atomically): .tex a LaTeX document, .json JSON, "
                   ".png/.pdf the derivation drawn as a figure (matplotlib mathtext), "
                   "anything else the format of the flags.")
@click.option("--verify", is_flag=True,
              help="Also check the affine NTK against an empirical NTK as d grows (slow).")
@overwrite_option
@reports_bad_input
def derive(activation: str | None, data: str, section: str, steps: bool, subs: str | None,
           d: str | None, t2: str | None, lr_ratio: str, as_json: bool, as_latex: bool,
           output: str | None, verify: bool, overwrite: bool) -> None:
    """What the project derives for ACTIVATION: a named activation (relu, leaky_relu[:SLOPE],
    abs, linear, quadratic, cubic, step, erf, tanh, sigmoid, softplus, gelu) or an expression
    in x, e.g. "x*tanh(x)".

    moments: nu = E phi, zeta = E phi', mu2 = E phi'', mu3 = E phi''', E_phi2 = E phi^2,
    E_dphi2 = E phi'^2 (g ~ N(0,1); exact or numeric). kernels: the infinite-width NTK.
    affine: the affine NTK coefficients (ones, data, identity) for first-, second- and
    both-layer training. meanfield: the mean-field theory of hinge-loss training, derived
    with sympy (analytic.hinge), each equation the object the theory's numerics use.
    """
    if activation is None:
        from analytic.activations import NAMES

        raise BadInput(f"missing ACTIVATION; allowed: one of {', '.join(NAMES)} "
                       "or an expression in x, e.g. \"x*tanh(x)\"")
    if as_json and as_latex:
        raise BadInput("--json and --latex are exclusive; allowed: at most one of them")
    law = _choice(data, "--data", DATA_LAWS)
    shown = SECTIONS if _choice(section, "--section", (*SECTIONS, "all")) == "all" else (
        section,)
    if verify and "affine" not in shown:
        raise BadInput(f"--verify checks the affine NTK, not shown by --section {section}; "
                       "allowed: --section affine or all")
    if steps and "meanfield" not in shown:
        raise BadInput(f"--steps shows the mean-field derivation, not shown by --section "
                       f"{section}; allowed: --section meanfield or all")
    values = parse_subs(subs) if subs is not None else {}
    dim, t2_value, ratio = _resolve(_subs_d(values, d, t2), t2, lr_ratio)
    path, fmt = _output(output, as_json, as_latex)
    identity = _identity(activation, fmt, law=law, sections=shown, steps=steps,
                         values=sorted(values.items()), d=dim, t2=t2_value, ratio=ratio,
                         verify=verify)
    tag = DERIVE_TAG + identity
    from meanfield.files.outputs import existing_tagged

    if path is not None and existing_tagged(path, identity, overwrite, DERIVE_TAG):
        click.echo(f"{path} already holds this derivation; left untouched", err=True)
        click.echo(f"derivation written to {path}")
        return

    from analytic.activations import get_activation

    act = get_activation(activation)
    if verify and not act.expr.free_symbols:
        raise BadInput(f"--verify compares NTKs, and the constant activation {activation!r} has "
                       "none to compare (its first-layer NTK is 0); allowed: an activation of x")
    run = _Run(act, law, shown, steps, values, dim, t2_value, ratio)
    run.compute(verify)
    text = {"json": run.json, "latex": run.latex, "text": run.text}.get(fmt)
    if path is None:
        click.echo(text() if fmt != "text" else run.text(_width(), _unicode()))
        return
    from analytic.typeset import write_figure, write_text

    if fmt == "figure":
        write_figure(run.document(), path, keywords=tag)
    else:
        write_text(path, _tagged(text(), fmt, tag) + "\n")
    click.echo(f"derivation written to {path}")


def _identity(activation: str, fmt: str, **request: Any) -> str:
    """What determines a derivation file: the request, its format and the package version
    (tagged into the file, so that a rerun can tell its own output from another file)."""
    from meanfield import __version__

    text = json.dumps({"activation": activation.strip(), "format": fmt, "version": __version__,
                       **{k: str(v) for k, v in request.items()}}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _tagged(text: str, fmt: str, tag: str) -> str:
    """``text`` carrying ``tag``: a LaTeX comment, a JSON key ``identity``, or a last line."""
    if fmt == "latex":
        return f"{text}\n% {tag}"
    if fmt == "json":
        return json.dumps({**json.loads(text), "identity": tag}, indent=2)
    return f"{text}\n{tag}"


def _width() -> int:
    import shutil

    return max(40, shutil.get_terminal_size((100, 24)).columns)


def _unicode() -> bool:
    encoding = getattr(sys.stdout, "encoding", None) or ""
    return encoding.lower().replace("-", "") in ("utf8", "utf16", "utf32")


class _Run:
    """The results of one ``meanfield derive`` and their formats."""

    def __init__(self, act: Any, law: str, sections: tuple[str, ...], steps: bool,
                 values: dict[str, Fraction], d: int | None, t2: Fraction,
                 ratio: Fraction) -> None:
        self.act, self.law, self.sections, self.steps = act, law, sections, steps
        self.values, self.d, self.t2, self.ratio = values, d, t2, ratio
        self.moments: dict[str, Any] = {}
        self.affine: dict[str, Any] = {}
        self.kernels: dict[str, Any] = {}
        self.rows: list | None = None
        self.deriv: Any = None
        self.constants: dict[str, Any] | None = None

    def compute(self, verify: bool) -> None:
        """Compute what the sections need, nothing more."""
        if {"moments", "kernels", "affine"} & set(self.sections):
            from analytic.gaussian import moments as gaussian_moments

            self.moments = gaussian_moments(self.act)
        if "affine" in self.sections:
            self.affine = _affine(self.moments, self.t2, self.ratio)
        if "kernels" in self.sections:
            self.kernels = _kernels(self.act, self.moments)
        if verify:
            self.rows = _verify(self.act, float(self.ratio))
        if "meanfield" in self.sections:
            from analytic import derivation

            self.deriv = derivation.derive(self.act, self.law)
            if self.values and self.deriv.relu:
                self.constants = derivation.constants(self.law, self.point())

    def point(self) -> dict[str, Fraction]:
        """The parameters of the constants: ``--subs`` over the defaults of the theory."""
        from meanfield.config import Config

        base = Config()
        return {k: Fraction(str(getattr(base, k))) for k in ("alpha", "beta", "h", "sa", "sw",
                                                               "d")} | self.values

    def where(self) -> str:
        where = f"d = {self.d}, t2 = 1/d" if self.d is not None else f"t2 = {self.t2}"
        return f"{where}, lr2/lr1 = {self.ratio}"

    def text(self, width: int = 100, unicode: bool = True) -> str:
        parts = [_table(self)]
        if "meanfield" in self.sections:
            from analytic.document import meanfield_section
            from analytic.typeset import section_text

            section = meanfield_section(self.deriv, self.steps, self.values, self.constants,
                                        self.point())
            parts.append(section_text(section, width, unicode))
        return "\n\n".join(parts)

    def json(self) -> str:
        out = _as_json(self)
        if "meanfield" in self.sections:
            out["meanfield"] = _meanfield_json(self)
        return json.dumps(out, indent=2)

    def document(self) -> Any:
        from analytic import document
        from meanfield import io

        command = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
        return document.document(
            self.act, self.law, self.sections, steps=self.steps, values=self.values,
            point=self.point(), where=self.where(),
            closed_forms={"moments": self.moments, "kernels": self.kernels,
                          "affine": self.affine},
            provenance_rows=document.provenance(command, io.package_version(),
                                                io.git_revision()))

    def latex(self) -> str:
        from analytic.typeset import latex_document

        return latex_document(self.document()).rstrip("\n")


def _affine(moments: dict[str, Any], t2: Fraction, ratio: Fraction) -> dict[str, Any]:
    from analytic.kernels import affine_coefficients

    return affine_coefficients(moments, t2, ratio)


def _kernels(act: Any, moments: dict[str, Any]) -> dict[str, Any]:
    from analytic.kernels import kernel_report

    return kernel_report(act, moments)


def _kernel_table(kernels: dict[str, Any]) -> str:
    lines = ["", "Infinite-width NTK, rho = x.x'/d, q = |x|^2/d, q' = |x'|^2/d "
                 f"({kernels['method']}; {kernels['reference']}):"]
    where = "" if kernels.get("domain", "all").startswith("all") else "   (at q = q' = 1 only)"
    for key, label in (("theta1", "Theta1 = rho E[phi'(u) phi'(u')]"),
                       ("theta2", "Theta2 = E[phi(u) phi(u')]     ")):
        lines.append(f"  {label}  {'=' if kernels[key]['exact'] else '~='} "
                     f"{kernels[key]['text']}{where}")
    return "\n".join(lines)


def _verify(act: Any, ratio: float) -> list[dict[str, Any]]:
    from meanfield.linear import verify_affine

    return [row.to_dict() for row in verify_affine(act, lr_ratio=ratio)]


def _as_json(run: _Run) -> dict[str, Any]:
    """The JSON of the moments, affine and kernels sections (the keys of the sections not
    shown are left out)."""
    import sympy

    from meanfield import __version__

    act = run.act
    out: dict[str, Any] = {
        "activation": act.name,
        "expression": str(act.expr),
        "expression_latex": sympy.latex(act.expr),
        "kinks": list(act.kinks),
    }
    if "moments" in run.sections:
        out["moments"] = {name: _entry(v) for name, v in run.moments.items()}
    if "affine" in run.sections:
        out["affine"] = {layer: {term: _entry(v) for term, v in terms.items()}
                         for layer, terms in run.affine.items()}
    out |= {"d": run.d, "t2": float(run.t2), "lr_ratio": float(run.ratio),
            "version": __version__}
    if run.rows is not None:
        out["verify"] = run.rows
    if "kernels" in run.sections:
        out["kernels"] = {k: ({f: v[f] for f in ("exact", "latex", "text")}
                              if isinstance(v, dict) else v) for k, v in run.kernels.items()}
    return out


def _plain(v: Fraction) -> int | float:
    return v.numerator if v.denominator == 1 else float(v)


def _meanfield_json(run: _Run) -> dict[str, Any]:
    """``"meanfield"``: every equation as ``{"latex", "text", "srepr"}``; with ``--steps``
    the steps, with ``--subs`` the substituted equations (plus ``exact``) and the constants
    ``{"value", "exact", "latex"}``."""
    from analytic import derivation as D

    deriv = run.deriv
    out: dict[str, Any] = {
        "activation": deriv.activation, "data": deriv.law, "closed_form": deriv.relu,
        "parameters": list(D.PARAMETERS),
        "equations": {n: deriv.equations[n].to_json() for n in deriv.named},
    }
    if not deriv.relu:
        out["note"] = D.note_text(deriv.note)
    names = list(deriv.named)
    if run.steps:
        out["steps"] = []
        for number, title, fn, step_names in deriv.steps:
            for i, name in enumerate(step_names, 1):
                eq = deriv.equations[name]
                out["steps"].append({"step": f"{number}.{i}", "title": title,
                                     "function": f"analytic.hinge.{fn}", "name": name,
                                     "reason": eq.reason, **eq.to_json()})
                names += [name] if name not in names else []
    if run.values:
        out["subs"] = {k: _plain(v) for k, v in run.values.items()}
        subs = {n: D.substitute(deriv.equations[n], run.values) for n in names}
        out["substituted"] = {n: {**eq.to_json(), "exact": eq.exact} for n, eq in subs.items()}
    if run.constants:
        out["point"] = {k: _plain(v) for k, v in run.point().items()}
        out["constants"] = {k: c.to_json() for k, c in run.constants.items()}
    return out


def _table(run: _Run) -> str:
    """The terminal table of the moments, affine and kernels sections."""
    act = run.act
    kinks = ", ".join(f"{k:g}" for k in act.kinks) or "none"
    lines = [f"activation {act.name}:  phi(x) = {act.expr}   (kinks: {kinks})"]
    if "moments" in run.sections:
        lines += ["", "Gaussian moments, g ~ N(0, 1) (derivatives by Stein's identity):",
                  f"  {'name':<8} {'':<12} {'value':>22}  {'kind':<8} closed form"]
        for name, v in run.moments.items():
            lines.append(f"  {name:<8} {_MEANINGS[name]:<12} {_fmt(v):>22}  "
                         f"{'exact' if v.exact else 'numeric':<8} {_closed(v)}")
    if "affine" in run.sections:
        lines += ["", *_affine_lines(run)]
    if "kernels" in run.sections:
        lines.append(_kernel_table(run.kernels))
    return "\n".join(lines)


def _affine_lines(run: _Run) -> list[str]:
    where = f"d = {run.d}, t2 = 1/d" if run.d is not None else f"t2 = {run.t2}"
    lines = [f"Affine NTK  Theta ~= ones 11^T + data XX^T/d + identity I   "
             f"({where}, lr2/lr1 = {run.ratio}):",
             f"  {'training':<9} {'ones':>22} {'data':>22} {'identity':>22}"]
    for layer, terms in run.affine.items():
        cells = " ".join(f"{_fmt(terms[t]) + ('' if terms[t].exact else '*'):>22}"
                         for t in ("ones", "data", "identity"))
        lines.append(f"  {layer:<9} {cells}")
    if any(not v.exact for terms in run.affine.values() for v in terms.values()):
        lines.append("  (* numeric)")
    if run.rows is not None:
        lines += _verify_lines(run.rows, run.affine)
    return lines


def _verify_lines(rows: list[dict[str, Any]], affine: dict[str, Any]) -> list[str]:
    lines = ["", "Verification: relative spectral-norm errors on n = d^1.25 Gaussian inputs "
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
    return lines
