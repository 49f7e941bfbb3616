"""Figures of ``meanfield linear`` runs (:class:`meanfield.linear_run.LinearResult`, in memory or
read back with :func:`meanfield.files.linear.read_linear`), drawn without pyplot.

- :func:`draw_linear`: (a) training and held-out loss of the network and of the three linear
  models against step (widest width, mean over members); (b) ``disc_lin_test / change_test``
  and ``disc_hu_test / change_test`` against step, one line per width; (c) the final
  ``disc_lin_test``, ``W_distance`` and ``ntk_change`` against width, log-log, with the fitted
  slopes and guides of slope -1/2 and -1; (d) ``kernel_distance`` and ``kernel_velocity``
  against step per width.
- :func:`draw_gp`: the ensemble's mean and variance over members against Lee et al.'s Gaussian
  process prediction, at three record steps (widest width).

Step axes are logarithmic; step 0 is left out of them.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from meanfield.linear_run import LinearResult
from meanfield.plots import save_figure

__all__ = ["draw_gp", "draw_linear", "save_figure"]

_MODELS = (("net", "network", "k"), ("lin", "Lee linearization", "C0"),
           ("inf", "infinite-width NTK", "C2"), ("hu", "Hu linear model", "C3"))


def _ratio(result: LinearResult, name: str) -> np.ndarray:
    """Mean over members of ``name / change_test`` (NaN where the network has not moved)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.mean(result[name] / result["change_test"], axis=0)


def draw_linear(result: LinearResult) -> Figure:
    """The four panels of the module docstring (axes in the order a, b, c, d)."""
    c = result.config
    t = result["t"].astype(float)
    pos = t > 0
    widths = np.asarray(c.widths, dtype=float)
    fig = Figure(figsize=(11, 8.5), layout="constrained")
    (ax_a, ax_b), (ax_c, ax_d) = fig.subplots(2, 2)

    for model, label, color in _MODELS:
        ax_a.plot(t[pos], np.mean(result[f"loss_{model}"][:, -1], axis=0)[pos], "-",
                  color=color, label=f"{label} (train)")
        ax_a.plot(t[pos], np.mean(result[f"test_loss_{model}"][:, -1], axis=0)[pos], "--",
                  color=color, label=f"{label} (test)")
    ax_a.set(xscale="log", yscale="log", xlabel="step t", ylabel="loss (1/2n) sum (f - y)^2",
             title=f"(a) losses, width {c.widths[-1]}")
    ax_a.legend(fontsize=7)

    lin, hu = _ratio(result, "disc_lin_test"), _ratio(result, "disc_hu_test")
    for k, m in enumerate(c.widths):
        color = f"C{k % 10}"
        ax_b.plot(t[pos], lin[k][pos], "-", color=color, label=f"Lee, m={m}")
        ax_b.plot(t[pos], hu[k][pos], ":", color=color, label=f"Hu, m={m}")
    ax_b.axhline(c.tol, color="gray", lw=0.8, ls="--", label=f"tol = {c.tol:g}")
    ax_b.set(xscale="log", yscale="log", xlabel="step t", ylabel="disc_test / change_test",
             title="(b) distance to the linear models (held-out)")
    ax_b.legend(fontsize=7)

    for name, marker in (("disc_lin_test", "o"), ("W_distance", "s"), ("ntk_change", "^")):
        final = result.final_means(name)
        slope = float(result[f"slope_{name}"]) if f"slope_{name}" in result else np.nan
        ax_c.plot(widths, final, marker + "-", label=f"{name} (slope {slope:.2f})")
    if len(widths) > 1:
        ref = result.final_means("disc_lin_test")[0]
        for p, ls in ((-0.5, ":"), (-1.0, "--")):
            ax_c.plot(widths, ref * (widths / widths[0]) ** p, ls, color="gray",
                      label=f"slope {p:g}")
    ax_c.set(xscale="log", yscale="log", xlabel="width m", ylabel=f"at t = {c.steps}",
             title="(c) finite-width scaling")
    ax_c.legend(fontsize=7)

    kd = np.mean(result["kernel_distance"], axis=0)
    kv = np.mean(result["kernel_velocity"], axis=0)
    for k, m in enumerate(c.widths):
        color = f"C{k % 10}"
        ax_d.plot(t[pos], kd[k][pos], "-", color=color, label=f"distance, m={m}")
        ax_d.plot(t[pos], kv[k][pos], ":", color=color, label=f"velocity, m={m}")
    ax_d.set(xscale="log", yscale="log", xlabel="step t", ylabel="kernel distance (per step)",
             title="(d) kernel motion (Fort et al. 2020)")
    ax_d.legend(fontsize=7)
    fig.suptitle(f"meanfield linear: {c.activation}, d={c.d}, n={c.n}, train {c.train}, "
                 f"lr={c.lr:g}, {c.seeds} member(s)")
    return fig


def draw_gp(result: LinearResult) -> Figure:
    """Ensemble mean and variance over members (widest width) against the GP prediction, at
    three record steps (the first after 0, the middle one and the last)."""
    t = result["t"]
    picks = sorted({1 if len(t) > 1 else 0, len(t) // 2, len(t) - 1})
    fig = Figure(figsize=(10, 4.5), layout="constrained")
    ax_m, ax_v = fig.subplots(1, 2)
    for i in picks:
        ax_m.plot(result["gp_mean"][i], result["ens_mean"][-1, i], "o", ms=3,
                  label=f"t = {t[i]}")
        ax_v.plot(result["gp_var"][i], result["ens_var"][-1, i], "o", ms=3, label=f"t = {t[i]}")
    for ax, what in ((ax_m, "mean"), (ax_v, "variance")):
        lo, hi = ax.get_xlim()
        ax.plot([lo, hi], [lo, hi], "-", color="gray", lw=0.8, label="equal")
        ax.set(xlabel=f"GP {what} (infinite width)", ylabel=f"ensemble {what} over members")
        ax.legend(fontsize=7)
    ax_m.set_title("(a) mean of f(x) over initialisations")
    ax_v.set_title("(b) variance of f(x) over initialisations")
    c = result.config
    fig.suptitle(f"Lee et al.'s GP: width {c.widths[-1]}, {c.seeds} members")
    return fig
