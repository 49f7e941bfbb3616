"""The ``meanfield linear`` targets of ``meanfield reproduce``: their settings and criteria.

Three checks of the linear regimes of a two-layer network (conventions of
:mod:`meanfield.linear_config`), each a set of :class:`Criterion` evaluated from
:class:`~meanfield.linear_run.LinearResult` arrays; the verdict is ``agree`` iff every criterion
holds (:func:`verdict`). The quick setting of each runs in well under two minutes on two cores.

``lee-width`` (Lee et al. 2019, arXiv:1902.06720): ``erf``, ``d = 32``, ``n = n_test = 128``,
teacher targets, widths ``256, 512, ..., 16384`` (quick: ``256, 1024, 4096``), ``lr = 0.5``,
800 steps (quick: 300), 4 members (quick: 2). The network approaches its linearization as the
width grows:

- ``slope_disc_lin_test <= -0.45``, ``-0.8 <= slope_W_distance <= -0.35``,
  ``slope_ntk_change <= -0.45`` (the run's log-log slopes against width of the mean over
  members at ``t = steps``);
- ``widest disc_lin_test/change_test <= 0.01`` (quick: ``0.02``): at the widest width and
  ``t = steps``, the *ratio of the means* over members, ``mean(disc_lin_test) /
  mean(change_test)`` (as ``meanfield linear`` reports it).

``lee-gp`` (Lee et al. 2019): ``erf``, ``d = 8``, ``n = 32``, ``n_test = 16``, width 2048
(quick: 1024), ``S = 128`` members (quick: 32), ``lr = 0.5``, 200 steps. The ensemble of
trained networks follows the Gaussian-process prediction at every record step ``t = 0``
included, at the widest width:

- ``ens_mean - gp_mean``: the largest, over records and test points, of
  ``|ens_mean - gp_mean| / (5 sqrt(gp_var/S) + 0.02)``, at most 1;
- ``ens_var/gp_var``: the largest, over records, of ``|r_t - 1|`` with ``r_t`` the mean over test
  points of ``(ens_var + eps) / (gp_var + eps)``, at most ``2 sqrt(2/(S-1)) + 0.05``. A GP
  variance that vanishes (a test point the kernel fits exactly; round-off may make it slightly
  negative, and it is clipped at 0) would make a plain quotient meaningless: ``eps`` is ``1e-6``
  times the mean GP variance over all records and points (the problem's scale), so a point where
  both variances vanish counts as agreeing (quotient 1), one where only the GP's does counts as
  a large quotient, and elsewhere ``eps`` changes nothing that matters.

``hu-early`` (Hu et al. 2020, arXiv:2006.14599): ``relu``, both layers trained, ``d = 25, 50,
100`` (quick: ``25, 50``), ``n = round(d^1.25)``, width ``m = 4n``, 4 members, ``lr = 1``,
``10 n`` steps; one run per ``d``. The *early ratio* of a member is
``disc_hu_test / change_test`` at the first record step ``t >= 10``, the *final ratio* the same
at ``t = steps``:

- ``early ratio decreasing in d``: the largest quotient of the mean (over members) early ratio
  at one ``d`` to the one at the next smaller ``d``, below 1;
- per ``d``: the largest early ratio over members at most ``0.3``;
- per ``d``: the largest over members of ``early ratio / (2 affine_error + 0.05)``, at most 1
  (Hu's model is as good early on as its kernel is to the empirical NTK);
- per ``d``: the smallest over members of ``final ratio / early ratio``, at least ``1.5`` (every
  member escapes the linear model later on: a per-member criterion).

A criterion whose value is not a number (NaN) does not hold.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from meanfield.config import ConfigError
from meanfield.linear_config import LinearConfig, make_linear_config
from meanfield.linear_run import LinearResult

#: the targets of this module, in the order ``meanfield reproduce`` lists them
TARGETS = ("lee-width", "lee-gp", "hu-early")

LEE_WIDTH = {"activation": "erf", "d": 32, "n": 128, "n_test": 128, "target": "teacher",
             "widths": tuple(256 * 2**k for k in range(7)), "lr": 0.5, "steps": 800,
             "seeds": 4}
LEE_WIDTH_QUICK = {**LEE_WIDTH, "widths": (256, 1024, 4096), "steps": 300, "seeds": 2}
LEE_GP = {"activation": "erf", "d": 8, "n": 32, "n_test": 16, "widths": (2048,),
          "seeds": 128, "lr": 0.5, "steps": 200}
LEE_GP_QUICK = {**LEE_GP, "widths": (1024,), "seeds": 32}
HU_EARLY_DS = (25, 50, 100)
HU_EARLY_DS_QUICK = (25, 50)

#: the bound on the widest ``disc_lin_test/change_test`` of lee-width (full size, quick)
WIDEST_RATIO = {False: 0.01, True: 0.02}
#: the early ratio of hu-early is read at the first record step at or after this one
EARLY_STEP = 10
#: relative floor of the GP variance in lee-gp's variance quotient (module docstring)
VAR_EPS = 1e-6


@dataclass(frozen=True)
class Criterion:
    """One check: its ``value``, the ``bound`` it must meet (as text) and whether it does."""

    name: str
    value: float
    bound: str
    holds: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (a value that is not finite becomes ``None``)."""
        v = float(self.value)
        return {"name": self.name, "value": v if math.isfinite(v) else None,
                "bound": self.bound, "holds": bool(self.holds)}


