"""``meanfield linear``: a two-layer network trained by gradient descent next to the linear models
that should mimic it (conventions: :mod:`meanfield.linear_config`).

For every ensemble member ``s`` (its own initialisation, the same data) and every width ``m``
(nested: the first ``m`` nodes of the widest network) the run computes, at the record steps:

- ``net``: the network itself, trained by full-batch GD (:class:`~meanfield.linear_gd.NetworkGD`);
- ``lin``: Lee et al.'s linearisation around initialisation, exact for GD through the empirical
  NTK ``Theta_0`` (:class:`~meanfield.linear_gd.KernelGD`, one eigendecomposition each);
- ``inf``: the same with the infinite-width NTK and the network's own ``f_0``;
- ``hu``: Hu et al.'s linear model ``f_0 + beta . psi(x)`` on the affine features of the trained
  layers (``t2 = 1/d``), trained by the same GD;
- the early-phase measures of Frankle et al. (distances from initialisation, sign flips) and the
  kernel's motion (``ntk_change``, Fort et al.'s ``kernel_distance`` and its velocity);

and, over the members, the ensemble mean and variance next to Lee et al.'s Gaussian-process
prediction ``gp`` (:func:`~meanfield.linear_gd.gp_moments`). Random streams: the data and the
teacher from ``[seed, 0]``, member ``s``'s ``W0`` from ``[seed, 1, s]`` and ``v0`` from
``[seed, 2, s]``, so a member and a width do not depend on the others: member ``s`` at width ``m``
is bitwise the same in every run that has them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from meanfield.config import ConfigError
from meanfield.linear_config import LinearConfig
from meanfield.linear_gd import (
    KernelGD,
    NetworkGD,
    escape_step,
    gp_moments,
    kernel_distance,
    loglog_slope,
    max_learning_rate,
    record_steps,
)

#: the models next to the network
MODELS = ("lin", "inf", "hu")
#: per-member series on ``[seed, width, t]``
SERIES = (
    "loss_net", "loss_lin", "loss_inf", "loss_hu",
    "test_loss_net", "test_loss_lin", "test_loss_inf", "test_loss_hu",
    "change", "change_test",
    "disc_lin", "disc_inf", "disc_hu", "disc_lin_test", "disc_inf_test", "disc_hu_test",
    "W_distance", "v_distance", "W_sign_flip_fraction", "v_sign_flip_fraction",
    "ntk_change", "kernel_distance", "kernel_velocity",
)
#: the 0-d slopes against width: name -> series
SLOPES = {"slope_disc_lin": "disc_lin", "slope_disc_lin_test": "disc_lin_test",
          "slope_W_distance": "W_distance", "slope_ntk_change": "ntk_change"}


@dataclass
class Data:
    """Training and held-out inputs and targets, shared by every member and width."""

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass
class LinearResult:
    """Everything ``meanfield linear`` computed, keyed by the names of its file
    (:mod:`meanfield.files.linear` owns the layout: dimensions, units, descriptions).

    ``arrays``: coordinates and variables; ``attrs``: the global numbers (``lr``, ``lr1``,
    ``lr2``, ``c_ones``, ``c_data``, ``c_identity``, ``tol``, ``lr_max``, ``ntk_inf_method``).
    """

    config: LinearConfig
    arrays: dict[str, np.ndarray]
    attrs: dict[str, Any] = field(default_factory=dict)

    def __contains__(self, name: str) -> bool:
        return name in self.arrays

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def final_means(self, name: str) -> np.ndarray:
        """Mean over members of series ``name`` at the last step, one value per width."""
        return np.mean(self.arrays[name][:, :, -1], axis=0)

    def escape_medians(self, model: str) -> list[float | None]:
        """Median over members of ``t_escape_<model>`` per width (``None`` for ``+inf``)."""
        med = np.median(self.arrays[f"t_escape_{model}"], axis=0)
        return [None if not math.isfinite(v) else float(v) for v in med]


def make_data(config: LinearConfig) -> Data:
    """Inputs ``N(0, I_d)`` or on the sphere of radius ``sqrt d``; targets ``teacher``
    (``tanh(b.x/sqrt d) + 0.3 (x_1^2 - 1)``, ``b ~ N(0, I_d)``), ``sign`` (``sign(x_1)``) or
    ``linear`` (``x_1``); all from the stream ``[seed, 0]``."""
    from meanfield.linear import sample_inputs

    rng = np.random.default_rng([config.seed, 0])
    x = sample_inputs(config.n, config.d, rng, config.data)
    x_test = sample_inputs(config.n_test, config.d, rng, config.data)
    b = rng.standard_normal(config.d)

    def target(X: np.ndarray) -> np.ndarray:
        if config.target == "teacher":
            return np.tanh(X @ b / math.sqrt(config.d)) + 0.3 * (X[:, 0] ** 2 - 1.0)
        if config.target == "sign":
            return np.sign(X[:, 0])
        return X[:, 0].copy()

    return Data(x, target(x), x_test, target(x_test))


def initial_weights(config: LinearConfig, member: int, width: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Member ``member``'s ``W0`` (``width x d``) and ``v0`` (``width``), standard Gaussian,
    from the streams ``[seed, 1, member]`` and ``[seed, 2, member]``: the first ``m`` rows of
    a wider draw equal the draw of width ``m``."""
    W0 = np.random.default_rng([config.seed, 1, member]).standard_normal((width, config.d))
    v0 = np.random.default_rng([config.seed, 2, member]).standard_normal(width)
    return W0, v0


