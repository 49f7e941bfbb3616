"""Simulation files (kind ``simulation``): what :func:`meanfield.simulate.simulate` returns,
written and read back.

Layout (netCDF4-valid, :mod:`meanfield.io`): dimensions ``t`` (record times), ``node`` (the
recorded nodes), ``example`` (training set), ``test_example`` (held-out set); the variables of
:data:`SERIES` on ``t``, of :data:`NODE_SERIES` on ``(t, node)``, the initial ``a0``, ``w_par0``
on ``node``, ``t_sat``, ``x_par``, ``y`` on ``example`` and ``test_t_sat``, ``test_x_par`` on
``test_example``. Global attributes: provenance, the initial sample moments (``init_*``, see
:class:`meanfield.observables.InitialMoments`) and the run's own facts (step count, work
counters, thread settings, ``t_sat`` resolution, elapsed seconds).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from meanfield.config import Config, from_json
from meanfield.io import (
    DIMENSIONLESS,
    PROVENANCE_KEYS,
    TIME_UNITS,
    atomic_h5,
    provenance,
    read_config_json,
    reading,
    set_attrs,
    write_coordinate,
    write_variable,
)
from meanfield.observables import InitialMoments

KIND = "simulation"

# name -> (units, long_name) of the variables on dimension t
SERIES: dict[str, tuple[str, str]] = {
    "step": (DIMENSIONLESS, "index n of the step time t_n"),
    "gamma": (DIMENSIONLESS, "gamma estimated from the nodes: "
                             "log(sum (a+w_par)(a0+w_par0) / sum (a0+w_par0)^2)"),
    "S": (DIMENSIONLESS, "least-squares slope of f(x) against x_par (with intercept) over the "
                         "held-out set, or the training set when n_test = 0"),
    "train_error": (DIMENSIONLESS, "fraction of training examples with y f < h (unsatisfied)"),
    "test_error": (DIMENSIONLESS, "fraction of held-out examples with y f < h (unsatisfied); "
                                  "NaN when n_test = 0"),
    "test_misclassification": (DIMENSIONLESS, "fraction of held-out examples with y f <= 0; "
                                              "NaN when n_test = 0"),
    "loss": (DIMENSIONLESS, "training loss L = (1/N) sum_mu l(y_mu f(x_mu)) over the training "
                            "set"),
    "invariant_drift": ("weight^2", "max_i |(a_i^2 - |w_i|^2) - (a0_i^2 - |w0_i|^2)| "
                                    "(conserved by the ReLU flow)"),
    "a_distance": (DIMENSIONLESS, "|a - a0| / |a0| (relative distance from initialisation)"),
    "W_distance": (DIMENSIONLESS, "|W - W0|_F / |W0|_F (relative distance from "
                                  "initialisation)"),
    "sign_flip_fraction": (DIMENSIONLESS, "fraction of first-layer weights whose sign differs "
                                          "from initialisation"),
    "n_evaluated": ("examples", "forward evaluations in the step starting at t "
                                "(both Heun stages; full batch: examples not certified "
                                "satisfied by the margin bound)"),
    "n_evaluated_mean": ("examples", "mean forward evaluations per step over the steps "
                                     "since the previous record time (this one included)"),
}
#: why a series may hold NaN (written as its ``non_finite`` attribute when it does)
NON_FINITE: dict[str, str] = {
    "gamma": "NaN where sum (a+w_par)(a0+w_par0) is not positive (the nodes left the ReLU "
             "hyperbolae; possible for other activations and losses)",
    "S": "NaN where fewer than two distinct x_par were measured",
    "test_error": "NaN when n_test = 0 (no held-out set)",
    "test_misclassification": "NaN when n_test = 0 (no held-out set)",
    "a_distance": "NaN or inf when every a0 is 0 (sa = 0): no relative distance",
    "W_distance": "NaN or inf when every w0 is 0 (sw = 0): no relative distance",
}
#: series stored as integers
INTEGER_SERIES = ("step", "n_evaluated")
# name -> (units, long_name) of the variables on (t, node)
NODE_SERIES: dict[str, tuple[str, str]] = {
    "a": (DIMENSIONLESS, "second-layer weight a_i"),
    "w_par": (DIMENSIONLESS, "w_i . w* (component along the teacher e_1)"),
    "w_perp_norm": (DIMENSIONLESS, "|w_i - (w_i . w*) w*| (norm orthogonal to the teacher)"),
}
#: ``t_sat`` of an example never satisfied during the run
NEVER = np.inf
_INIT = "init_"  # prefix of the initial-moment attributes


@dataclass
class SimulationResult:
    """Everything a run records (arrays in float64 unless stated).

    ``series``: :data:`SERIES` name -> ``[t]``; ``nodes``: :data:`NODE_SERIES` name ->
    ``[t, node]``; ``t_sat`` ``[example]`` (``+inf``: never satisfied) with ``x_par`` and the
    labels ``y`` (after label noise); ``test_t_sat``, ``test_x_par`` ``[test_example]``;
    ``init_moments`` over all ``M`` initial nodes; ``attrs``: the run's facts (``n_steps``,
    ``evaluated_total``, ``dense_evaluations_total``, ``certificate_steps`` (velocity calls
    that ran the skipping certificate), ``t_sat_resolution``, thread settings,
    ``elapsed_seconds``, ...); ``source``: the file it was read from (empty in memory).
    """

    config: Config
    t: np.ndarray
    series: dict[str, np.ndarray]
    node: np.ndarray
    nodes: dict[str, np.ndarray]
    a0: np.ndarray
    w_par0: np.ndarray
    t_sat: np.ndarray
    x_par: np.ndarray
    y: np.ndarray
    test_t_sat: np.ndarray
    test_x_par: np.ndarray
    init_moments: InitialMoments
    attrs: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def t_sat_grid(self) -> np.ndarray:
        """The times ``t_sat`` can take: every step time (full batch) or the record times."""
        if self.attrs.get("t_sat_resolution") == "record times":
            return self.t
        from meanfield.schedule import schedule

        return schedule(self.config)[0]


def _sat_attrs(long_name: str, resolution: str) -> dict[str, str]:
    return {"units": TIME_UNITS, "long_name": long_name, "resolution": resolution,
            "never_satisfied": "+inf (the example was never satisfied during the run)"}


def write_simulation(result: SimulationResult, path: str | Path) -> None:
    """Write ``result`` to ``path`` (HDF5, netCDF4-valid, atomically: a failed write leaves
    the previous file or none).

    Example:
        >>> from meanfield.config import make_config
        >>> from meanfield.simulate import simulate
        >>> c = make_config(M=10, N=200, d=5, n_test=50, t_max=2.0)
        >>> write_simulation(simulate(c), "sim.h5")        # doctest: +SKIP
        >>> read_simulation("sim.h5").series["gamma"][-1]  # doctest: +SKIP
    """
    c = result.config
    with atomic_h5(path) as f:
        set_attrs(f, provenance(KIND, c.to_json(), c.seed))
        set_attrs(f, {_INIT + k: v for k, v in dataclasses.asdict(result.init_moments).items()})
        set_attrs(f, result.attrs)
        write_coordinate(f, "t", result.t, {"units": TIME_UNITS, "long_name": "record time"})
        write_coordinate(f, "node", result.node, {
            "units": DIMENSIONLESS, "long_name": "index of a recorded hidden node"})
        write_coordinate(f, "example", np.arange(len(result.t_sat)), {
            "units": DIMENSIONLESS, "long_name": "index of a training example"})
        write_coordinate(f, "test_example", np.arange(len(result.test_t_sat)), {
            "units": DIMENSIONLESS, "long_name": "index of a held-out example"})
        for name, (units, long_name) in SERIES.items():
            values = result.series[name]
            if name in INTEGER_SERIES:
                values = values.astype(np.int64)
            attrs = {"units": units, "long_name": long_name}
            if name in NON_FINITE and not np.isfinite(values).all():
                attrs["non_finite"] = NON_FINITE[name]
            write_variable(f, name, values, ["t"], attrs)
        for name, (units, long_name) in NODE_SERIES.items():
            write_variable(f, name, result.nodes[name], ["t", "node"],
                           {"units": units, "long_name": long_name})
        write_variable(f, "a0", result.a0, ["node"], {
            "units": DIMENSIONLESS, "long_name": "initial second-layer weight a_i(0)"})
        write_variable(f, "w_par0", result.w_par0, ["node"], {
            "units": DIMENSIONLESS, "long_name": "initial w_i(0) . w*"})
        write_variable(f, "t_sat", result.t_sat, ["example"], _sat_attrs(
            "first time with y f >= h (training example)", result.attrs["t_sat_resolution"]))
        write_variable(f, "x_par", result.x_par, ["example"], {
            "units": DIMENSIONLESS, "long_name": "w* . x of the training example"})
        write_variable(f, "y", result.y, ["example"], {
            "units": DIMENSIONLESS, "long_name": "training label (after label noise)"})
        write_variable(f, "test_t_sat", result.test_t_sat, ["test_example"], _sat_attrs(
            "first record time with y f >= h (held-out example)",
            result.attrs["test_t_sat_resolution"]))
        write_variable(f, "test_x_par", result.test_x_par, ["test_example"], {
            "units": DIMENSIONLESS, "long_name": "w* . x of the held-out example"})


def _attr(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def read_simulation(path: str | Path) -> SimulationResult:
    """The :class:`SimulationResult` stored in ``path``.

    Raises :class:`meanfield.io.NotMeanfieldFile` (a one-line message) for a missing file, a
    file that is not HDF5, not a meanfield file, of another kind or of a newer format.

    Example:
        >>> sim = read_simulation("sim.h5")                          # doctest: +SKIP
        >>> sim.config.M, sim.t.shape, sim.nodes["a"].shape          # doctest: +SKIP
    """
    with reading(path, KIND) as f:
        g = {k: _attr(v) for k, v in f.attrs.items()}
        moments = InitialMoments(**{k.name: float(g[_INIT + k.name])
                                    for k in dataclasses.fields(InitialMoments)})
        attrs = {k: v for k, v in g.items()
                 if k not in PROVENANCE_KEYS and not k.startswith(("config_", _INIT))}
        return SimulationResult(
            config=from_json(read_config_json(f)),
            t=f["t"][()],
            series={name: f[name][()] for name in SERIES},
            node=f["node"][()],
            nodes={name: f[name][()] for name in NODE_SERIES},
            a0=f["a0"][()], w_par0=f["w_par0"][()],
            t_sat=f["t_sat"][()], x_par=f["x_par"][()], y=f["y"][()],
            test_t_sat=f["test_t_sat"][()], test_x_par=f["test_x_par"][()],
            init_moments=moments, attrs=attrs, source=str(path),
        )


@dataclass
class SimulationRecords:
    """The time series of a simulation file without its node- and example-level arrays
    (what a sweep merges): ``series`` holds every :data:`SERIES` variable on ``t``."""

    config: Config
    t: np.ndarray
    series: dict[str, np.ndarray]
    elapsed_seconds: float
    git_revision: str


def read_records(path: str | Path) -> SimulationRecords:
    """The :class:`SimulationRecords` of the simulation file ``path``
    (:class:`meanfield.io.NotMeanfieldFile`, one line, when it is not a complete one)."""
    with reading(path, KIND) as f:
        return SimulationRecords(
            config=from_json(read_config_json(f)), t=f["t"][()],
            series={name: f[name][()] for name in SERIES},
            elapsed_seconds=float(f.attrs["elapsed_seconds"]),
            git_revision=str(_attr(f.attrs["git_revision"])))


def stored_run_hash(path: str | Path) -> str:
    """The run hash (:func:`meanfield.config.run_hash`) of the configuration stored in the
    simulation file ``path``; :class:`meanfield.io.NotMeanfieldFile` (one line) when the file
    is missing, foreign, truncated or not a simulation file."""
    from meanfield.config import run_hash

    with reading(path, KIND) as f:
        return run_hash(from_json(read_config_json(f)))