def _check(name: str, value: float, bound: str, holds: Any) -> Criterion:
    value = float(value)
    return Criterion(name, value, bound, bool(holds) and not math.isnan(value))


def verdict(criteria: Sequence[Criterion]) -> str:
    """``agree`` iff there is at least one criterion and every one holds, else ``disagree``."""
    return "agree" if criteria and all(c.holds for c in criteria) else "disagree"


def _hu_config(d: int) -> LinearConfig:
    n = max(1, round(d**1.25))
    return make_linear_config(activation="relu", train="both", d=d, n=n, widths=(4 * n,),
                              seeds=4, lr=1.0, steps=10 * n)


def linear_configs(name: str, quick: bool = False) -> dict[str, LinearConfig]:
    """The runs of target ``name``: output file name -> configuration (``hu-early``: one run
    per ``d``, ``hu_early_d25.h5`` ...; the others one file each)."""
    if name == "lee-width":
        return {"lee_width.h5": make_linear_config(**(LEE_WIDTH_QUICK if quick else LEE_WIDTH))}
    if name == "lee-gp":
        return {"lee_gp.h5": make_linear_config(**(LEE_GP_QUICK if quick else LEE_GP))}
    if name == "hu-early":
        return {f"hu_early_d{d}.h5": _hu_config(d)
                for d in (HU_EARLY_DS_QUICK if quick else HU_EARLY_DS)}
    raise ConfigError(f"linear target must be one of {', '.join(TARGETS)}; got {name!r}")


def figure_name(name: str) -> str:
    """The figure file of target ``name`` (``lee_width.png``, ``lee_gp.png``,
    ``hu_early.png``)."""
    return name.replace("-", "_") + ".png"


def identity(configs: Mapping[str, LinearConfig]) -> str:
    """The figure's identity: the run's hash for one run, else 12 hex digits of SHA-256 of the
    runs' hashes in order."""
    hashes = [c.hash() for c in configs.values()]
    if len(hashes) == 1:
        return hashes[0]
    return hashlib.sha256(",".join(hashes).encode()).hexdigest()[:12]


# ------------------------------------------------------------------------------- criteria

def lee_width_criteria(result: LinearResult, quick: bool = False) -> list[Criterion]:
    """The criteria of ``lee-width`` (module docstring) from one run over several widths."""
    s_disc = float(result["slope_disc_lin_test"])
    s_w = float(result["slope_W_distance"])
    s_ntk = float(result["slope_ntk_change"])
    with np.errstate(divide="ignore", invalid="ignore"):
        widest = float(result.final_means("disc_lin_test")[-1]
                       / result.final_means("change_test")[-1])
    bound = WIDEST_RATIO[bool(quick)]
    return [
        _check("slope_disc_lin_test", s_disc, "<= -0.45", s_disc <= -0.45),
        _check("slope_W_distance", s_w, "in [-0.8, -0.35]", -0.8 <= s_w <= -0.35),
        _check("slope_ntk_change", s_ntk, "<= -0.45", s_ntk <= -0.45),
        _check("widest disc_lin_test/change_test", widest, f"<= {bound:g}", widest <= bound),
    ]


