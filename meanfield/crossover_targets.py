r"""The ``meanfield crossover`` targets of ``meanfield reproduce``: their settings and criteria.

Two checks of the hinge model's crossover from rich to lazy learning (the runs of
:mod:`meanfield.crossover_run`, the theory of :mod:`meanfield.crossover_theory`), each a set
of :class:`~meanfield.linear_targets.Criterion` evaluated from
:class:`~meanfield.crossover_run.CrossoverResult` arrays; the verdict is ``agree`` iff every
criterion holds (:func:`~meanfield.linear_targets.verdict`). A criterion whose value is not a
number (NaN, e.g. no record where it applies) does not hold.

Both use ReLU on the linear hinge, ``h = sa = sw = beta = 1``, Gaussian data, seed 0, the
antisymmetric-pair initialisation and the crossover's default steps and records
(``dtau = dgamma = growth = 0.02``, 40 log-spaced records, 200 probe points, error level 0.3).
``n_test`` is 10000 (quick: 2000): the held-out set gives the slope ``S`` and the test errors
(a binomial error of at most ``0.5/sqrt(n_test)``, 0.005 at 10000 and 0.011 at 2000, well
below the 0.05 tolerances) and holds the 200 probe points of the kernel; the training errors
that the criteria read do not depend on it.

``pb-crossover`` (Pellegrini & Biroli 2020, arXiv:2006.11209): ``M = 400``, ``N = 2e4``,
``d = 50``, ``alphas = 0.1, 0.3, 1, 3, 10, 30, 100, 1000``, ``tau_max = 10`` (quick:
``M = 200``, ``N = 5000``, ``d = 20``, ``alphas = 0.3, 3, 30, 300``, ``tau_max = 6``), ``net``
and its linearization ``lin``. With ``err`` the training errors ``[alpha, t]`` (every alpha and
record, ``t = 0`` included):

- ``|err_net - err_theory|``: the largest over the records where ``0.2 <= err_theory <= 0.9``,
  at most 0.05;
- ``|err_lin - err_lazy|``: the largest over the same records (those where the *full* theory's
  error is in ``[0.2, 0.9]``, as the target states it), at most 0.05;
- ``lazy: |err_net - err_lin|``: the largest over the records where
  ``|err_theory - err_lazy| <= 0.01`` (theory says the network is lazy there), at most 0.03;
- ``rich: err_lin - err_net``: the smallest over the records where
  ``err_lazy - err_theory >= 0.1`` (theory says the network learns faster than its
  linearization), at least 0.05;
- per ``alpha <= alpha_c = 4 sqrt(d) h/(sa^2+sw^2)``: ``gamma_at_error_net`` within 5% of
  ``gamma_at_error_theory`` (value ``|net/theory - 1|``), and ``kernel_change_at_error_net``
  within 20% of the node-wise theory at the error level, ``kernel_change_at_error_theory``.

``frankle-rewind`` (Frankle, Schwab & Morcos 2020, arXiv:2002.10365): ``alpha = 1``,
``M = 400``, ``N = 2e4``, ``d = 50``, one run per rewinding time ``TAU_K = 0.05, 0.2, 0.5, 1,
2``, ``tau_max = 10`` (quick: ``M = 200``, ``N = 5000``, ``d = 20``, ``TAU_K = 0.2, 1``,
``tau_max = 4``), without the linearization (no criterion reads it). Per ``TAU_K`` and arm
``A`` in ``signs``, ``signs_random``, ``shuffle``:

- ``|err_A - err_A_theory|``: the largest over the records with ``tau >= TAU_K + 0.5`` of the
  training error's distance to the restarted theory, at most 0.05;
- ``|mp_A - theory|`` and ``|maw_A - theory|``: the rewound nodes' sample moments against the
  theory's, each at most ``4 mp'/sqrt(M/2) + 0.02`` (four standard errors of a mean over
  ``M/2`` independent pairs, ``mp'`` the arm's theoretical ``mp``).

Finite ``M``. The twin's lazy rate is the sample average over the initial nodes of the
antisymmetric pairs, so ``err_lin`` scatters about the population's ``err_lazy`` by about
``1/sqrt(M/2)`` of the rate (up to about 0.057 in training error at ``M = 200``); the bounds
are the target's, unchanged. In the quick settings the largest distances are 0.014
(``err_net``) and 0.009 (``err_lin``), well inside them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from meanfield.config import Config, ConfigError, make_config
from meanfield.crossover_run import ARMS, CrossoverResult, CrossoverSettings, run_crossover
from meanfield.linear_targets import Criterion

#: the targets of this module, in the order ``meanfield reproduce`` lists them
TARGETS = ("pb-crossover", "frankle-rewind")

#: the model and data common to both targets (sizes added by each)
BASE = {"activation": "relu", "loss": "hinge", "data": "gaussian", "h": 1.0, "beta": 1.0,
        "sa": 1.0, "sw": 1.0, "alpha": 1.0, "init": "symmetric", "seed": 0}
FULL_SIZE = {"M": 400, "N": 20_000, "d": 50, "n_test": 10_000}
QUICK_SIZE = {"M": 200, "N": 5000, "d": 20, "n_test": 2000}

PB_CROSSOVER = {"alphas": (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 1000.0), "tau_max": 10.0}
PB_CROSSOVER_QUICK = {"alphas": (0.3, 3.0, 30.0, 300.0), "tau_max": 6.0}
FRANKLE_REWIND = {"alpha": 1.0, "rewind_at": (0.05, 0.2, 0.5, 1.0, 2.0), "tau_max": 10.0}
FRANKLE_REWIND_QUICK = {"alpha": 1.0, "rewind_at": (0.2, 1.0), "tau_max": 4.0}

#: the tolerances of the criteria (module docstring)
ERROR_TOL = 0.05
THEORY_BAND = (0.2, 0.9)
LAZY_GAP, LAZY_TOL = 0.01, 0.03
RICH_GAP, RICH_MIN = 0.1, 0.05
GAMMA_TOL, KERNEL_TOL = 0.05, 0.20
REWIND_AFTER = 0.5
MOMENT_SE, MOMENT_FLOOR = 4.0, 0.02


@dataclass(frozen=True)
class CrossoverRun:
    """One run of a target: its configuration, alphas and settings."""

    config: Config
    alphas: tuple[float, ...]
    settings: CrossoverSettings

    def run(self) -> CrossoverResult:
        """:func:`~meanfield.crossover_run.run_crossover` of this run."""
        st = self.settings
        return run_crossover(self.config, self.alphas, tau_max=st.tau_max, dtau=st.dtau,
                             dgamma=st.dgamma, growth=st.growth, n_times=st.n_times,
                             n_probe=st.n_probe, error_level=st.error_level,
                             rewind_at=st.rewind_at, linearized=st.linearized)

    def identity(self) -> str:
        """:func:`~meanfield.files.crossover.crossover_identity` of this run."""
        from meanfield.files.crossover import crossover_identity

        return crossover_identity(self.config, self.settings, self.alphas)


def _check(name: str, value: float, bound: str, holds: object) -> Criterion:
    value = float(value)
    return Criterion(name, value, bound, bool(holds) and not math.isnan(value))


def _unknown(name: str) -> ConfigError:
    return ConfigError(f"crossover target must be one of {', '.join(TARGETS)}; got {name!r}")


def crossover_runs(name: str, quick: bool = False) -> dict[str, CrossoverRun]:
    """The runs of target ``name``: output file name -> run (``pb-crossover``:
    ``crossover.h5``; ``frankle-rewind``: one per ``TAU_K``, ``frankle_rewind_tau0.2.h5``
    ...)."""
    config = make_config(**BASE, **(QUICK_SIZE if quick else FULL_SIZE))
    if name == "pb-crossover":
        s = PB_CROSSOVER_QUICK if quick else PB_CROSSOVER
        return {"crossover.h5": CrossoverRun(config, tuple(s["alphas"]),
                                             CrossoverSettings(tau_max=s["tau_max"]))}
    if name == "frankle-rewind":
        s = FRANKLE_REWIND_QUICK if quick else FRANKLE_REWIND
        return {f"frankle_rewind_tau{tk:g}.h5": CrossoverRun(
                    config, (s["alpha"],),
                    CrossoverSettings(tau_max=s["tau_max"], rewind_at=tk, linearized=False))
                for tk in s["rewind_at"]}
    raise _unknown(name)


def figure_name(name: str) -> str:
    """The figure file of target ``name`` (``crossover.png``, ``frankle_rewind.png``)."""
    if name == "pb-crossover":
        return "crossover.png"
    if name == "frankle-rewind":
        return "frankle_rewind.png"
    raise _unknown(name)


def identity(runs: Mapping[str, CrossoverRun]) -> str:
    """The figure's identity: the run's identity for one run, else 12 hex digits of SHA-256
    of the runs' identities in order."""
    ids = [r.identity() for r in runs.values()]
    if len(ids) == 1:
        return ids[0]
    return hashlib.sha256(",".join(ids).encode()).hexdigest()[:12]


