"""Files of ``meanfield crossover`` (kind ``crossover``): what
:func:`meanfield.crossover_run.run_crossover` returns, written and read back.

Layout (netCDF4-valid, :mod:`meanfield.io`; opens with ``xarray.open_dataset(path,
engine="h5netcdf")``): coordinates ``alpha``, ``t`` (lazy time ``tau``), ``node`` and ``probe``
(the held-out points of the kernel measures); ``time[alpha, t]`` (mean-field time), ``a0[node]``,
``w_par0[node]``, every series of the run on ``(alpha, t)`` and every per-alpha value on
``(alpha,)``. Global attributes: provenance (the run's configuration, with ``init =
"symmetric"`` and the first alpha), ``crossover_settings`` (JSON), ``alpha_c``, ``error_level``,
``rewind_at`` (``"none"`` without arms), ``inputs_hash`` (the run's identity:
:func:`crossover_identity`), ``n_steps`` per alpha and ``elapsed_seconds``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from meanfield.config import Config, from_json, run_hash
from meanfield.crossover_run import CrossoverResult, CrossoverSettings
from meanfield.io import (
    DIMENSIONLESS,
    TIME_UNITS,
    atomic_h5,
    provenance,
    read_config_json,
    reading,
    set_attrs,
    text_attr,
    write_coordinate,
    write_variable,
)

KIND = "crossover"
TAU_UNITS = "lazy time tau = alpha^2 beta (sa^2 + sw^2) t / (4 d)"

#: the meaning of a series, by the name without its suffix (``_net``, ``_lin``, ``_theory``,
#: ``_lazy``, ``_signs``, ...)
MEANINGS = {
    "train_error": "fraction of training examples with y f < h",
    "test_error": "fraction of held-out examples with y f < h",
    "test_misclassification": "fraction of held-out examples with y f <= 0",
    "loss": "mean linear hinge loss",
    "S": "least-squares slope of f on x_par (held-out points)",
    "gamma": "gamma (the hyperbolae's parameter; the simulator's estimator)",
    "a_distance": "|a - a0| / |a0|",
    "W_distance": "|W - W0|_F / |W0|_F",
    "w_par_sign_flip_fraction": "fraction of w_par whose sign changed",
    "sign_flip_fraction": "fraction of all first-layer weights whose sign changed",
    "anisotropy": "rms(w_par) / rms(w_perp)",
    "kernel_change": "|K_t - K_0|_F / |K_0|_F (tangent kernel on the probe points)",
    "kernel_distance": "1 - <K_t, K_0>_F / (|K_t|_F |K_0|_F) (Fort et al. 2020)",
    "kernel_velocity": "|dK/dtau|_F / |K_0|_F (per unit lazy time)",
    "time": "mean-field time t of the record",
    "mp": "rewound nodes' sample moment <(a^2 + w_par^2)/2>",
    "maw": "rewound nodes' sample moment <a w_par>",
    "tau_at_error": "lazy time of the first crossing of error_level by the training error",
    "gamma_at_error": "gamma at the first crossing of error_level",
    "kernel_change_at_error": "kernel change at the first crossing of error_level",
    "test_misclassification_at_error": "test misclassification at the first crossing of "
                                        "error_level",
    "gamma_at_rewind": "gamma of the network at the rewinding time",
    "S_star": "S* = alpha (sa^2 + sw^2) / (4 sqrt d): the network is lazy while S << S*",
}
_WHO = {"net": "network", "lin": "its linearization around initialisation",
        "theory": "mean-field theory", "lazy": "lazy limit (alpha -> inf at fixed tau)",
        "signs": "rewound arm: initial magnitudes, signs at tau_k",
        "signs_random": "rewound arm: fresh magnitudes, signs at tau_k",
        "shuffle": "rewound arm: a_i shuffled among nodes"}


def long_name(name: str) -> str:
    """``meaning (who)`` of a variable name such as ``train_error_signs_theory``."""
    parts = name.split("_")
    for cut in range(len(parts), 0, -1):
        base = "_".join(parts[:cut])
        if base in MEANINGS:
            who = "_".join(parts[cut:])
            words = [_WHO.get(w, w) for w in _split_who(who)] if who else []
            return MEANINGS[base] + (f" ({'; '.join(words)})" if words else "")
    return name


def _split_who(who: str) -> list[str]:
    if who.startswith("signs_random"):
        return ["signs_random", *[w for w in who[len("signs_random"):].split("_") if w]]
    return [w for w in who.split("_") if w]


def crossover_identity(config: Config, settings: CrossoverSettings,
                       alphas: Sequence[float]) -> str:
    """What determines a crossover run's numbers: the run hash of its configuration (with
    ``init = "symmetric"`` and the first alpha, as the run uses it), its settings and its
    alphas; 12 hex digits."""
    base = config.replace(init="symmetric", alpha=float(alphas[0]))
    fields = {k: float(v) if isinstance(v, int | float) and not isinstance(v, bool)
              and k not in ("n_times", "n_probe") else v
              for k, v in dataclasses.asdict(settings).items()}
    inputs = {"config": run_hash(base), "settings": fields,
              "alphas": [float(a) for a in alphas]}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:12]


def write_crossover(result: CrossoverResult, path: str | Path) -> None:
    """Write ``result`` to ``path`` (netCDF4-valid HDF5, atomically)."""
    c, st = result.config, result.settings
    with atomic_h5(path) as f:
        set_attrs(f, provenance(KIND, c.to_json(), c.seed))
        set_attrs(f, {"crossover_settings": json.dumps(dataclasses.asdict(st), sort_keys=True),
                      "alpha_c": result.alpha_c, "error_level": st.error_level,
                      "rewind_at": st.rewind_at,
                      "inputs_hash": crossover_identity(c, st, result.alpha),
                      **result.attrs})
        write_coordinate(f, "alpha", result.alpha, {"units": DIMENSIONLESS,
                                                    "long_name": "output scale alpha"})
        write_coordinate(f, "t", result.t, {"units": TAU_UNITS, "long_name": "record time"})
        write_coordinate(f, "node", np.arange(len(result.a0)), {
            "units": DIMENSIONLESS, "long_name": "hidden node (node i + M/2 mirrors node i)"})
        write_coordinate(f, "probe", np.arange(st.n_probe), {
            "units": DIMENSIONLESS, "long_name": "held-out point of the kernel measures"})
        write_variable(f, "time", result.time, ("alpha", "t"),
                       {"units": TIME_UNITS, "long_name": MEANINGS["time"]})
        write_variable(f, "a0", result.a0, ("node",), {"units": DIMENSIONLESS,
                                                       "long_name": "initial a_i"})
        write_variable(f, "w_par0", result.w_par0, ("node",), {
            "units": DIMENSIONLESS, "long_name": "initial w_i . e_1"})
        for dims, arrays in ((("alpha", "t"), result.series), (("alpha",), result.at_alpha)):
            for name, values in sorted(arrays.items()):
                attrs = {"units": TAU_UNITS if name.startswith("tau_") else DIMENSIONLESS,
                         "long_name": long_name(name)}
                values = np.asarray(values, dtype=np.float64)
                if not np.isfinite(values).all():
                    attrs["non_finite"] = ("NaN: not reached or not defined (before the "
                                           "rewinding time, a level never crossed, a measure "
                                           "at t = 0)")
                write_variable(f, name, values, dims, attrs)


def read_crossover(path: str | Path) -> CrossoverResult:
    """The :class:`CrossoverResult` stored in ``path``; :class:`meanfield.io.NotMeanfieldFile`
    (one line) for a missing, foreign, damaged or newer file."""
    with reading(path, KIND) as f:
        settings = CrossoverSettings(**json.loads(str(text_attr(f, "crossover_settings"))))
        series, at_alpha = {}, {}
        for name, var in f.items():
            if name in ("alpha", "t", "node", "probe", "time", "a0", "w_par0"):
                continue
            dims = tuple(dim[0].name.rsplit("/", 1)[-1] for dim in var.dims)
            (series if dims == ("alpha", "t") else at_alpha)[name] = var[()]
        attrs = {k: f.attrs[k] for k in ("n_steps", "elapsed_seconds") if k in f.attrs}
        return CrossoverResult(
            config=from_json(read_config_json(f)), settings=settings,
            alpha=f["alpha"][()], t=f["t"][()], time=f["time"][()], a0=f["a0"][()],
            w_par0=f["w_par0"][()], series=series, at_alpha=at_alpha,
            alpha_c=float(f.attrs["alpha_c"]), attrs=attrs)