def variance_ratio(ens_var: np.ndarray, gp_var: np.ndarray) -> np.ndarray:
    """Per record (first axis), the mean over points of ``(ens_var + eps) / (gp_var + eps)``
    with ``gp_var`` clipped at 0 and ``eps = 1e-6`` times its mean over everything (module
    docstring); NaN where ``ens_var`` is (one member)."""
    gp = np.clip(np.asarray(gp_var, dtype=float), 0.0, None)
    scale = float(np.mean(gp)) if gp.size else 0.0
    eps = VAR_EPS * scale if scale > 0 else np.finfo(float).tiny
    return np.mean((np.asarray(ens_var, dtype=float) + eps) / (gp + eps), axis=-1)


def lee_gp_criteria(result: LinearResult) -> list[Criterion]:
    """The criteria of ``lee-gp`` (module docstring), at the widest width."""
    S = result.config.seeds
    gp_mean, gp_var = result["gp_mean"], np.clip(result["gp_var"], 0.0, None)
    ens_mean, ens_var = result["ens_mean"][-1], result["ens_var"][-1]
    allowed = 5.0 * np.sqrt(gp_var / S) + 0.02
    worst_mean = float(np.max(np.abs(ens_mean - gp_mean) / allowed))
    spread = 2.0 * math.sqrt(2.0 / (S - 1)) + 0.05 if S > 1 else math.nan
    worst_var = float(np.max(np.abs(variance_ratio(ens_var, gp_var) - 1.0)))
    return [
        _check("ens_mean - gp_mean", worst_mean,
               "<= 1 (in units of 5 sqrt(gp_var/S) + 0.02)", worst_mean <= 1.0),
        _check("ens_var/gp_var", worst_var,
               f"|mean - 1| <= 2 sqrt(2/(S-1)) + 0.05 = {spread:.3g}", worst_var <= spread),
    ]


def early_index(t: np.ndarray) -> int | None:
    """The first record at step ``>= EARLY_STEP`` (``None`` when the run stops before)."""
    later = np.flatnonzero(np.asarray(t) >= EARLY_STEP)
    return int(later[0]) if len(later) else None


