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


# ----------------------------------------------------------------------------- studies


def study_figure(study_path: str | Path, out: str | Path) -> Path:
    """The figure of a study (``meanfield sweep --study NAME``) drawn from its ``study.h5``
    only (:func:`draw_study`), written to ``out`` (png or pdf), tagged with the study's
    inputs hash."""
    with open_meanfield(study_path, "study") as f:
        identity = str(text_attr(f, "inputs_hash", ""))
    return save_figure(draw_study(study_path), out, identity)


def draw_study(study_path: str | Path) -> Figure:
    """The figure of a study file: ``finite-m``: E(M) for both theories, log-log, with the
    fitted lines and the reference slopes -1/2 and -1; ``finite-n``: (a) de against R for
    every N with the binned mean, the fitted parabola -k R^2 and the expected band
    0.03 <= k <= 0.12, (b) training error against t per N, simulation and theory;
    ``alpha``: (a) gamma* against alpha (log-log; every run, mean and spread over seeds, the
    theory, both asymptotes, kappa and alpha_M marked), (b) W_distance* against alpha with the
    theory, (c) sign_flip_fraction* against alpha (measured only)."""
    from meanfield.files.study import read_study

    study = read_study(study_path)
    draw = {"finite-m": _draw_finite_m, "finite-n": _draw_finite_n, "alpha": _draw_alpha}
    if study.name not in draw:
        raise ValueError(f"{str(study_path)!r}: no figure for study {study.name!r}")
    fig = draw[study.name](study)
    mode = "quick" if study.quick else "full"
    fig.suptitle(f"study {study.name} ({mode}): {study.n_points_used} of "
                 f"{study.n_points_total} points, verdict {study.verdict}", fontsize=11)
    return fig


def _fit(study, name: str) -> float:
    value = study.fits.get(name, float("nan"))
    return float("nan") if value is None else float(value)


def _draw_finite_m(study) -> Figure:
    fig = Figure(figsize=(6.5, 5), constrained_layout=True)
    ax = fig.subplots()
    Ms = study["M"].astype(float)
    run_M = study["run_M"].astype(float)
    for key, label, color, ref in (("population", "population theory", "C0", -0.5),
                                   ("sample", "sample-moment theory", "C3", -1.0)):
        E = study[f"E_{key}"]
        delta = np.abs(study[f"delta_{key}"])
        ok = np.isfinite(delta) & (delta > 0)
        ax.plot(run_M[ok], delta[ok], ".", color=color, alpha=0.3, ms=4)
        good = np.isfinite(E) & (E > 0)
        ax.plot(Ms[good], E[good], "o", color=color, label=f"E(M), {label}")
        b, a = _fit(study, f"b_{key}"), _fit(study, f"a_{key}")
        if np.isfinite(b) and np.isfinite(a) and good.any():
            grid = np.geomspace(Ms[good].min(), Ms[good].max(), 50)
            se = _fit(study, f"se_{key}")
            ax.plot(grid, np.exp(a) * grid**b, "-", color=color, lw=1,
                    label=f"fit: b = {b:.3f} +/- {se:.3f}")
            centre = float(np.exp(np.mean(np.log(grid))))
            anchor = float(np.exp(a)) * centre**b
            ax.plot(grid, anchor * (grid / centre) ** ref, ":", color=color, lw=1.2,
                    label=f"reference slope {ref:g}")
    ax.set(xscale="log", yscale="log", xlabel="width M",
           ylabel="E(M) = rms over seeds of delta (dots: |delta| per run)",
           title="finite-width scaling of the gamma error")
    if not (_positive(study["E_population"]) or _positive(study["E_sample"])):
        _no_data(ax, (Ms.min() / 1.5, Ms.max() * 1.5) if Ms.size else (10, 1e4), (1e-4, 1))
    ax.legend(fontsize=8)
    return fig


def _no_data(ax, xlim: tuple[float, float], ylim: tuple[float, float]) -> None:
    """Limits for a log-log panel with nothing positive to draw, and a note saying so."""
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.text(0.5, 0.5, "no measured value yet", transform=ax.transAxes, ha="center",
            va="center", color="gray")


def _positive(values) -> bool:
    v = np.asarray(values, dtype=float)
    return bool(np.any(np.isfinite(v) & (v > 0)))


def _colours(values) -> dict:
    return {v: f"C{k % 10}" for k, v in enumerate(values)}


