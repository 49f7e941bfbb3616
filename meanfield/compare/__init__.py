"""Theory against simulation: metrics, tolerances, verdicts.

A simulation (:class:`meanfield.files.simulation.SimulationResult`, from ``meanfield
simulate``) is compared with the mean-field theory of Pellegrini & Biroli
(:class:`meanfield.files.theory.TheoryResult`, from ``meanfield theory`` or computed for the
simulation's own configuration). Everything is put on the simulation's record grid ``t``.

Two versions of the theory are used (:mod:`meanfield.compare.curves`):

- the *flow*: ``gamma(t)`` of the gradient flow ``d theta/dt = -beta M dL/dtheta`` with the
  population moments of the initialisation (``<a0^2> = sa^2``, ``<w0^2> = sw^2``,
  ``<a0 w0> = 0``);
- the *schedule* theory: the same equations pushed through the simulation's own explicit-Euler
  step schedule and its own initial sample moments (``meanfield.theory.compute_on_schedule``).
  It is the exact large-``M``, large-``N`` limit of that simulation, so the distance
  "simulation - schedule theory" carries no time-step error and no finite-sample error of the
  initial moments; the distance "schedule theory - flow" is exactly those two effects.

Verdicts are taken against the schedule theory when it can be computed (a ReLU hinge theory
and an Euler simulation), else against the flow. The metrics, their tolerances and the window
of times that count are in :mod:`meanfield.compare.metrics`; the text and JSON reports in
:mod:`meanfield.compare.report`; the file in :mod:`meanfield.files.comparison`. The
*milestones* are the first record times at which the theory's training error falls below each
of :data:`MILESTONE_LEVELS` (reported under the key ``checkpoints``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from analytic.activations import is_relu
from meanfield.compare.curves import (
    Curves,
    band_edges,
    curves_of,
    node_trajectories,
    resample,
    schedule_theory,
    with_edge_spread,
)
from meanfield.compare.metrics import (
    S_RESOLVED,
    Metric,
    binned_x_par_error,
    breakdown,
    comparison_window,
    curve_metric,
    fraction_outside_band,
    log_slope,
    relative_rms,
    tolerances,
    verdict,
    x_par_bins,
)
from meanfield.config import THEORY_FIELDS, Config
from meanfield.files.outputs import comparison_identity
from meanfield.files.simulation import SimulationResult, read_simulation
from meanfield.files.theory import TheoryResult, read_theory

#: training-error levels at which the comparison is also reported (the milestones)
MILESTONE_LEVELS = (0.9, 0.7, 0.5, 0.3, 0.2, 0.1)
#: the curves compared as functions of time
CURVES = ("gamma", "S", "train_error", "loss")


class CompareWarning(UserWarning):
    """The theory was made for other parameters than the simulation."""


@dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare`; every array is on the simulation grid ``sim.t``."""

    sim: SimulationResult
    theory: TheoryResult
    flow: Curves  # theory (flow) on sim.t
    schedule: Curves | None  # theory pushed through the simulation's schedule, on sim.t
    window: np.ndarray  # [t] bool, times that count in the verdict
    metrics: dict[str, Metric]
    milestones: list[dict[str, Any]]
    limits: list[str]  # where and why the theory stops holding
    differing: dict[str, tuple[Any, Any]]  # theory field -> (simulation value, theory value)
    a_theory: np.ndarray  # [t, node]
    w_par_theory: np.ndarray  # [t, node]
    band: tuple[np.ndarray, np.ndarray]  # [t] edges of the |x_par| band at t_sat = t
    notes: list[str] = field(default_factory=list)
    inputs_hash: str = ""  # files.outputs.comparison_identity of the inputs

    @property
    def reference(self) -> Curves:
        """The theory that decides the verdicts."""
        return self.schedule if self.schedule is not None else self.flow

    @property
    def verdict(self) -> str:
        decided = [m.verdict for m in self.metrics.values() if m.verdict != "n/a"]
        return "agree" if decided and all(v == "agree" for v in decided) else "disagree"


def differing_fields(sim_config: Config, theory_config: Config) -> dict[str, tuple[Any, Any]]:
    """Theory-relevant fields that differ: name -> (simulation value, theory value)."""
    out = {}
    for name in THEORY_FIELDS:
        s, t = getattr(sim_config, name), getattr(theory_config, name)
        if s != t:
            out[name] = (s, t)
    return out