def hu_ratios(result: LinearResult) -> np.ndarray:
    """``disc_hu_test / change_test`` of every member at the widest width against the
    record steps, ``[seed, t]`` (NaN or inf at ``t = 0``, where nothing has moved)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return result["disc_hu_test"][:, -1] / result["change_test"][:, -1]


def hu_early_criteria(results: Mapping[int, LinearResult]) -> list[Criterion]:
    """The criteria of ``hu-early`` (module docstring) from the runs ``{d: result}``."""
    ds = sorted(results)
    early, means, out = {}, [], []
    for d in ds:
        r = results[d]
        i = early_index(r["t"])
        ratio = hu_ratios(r)
        early[d] = ratio[:, i] if i is not None else np.full(len(ratio), np.nan)
        means.append(float(np.mean(early[d])))
    steps = np.asarray(means[1:]) / np.asarray(means[:-1]) if len(ds) > 1 else np.array([])
    worst_step = float(np.max(steps)) if len(steps) else math.nan
    out.append(_check("early ratio decreasing in d", worst_step,
                      "< 1 (largest mean(d_next)/mean(d))", worst_step < 1.0))
    for d in ds:
        r, e = results[d], early[d]
        top = float(np.max(e))
        out.append(_check(f"d={d} early ratio", top, "<= 0.3 (every member)", top <= 0.3))
        vs_affine = float(np.max(e / (2.0 * r["affine_error"][:, -1] + 0.05)))
        out.append(_check(f"d={d} early ratio/(2 affine_error + 0.05)", vs_affine,
                          "<= 1 (every member)", vs_affine <= 1.0))
        escape = float(np.min(hu_ratios(r)[:, -1] / e))
        out.append(_check(f"d={d} final ratio/early ratio", escape, ">= 1.5 (every member)",
                          escape >= 1.5))
    return out


def evaluate(name: str, results: Mapping[str, LinearResult], quick: bool = False
             ) -> list[Criterion]:
    """The criteria of target ``name`` from its runs ``{file name: result}`` (as
    :func:`linear_configs` names them)."""
    runs = list(results.values())
    if name == "lee-width":
        return lee_width_criteria(runs[0], quick)
    if name == "lee-gp":
        return lee_gp_criteria(runs[0])
    if name == "hu-early":
        return hu_early_criteria({r.config.d: r for r in runs})
    raise ConfigError(f"linear target must be one of {', '.join(TARGETS)}; got {name!r}")


def format_criteria(criteria: Sequence[Criterion]) -> str:
    """The criteria as a text table: name, value, bound, holds."""
    width = max([len("criterion"), *(len(c.name) for c in criteria)])
    rows = [f"{'criterion':<{width}}  {'value':>10}  {'holds':<5}  bound"]
    for c in criteria:
        rows.append(f"{c.name:<{width}}  {c.value:>10.4g}  {'yes' if c.holds else 'NO':<5}  "
                    f"{c.bound}")
    return "\n".join(rows)


# -------------------------------------------------------------------------------- figures

def draw_target(name: str, results: Mapping[str, LinearResult]):
    """The figure of target ``name``: ``lee-width`` the four panels of
    :func:`meanfield.linear_plots.draw_linear`, ``lee-gp`` :func:`~meanfield.linear_plots.draw_gp`,
    ``hu-early`` :func:`draw_hu_early`."""
    from meanfield.linear_plots import draw_gp, draw_linear

    runs = list(results.values())
    if name == "lee-width":
        return draw_linear(runs[0])
    if name == "lee-gp":
        return draw_gp(runs[0])
    return draw_hu_early({r.config.d: r for r in runs})


def draw_hu_early(results: Mapping[int, LinearResult]):
    """(a) the early and final ratios per ``d`` (every member and the mean) with the bounds
    ``0.3`` and ``2 affine_error + 0.05`` (mean over members) and the escape threshold
    ``1.5 x`` the early ratio; (b) ``disc_hu_test/change_test`` against step per ``d`` (mean
    over members, the members' range shaded), the early record marked."""
    from matplotlib.figure import Figure

    ds = sorted(results)
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    ax_a, ax_b = fig.subplots(1, 2)
    early_mean, final_mean, affine = [], [], []
    for k, d in enumerate(ds):
        r = results[d]
        ratio = hu_ratios(r)
        i = early_index(r["t"])
        e = ratio[:, i] if i is not None else np.full(len(ratio), np.nan)
        f = ratio[:, -1]
        ax_a.plot(np.full(len(e), d), e, "o", color="C0", ms=3, alpha=0.5)
        ax_a.plot(np.full(len(f), d), f, "s", color="C3", ms=3, alpha=0.5)
        early_mean.append(np.mean(e))
        final_mean.append(np.mean(f))
        affine.append(np.mean(2.0 * r["affine_error"][:, -1] + 0.05))

        t = r["t"].astype(float)
        pos = t > 0
        color = f"C{k % 10}"
        ax_b.plot(t[pos], np.mean(ratio, axis=0)[pos], "-", color=color,
                  label=f"d={d} (n={r.config.n}, m={r.config.widths[-1]})")
        ax_b.fill_between(t[pos], np.min(ratio, axis=0)[pos], np.max(ratio, axis=0)[pos],
                          color=color, alpha=0.2, lw=0)
        if i is not None:
            ax_b.plot([t[i]], [np.mean(ratio[:, i])], "o", color=color, mfc="none")
    dd = np.asarray(ds, dtype=float)
    ax_a.plot(dd, early_mean, "o-", color="C0", label="early ratio (t >= 10), mean")
    ax_a.plot(dd, final_mean, "s-", color="C3", label="final ratio (t = 10n), mean")
    ax_a.plot(dd, 1.5 * np.asarray(early_mean), ":", color="C3",
              label="escape threshold 1.5 x early")
    ax_a.plot(dd, affine, "--", color="C2", label="bound 2 affine_error + 0.05")
    ax_a.axhline(0.3, color="gray", lw=0.8, ls="--", label="bound 0.3")
    ax_a.set(xscale="log", xlabel="d", ylabel="disc_hu_test / change_test",
             title="(a) early and final ratio per d")
    ax_a.set_xticks(dd, [str(d) for d in ds])
    ax_a.set_xticks([], minor=True)
    ax_a.legend(fontsize=7)
    ax_b.axvline(EARLY_STEP, color="gray", lw=0.8, ls=":")
    ax_b.set(xscale="log", yscale="log", xlabel="step t", ylabel="disc_hu_test / change_test",
             title="(b) distance to Hu's linear model (held-out)")
    ax_b.legend(fontsize=7)
    fig.suptitle("hu-early: relu, both layers, n = round(d^1.25), m = 4n, lr = 1, "
                 f"{results[ds[0]].config.seeds} members")
    return fig
