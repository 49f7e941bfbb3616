"""Figures from comparison files (``meanfield compare -o compare.h5``).

Figures are :class:`matplotlib.figure.Figure` objects made without pyplot, so drawing them
neither needs nor changes the user's matplotlib backend.

- :func:`fig1`: the four panels of Pellegrini & Biroli's Fig. 1: (a) ten ``a_i(t)`` and
  (b) ten ``w_par_i(t)``, simulation as points and the closed-form theory
  ``a_i(0) cosh gamma + w_par_i(0) sinh gamma`` (resp. ``w_par_i(0) cosh gamma + a_i(0) sinh
  gamma``) as lines; (c) ``gamma(t)`` with its early linear asymptote ``gamma ~ r_0 t`` and its
  late asymptote ``gamma ~ log(t)/4 + c``; (d) ``|x_par|`` of the examples against their first
  satisfaction time ``t_sat``, with the theory's edge ``X(gamma(t_sat)) = h / S`` and the
  finite-``M`` band ``(h +- k sigma_f) / S``.
- :func:`error_figure`: training and test unsatisfied fractions against time, simulation and
  theory.

Time axes are logarithmic (mean-field time units); ``t = 0`` is left out of them.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure

from meanfield.files.comparison import read_comparison
from meanfield.files.outputs import FIGURE_TAG
from meanfield.io import open_meanfield, text_attr

N_NODES = 10  # nodes drawn in panels (a) and (b)
MAX_POINTS = 3000  # examples drawn in panel (d)


def _node_panel(ax, t, sim, th, name: str) -> None:
    pos = t > 0
    colors = mpl.rcParams["axes.prop_cycle"].by_key()["color"]
    for i in range(min(N_NODES, sim.shape[1])):
        c = colors[i % len(colors)]
        ax.plot(t[pos], th[pos, i], "-", color=c, lw=1)
        ax.plot(t[pos], sim[pos, i], "o", color=c, ms=2.5, mfc="none")
    ax.set_xscale("log")
    ax.set_xlabel("t")
    ax.set_ylabel(name)


def _window_end(ax, d: dict) -> None:
    """A dotted vertical line where the comparison window ends (the theory's limit), if it
    ends before the last record time."""
    inside = d["t"][d["window"] == 1]
    if inside.size and inside.max() < d["t"].max():
        ax.axvline(inside.max(), ls=":", color="gray", lw=1, label="end of comparison window")


def fig1(compare_path: str | Path, out: str | Path) -> Path:
    """The four-panel Fig. 1 from a comparison file, written to ``out`` (png or pdf)."""
    return save_figure(draw_fig1(compare_path), out, _identity(compare_path))


def error_figure(compare_path: str | Path, out: str | Path) -> Path:
    """Training and test unsatisfied fractions and the loss against time, simulation and
    theory, written to ``out``."""
    return save_figure(draw_errors(compare_path), out, _identity(compare_path))


def _identity(compare_path: str | Path) -> str:
    with open_meanfield(compare_path, "comparison") as f:
        return str(text_attr(f, "inputs_hash", ""))


def save_figure(fig: Figure, out: str | Path, identity: str) -> Path:
    """Write ``fig`` atomically (``out.tmp``, then rename), tagged with ``identity``."""
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    try:
        fig.savefig(tmp, dpi=120, format=out.suffix[1:].lower(),
                    metadata={"Keywords": FIGURE_TAG + identity})
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def draw_fig1(compare_path: str | Path) -> Figure:
    """The figure of :func:`fig1` (axes in the order a, b, c, d)."""
    d = read_comparison(compare_path)
    attrs = d["attrs"]
    t = d["t"]
    pos = t > 0
    fig = Figure(figsize=(10, 8), constrained_layout=True)
    (ax_a, ax_w), (ax_g, ax_x) = fig.subplots(2, 2)

    _node_panel(ax_a, t, d["a_simulation"], d["a_theory"], r"$a_i(t)$")
    ax_a.set_title("(a) second-layer weights: simulation (o), theory (—)", fontsize=10)
    _node_panel(ax_w, t, d["w_par_simulation"], d["w_par_theory"], r"$w_{\parallel,i}(t)$")
    ax_w.set_title("(b) first-layer weights along $w^*$", fontsize=10)

    ref = "gamma_schedule" if "gamma_schedule" in d else "gamma_theory"
    ax_g.plot(t[pos], d["gamma_simulation"][pos], "o", ms=3, mfc="none", label="simulation")
    ax_g.plot(t[pos], d["gamma_theory"][pos], "-", color="k", lw=1.2, label="theory (flow)")
    if ref == "gamma_schedule":
        ax_g.plot(t[pos], d[ref][pos], "--", color="C3", lw=1,
                  label="theory on the run's schedule")
    rate0, c = float(attrs["gamma_rate0"]), float(attrs["asymptote_c"])
    top = 1.3 * np.nanmax(d["gamma_theory"][pos])
    early = rate0 * t[pos]
    ax_g.plot(t[pos][early < top], early[early < top], ":", color="C2",
              label=rf"early: ${rate0:.3g}\,t$")
    late = np.log(t[pos]) / 4 + c
    ax_g.plot(t[pos][late > 0], late[late > 0], "-.", color="C1",
              label=rf"late: $\log(t)/4 {c:+.3f}$")
    _window_end(ax_g, d)
    ax_g.set_xscale("log")
    ax_g.set_ylim(0, top)
    ax_g.set_xlabel("t")
    ax_g.set_ylabel(r"$\gamma(t)$")
    ax_g.set_title(r"(c) $\gamma(t)$ and its asymptotes", fontsize=10)
    ax_g.legend(fontsize=8)

    ts, xp = d["t_sat"], np.abs(d["x_par"])
    keep = ts > 0
    ts, xp = ts[keep], xp[keep]
    if ts.size > MAX_POINTS:  # a deterministic thinning keeps the figure light
        idx = np.linspace(0, ts.size - 1, MAX_POINTS).astype(int)
        ts, xp = ts[idx], xp[idx]
    ax_x.plot(ts, xp, ".", ms=2, alpha=0.4, color="C0", label="examples")
    band = np.isfinite(d["band_hi"]) & pos
    ax_x.fill_between(t[band], d["band_lo"][band], d["band_hi"][band], color="C1", alpha=0.2,
                      label=r"finite-M band $\pm 3\sigma_f$")
    if "f_spread_edge" in d:  # (h +- sigma)/S = X (1 +- sigma/h)
        rel = d["f_spread_edge"] / float(attrs["h"])
        one = band & np.isfinite(rel) & np.isfinite(d["X_theory"])
        ax_x.fill_between(t[one], d["X_theory"][one] * np.maximum(1 - rel[one], 0),
                          d["X_theory"][one] * (1 + rel[one]), color="C1", alpha=0.35,
                          label=r"$\pm 1\sigma_f$")
    finite = np.isfinite(d["X_theory"]) & pos
    ax_x.plot(t[finite], d["X_theory"][finite], "-", color="k", label=r"$X(\gamma(t))=h/S$")
    if d["bin_median"].size:
        ax_x.plot(d["bin_t_sat"], d["bin_median"], "s", color="C3", ms=4,
                  label="median per bin")
    ax_x.set_xscale("log")
    ax_x.set_yscale("log")
    if ts.size:
        ax_x.set_xlim(ts.min() / 1.5, t.max() * 1.2)
        ax_x.set_ylim(max(xp.min() / 2, 1e-3), xp.max() * 2)
    ax_x.set_xlabel(r"$t_{sat}$")
    ax_x.set_ylabel(r"$|x_\parallel|$")
    ax_x.set_title(r"(d) $|x_\parallel|$ at first satisfaction", fontsize=10)
    ax_x.legend(fontsize=8)

    fig.suptitle(f"meanfield compare: verdict {attrs['verdict']}", fontsize=11)
    return fig


def draw_errors(compare_path: str | Path) -> Figure:
    """The figure of :func:`error_figure` (axes: errors, loss)."""
    d = read_comparison(compare_path)
    t = d["t"]
    pos = t > 0
    fig = Figure(figsize=(10, 4), constrained_layout=True)
    ax_e, ax_l = fig.subplots(1, 2)
    ax_e.plot(t[pos], d["train_error_simulation"][pos], "o", ms=3, mfc="none",
              label="training, simulation")
    if "test_error_simulation" in d:
        ax_e.plot(t[pos], d["test_error_simulation"][pos], "x", ms=3, label="test, simulation")
    ax_e.plot(t[pos], d["train_error_theory"][pos], "-", color="k", label="theory (flow)")
    if "train_error_schedule" in d:
        ax_e.plot(t[pos], d["train_error_schedule"][pos], "--", color="C3",
                  label="theory on the run's schedule")
    ax_l.plot(t[pos], d["loss_simulation"][pos], "o", ms=3, mfc="none", label="simulation")
    ax_l.plot(t[pos], d["loss_theory"][pos], "-", color="k", label="theory (flow)")
    for ax, name in ((ax_e, "unsatisfied fraction"), (ax_l, "loss")):
        _window_end(ax, d)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("t")
        ax.set_ylabel(name)
        ax.legend(fontsize=8)
    return fig