def _milestones(sim: SimulationResult, flow: Curves, schedule: Curves | None) -> list[dict]:
    """At the first record time where the flow theory's training error falls below each level
    of MILESTONE_LEVELS: simulation, flow and schedule values of gamma, S, train_error, loss,
    and the relative errors against the reference theory."""
    out = []
    ref = schedule if schedule is not None else flow
    for level in MILESTONE_LEVELS:
        below = np.flatnonzero(flow.train_error < level)
        if below.size == 0:
            continue
        i = int(below[0])
        row: dict[str, Any] = {"level": level, "t": float(sim.t[i])}
        for q in CURVES:
            s, th = float(sim.series[q][i]), float(getattr(ref, q)[i])
            row[q] = {"simulation": s, "flow": float(getattr(flow, q)[i])}
            if schedule is not None:
                row[q]["schedule"] = float(getattr(schedule, q)[i])
            row[q]["relative_error"] = abs(s - th) / abs(th) if th != 0 else None
        out.append(row)
    return out


def _schedule_notes(sim: SimulationResult, theory: TheoryResult, on_schedule: bool
                    ) -> tuple[bool, list[str]]:
    """Whether the schedule theory applies, and the notes that say why not (and about batch
    noise)."""
    notes = []
    if on_schedule and not is_relu(theory.config.activation):
        notes.append("the theory on the simulation's schedule exists for ReLU only: verdicts "
                     "against the flow")
        on_schedule = False
    if on_schedule and sim.config.integrator != "euler":
        notes.append(f"the simulation integrates with {sim.config.integrator}, the schedule "
                     "theory is an explicit Euler push: verdicts against the flow")
        on_schedule = False
    if sim.config.online or sim.config.batch:
        mode = "online" if sim.config.online else f"mini-batch (batch = {sim.config.batch})"
        notes.append(f"the simulation trains {mode}; the theory is the full-batch mean-field "
                     "limit, so the verdicts include the gradient noise of the batches")
    return on_schedule, notes


def _theory_curves(sim: SimulationResult, theory: TheoryResult, on_schedule: bool
                   ) -> tuple[Curves, Curves | None]:
    """The flow on the simulation grid and (``on_schedule``) the schedule theory, both with the
    finite-size indicators of the simulation's own N and M (validity ~ 1/sqrt(N), spread of
    f ~ 1/sqrt(M)), whatever sizes the theory file was made for."""
    sized = theory.config.replace(M=sim.config.M, N=sim.config.N, batch=0, record_nodes=0)
    flow = resample(curves_of(theory, "theory file" if theory.source else "flow"), sim.t)
    if flow.validity is not None:
        flow = replace(flow, validity=flow.validity * math.sqrt(theory.config.N / sim.config.N))
    flow = with_edge_spread(flow, sized)
    schedule = (with_edge_spread(schedule_theory(sized, sim), sized) if on_schedule else None)
    return flow, schedule