def _draw_finite_n(study) -> Figure:
    fig = Figure(figsize=(11, 4.8), constrained_layout=True)
    ax_r, ax_t = fig.subplots(1, 2)
    Ns = study["N"]
    colour = _colours(Ns.tolist())
    R, de, sN = study["R"], study["de"], study["sample_N"]
    for N in Ns.tolist():
        mine = sN == N
        ax_r.plot(R[mine], de[mine], ".", ms=3, alpha=0.6, color=colour[N], label=f"N = {N}")
    top = max(2.0, min(float(np.nanmax(R)) if R.size else 2.0, 3.0))
    grid = np.linspace(0, top, 100)
    ax_r.fill_between(grid, -0.03 * grid**2, -0.12 * grid**2, color="gray", alpha=0.2,
                      label="expected: de = -k R^2, 0.03 <= k <= 0.12")
    k = _fit(study, "k")
    if np.isfinite(k):
        ax_r.plot(grid, -k * grid**2, "-", color="k", lw=1.2, label=f"fit: k = {k:.3f}")
    centres, means = study["R_bin"], study["bin_mean_de"]
    ok = np.isfinite(means)
    ax_r.plot(centres[ok], means[ok], "s", color="k", mfc="none", ms=5, label="binned mean")
    ax_r.axhline(-0.1, color="gray", ls="--", lw=0.8)
    R10 = _fit(study, "R_10")
    if np.isfinite(R10):
        ax_r.axvline(R10, color="C3", ls=":", lw=1, label=f"R_10 = {R10:.2f}")
    ax_r.axvspan(1.0, 1.5, color="C3", alpha=0.07)
    ax_r.set(xlim=(0, top), ylim=(-0.5, 0.15), xlabel="R (theory's validity indicator)",
             ylabel="de = err_sim / err_th - 1", title="(a) breakdown of the infinite-N theory")
    ax_r.legend(fontsize=7)

    t, sim, th, run_N = (study["t"], study["train_error_sim"], study["train_error_theory"],
                         study["run_N"])
    seen = set()
    for i, N in enumerate(run_N.tolist()):
        pos = np.isfinite(t[i]) & (t[i] > 0)
        ax_t.plot(t[i][pos], sim[i][pos], "-", color=colour.get(N, "k"), lw=1, alpha=0.8,
                  label=None if N in seen else f"N = {N}")
        ax_t.plot(t[i][pos], th[i][pos], "--", color=colour.get(N, "k"), lw=0.8)
        seen.add(N)
    ax_t.set(xscale="log", yscale="log", xlabel="t", ylabel="training error",
             title="(b) simulation (-) and theory on the run's schedule (--)")
    if not _positive(sim[:, 1:]):
        _no_data(ax_t, (1, 1e3), (1e-3, 1.5))
    if ax_t.get_legend_handles_labels()[0]:
        ax_t.legend(fontsize=7)
    return fig


def _draw_alpha(study) -> Figure:
    fig = Figure(figsize=(14, 4.6), constrained_layout=True)
    ax_g, ax_w, ax_s = fig.subplots(1, 3)
    alphas, run_alpha, grid = study["alpha"], study["run_alpha"], study["alpha_grid"]
    kap, aM = _fit(study, "kappa"), _fit(study, "alpha_M")
    g = study["gamma_star_mean"]
    ax_g.plot(run_alpha, study["gamma_star"], ".", color="C0", alpha=0.4, ms=4,
              label="every run")
    ok = np.isfinite(g)
    spread = np.vstack([g - study["gamma_star_min"], study["gamma_star_max"] - g])
    ax_g.errorbar(alphas[ok], g[ok], yerr=spread[:, ok], fmt="o", color="C0", ms=5,
                  capsize=3, label="mean (bars: range over seeds)")
    ax_g.plot(grid, study["gamma_theory_curve"], "-", color="k", lw=1.2,
              label="theory (1/2) asinh(kappa/alpha)")
    ax_g.plot(grid, study["gamma_lazy_curve"], "--", color="C2", lw=1,
              label="lazy kappa/(2 alpha)")
    rich = study["gamma_rich_curve"]
    pos = rich > 0
    ax_g.plot(grid[pos], rich[pos], "-.", color="C1", lw=1,
              label="rich (1/2) ln(2 kappa/alpha)")
    for ax in (ax_g, ax_w, ax_s):
        if np.isfinite(kap):
            ax.axvline(kap, color="gray", ls=":", lw=1)
        if np.isfinite(aM):
            ax.axvline(aM, color="C3", ls="--", lw=0.8)
    if np.isfinite(kap):
        ax_g.text(kap, 0.02, f" kappa = {kap:.3g}", transform=ax_g.get_xaxis_transform(),
                  fontsize=7)
    if np.isfinite(aM):
        ax_g.text(aM, 0.1, f" alpha_M = {aM:.3g}", transform=ax_g.get_xaxis_transform(),
                  fontsize=7, color="C3")
    finite = study["gamma_theory_curve"][np.isfinite(study["gamma_theory_curve"])]
    if finite.size:
        ax_g.set_ylim(finite.min() / 2, finite.max() * 2)
    ax_g.set(xscale="log", yscale="log", xlabel="alpha (beta = 1/alpha^2)",
             ylabel="gamma* (training error 0.5)", title="(a) gamma*: rich to lazy")
    ax_g.legend(fontsize=7)
    for ax, key, label in ((ax_w, "W_distance", "W_distance* = |W - W0|_F / |W0|_F"),
                           (ax_s, "sign_flip_fraction", "sign_flip_fraction*")):
        mean, std = study[f"{key}_star_mean"], study[f"{key}_star_std"]
        ok = np.isfinite(mean)
        ax.plot(run_alpha, study[f"{key}_star"], ".", color="C0", alpha=0.4, ms=4)
        ax.errorbar(alphas[ok], mean[ok], yerr=np.nan_to_num(std[ok]), fmt="o", color="C0",
                    ms=5, capsize=3, label="mean +/- std over seeds")
        if f"{key}_theory_curve" in study:
            ax.plot(grid, study[f"{key}_theory_curve"], "-", color="k", lw=1.2,
                    label="theory")
        ax.set(xscale="log", yscale="log", xlabel="alpha", ylabel=label,
               title=f"({'b' if key == 'W_distance' else 'c'}) {label.split(' =')[0]}")
        if not _positive(mean) and f"{key}_theory_curve" not in study:
            _no_data(ax, (grid.min(), grid.max()) if grid.size else (0.01, 100), (1e-4, 1))
        ax.legend(fontsize=7)
    return fig