# ------------------------------------------------------------------------------- criteria

def _largest(values: np.ndarray, where: np.ndarray) -> float:
    return float(np.max(values[where])) if np.any(where) else math.nan


def _smallest(values: np.ndarray, where: np.ndarray) -> float:
    return float(np.min(values[where])) if np.any(where) else math.nan


def pb_crossover_criteria(result: CrossoverResult) -> list[Criterion]:
    """The criteria of ``pb-crossover`` (module docstring) from one run over the alphas."""
    s, at = result.series, result.at_alpha
    th, lazy = s["train_error_theory"], s["train_error_lazy"]
    net, lin = s["train_error_net"], s["train_error_lin"]
    lo, hi = THEORY_BAND
    band = (th >= lo) & (th <= hi)
    net_th = _largest(np.abs(net - th), band)
    lin_lazy = _largest(np.abs(lin - lazy), band)
    lazy_side = _largest(np.abs(net - lin), np.abs(th - lazy) <= LAZY_GAP)
    rich_side = _smallest(lin - net, lazy - th >= RICH_GAP)
    out = [
        _check("|err_net - err_theory|", net_th,
               f"<= {ERROR_TOL:g} where err_theory in [{lo:g}, {hi:g}]", net_th <= ERROR_TOL),
        _check("|err_lin - err_lazy|", lin_lazy,
               f"<= {ERROR_TOL:g} where err_theory in [{lo:g}, {hi:g}]", lin_lazy <= ERROR_TOL),
        _check("lazy: |err_net - err_lin|", lazy_side,
               f"<= {LAZY_TOL:g} where |err_theory - err_lazy| <= {LAZY_GAP:g}",
               lazy_side <= LAZY_TOL),
        _check("rich: err_lin - err_net", rich_side,
               f">= {RICH_MIN:g} where err_lazy - err_theory >= {RICH_GAP:g}",
               rich_side >= RICH_MIN),
    ]
    for k, alpha in enumerate(result.alpha):
        if alpha > result.alpha_c:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            g = abs(at["gamma_at_error_net"][k] / at["gamma_at_error_theory"][k] - 1.0)
            kc = abs(at["kernel_change_at_error_net"][k]
                     / at["kernel_change_at_error_theory"][k] - 1.0)
        out.append(_check(f"alpha={alpha:g} gamma_at_error_net/theory - 1", g,
                          f"|.| <= {GAMMA_TOL:g} (alpha <= alpha_c = {result.alpha_c:.4g})",
                          g <= GAMMA_TOL))
        out.append(_check(f"alpha={alpha:g} kernel_change_at_error_net/theory - 1", kc,
                          f"|.| <= {KERNEL_TOL:g} (node-wise theory)", kc <= KERNEL_TOL))
    return out


