"""Typesetting of a derivation :class:`Document`: readable text for the terminal (sympy's
pretty printer, wrapped to a width), a complete LaTeX document, and a figure drawn with
matplotlib's mathtext (no TeX installation needed).

A :class:`Document` is a title, its parameters and provenance (label, value), and
:class:`Section` objects holding :class:`Heading`, :class:`Note` and :class:`Row` items; a row
is one :class:`analytic.derivation.Equation`, with a label, the reason it holds and, where
parameters were substituted, the substituted equation. Every LaTeX equation is also valid
mathtext after :func:`mathtext` (``\\tfrac`` becomes ``\\frac``). The figure is drawn on a
``matplotlib.figure.Figure`` with the Agg or PDF canvas, never through ``pyplot``: the user's
backend is left alone. Files are written atomically (:func:`write_atomic`).
"""

from __future__ import annotations

import contextlib
import os
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sympy as sp

from analytic.derivation import Equation, Math, Text


@dataclass(frozen=True)
class Heading:
    text: str


@dataclass(frozen=True)
class Note:
    """A sentence: :class:`Text` pieces (their ``plain`` text) and :class:`Math` pieces."""

    pieces: tuple[Text | Math, ...]

    def plain(self) -> str:
        return "".join(p.plain if isinstance(p, Text) else sp.sstr(p.expr) for p in self.pieces)


@dataclass(frozen=True)
class Row:
    equation: Equation
    label: str = ""
    reason: str = ""
    substituted: Equation | None = None
    at: str = ""  # the substitution, e.g. "d = 100"


@dataclass(frozen=True)
class Section:
    title: str
    items: tuple[Heading | Note | Row, ...]


@dataclass(frozen=True)
class Document:
    title: str
    parameters: tuple[tuple[str, str], ...]
    provenance: tuple[tuple[str, str], ...]
    sections: tuple[Section, ...]


def note(text: str) -> Note:
    return Note((Text(text, text),))


# ----------------------------------------------------------------------------- terminal


def pretty(eq: Equation, width: int, unicode: bool = True) -> str:
    """``eq`` drawn by sympy's pretty printer (unicode or ASCII), wrapped to ``width``."""
    from sympy.printing.pretty.pretty import PrettyPrinter
    from sympy.printing.pretty.pretty_symbology import pretty_use_unicode
    from sympy.printing.pretty.stringpict import prettyForm

    old = pretty_use_unicode(unicode)
    try:
        printer = PrettyPrinter({"use_unicode": unicode})
        form = None
        for p in eq.pieces:
            if isinstance(p, Text):
                part = prettyForm(p.uni if unicode else p.plain)
            else:
                part = printer._print(p.expr)
                if p.mean:
                    part = prettyForm(*part.parens("<", ">"))
            form = part if form is None else prettyForm(*form.right(part))
        return form.render(wrap_line=True, num_columns=max(width, 20), use_unicode=unicode)
    finally:
        pretty_use_unicode(old)


def section_text(section: Section, width: int, unicode: bool = True) -> str:
    """A section as terminal text: headings, wrapped notes, labelled pretty equations."""
    lines = [section.title]
    for item in section.items:
        if isinstance(item, Heading):
            lines += ["", f"{item.text}:"]
        elif isinstance(item, Note):
            lines += textwrap.wrap(item.plain(), width, initial_indent="  ",
                                   subsequent_indent="  ")
        else:
            lines += _row_text(item, width, unicode)
    return "\n".join(lines)


def _row_text(row: Row, width: int, unicode: bool) -> list[str]:
    lines = [f"  {row.label}"] if row.label else []
    if row.reason:
        lines += textwrap.wrap(f"why: {row.reason}", width, initial_indent="    ",
                               subsequent_indent="         ")
    lines += _indent(pretty(row.equation, width - 6, unicode), 6)
    if row.substituted is not None:
        kind = "exact" if row.substituted.exact else "numeric, 15 digits"
        lines.append(f"    at {row.at} ({kind}):")
        lines += _indent(pretty(row.substituted, width - 6, unicode), 6)
    return lines


def _indent(block: str, n: int) -> list[str]:
    return [(" " * n + line).rstrip() for line in block.splitlines()]


# ----------------------------------------------------------------------------- LaTeX

_PREAMBLE = r"""\documentclass[10pt,a4paper]{article}
\usepackage[T1]{fontenc}
\usepackage{amsmath,amssymb}
\usepackage{graphicx}
\usepackage[margin=2cm]{geometry}
\allowdisplaybreaks
\setlength{\parindent}{0pt}
% a display wider than the line (less room for its number) is scaled down to fit
\newcommand{\fitdisplay}[1]{\resizebox{%
  \ifdim\width>\dimexpr\linewidth-4em\relax\dimexpr\linewidth-4em\relax\else\width\fi}{!}{%
  $\displaystyle #1$}}
"""
_TEX_SPECIAL = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&",
                "#": r"\#", "^": r"\^{}", "_": r"\_", "%": r"\%", "~": r"\textasciitilde{}",
                "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}"}


def escape(text: str) -> str:
    """Text for LaTeX's text mode: special characters escaped, other non-ASCII as ``?``, a
    line break allowed after ``. , / _ =`` (long names and command lines)."""
    out = []
    for ch in text:
        out.append(_TEX_SPECIAL.get(ch, ch if 32 <= ord(ch) < 127 else "?"))
        if ch in ".,/_=":
            out.append(r"\allowbreak{}")
    return "".join(out)