def _loss(f: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(1/2n) sum (f - y)^2`` over the last axis."""
    return 0.5 * np.mean((f - y) ** 2, axis=-1)


def _rms(a: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean(a * a, axis=-1))


class _Kernels:
    """The infinite-width kernels, Hu's features and the affine coefficients of a run: they
    depend on the data only, not on the member or the width."""

    def __init__(self, config: LinearConfig, data: Data) -> None:
        from analytic.activations import get_activation
        from analytic.gaussian import moments
        from analytic.kernels import (
            affine_coefficients,
            feature_map,
            numeric_activation,
            two_layer_kernels,
        )
        from meanfield.linear import KernelAccuracyError, infinite_width_ntk_with_error

        activation = get_activation(config.activation)
        self.act = numeric_activation(activation)
        lr1, lr2 = config.lr1, config.lr2
        coeffs = affine_coefficients(moments(activation), Fraction(1, config.d),
                                     config.lr_ratio)[config.layer]
        self.coefficients = {k: float(v.value) for k, v in coeffs.items()}
        try:
            train = infinite_width_ntk_with_error(self.act, data.x)
            t1, t2 = train.theta1, train.theta2
            cross = infinite_width_ntk_with_error(self.act, data.x_test, data.x)
            c1, c2 = cross.theta1, cross.theta2
        except KernelAccuracyError as err:
            raise ConfigError(f"activation {config.activation!r}: {err}") from None
        self.method = (train.method if cross.method == train.method
                       else f"training set: {train.method}; held-out: {cross.method}")
        self.ntk = lr1 * t1 + lr2 * t2
        self.ntk_cross = lr1 * c1 + lr2 * c2
        self.nngp, self.nngp_cross = t2, c2
        q = np.einsum("ij,ij->i", data.x_test, data.x_test) / config.d
        self.nngp_test_diag = two_layer_kernels(self.act, q, q, q)[1]
        psi = feature_map(coeffs)
        P = psi(data.x)
        self.hu = P @ P.T
        self.hu_cross = psi(data.x_test) @ P.T


def run_linear(config: LinearConfig, on_step: Callable[[int, int], None] | None = None
               ) -> LinearResult:
    """Run ``meanfield linear`` (module docstring).

    Args:
        config: a validated :class:`LinearConfig`.
        on_step: called as ``on_step(done, total)`` with GD steps done over all members and
            widths (progress).

    Returns:
        The :class:`LinearResult`.

    Raises:
        ConfigError: ``lr >= lr_max = 2n / lambda_max(Theta_0)`` for some member and width
            (GD on the linearisation diverges), before any GD step.
    """
    from meanfield.linear import affine_kernel, empirical_ntk, forward, relative_error

    data = make_data(config)
    kern = _Kernels(config, data)
    act = kern.act
    steps = record_steps(config.steps, config.n_times, config.times)
    S, widths, T = config.seeds, config.widths, len(steps)
    lr1, lr2 = config.lr1, config.lr2

    # Theta_0 of every member and width first: lr_max is known before any GD step
    ntk0 = np.empty((S, len(widths), config.n, config.n))
    lr_max, worst = math.inf, (0, widths[0])
    for s in range(S):
        W0, v0 = initial_weights(config, s, widths[-1])
        for k, m in enumerate(widths):
            t1, t2 = empirical_ntk(W0[:m], v0[:m], data.x, act.phi, act.dphi)
            ntk0[s, k] = lr1 * t1 + lr2 * t2
            limit = max_learning_rate(ntk0[s, k], config.n)
            if limit < lr_max:
                lr_max, worst = limit, (s, m)
    if config.lr >= lr_max:
        raise ConfigError(
            f"lr must be below lr_max = 2n/lambda_max(Theta_0) = {lr_max:.6g} (member "
            f"{worst[0]}, width {worst[1]}): gradient descent on the linearization diverges "
            f"there; got {config.lr:g}")

    gd_inf = KernelGD.fit(kern.ntk, data.y, np.zeros(config.n), config.lr)
    gd_hu = KernelGD.fit(kern.hu, data.y, np.zeros(config.n), config.lr)
    out = _allocate(config, T)
    total, done = S * len(widths) * config.steps, 0
    for s in range(S):
        W0, v0 = initial_weights(config, s, widths[-1])
        for k, m in enumerate(widths):
            Wm, vm = np.ascontiguousarray(W0[:m]), v0[:m].copy()
            f0 = forward(Wm, vm, data.x, act.phi)
            f0_test = forward(Wm, vm, data.x_test, act.phi)
            c1, c2 = empirical_ntk(Wm, vm, data.x_test, act.phi, act.dphi, data.x)
            lin = KernelGD.fit(ntk0[s, k], data.y, f0, config.lr)
            models = {
                "lin": (lin.train(steps), lin.test(lr1 * c1 + lr2 * c2, f0_test, steps)),
                "inf": _both(gd_inf.restarted(data.y, f0), kern.ntk_cross, f0_test, steps),
                "hu": _both(gd_hu.restarted(data.y, f0), kern.hu_cross, f0_test, steps),
            }
            for name, (train, test) in models.items():
                out[f"f_{name}"][s, k], out[f"f_{name}_test"][s, k] = train, test
            out["affine_error"][s, k] = relative_error(
                affine_kernel(kern.coefficients, data.x), ntk0[s, k])
            net = NetworkGD(Wm, vm, data.x, data.y, act.phi, act.dphi, config.lr, lr1, lr2,
                            config.dtype)
            previous = ntk0[s, k]
            for i, t in enumerate(steps):
                while net.steps_taken < t:
                    net.step()
                    done += 1
                    if on_step is not None and done % 64 == 0:
                        on_step(done, total)
                previous = _record(out, s, k, i, net, Wm, vm, data, ntk0[s, k], previous,
                                   steps, lr1, lr2)
    if on_step is not None:
        on_step(total, total)
    _summarise(out, config, steps, data, kern, gd_inf)
    out.update(seed=np.arange(S), width=np.asarray(widths, dtype=np.int64), t=steps,
               example=np.arange(config.n), example2=np.arange(config.n),
               test_example=np.arange(config.n_test), feature=np.arange(config.d),
               node=np.arange(widths[-1]), x=data.x, y=data.y, x_test=data.x_test,
               y_test=data.y_test, ntk0=ntk0, ntk_inf=kern.ntk)
    W0s, v0s = zip(*(initial_weights(config, s, widths[-1]) for s in range(S)), strict=True)
    out.update(W0=np.stack(W0s), v0=np.stack(v0s))
    attrs = {"lr": config.lr, "lr1": lr1, "lr2": lr2,
             **{f"c_{k}": v for k, v in kern.coefficients.items()},
             "tol": config.tol, "lr_max": lr_max, "ntk_inf_method": kern.method}
    return LinearResult(config, out, attrs)


def _both(gd: KernelGD, K_cross: np.ndarray, f0_test: np.ndarray, steps: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    return gd.train(steps), gd.test(K_cross, f0_test, steps)


def _allocate(config: LinearConfig, T: int) -> dict[str, np.ndarray]:
    S, K = config.seeds, len(config.widths)
    out: dict[str, np.ndarray] = {}
    for name in ("net", *MODELS):
        out[f"f_{name}"] = np.full((S, K, T, config.n), np.nan)
        out[f"f_{name}_test"] = np.full((S, K, T, config.n_test), np.nan)
    for name in SERIES:
        out[name] = np.full((S, K, T), np.nan)
    out["affine_error"] = np.full((S, K), np.nan)
    return out


def _record(out: dict[str, np.ndarray], s: int, k: int, i: int, net: NetworkGD,
            W0: np.ndarray, v0: np.ndarray, data: Data, ntk_start: np.ndarray,
            previous: np.ndarray, steps: np.ndarray, lr1: float, lr2: float) -> np.ndarray:
    """The network's outputs and the early-phase measures at record ``i``; returns the NTK
    now (for the next record's velocity)."""
    from meanfield.linear import empirical_ntk

    out["f_net"][s, k, i] = net.outputs(data.x)
    out["f_net_test"][s, k, i] = net.outputs(data.x_test)
    out["W_distance"][s, k, i] = np.linalg.norm(net.W - W0) / np.linalg.norm(W0)
    out["v_distance"][s, k, i] = np.linalg.norm(net.v - v0) / np.linalg.norm(v0)
    out["W_sign_flip_fraction"][s, k, i] = np.mean(np.sign(net.W) != np.sign(W0))
    out["v_sign_flip_fraction"][s, k, i] = np.mean(np.sign(net.v) != np.sign(v0))
    if i == 0:
        ntk = ntk_start
    else:
        t1, t2 = empirical_ntk(net.W, net.v, data.x, net.phi, net.dphi)
        ntk = lr1 * t1 + lr2 * t2
    out["ntk_change"][s, k, i] = np.linalg.norm(ntk - ntk_start) / np.linalg.norm(ntk_start)
    out["kernel_distance"][s, k, i] = kernel_distance(ntk, ntk_start)
    if i > 0:
        out["kernel_velocity"][s, k, i] = (kernel_distance(previous, ntk)
                                           / float(steps[i] - steps[i - 1]))
    return ntk


def _summarise(out: dict[str, np.ndarray], config: LinearConfig, steps: np.ndarray,
               data: Data, kern: _Kernels, gd_inf: KernelGD) -> None:
    """Losses, changes, discrepancies, escapes, slopes, the ensemble and the GP."""
    f, ft = out["f_net"], out["f_net_test"]
    for name in ("net", *MODELS):
        out[f"loss_{name}"] = _loss(out[f"f_{name}"], data.y)
        out[f"test_loss_{name}"] = _loss(out[f"f_{name}_test"], data.y_test)
    out["change"] = _rms(f - f[:, :, :1])
    out["change_test"] = _rms(ft - ft[:, :, :1])
    for name in MODELS:
        out[f"disc_{name}"] = _rms(f - out[f"f_{name}"])
        out[f"disc_{name}_test"] = _rms(ft - out[f"f_{name}_test"])
    S, K = config.seeds, len(config.widths)
    for model in ("lin", "hu"):
        out[f"t_escape_{model}"] = np.array(
            [[escape_step(steps, out[f"disc_{model}_test"][s, k], out["change_test"][s, k],
                          config.tol) for k in range(K)] for s in range(S)])
    widths = np.asarray(config.widths, dtype=float)
    for slope, series in SLOPES.items():
        out[slope] = np.array(loglog_slope(widths, np.mean(out[series][:, :, -1], axis=0)))
    out["ens_mean"] = np.mean(ft, axis=0)
    out["ens_var"] = (np.var(ft, axis=0, ddof=1) if S >= 2
                      else np.full(ft.shape[1:], np.nan))
    A = gd_inf.weights(kern.ntk_cross, steps)
    out["gp_mean"], out["gp_var"] = gp_moments(A, data.y, kern.nngp, kern.nngp_cross,
                                               kern.nngp_test_diag)
