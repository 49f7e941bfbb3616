"""Comparison files (kind ``comparison``): a :class:`meanfield.compare.Comparison` as written
by ``meanfield compare -o``, and read back for the figures (:mod:`meanfield.plots`).

Layout (netCDF4-valid, :mod:`meanfield.io`): dimension ``t`` (the simulation's record times)
with ``window`` and, for each of ``gamma``, ``S``, ``train_error``, ``loss``, the variables
``<q>_simulation``, ``<q>_theory`` (flow) and ``<q>_schedule`` (the theory on the simulation's
schedule, when used), ``test_error_simulation``, ``X_theory``, ``f_spread_edge``, ``band_lo``,
``band_hi``, ``slope_simulation``, ``slope_theory``; dimension ``node`` with ``a_*`` and
``w_par_*`` on ``(t, node)``; dimension ``example`` (the satisfied training examples) with
``t_sat`` and ``x_par``; dimension ``x_par_bin`` with ``bin_<key>`` of
:func:`meanfield.compare.metrics.x_par_bins`. Global attributes: provenance (the simulation's
configuration), ``verdict``, ``metrics``, ``checkpoints`` (the milestones), ``limits`` (JSON),
``theory_config``, the sources, ``reference``, ``asymptote_c``, ``gamma_rate0``, ``h`` and
``inputs_hash`` (what determines the numbers, :func:`meanfield.files.outputs.comparison_identity`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from meanfield.compare import CURVES, Comparison
from meanfield.compare.curves import initial_rate
from meanfield.compare.metrics import log_slope, x_par_bins
from meanfield.compare.report import report_dict
from meanfield.io import (
    TIME_UNITS,
    atomic_h5,
    provenance,
    reading,
    set_attrs,
    write_coordinate,
    write_variable,
)

KIND = "comparison"


def _global_attrs(cmp: Comparison) -> dict[str, Any]:
    report = report_dict(cmp)
    return {
        "verdict": cmp.verdict,
        "metrics": json.dumps(report["metrics"]),
        "checkpoints": json.dumps(report["checkpoints"]),
        "limits": json.dumps(cmp.limits),
        "theory_config": cmp.theory.config.to_json(),
        "theory_source": report["theory"],
        "simulation_source": cmp.sim.source,
        "reference": cmp.reference.label,
        "asymptote_c": cmp.theory.asymptote_c,
        "gamma_rate0": initial_rate(cmp.theory),
        "h": cmp.theory.config.h,
        "inputs_hash": cmp.inputs_hash,
    }


def write_comparison(cmp: Comparison, path: str | Path) -> None:
    """Write ``cmp`` to ``path`` (atomically): simulation and theory curves on the simulation
    grid, node trajectories, satisfied examples, the ``x_par`` bins; metrics, milestones and
    verdict as global attributes (JSON).

    Example:
        >>> from meanfield.compare import compare
        >>> write_comparison(compare("sim.h5"), "compare.h5")     # doctest: +SKIP
    """
    sim, ref, flow = cmp.sim, cmp.reference, cmp.flow
    sat = np.isfinite(sim.t_sat)
    bins = x_par_bins(sim, ref)
    with atomic_h5(path) as f:
        set_attrs(f, provenance(KIND, sim.config.to_json(), seed=sim.config.seed))
        set_attrs(f, _global_attrs(cmp))
        time_units = {"units": TIME_UNITS}
        write_coordinate(f, "t", sim.t, {**time_units, "long_name": "simulation record time"})
        write_coordinate(f, "node", np.arange(sim.nodes["a"].shape[1]))
        write_coordinate(f, "example", np.flatnonzero(sat))
        write_coordinate(f, "x_par_bin", np.arange(len(bins["t_sat"])))
        write_variable(f, "window", cmp.window.astype(np.int8), ["t"],
                       {"long_name": "1 where the time counts in the verdict"})
        for q in CURVES:
            write_variable(f, f"{q}_simulation", sim.series[q], ["t"])
            write_variable(f, f"{q}_theory", getattr(flow, q), ["t"],
                           {"long_name": f"{q}, theory (flow)"})
            if cmp.schedule is not None:
                write_variable(f, f"{q}_schedule", getattr(cmp.schedule, q), ["t"],
                               {"long_name": f"{q}, theory on the simulation's schedule"})
        write_variable(f, "test_error_simulation", sim.series["test_error"], ["t"])
        write_variable(f, "X_theory", ref.X, ["t"], {"long_name": "edge of the unsatisfied set"})
        spread = ref.edge_spread if ref.edge_spread is not None else ref.f_spread
        if spread is not None:
            write_variable(f, "f_spread_edge", spread, ["t"], {
                "long_name": "finite-M std of f at the edge |x_par| = X (the band's sigma)"})
        write_variable(f, "band_lo", cmp.band[0], ["t"])
        write_variable(f, "band_hi", cmp.band[1], ["t"])
        write_variable(f, "slope_simulation", log_slope(sim.t, sim.series["gamma"]), ["t"])
        write_variable(f, "slope_theory", log_slope(sim.t, ref.gamma), ["t"])
        for q in ("a", "w_par"):
            write_variable(f, f"{q}_simulation", sim.nodes[q], ["t", "node"])
        write_variable(f, "a_theory", cmp.a_theory, ["t", "node"])
        write_variable(f, "w_par_theory", cmp.w_par_theory, ["t", "node"])
        write_variable(f, "t_sat", sim.t_sat[sat], ["example"], time_units)
        write_variable(f, "x_par", sim.x_par[sat], ["example"])
        for k, v in bins.items():
            write_variable(f, f"bin_{k}", v, ["x_par_bin"])


def read_comparison(path: str | Path) -> dict[str, Any]:
    """Every variable of a comparison file by name (NumPy arrays) and its global attributes
    under ``"attrs"``; what the figures are drawn from.

    Raises :class:`meanfield.io.NotMeanfieldFile` for anything but a comparison file.
    """
    with reading(path, KIND) as f:
        data: dict[str, Any] = {k: np.asarray(f[k][()]) for k in f}
        data["attrs"] = {k: f.attrs[k] for k in f.attrs}
    return data
