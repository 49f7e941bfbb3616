"""Files of ``meanfield linear`` (kind ``linear``): what :func:`meanfield.linear_run.run_linear`
returns, written and read back.

Layout (netCDF4-valid, :mod:`meanfield.io`; opens with ``xarray.open_dataset(path,
engine="h5netcdf")``): the coordinates of :data:`COORDINATES` and the variables of
:data:`VARIABLES` on them; global attributes: provenance (the resolved configuration included)
and the run's numbers ``lr, lr1, lr2, c_ones, c_data, c_identity, tol, lr_max,
ntk_inf_method``. Times ``t`` are integer gradient-descent steps; every other number is
dimensionless float64.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from meanfield.io import (
    DIMENSIONLESS,
    atomic_h5,
    provenance,
    read_config_json,
    reading,
    set_attrs,
    write_coordinate,
    write_variable,
)
from meanfield.linear_config import linear_config_from_json
from meanfield.linear_run import LinearResult

KIND = "linear"
STEP_UNITS = "gradient-descent steps"

#: coordinate -> (units, long_name)
COORDINATES: dict[str, tuple[str, str]] = {
    "seed": (DIMENSIONLESS, "ensemble member (its own initialisation, the same data)"),
    "width": (DIMENSIONLESS, "network width m (nested: the first m nodes of the widest)"),
    "t": (STEP_UNITS, "record step"),
    "example": (DIMENSIONLESS, "index of a training example"),
    "example2": (DIMENSIONLESS, "index of a training example (second kernel argument)"),
    "test_example": (DIMENSIONLESS, "index of a held-out example"),
    "feature": (DIMENSIONLESS, "input component"),
    "node": (DIMENSIONLESS, "hidden node of the widest network"),
}

_MODEL_NAMES = {"net": "the network (gradient descent)",
                "lin": "Lee et al.'s linearization around initialisation (empirical NTK)",
                "inf": "the infinite-width NTK model (the network's own f_0)",
                "hu": "Hu et al.'s linear model f_0 + beta . psi(x) (affine features)"}
_SWT = ("seed", "width", "t")


def _variables() -> dict[str, tuple[tuple[str, ...], str]]:
    """name -> (dims, long_name); units are dimensionless except where stated."""
    v: dict[str, tuple[tuple[str, ...], str]] = {
        "x": (("example", "feature"), "training inputs"),
        "y": (("example",), "training targets"),
        "x_test": (("test_example", "feature"), "held-out inputs"),
        "y_test": (("test_example",), "held-out targets"),
        "W0": (("seed", "node", "feature"), "initial first-layer weights of the widest network"),
        "v0": (("seed", "node"), "initial second-layer weights of the widest network"),
    }
    for model, text in _MODEL_NAMES.items():
        v[f"f_{model}"] = ((*_SWT, "example"), f"outputs on the training set: {text}")
        v[f"f_{model}_test"] = ((*_SWT, "test_example"), f"outputs on held-out points: {text}")
    v["ntk0"] = (("seed", "width", "example", "example2"),
                 "empirical NTK at initialisation Theta_0 = lr1 Theta1 + lr2 Theta2 (no 1/n)")
    v["ntk_inf"] = (("example", "example2"), "infinite-width NTK lr1 Theta1 + lr2 Theta2")
    v["affine_error"] = (("seed", "width"), "||Theta_0 - Theta_affine||_2 / ||Theta_0||_2 "
                                            "(spectral; identity term included)")
    for model, text in _MODEL_NAMES.items():
        v[f"loss_{model}"] = (_SWT, f"training loss (1/2n) sum (f - y)^2: {text}")
        v[f"test_loss_{model}"] = (_SWT, f"held-out loss (1/2n_test) sum (f - y)^2: {text}")
    v["change"] = (_SWT, "RMS of f_net(t) - f_net(0) on the training set")
    v["change_test"] = (_SWT, "RMS of f_net(t) - f_net(0) on held-out points")
    for model in ("lin", "inf", "hu"):
        v[f"disc_{model}"] = (_SWT, f"RMS of f_net - f_{model} on the training set")
        v[f"disc_{model}_test"] = (_SWT, f"RMS of f_net - f_{model} on held-out points")
    v["W_distance"] = (_SWT, "|W - W0|_F / |W0|_F")
    v["v_distance"] = (_SWT, "|v - v0| / |v0|")
    v["W_sign_flip_fraction"] = (_SWT, "fraction of first-layer weights whose sign changed")
    v["v_sign_flip_fraction"] = (_SWT, "fraction of second-layer weights whose sign changed")
    v["ntk_change"] = (_SWT, "|Theta_t - Theta_0|_F / |Theta_0|_F on the training set")
    v["kernel_distance"] = (_SWT, "Fort et al. 2020: 1 - <Theta_t, Theta_0>_F / "
                                  "(|Theta_t|_F |Theta_0|_F)")
    v["kernel_velocity"] = (_SWT, "kernel_distance(Theta_{t_k-1}, Theta_{t_k}) / "
                                  "(t_k - t_k-1) (per step; NaN at t = 0)")
    for model in ("lin", "hu"):
        v[f"t_escape_{model}"] = (("seed", "width"), f"first record step t >= 1 from which "
                                  f"disc_{model}_test > tol * change_test for good (+inf: never)")
    v["gp_mean"] = (("t", "test_example"), "Lee et al.'s GP mean A_t y (infinite width)")
    v["gp_var"] = (("t", "test_example"), "Lee et al.'s GP variance K(x,x) - 2 A_t K(X,x) + "
                                          "A_t K(X,X) A_t^T")
    v["ens_mean"] = (("width", "t", "test_example"), "mean of f_net_test over members")
    v["ens_var"] = (("width", "t", "test_example"), "variance (ddof = 1) of f_net_test over "
                                                    "members (NaN for one member)")
    for name, series in (("slope_disc_lin", "disc_lin"), ("slope_disc_lin_test",
                         "disc_lin_test"), ("slope_W_distance", "W_distance"),
                         ("slope_ntk_change", "ntk_change")):
        v[name] = ((), f"least-squares slope of log(mean over members of {series} at t = "
                       "steps) against log(width) (NaN for one width)")
    return v


#: name -> (dims, long_name) of every variable
VARIABLES = _variables()
#: why a variable may hold NaN or inf (written as its ``non_finite`` attribute when it does)
NON_FINITE = {
    "kernel_velocity": "NaN at t = 0 (no earlier record)",
    "ens_var": "NaN with one member (no variance over members)",
    "t_escape_lin": "+inf: the model was not left for good by the last record",
    "t_escape_hu": "+inf: the model was not left for good by the last record",
    **{name: "NaN for one width or a mean that is not positive" for name in
       ("slope_disc_lin", "slope_disc_lin_test", "slope_W_distance", "slope_ntk_change")},
}
#: the label of a non-finite value anywhere else: a linear model run above its own stability
#: limit 2n / lambda_max (lr_max checks the empirical NTK only)
DIVERGED = "overflow: lr is above this model's own limit 2n/lambda_max of its kernel"
#: global attributes of the run (besides provenance)
ATTRS = ("lr", "lr1", "lr2", "c_ones", "c_data", "c_identity", "tol", "lr_max",
         "ntk_inf_method")


def write_linear(result: LinearResult, path: str | Path) -> None:
    """Write ``result`` to ``path`` (HDF5, netCDF4-valid, atomically: a failed write leaves
    the previous file or none).

    Example:
        >>> from meanfield.linear_config import make_linear_config
        >>> from meanfield.linear_run import run_linear
        >>> r = run_linear(make_linear_config(d=8, steps=10))       # doctest: +SKIP
        >>> write_linear(r, "lin.h5")                                # doctest: +SKIP
    """
    c = result.config
    with atomic_h5(path) as f:
        set_attrs(f, provenance(KIND, c.to_json(), c.seed))
        set_attrs(f, {k: result.attrs[k] for k in ATTRS})
        for name, (units, long_name) in COORDINATES.items():
            write_coordinate(f, name, result[name], {"units": units, "long_name": long_name})
        for name, (dims, long_name) in VARIABLES.items():
            values = np.asarray(result[name], dtype=np.float64)
            attrs = {"units": STEP_UNITS if name.startswith("t_escape_") else DIMENSIONLESS,
                     "long_name": long_name}
            if not np.isfinite(values).all():
                attrs["non_finite"] = NON_FINITE.get(name, DIVERGED)
            write_variable(f, name, values, dims, attrs)


def read_linear(path: str | Path) -> LinearResult:
    """The :class:`LinearResult` stored in ``path``; :class:`meanfield.io.NotMeanfieldFile`
    (one line) for a missing, foreign, damaged or newer file."""
    with reading(path, KIND) as f:
        config = linear_config_from_json(read_config_json(f))
        arrays = {name: f[name][()] for name in (*COORDINATES, *VARIABLES)}
        attrs = {}
        for k in ATTRS:
            value = f.attrs[k]
            attrs[k] = value.decode() if isinstance(value, bytes) else value
        return LinearResult(config, arrays, attrs)