def latex_document(doc: Document) -> str:
    """The complete LaTeX document (compiles with pdflatex and the standard amsmath,
    graphicx and geometry packages)."""
    out = [_PREAMBLE, r"\begin{document}", rf"\section*{{{escape(doc.title)}}}"]
    for title, rows in (("Parameters", doc.parameters), ("Provenance", doc.provenance)):
        out += [rf"\paragraph{{{title}.}}", r"\begin{itemize}"]
        out += [rf"\item {escape(k)}: \texttt{{{escape(v)}}}" for k, v in rows]
        out.append(r"\end{itemize}")
    for section in doc.sections:
        out.append(rf"\section{{{escape(section.title)}}}")
        for item in section.items:
            out += _latex_item(item)
    out.append(r"\end{document}")
    return "\n".join(out) + "\n"


def _latex_item(item: Heading | Note | Row) -> list[str]:
    if isinstance(item, Heading):
        return [rf"\subsection*{{{escape(item.text)}}}"]
    if isinstance(item, Note):
        text = "".join(escape(p.plain) if isinstance(p, Text) else f"${sp.latex(p.expr)}$"
                       for p in item.pieces)
        return [r"\begingroup\small", text, r"\par\endgroup", ""]
    out = []
    if item.label or item.reason:
        head = rf"\textbf{{{escape(item.label)}}}" if item.label else ""
        why = rf"\quad{{\small {escape(item.reason)}}}" if item.reason else ""
        out.append(rf"\noindent {head}{why}")
    out += [r"\begin{equation}", _display(item.equation), r"\end{equation}"]
    if item.substituted is not None:
        kind = "exact" if item.substituted.exact else "numeric, 15 digits"
        out += [rf"\noindent{{\small at {escape(item.at)} ({kind}):}}",
                r"\begin{equation*}", _display(item.substituted), r"\end{equation*}"]
    return out


def _display(eq: Equation) -> str:
    parts = eq.latex().split(r",\quad ")
    body = parts[0] if len(parts) == 1 else (
        r"\begin{gathered}" + r",\\ ".join(parts) + r"\end{gathered}")
    return rf"\fitdisplay{{{body}}}"


# ----------------------------------------------------------------------------- figure


def mathtext(latex: str) -> str:
    """LaTeX math made valid for matplotlib's mathtext."""
    return re.sub(r"\\tfrac\s*12", r"\\frac{1}{2}", latex).replace(r"\tfrac", r"\frac")


def figure_lines(doc: Document) -> list[tuple[str, str]]:
    """(style, text) lines of the figure: ``title``, ``section``, ``heading``, ``text``
    (plain, wrapped) and ``math`` (one ``$...$`` line per part of an equation)."""
    lines = [("title", doc.title)]
    lines += [("text", f"{k}: {v}") for k, v in doc.parameters]
    for section in doc.sections:
        lines.append(("section", section.title))
        for item in section.items:
            if isinstance(item, Heading):
                lines.append(("heading", item.text))
            elif isinstance(item, Note):
                lines += [("text", s) for s in textwrap.wrap(item.plain(), 150)]
            else:
                lines += _figure_row(item)
    return lines


def _figure_row(row: Row) -> list[tuple[str, str]]:
    out = []
    head = f"{row.label}: {row.reason}" if row.reason else row.label
    out += [("text", s) for s in textwrap.wrap(head, 150)] if head else []
    out += [("math", f"${mathtext(p)}$") for p in row.equation.latex().split(r",\quad ")]
    if row.substituted is not None:
        kind = "exact" if row.substituted.exact else "numeric, 15 digits"
        out.append(("text", f"at {row.at} ({kind}):"))
        out += [("math", f"${mathtext(p)}$")
                for p in row.substituted.latex().split(r",\quad ")]
    return out


_STYLE = {"title": (15, "bold", 14), "section": (13, "bold", 12), "heading": (11, "bold", 8),
          "text": (9, "normal", 4), "math": (12, "normal", 10)}


def draw_figure(doc: Document) -> object:
    """The document drawn on a ``matplotlib.figure.Figure`` (Agg canvas), sized to fit."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(dpi=100)
    renderer = FigureCanvasAgg(fig).get_renderer()
    margin, texts = 30.0, []
    for style, line in figure_lines(doc):
        size, weight, gap = _STYLE[style]
        shown = line if style == "math" else line.replace("$", r"\$")
        t = fig.text(0, 0, shown, fontsize=size, fontweight=weight, ha="left", va="top",
                     usetex=False)
        box = t.get_window_extent(renderer)
        texts.append((t, box.width, box.height, gap))
    width = max(w for _, w, _, _ in texts) + 2 * margin
    height = sum(h + g for _, _, h, g in texts) + 2 * margin
    fig.set_size_inches(width / fig.dpi, height / fig.dpi)
    y = height - margin
    for t, _, h, gap in texts:
        t.set_position((margin / width, y / height))
        y -= h + gap
    return fig


def write_figure(doc: Document, path: Path, keywords: str = "") -> None:
    """Draw the document and save it as ``path`` (PNG or PDF by its suffix), atomically, with
    ``keywords`` in its metadata."""
    fig = draw_figure(doc)
    fmt = path.suffix.lower().lstrip(".")
    write_atomic(path, lambda tmp: fig.savefig(tmp, format=fmt, facecolor="white",
                                               metadata={"Keywords": keywords}))


# ----------------------------------------------------------------------------- files


def write_atomic(path: Path, write: Callable[[str], object]) -> None:
    """``write(tmp)`` to ``path.tmp`` beside ``path`` (a leftover of a killed run is simply
    replaced), then ``os.replace`` it onto ``path``: a reader sees the old file or the whole new
    one, never a part, and a failed write leaves no ``.tmp`` behind."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(str(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
