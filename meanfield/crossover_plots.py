"""The figure of a ``meanfield crossover`` run (a
:class:`~meanfield.crossover_run.CrossoverResult`, in memory or read back with
:func:`meanfield.files.crossover.read_crossover`), drawn without pyplot.

:func:`draw_crossover`: (a) training error against lazy time ``tau`` (log-log), one colour per
alpha: network (dots), its linearization (crosses), the mean-field theory (line) and its lazy
limit (dashed), with guides of slope -1/3 (lazy) and -1/2 (rich); (b) ``gamma`` at the error
level against alpha, simulated and ``gamma_eps(alpha) = (1/2) asinh(alpha_c / (alpha X_eps /
h))`` (the theory), ``alpha_c`` marked; (c) the tangent kernel's change at the error level,
simulated and the node-wise theory; (d) the test misclassification at the error level,
network and linearization.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from meanfield.crossover_run import CrossoverResult


def draw_crossover(result: CrossoverResult) -> Figure:
    """The four panels of the module docstring (axes in the order a, b, c, d)."""
    from meanfield import crossover_theory as ct

    s, at, tau = result.series, result.at_alpha, result.t
    level = result.settings.error_level
    pos = tau > 0
    fig = Figure(figsize=(11, 8.5), layout="constrained")
    (ax_a, ax_b), (ax_c, ax_d) = fig.subplots(2, 2)

    for k, alpha in enumerate(result.alpha):
        color = f"C{k % 10}"
        ax_a.plot(tau[pos], s["train_error_theory"][k][pos], "-", color=color, lw=1,
                  label=f"alpha = {alpha:g}")
        ax_a.plot(tau[pos], s["train_error_net"][k][pos], "o", color=color, ms=3)
        if "train_error_lin" in s:
            ax_a.plot(tau[pos], s["train_error_lin"][k][pos], "x", color=color, ms=4)
    ax_a.plot(tau[pos], s["train_error_lazy"][0][pos], "--", color="k", lw=1,
              label="lazy limit")
    late = tau[pos][tau[pos] >= tau[pos][-1] / 10]
    if len(late):
        e_lazy = s["train_error_lazy"][0][pos][-1]
        for slope, ls in ((-1 / 3, ":"), (-1 / 2, "-.")):
            ax_a.plot(late, e_lazy * (late / late[-1]) ** slope, ls, color="gray",
                      label=f"slope {slope:.2g}")
    ax_a.axhline(level, color="gray", lw=0.6)
    ax_a.set(xscale="log", yscale="log", xlabel="lazy time tau", ylabel="training error",
             title="(a) net (o), linearization (x), theory (-), lazy (--)")
    ax_a.legend(fontsize=7)

    alphas = result.alpha
    grid = np.geomspace(alphas[0] / 2, alphas[-1] * 2, 200)
    ax_b.plot(grid, ct.gamma_at_error(result.config, level, alpha=grid), "-", color="k",
              lw=1, label="theory gamma_eps(alpha)")
    ax_b.plot(alphas, at["gamma_at_error_net"], "o", label="network")
    ax_b.axvline(result.alpha_c, color="gray", ls="--", lw=0.8,
                 label=f"alpha_c = {result.alpha_c:.3g}")
    ax_b.set(xscale="log", yscale="log", xlabel="alpha", ylabel=f"gamma at error {level:g}",
             title="(b) gamma at the error level: rich to lazy")
    ax_b.legend(fontsize=7)

    ax_c.plot(alphas, at["kernel_change_at_error_theory"], "-", color="k", lw=1,
              label="node-wise theory")
    ax_c.plot(alphas, at["kernel_change_at_error_net"], "o", label="network")
    ax_c.axvline(result.alpha_c, color="gray", ls="--", lw=0.8)
    ax_c.set(xscale="log", yscale="log", xlabel="alpha",
             ylabel="|K - K_0|_F / |K_0|_F at the error level",
             title="(c) tangent-kernel change")
    ax_c.legend(fontsize=7)

    ax_d.plot(alphas, at["test_misclassification_at_error_net"], "o-", label="network")
    if "test_misclassification_at_error_lin" in at:
        ax_d.plot(alphas, at["test_misclassification_at_error_lin"], "x--",
                  label="linearization")
    ax_d.axvline(result.alpha_c, color="gray", ls="--", lw=0.8)
    ax_d.set(xscale="log", xlabel="alpha", ylabel="test misclassification",
             title=f"(d) at training error {level:g}")
    ax_d.legend(fontsize=7)
    c = result.config
    fig.suptitle(f"meanfield crossover: M={c.M}, N={c.N}, d={c.d}, h={c.h:g}, "
                 f"sa={c.sa:g}, sw={c.sw:g}")
    return fig