def moment_bound(mp_theory: float, M: int) -> float:
    """``4 mp'/sqrt(M/2) + 0.02``: four standard errors of a mean over ``M/2`` pairs."""
    return MOMENT_SE * float(mp_theory) / math.sqrt(M / 2) + MOMENT_FLOOR


def frankle_rewind_criteria(results: Sequence[CrossoverResult]) -> list[Criterion]:
    """The criteria of ``frankle-rewind`` (module docstring) from its runs, one per
    ``TAU_K`` (the first alpha of each)."""
    out = []
    for r in results:
        tk = float(r.settings.rewind_at)
        late = r.t >= tk + REWIND_AFTER
        for arm in ARMS:
            err = r.series[f"train_error_{arm}"][0]
            theory = r.series[f"train_error_{arm}_theory"][0]
            worst = _largest(np.abs(err - theory), late)
            out.append(_check(f"tau_k={tk:g} {arm}: |err - theory|", worst,
                              f"<= {ERROR_TOL:g} for tau >= tau_k + {REWIND_AFTER:g}",
                              worst <= ERROR_TOL))
            mp_th = float(r.at_alpha[f"mp_{arm}_theory"][0])
            bound = moment_bound(mp_th, r.config.M)
            for moment in ("mp", "maw"):
                dev = abs(float(r.at_alpha[f"{moment}_{arm}"][0])
                          - float(r.at_alpha[f"{moment}_{arm}_theory"][0]))
                out.append(_check(f"tau_k={tk:g} {arm}: |{moment} - theory|", dev,
                                  f"<= 4 mp'/sqrt(M/2) + 0.02 = {bound:.3g}", dev <= bound))
    return out