def _metrics(sim: SimulationResult, flow: Curves, schedule: Curves | None, h: float,
             window: np.ndarray) -> tuple[dict[str, Metric], tuple[np.ndarray, np.ndarray]]:
    """Every metric of :mod:`meanfield.compare.metrics`, against the flow and the schedule;
    and the reference theory's node trajectories ``(a, w_par)``."""
    ref = schedule if schedule is not None else flow
    tol = tolerances(sim.config)
    # S is measured by regression over examples: its noise is absolute (~ f_spread /
    # sqrt(n_test)), so its relative error counts once S|x_par| reaches h for some examples
    resolved = {"S": window & (ref.train_error < S_RESOLVED)}
    metrics = {
        q: curve_metric(q, sim.series[q], getattr(flow, q),
                        None if schedule is None else getattr(schedule, q),
                        resolved.get(q, window), tol[q])
        for q in CURVES
    }
    a_flow, w_flow = node_trajectories(sim.a0, sim.w_par0, flow)
    a_ref, w_ref = node_trajectories(sim.a0, sim.w_par0, ref)
    for q, fl, rf in (("a", a_flow, a_ref), ("w_par", w_flow, w_ref)):
        metrics[q] = curve_metric(q, sim.nodes[q], fl, None if schedule is None else rf,
                                  window, tol[q], measure=relative_rms)
    slope_sim = log_slope(sim.t, sim.series["gamma"])
    metrics["slope"] = curve_metric(
        "slope", slope_sim, log_slope(sim.t, flow.gamma),
        None if schedule is None else log_slope(sim.t, schedule.gamma),
        window & np.isfinite(slope_sim), tol["slope"], measure=relative_rms,
    )
    out_flow, _ = fraction_outside_band(sim, flow, h, window)
    out_ref, n_sat = fraction_outside_band(sim, ref, h, window)
    tol_band, why_band = tol["x_par_band"]
    metrics["x_par_band"] = Metric(
        "x_par_band", out_ref, out_flow, out_ref if schedule is not None else None, None,
        tol_band, why_band + f" ({n_sat} examples)", verdict(out_ref, tol_band))
    bins_flow = binned_x_par_error(x_par_bins(sim, flow), window, sim.t)
    bins_ref = binned_x_par_error(x_par_bins(sim, ref), window, sim.t)
    metrics["x_par"] = Metric(
        "x_par", bins_ref, bins_flow, bins_ref if schedule is not None else None, None,
        tol["x_par"][0], tol["x_par"][1], verdict(bins_ref, tol["x_par"][0]))
    return metrics, (a_ref, w_ref)


def compare(
    sim: SimulationResult | str | Path,
    theory: TheoryResult | str | Path | None = None,
    on_schedule: bool = True,
) -> Comparison:
    """Compare a simulation with a theory.

    Args:
        sim: a simulation result or the path of a simulation file.
        theory: a theory result, the path of a theory file, or ``None``: the flow theory
            computed for the simulation's configuration on its record times.
        on_schedule: also push the theory through the simulation's step schedule and initial
            sample moments (ReLU theory, Euler simulation), and take the verdicts against that
            version. A theory made for other parameters is compared all the same, with a
            :class:`CompareWarning` naming the fields that differ.

    Returns:
        A :class:`Comparison`: metrics with tolerances and verdicts, milestones, the window
        and where the theory stops holding; report it with :mod:`meanfield.compare.report`,
        write it with :func:`meanfield.files.comparison.write_comparison`.

    Example:
        >>> result = compare("sim.h5", "theory.h5")                 # doctest: +SKIP
        >>> result.verdict, result.metrics["gamma"].value             # doctest: +SKIP
        ('agree', 0.0034)
    """
    if not isinstance(sim, SimulationResult):
        sim = read_simulation(sim)
    if theory is not None and not isinstance(theory, TheoryResult):
        theory = read_theory(theory)
    identity = comparison_identity(sim.config, None if theory is None else theory.config,
                                   on_schedule)
    if theory is None:
        from meanfield.theory import compute

        theory = compute(sim.config, times=np.asarray(sim.t, dtype=np.float64))
    differing = differing_fields(sim.config, theory.config)
    if differing:
        names = ", ".join(f"{k} (simulation {s}, theory {t})" for k, (s, t) in differing.items())
        warnings.warn(f"the theory was made for other parameters than the simulation: {names}",
                      CompareWarning, stacklevel=2)
    on_schedule, notes = _schedule_notes(sim, theory, on_schedule)
    flow, schedule = _theory_curves(sim, theory, on_schedule)
    ref = schedule if schedule is not None else flow
    window, limits = comparison_window(sim, ref)
    if np.isnan(flow.gamma[sim.t > 0]).any():
        notes.append("the theory does not cover the whole simulated time range; the comparison "
                     "uses the overlap only")
    h = theory.config.h
    metrics, (a_ref, w_ref) = _metrics(sim, flow, schedule, h, window)
    if ref.f_spread is None and ref.edge_spread is None:
        notes.append("the theory gives no finite-M spread of f: the x_par band is the line X")
    limits += breakdown(sim, ref, window, tolerances(sim.config)["gamma"][0])
    return Comparison(
        sim=sim, theory=theory, flow=flow, schedule=schedule, window=window,
        metrics=metrics, milestones=_milestones(sim, flow, schedule), limits=limits,
        differing=differing, a_theory=a_ref, w_par_theory=w_ref,
        band=band_edges(ref, h), notes=notes, inputs_hash=identity,
    )