def evaluate(name: str, results: Mapping[str, CrossoverResult]) -> list[Criterion]:
    """The criteria of target ``name`` from its runs ``{file name: result}`` (as
    :func:`crossover_runs` names them)."""
    runs = list(results.values())
    if name == "pb-crossover":
        return pb_crossover_criteria(runs[0])
    if name == "frankle-rewind":
        return frankle_rewind_criteria(runs)
    raise _unknown(name)


# -------------------------------------------------------------------------------- figures

def draw_target(name: str, results: Mapping[str, CrossoverResult]):
    """The figure of target ``name``: ``pb-crossover`` the four panels of
    :func:`meanfield.crossover_plots.draw_crossover`, ``frankle-rewind``
    :func:`draw_frankle_rewind`."""
    runs = list(results.values())
    if name == "pb-crossover":
        from meanfield.crossover_plots import draw_crossover

        return draw_crossover(runs[0])
    if name == "frankle-rewind":
        return draw_frankle_rewind(runs)
    raise _unknown(name)


def draw_frankle_rewind(results: Sequence[CrossoverResult]):
    """One panel per ``TAU_K``: the training error against lazy time of the network (grey)
    and of each arm (markers) with the restarted theory of each (lines), ``TAU_K`` and
    ``TAU_K + 0.5`` marked; a last panel: each arm's sample moments ``mp``, ``maw`` against
    ``TAU_K`` with their theory and the band ``4 mp'/sqrt(M/2) + 0.02``."""
    from matplotlib.figure import Figure

    n = len(results) + 1
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4.2 * cols, 3.6 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    colors = {arm: f"C{k}" for k, arm in enumerate(ARMS)}
    for ax, r in zip(axes, results, strict=False):
        tk = float(r.settings.rewind_at)
        t = r.t
        pos = t > 0
        ax.plot(t[pos], r.series["train_error_net"][0][pos], "o", color="0.6", ms=3,
                label="net")
        ax.plot(t[pos], r.series["train_error_theory"][0][pos], "-", color="0.6", lw=1)
        for arm in ARMS:
            after = pos & (t >= tk)
            ax.plot(t[after], r.series[f"train_error_{arm}"][0][after], "x",
                    color=colors[arm], ms=4, label=arm)
            ax.plot(t[after], r.series[f"train_error_{arm}_theory"][0][after], "-",
                    color=colors[arm], lw=1)
        ax.axvline(tk, color="k", ls=":", lw=0.8)
        ax.axvline(tk + REWIND_AFTER, color="k", ls="--", lw=0.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(r"lazy time $\tau$")
        ax.set_ylabel("training error")
        ax.set_title(rf"rewound at $\tau_k = {tk:g}$ ($\alpha = {r.alpha[0]:g}$)", fontsize=10)
        ax.legend(fontsize=7)
    ax = axes[len(results)]
    tks = np.array([float(r.settings.rewind_at) for r in results])
    for arm in ARMS:
        for moment, marker in (("mp", "o"), ("maw", "s")):
            sample = np.array([r.at_alpha[f"{moment}_{arm}"][0] for r in results])
            theory = np.array([r.at_alpha[f"{moment}_{arm}_theory"][0] for r in results])
            band = np.array([moment_bound(r.at_alpha[f"mp_{arm}_theory"][0], r.config.M)
                             for r in results])
            ax.errorbar(tks, theory, yerr=band, fmt="none", ecolor=colors[arm], alpha=0.4,
                        capsize=3)
            ax.plot(tks, sample, marker, color=colors[arm], mfc="none",
                    label=f"{moment}_{arm}")
            ax.plot(tks, theory, "-" if moment == "mp" else "--", color=colors[arm], lw=1)
    ax.set_xscale("log")
    ax.set_xlabel(r"$\tau_k$")
    ax.set_ylabel("rewound nodes' moment")
    ax.set_title("rewound moments: sample, theory, bound", fontsize=10)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.legend(fontsize=6, ncol=2)
    for ax in axes[len(results) + 1:]:
        ax.set_visible(False)
    return fig
