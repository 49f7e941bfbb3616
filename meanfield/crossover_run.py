r"""Rich to lazy in the hinge model, simulated: the runs of ``meanfield crossover``.

For a list of output scales ``alpha`` (conventions of :mod:`meanfield.config`; the theory and
the meaning of lazy time in :mod:`meanfield.crossover_theory`), :func:`run_crossover` trains

- ``net``: the simulator's network ``f(x) = (alpha/M) sum_i a_i relu(w_i.x/sqrt d)`` on the
  linear hinge, full batch, with the antisymmetric-pair initialisation ``init = "symmetric"``
  (node ``i + M/2`` is ``(-a_i, w_i)``, so ``f_0 = 0``); the config's ``init`` is overridden;
- ``lin``: its weight-space linearization around initialisation (Lee et al. 2019),
  ``f_lin = f_0 + grad f_0 . (theta - theta_0)`` (:class:`LinearizedTwin`), trained by the same
  hinge-loss Euler steps;
- with ``rewind_at = tau_k``, the three rewinding arms of Frankle et al. 2020, restarted from the
  network's state at ``tau_k`` (:func:`rewind_nodes`): ``signs`` (every weight takes its
  initial magnitude and its sign at ``tau_k``), ``signs_random`` (fresh magnitudes from the
  initial law, drawn for the first ``M/2`` nodes and copied to their mirrors, with the signs at
  ``tau_k``), ``shuffle`` (the ``a_i`` permuted at random among all nodes, ``W`` unchanged).

Every ``alpha`` sees the same data and the same initial nodes (the seed's streams of
:mod:`meanfield.data`) and the same random choices of the arms (a sixth stream of the seed).

Time. Every run is integrated in lazy time ``tau`` to the same ``tau_max``: explicit Euler
steps ``theta += beta dt v`` in mean-field time ``dt = dtau/rate``
(``rate = dtau/dt = alpha^2 beta (sa^2+sw^2)/(4 d)``, :func:`~meanfield.crossover_theory.
lazy_time_rate`) with ``v = -M dL/dtheta``; the lazy-time steps are
``dtau_n = max(delta, growth tau_n)``, ``delta = min(dtau, dgamma alpha (sa^2+sw^2)/
(2 sqrt(2d/pi)))`` (one step moves ``gamma`` by at most ``dgamma`` while all examples are
unsatisfied), shortened to land exactly on every record time (:func:`tau_grid`). Record times:
``0``, ``n_times`` log-spaced in ``[tau_max/1000, tau_max]`` and ``rewind_at``
(:func:`record_times`).

The linearized twin. With ``u0 = W0 x/sqrt d``, ``H0 = 1[u0 > 0]`` and ``relu(u0) = H0 u0``,

    f_lin(x) - f_0(x) = (alpha/M) sum_i [da_i relu(u0_i) + a0_i H0_i dw_i.x/sqrt d]
                      = (alpha/M) sum_i H0_i (da_i w0_i + a0_i dw_i).x/sqrt d,

so a step costs one GEMM ``Z = X V^T/sqrt d`` with ``V_i = da_i w0_i + a0_i dw_i`` and a pass of
``Z`` masked by the fixed ``H0`` (kept as bytes); the velocities
``v_a_i = (alpha/N) sum_U y relu(u0_i)``, ``v_W_i = (alpha/N) a0_i sum_U y H0_i x/sqrt d``
both follow from ``A = G^T X_U`` (``G = y H0`` on the unsatisfied rows ``U``):
``v_W_i = alpha a0_i A_i/(N sqrt d)``, ``v_a_i = alpha w0_i.A_i/(N sqrt d)``. Only the
unsatisfied set changes from step to step, and the sum over all rows is fixed: ``A`` is
computed over the smaller of ``U`` and its complement (the total, computed once, minus the
satisfied rows), so the backward GEMM never covers more than half the rows
(:class:`LinearizedTwin`).

Records (:class:`CrossoverResult`; names are those of the crossover file): ``[alpha, t]``
series of ``net`` and ``lin`` (training and held-out errors, loss, slope ``S``, ``gamma``,
Frankle measures, anisotropy), of the kernel's motion on the probe set (the first ``n_probe``
held-out points), of the theory, and of the arms; ``[alpha]`` values at the first crossing of
``error_level`` by the training error (linear interpolation in ``log tau`` between the two
records around it, in ``tau`` when the earlier one is ``tau = 0``; NaN if never crossed).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
from numba import njit, prange

from meanfield import crossover_theory as ct
from meanfield import data as _data
from meanfield import observables as obs
from meanfield.config import Config, ConfigError
from meanfield.step import SMALL_WORK, StepParams, dense_velocity

ARMS = ct.REWIND_ARMS
"""The rewinding arms, in their order of :func:`rewind_nodes`."""

MODEL_SERIES = (
    "train_error", "test_error", "test_misclassification", "loss", "S", "gamma",
    "a_distance", "W_distance", "w_par_sign_flip_fraction", "sign_flip_fraction", "anisotropy",
)
"""Series recorded for ``net`` and ``lin`` (suffixed ``_net``, ``_lin``)."""

KERNEL_SERIES = ("kernel_change_net", "kernel_distance_net", "kernel_velocity_net")
THEORY_SERIES = (
    "train_error_theory", "train_error_lazy", "S_theory", "S_lazy", "gamma_theory",
    "a_distance_theory", "W_distance_theory", "w_par_sign_flip_fraction_theory",
    "anisotropy_theory", "kernel_change_theory", "kernel_distance_theory",
)
ARM_SERIES = ("train_error", "test_error", "test_misclassification", "S")
"""Series of each arm ``A`` (suffixed ``_A``), plus ``train_error_A_theory``."""

_BLOCK = 1024  # rows per block of the twin's forward and backward GEMMs


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class CrossoverSettings:
    """The crossover's own settings (the model, data and seed come from the :class:`Config`).

    ``tau_max`` (lazy time of the end), ``dtau`` and ``dgamma`` (largest lazy-time step and
    largest ``gamma`` per step), ``growth`` (geometric steps ``growth tau``), ``n_times``
    (log-spaced record times), ``n_probe`` (held-out points of the kernel), ``error_level``
    (training error whose first crossing is reported), ``rewind_at`` (``tau_k`` of the arms,
    or ``None``),
    ``linearized`` (train the twin)."""

    tau_max: float = 10.0
    dtau: float = 0.02
    dgamma: float = 0.02
    growth: float = 0.02
    n_times: int = 40
    n_probe: int = 200
    error_level: float = 0.3
    rewind_at: float | None = None
    linearized: bool = True

    def check(self, config: Config) -> None:
        """:class:`ConfigError` naming the first setting out of range."""
        def finite(name: str) -> float:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
            return float(value)

        if not finite("tau_max") > 0:
            raise ConfigError(f"tau_max must be > 0, got {self.tau_max}")
        if not finite("dtau") > 0:
            raise ConfigError(f"dtau must be > 0, got {self.dtau}")
        if not finite("dgamma") > 0:
            raise ConfigError(f"dgamma must be > 0, got {self.dgamma}")
        if not 0 <= finite("growth") <= 1:
            raise ConfigError(f"growth must be in [0, 1], got {self.growth}")
        if not (isinstance(self.n_times, int) and self.n_times >= 2):
            raise ConfigError(f"n_times must be an integer >= 2, got {self.n_times!r}")
        if not (isinstance(self.n_probe, int) and 1 <= self.n_probe <= config.n_test):
            raise ConfigError(f"n_probe must be an integer in [1, n_test = {config.n_test}], "
                              f"got {self.n_probe!r}")
        if not 0 < finite("error_level") < 1:
            raise ConfigError(f"error_level must be in (0, 1), got {self.error_level}")
        if self.rewind_at is not None and not 0 < finite("rewind_at") < self.tau_max:
            raise ConfigError(f"rewind_at must be in (0, tau_max = {self.tau_max:g}), "
                              f"got {self.rewind_at}")


def check_inputs(config: Config, alphas: Sequence[float], settings: CrossoverSettings
                 ) -> np.ndarray:
    """The alphas as an array, or :class:`ConfigError` naming what is not allowed."""
    if config.activation != "relu":
        raise ConfigError(f"activation must be relu for crossover, got {config.activation!r}")
    if config.loss != "hinge":
        raise ConfigError(f"loss must be hinge for crossover, got {config.loss!r}")
    if config.M % 2:
        raise ConfigError(f"M must be even for crossover (antisymmetric pairs), got M={config.M}")
    if config.batch or config.online:
        raise ConfigError("crossover trains in full batch: batch must be 0 and online false")
    if config.integrator != "euler":
        raise ConfigError(f"integrator must be euler for crossover, got {config.integrator!r}")
    if not (config.sa > 0 and config.sw > 0):
        raise ConfigError(f"sa and sw must be > 0 for crossover (the distances from "
                          f"initialisation are relative to them), got sa={config.sa:g}, "
                          f"sw={config.sw:g}")
    if config.margin or config.label_noise:
        raise ConfigError("crossover's theory needs margin = 0 and label_noise = 0")
    if config.n_test < 2:
        raise ConfigError(f"n_test must be >= 2 for crossover (held-out slope), got "
                          f"{config.n_test}")
    al = np.asarray(alphas, dtype=np.float64)
    if al.ndim != 1 or al.size == 0 or not np.all(np.isfinite(al)) or np.any(al <= 0):
        raise ConfigError(f"alphas must be positive finite numbers, got {list(np.ravel(al))}")
    if np.any(np.diff(al) <= 0):
        raise ConfigError(f"alphas must be strictly increasing, got {list(al)}")
    settings.check(config)
    return al


# ----------------------------------------------------------------------------- time grid


def record_times(tau_max: float, n_times: int, rewind_at: float | None = None) -> np.ndarray:
    """``0``, ``n_times`` log-spaced lazy times in ``[tau_max/1000, tau_max]`` and
    ``rewind_at``, sorted, without duplicates."""
    taus = np.concatenate([[0.0], np.geomspace(tau_max / 1000.0, tau_max, n_times)])
    if rewind_at is not None:
        taus = np.append(taus, float(rewind_at))
    return np.unique(taus)


def step_floor(config: Config, alpha: float, dtau: float, dgamma: float) -> float:
    """``delta = min(dtau, dgamma alpha (sa^2+sw^2)/(2 sqrt(2d/pi)))``: the smallest lazy-time
    step, so that a step moves ``gamma`` by at most ``dgamma`` (``dgamma/dtau <=
    2 sqrt(2d/pi)/(alpha (sa^2+sw^2))`` for Gaussian data)."""
    s2 = config.sa**2 + config.sw**2
    return min(dtau, dgamma * alpha * s2 / (2.0 * math.sqrt(2.0 * config.d / math.pi)))


def tau_grid(records: np.ndarray, delta: float, growth: float) -> tuple[np.ndarray, np.ndarray]:
    """Step grid ``tau_0 = 0 < tau_1 < ...`` with ``tau_{n+1} - tau_n = max(delta, growth
    tau_n)``, shortened to land exactly on every record time; returns the grid and the grid
    index of every record. A step that would end within ``1e-6`` of its length before a record
    ends on it."""
    taus = [0.0]
    where = []
    tau = 0.0
    for r in records:
        r = float(r)
        while tau < r:
            step = max(delta, growth * tau)
            nxt = tau + step
            if nxt >= r - 1e-6 * step:
                nxt = r
            taus.append(nxt)
            tau = nxt
        where.append(len(taus) - 1)
    return np.asarray(taus), np.asarray(where, dtype=np.int64)


# ----------------------------------------------------------------------------- the twin


_FASTMATH = {"reassoc", "contract"}
"""Fast-math flags of the row sums: the compiler picks the summation order (vectorized), the
same machine code for every row and every call, hence the same bits at a fixed thread count."""


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def _masked_rowsum(Z, mask, out, scale, offset):
    """``out[r] = offset[r] + scale sum_i mask[r, i] Z[r, i]`` (float64; a masked-out entry
    is skipped, whatever its value)."""
    for r in prange(Z.shape[0]):
        s = 0.0
        for i in range(Z.shape[1]):
            s += Z[r, i] if mask[r, i] else 0.0
        out[r] = offset[r] + scale * s


@njit(parallel=True, cache=True)
def _gather_rows(mask, y, X, idx, G, XU):
    """``G[k] = y[idx_k] mask[idx_k]`` and ``XU[k] = X[idx_k]`` for every ``k``."""
    for k in prange(idx.shape[0]):
        r = idx[k]
        yr = y[r]
        zero = 0.0 * yr
        for i in range(mask.shape[1]):
            G[k, i] = yr if mask[r, i] else zero
        for j in range(X.shape[1]):
            XU[k, j] = X[r, j]


def _relu_outputs(X: np.ndarray, a: np.ndarray, W: np.ndarray, alpha: float) -> np.ndarray:
    """``f = (alpha/M) sum_i a_i relu(w_i.x/sqrt d)`` of every row of ``X`` (float64; at an
    antisymmetric-pair initialisation it is 0 up to the rounding of the sum)."""
    M, d = W.shape
    out = np.empty(X.shape[0])
    Ws = (W.astype(np.float64) / math.sqrt(d)).T
    a64 = a.astype(np.float64)
    for s in range(0, X.shape[0], _BLOCK):
        R = np.maximum(X[s:s + _BLOCK].astype(np.float64) @ Ws, 0.0)
        out[s:s + _BLOCK] = R @ a64
    return out * (alpha / M)


class _Threads:
    """Numba passes on one thread below :data:`~meanfield.step.SMALL_WORK` ``(example, node)``
    pairs, as in the network's step (waking a second thread costs more than it saves)."""

    def __init__(self, work: int) -> None:
        self.small = work < SMALL_WORK
        self.saved = 0

    def __enter__(self) -> None:
        if self.small:
            self.saved = numba.get_num_threads()
            numba.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        if self.small:
            numba.set_num_threads(self.saved)


class LinearFeatures:
    """The linearization's fixed features on a set of inputs ``X``: the mask
    ``H0 = 1[W0 x > 0]`` (bytes, ``N x M``) and ``f_0`` (float64).

    The forward runs on ``block`` rows at a time in place: ``Z = X_blk V^T/sqrt d`` (BLAS),
    then one vectorized pass of ``Z`` masked by ``H0`` gives ``f``."""

    block = 2048
    """Rows per forward GEMM and per backward flush (as the network's step)."""

    def __init__(self, X: np.ndarray, a0: np.ndarray, W0: np.ndarray, alpha: float) -> None:
        N, M = X.shape[0], W0.shape[0]
        self.X, self.a0, self.W0, self.alpha = X, a0, W0, float(alpha)
        self.d = X.shape[1]
        self.mask = np.empty((N, M), np.uint8)
        for s in range(0, N, self.block):
            np.greater(X[s:s + self.block] @ W0.T, 0, out=self.mask[s:s + self.block])
        self.f0 = _relu_outputs(X, a0, W0, alpha)
        self.Z = np.empty((min(self.block, N), M), X.dtype)
        self.f = np.empty(N)
        self.threads = _Threads(N * M)

    def effective(self, da: np.ndarray, dW: np.ndarray) -> np.ndarray:
        """``V_i/sqrt d = (da_i w0_i + a0_i dw_i)/sqrt d``, transposed (``d x M``)."""
        V = da[:, None] * self.W0 + self.a0[:, None] * dW
        V *= V.dtype.type(1.0 / math.sqrt(self.d))
        return V.T

    def outputs(self, da: np.ndarray, dW: np.ndarray) -> np.ndarray:
        """``f_lin`` (float64) of every row at ``theta0 + (da, dW)``; a view into a buffer
        that the next call overwrites."""
        VsT = self.effective(da, dW)
        scale = self.alpha / self.W0.shape[0]
        N = self.X.shape[0]
        with self.threads:
            for s in range(0, N, self.block):
                n = min(self.block, N - s)
                np.matmul(self.X[s:s + n], VsT, out=self.Z[:n])
                _masked_rowsum(self.Z[:n], self.mask[s:s + n], self.f[s:s + n], scale,
                               self.f0[s:s + n])
        return self.f


class LinearizedTwin(LinearFeatures):
    """The weight-space linearization of the network around ``(a0, W0)`` on the training set
    ``(X, y)``, its hinge loss and its velocities ``v = -M dL_lin/dtheta`` (see the module
    docstring). The state is the displacement ``(da, dW) = theta - theta0``.

    The backward ``A = sum_{mu in U} y_mu H0_mu^T x_mu`` (``U`` the unsatisfied rows) runs
    over the smaller of ``U`` and its complement: with ``A_all``, the same sum over every row
    (a constant, computed once), ``A = A_all - sum_{mu not in U} y_mu H0_mu^T x_mu`` when more
    than half of the rows are unsatisfied (early training: no backward at all while every row
    is). The rows of the chosen set are gathered, ``block`` at a time in index order, into
    ``G = y H0`` and ``X`` buffers and accumulated by BLAS (``A += G^T X_U``); which set is
    used depends only on the unsatisfied count, and every operation is in a fixed order, so
    the velocities are deterministic at a fixed thread count."""

    def __init__(self, X: np.ndarray, y: np.ndarray, a0: np.ndarray, W0: np.ndarray,
                 alpha: float, h: float) -> None:
        super().__init__(X, a0, W0, alpha)
        self.y, self.h = y, float(h)
        self.y64 = y.astype(np.float64)
        N = X.shape[0]
        M, d = W0.shape
        self.G = np.empty((min(self.block, N), M), X.dtype)
        self.XU = np.empty((min(self.block, N), d), X.dtype)
        self.A = np.empty((M, d), X.dtype)
        self.tmp = np.empty((M, d), X.dtype)
        self.W064 = W0.astype(np.float64)
        self.satisfied = np.ones(N, bool)
        self.A_all = np.empty((M, d), X.dtype)
        self._accumulate(np.arange(N), self.A_all)

    def _accumulate(self, idx: np.ndarray, out: np.ndarray) -> None:
        """``out = sum_{mu in idx} y_mu H0_mu^T x_mu`` (``idx`` sorted)."""
        out[...] = 0
        with _Threads(idx.shape[0] * self.W0.shape[0]):
            for s in range(0, idx.shape[0], self.block):
                part = idx[s:s + self.block]
                n = part.shape[0]
                _gather_rows(self.mask, self.y, self.X, part, self.G, self.XU)
                np.matmul(self.G[:n].T, self.XU[:n], out=self.tmp)
                out += self.tmp

    def loss(self, da: np.ndarray, dW: np.ndarray) -> float:
        """``L_lin = (1/N) sum_mu (h - y f_lin)_+``."""
        m = self.y64 * self.outputs(da, dW)
        return float(np.maximum(self.h - m, 0.0).mean())

    def velocity(self, da: np.ndarray, dW: np.ndarray, v_a_out: np.ndarray,
                 v_W_out: np.ndarray) -> tuple[float, int]:
        """Velocities at ``theta0 + (da, dW)`` into the outputs; returns ``(L, n_unsat)``
        (``y f < h`` unsatisfied, as in the network's step)."""
        N, d = self.X.shape
        m = self.y64 * self.outputs(da, dW)
        np.greater_equal(m, self.h, out=self.satisfied)
        loss = float(np.maximum(self.h - m, 0.0).sum() / N)
        sat = np.flatnonzero(self.satisfied)
        n_unsat = N - sat.shape[0]
        if sat.shape[0] == 0:
            A = self.A_all
        elif sat.shape[0] < n_unsat:
            self._accumulate(sat, self.A)
            np.subtract(self.A_all, self.A, out=self.A)
            A = self.A
        else:
            self._accumulate(np.flatnonzero(~self.satisfied), self.A)
            A = self.A
        c = self.alpha / (N * math.sqrt(d))
        np.multiply(A, self.a0[:, None], out=v_W_out)
        v_W_out *= v_W_out.dtype.type(c)
        v_a_out[...] = c * np.einsum("ik,ik->i", self.W064, A.astype(np.float64))
        return loss, int(n_unsat)


# ----------------------------------------------------------------------------- measurements


def anisotropy(W: np.ndarray) -> float:
    """``rms(w_par)/rms(w_perp)``: root mean square of ``W[:, 0]`` over the nodes over that
    of ``W[:, 1:]`` over nodes and components."""
    W = np.asarray(W, np.float64)
    return float(np.sqrt(np.mean(W[:, 0] ** 2)) / np.sqrt(np.mean(W[:, 1:] ** 2)))


def kernel_derivative(a: np.ndarray, W: np.ndarray, v_a: np.ndarray, v_W: np.ndarray,
                      X: np.ndarray) -> np.ndarray:
    """Derivative of :func:`~meanfield.crossover_theory.tangent_kernel` on the rows of ``X``
    along ``(a, W) -> (a + s v_a, W + s v_W)`` at ``s = 0`` (the steps ``H`` held fixed: their
    jumps happen on a null set of times)."""
    a, W = np.asarray(a, np.float64), np.asarray(W, np.float64)
    v_a, v_W = np.asarray(v_a, np.float64), np.asarray(v_W, np.float64)
    X = np.asarray(X, np.float64)
    M, d = W.shape
    U = X @ W.T / math.sqrt(d)
    H = (U > 0).astype(np.float64)
    R = np.maximum(U, 0.0)
    dR = H * (X @ v_W.T / math.sqrt(d))
    relu_part = dR @ R.T
    step_part = ((H * (2.0 * a * v_a)) @ H.T) * (X @ X.T / d)
    return (relu_part + relu_part.T + step_part) / M


def first_crossing(tau: np.ndarray, err: np.ndarray, level: float,
                   values: dict[str, np.ndarray]) -> dict[str, float]:
    """``tau`` and each of ``values`` at the first crossing of ``level`` by ``err`` (from
    above): linear in ``log tau`` between the records around it (in ``tau`` when the earlier
    record is ``tau = 0``); NaN for all if ``err`` never reaches ``level`` (a NaN record
    ends the search)."""
    out = {"tau": math.nan, **{k: math.nan for k in values}}
    for r in range(len(tau)):
        if not np.isfinite(err[r]):
            return out
        if err[r] <= level:
            break
    else:
        return out
    if r == 0:
        return {"tau": float(tau[0]), **{k: float(v[0]) for k, v in values.items()}}
    e0, e1 = float(err[r - 1]), float(err[r])
    w = (e0 - level) / (e0 - e1) if e0 != e1 else 1.0
    if tau[r - 1] > 0:
        t_at = math.exp(math.log(tau[r - 1]) + w * (math.log(tau[r]) - math.log(tau[r - 1])))
    else:
        t_at = float(tau[r - 1] + w * (tau[r] - tau[r - 1]))
    out["tau"] = t_at
    for k, v in values.items():
        out[k] = float(v[r - 1] + w * (v[r] - v[r - 1]))
    return out


# ----------------------------------------------------------------------------- rewinding


@dataclass(frozen=True)
class RewindDraws:
    """The random choices of the arms (the same for every alpha): fresh magnitudes
    ``a_mag`` (``M``), ``W_mag`` (``M x d``) of the initial law, drawn for the first ``M/2``
    nodes and copied to their mirrors, and a permutation ``perm`` of the nodes."""

    a_mag: np.ndarray
    W_mag: np.ndarray
    perm: np.ndarray


def rewind_draws(config: Config) -> RewindDraws:
    """:class:`RewindDraws` from the seed's sixth stream (``SeedSequence(seed).spawn(6)[5]``,
    independent of the five of :func:`meanfield.data.streams`): ``a_mag`` then ``W_mag`` then
    ``perm``."""
    child = np.random.SeedSequence(config.seed).spawn(len(_data.STREAMS) + 1)[-1]
    rng = np.random.Generator(np.random.PCG64(child))
    half = config.M // 2
    a_half = np.abs(config.sa * rng.standard_normal(half))
    W_half = np.abs(config.sw * rng.standard_normal((half, config.d)))
    perm = rng.permutation(config.M)
    dt = config.dtype
    return RewindDraws(np.concatenate([a_half, a_half]).astype(dt),
                       np.ascontiguousarray(np.concatenate([W_half, W_half]), dtype=dt), perm)


def rewind_nodes(arm: str, a0: np.ndarray, W0: np.ndarray, a_k: np.ndarray, W_k: np.ndarray,
                 draws: RewindDraws) -> tuple[np.ndarray, np.ndarray]:
    """The rewound nodes ``(a', W')`` of ``arm`` from the initial nodes ``(a0, W0)`` and the
    state ``(a_k, W_k)`` at ``tau_k`` (see the module docstring; signs are sign bits)."""
    if arm == "signs":
        return np.copysign(np.abs(a0), a_k), np.copysign(np.abs(W0), W_k)
    if arm == "signs_random":
        return np.copysign(draws.a_mag, a_k), np.copysign(draws.W_mag, W_k)
    if arm == "shuffle":
        return a_k[draws.perm].copy(), W_k.copy()
    raise ValueError(f"arm must be one of {', '.join(ARMS)}; got {arm!r}")


def node_moments(a: np.ndarray, W: np.ndarray) -> tuple[float, float]:
    """Sample ``mp' = (<a^2> + <w_par^2>)/2`` and ``maw' = <a w_par>`` over the nodes."""
    a64, w64 = np.asarray(a, np.float64), np.asarray(W[:, 0], np.float64)
    return float((np.mean(a64**2) + np.mean(w64**2)) / 2.0), float(np.mean(a64 * w64))


# ----------------------------------------------------------------------------- the result


@dataclass(frozen=True)
class CrossoverResult:
    """What :func:`run_crossover` computed.

    ``config`` (the run's config: ``init = "symmetric"``, ``alpha`` of the first run),
    ``settings``, ``alpha`` (``[alpha]``), ``t`` (record lazy times ``tau``, ``[t]``),
    ``time`` (mean-field times ``[alpha, t]``), ``a0``, ``w_par0`` (initial nodes ``[node]``),
    ``series`` (``[alpha, t]`` arrays by name), ``at_alpha`` (``[alpha]`` arrays by name),
    ``alpha_c`` (:func:`~meanfield.crossover_theory.alpha_c`), ``attrs`` (steps per alpha,
    elapsed seconds). Without ``linearized`` the ``lin`` names are absent; without
    ``rewind_at`` the arms' names are."""

    config: Config
    settings: CrossoverSettings
    alpha: np.ndarray
    t: np.ndarray
    time: np.ndarray
    a0: np.ndarray
    w_par0: np.ndarray
    series: dict[str, np.ndarray]
    at_alpha: dict[str, np.ndarray]
    alpha_c: float
    attrs: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- the runs


@dataclass
class _Shared:
    """Data and initial nodes shared by every alpha."""

    config: Config
    train: _data.Dataset
    test: _data.Dataset
    a0: np.ndarray
    W0: np.ndarray
    probe: np.ndarray
    K0: np.ndarray


def _shared(config: Config, n_probe: int) -> _Shared:
    rngs = _data.streams(config.seed)
    train = _data.training_set(config, rngs["train"])
    test = _data.held_out_set(config, rngs["test"])
    a0, W0 = _data.initial_weights(config, rngs["init"])
    probe = test.X[:n_probe].astype(np.float64)
    return _Shared(config, train, test, a0, W0, probe, ct.tangent_kernel(a0, W0, probe))


Velocity = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[float, int]]
OnRecord = Callable[[int, np.ndarray, np.ndarray, float, int, np.ndarray, np.ndarray], None]


def _integrate(velocity: Velocity, a: np.ndarray, W: np.ndarray, grid: np.ndarray,
               rec_at: np.ndarray, first: int, rate: float, beta: float,
               on_record: OnRecord) -> None:
    """Euler steps ``theta += beta dt v`` from grid point ``first`` to the end, with
    ``dt = (tau_{n+1} - tau_n)/rate``; ``on_record(r, a, W, L, n_unsat, v_a, v_W)`` at the
    grid points ``rec_at[r]`` (``L``, ``n_unsat`` and ``v`` of the state there)."""
    v_a, v_W = np.empty_like(a), np.empty_like(W)
    r = int(np.searchsorted(rec_at, first))
    K = len(grid) - 1
    one = a.dtype.type
    for n in range(first, K + 1):
        loss, n_unsat = velocity(a, W, v_a, v_W)
        if r < len(rec_at) and rec_at[r] == n:
            on_record(r, a, W, loss, n_unsat, v_a, v_W)
            r += 1
        if n == K:
            break
        step = one(beta * (grid[n + 1] - grid[n]) / rate)
        a += step * v_a
        W += step * v_W
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(W))):
            raise ConfigError(f"the crossover run diverged at tau = {grid[n + 1]:.4g}: "
                              "reduce dtau, dgamma or growth")


def _model_record(s: dict[str, np.ndarray], sfx: str, r: int, N: int, loss: float,
                  n_unsat: int, f_test: np.ndarray, sh: _Shared, a: np.ndarray,
                  W: np.ndarray, h: float) -> None:
    test = sh.test
    s["train_error" + sfx][r] = n_unsat / N
    if "loss" + sfx in s:
        s["loss" + sfx][r] = loss
    s["test_error" + sfx][r] = obs.unsatisfied_fraction(f_test, test.y, h)
    s["test_misclassification" + sfx][r] = obs.misclassified_fraction(f_test, test.y)
    s["S" + sfx][r] = obs.output_slope(f_test, test.x_par)
    if "gamma" + sfx in s:
        s["gamma" + sfx][r] = obs.gamma_from_nodes(a, W[:, 0], sh.a0, sh.W0[:, 0])
        s["a_distance" + sfx][r] = obs.relative_distance(a, sh.a0)
        s["W_distance" + sfx][r] = obs.relative_distance(W, sh.W0)
        s["w_par_sign_flip_fraction" + sfx][r] = obs.sign_flip_fraction(W[:, 0], sh.W0[:, 0])
        s["sign_flip_fraction" + sfx][r] = obs.sign_flip_fraction(W, sh.W0)
        s["anisotropy" + sfx][r] = anisotropy(W)


def _run_alpha(sh: _Shared, cfg: Config, st: CrossoverSettings, taus: np.ndarray,
               draws: RewindDraws | None) -> tuple[dict, dict, int]:
    """Every run and the theory of one alpha: ``([t] series, [alpha] values, steps)``."""
    n_rec = len(taus)
    s: dict[str, np.ndarray] = {}
    models = ("net", "lin") if st.linearized else ("net",)
    for m in models:
        for name in MODEL_SERIES:
            s[f"{name}_{m}"] = np.full(n_rec, np.nan)
    for name in KERNEL_SERIES:
        s[name] = np.full(n_rec, np.nan)
    rate = ct.lazy_time_rate(cfg)
    grid, rec_at = tau_grid(taus, step_floor(cfg, cfg.alpha, st.dtau, st.dgamma), st.growth)
    params = StepParams(activation="relu", loss="hinge", h=cfg.h, alpha=cfg.alpha,
                        dtype=cfg.dtype)
    train, N = sh.train, cfg.N
    K0n = np.linalg.norm(sh.K0)  # 0 when no probe input reaches a node (tiny M): NaN below
    saved: dict[str, np.ndarray] = {}
    k_rewind = (int(np.flatnonzero(taus == st.rewind_at)[0])
                if st.rewind_at is not None else -1)

    def net_velocity(a, W, v_a, v_W):
        return dense_velocity(train.X, train.y, a, W, params, v_a, v_W)

    def net_record(r, a, W, loss, n_unsat, v_a, v_W):
        f_test = _relu_outputs(sh.test.X, a, W, cfg.alpha)
        _model_record(s, "_net", r, N, loss, n_unsat, f_test, sh, a, W, cfg.h)
        K = ct.tangent_kernel(a, W, sh.probe)
        s["kernel_change_net"][r] = ct.kernel_change(K, sh.K0)
        s["kernel_distance_net"][r] = ct.kernel_distance(K, sh.K0)
        dK = kernel_derivative(a, W, v_a, v_W, sh.probe) * (cfg.beta / rate)
        with np.errstate(divide="ignore", invalid="ignore"):
            s["kernel_velocity_net"][r] = float(np.linalg.norm(dK) / K0n)
        if r == k_rewind:
            saved["a"], saved["W"] = a.copy(), W.copy()

    a, W = sh.a0.copy(), sh.W0.copy()
    _integrate(net_velocity, a, W, grid, rec_at, 0, rate, cfg.beta, net_record)

    if st.linearized:
        twin = LinearizedTwin(train.X, train.y, sh.a0, sh.W0, cfg.alpha, cfg.h)
        test_feat = LinearFeatures(sh.test.X, sh.a0, sh.W0, cfg.alpha)

        def lin_record(r, da, dW, loss, n_unsat, v_a, v_W):
            f_test = test_feat.outputs(da, dW)
            _model_record(s, "_lin", r, N, loss, n_unsat, f_test, sh, sh.a0 + da,
                          sh.W0 + dW, cfg.h)

        da, dW = np.zeros_like(sh.a0), np.zeros_like(sh.W0)
        _integrate(twin.velocity, da, dW, grid, rec_at, 0, rate, cfg.beta, lin_record)

    # theory
    th = ct.crossover_theory(cfg, taus)
    s["train_error_theory"], s["train_error_lazy"] = th.train_error, th.train_error_lazy
    s["S_theory"], s["S_lazy"], s["gamma_theory"] = th.S, th.S_lazy, th.gamma
    fm = ct.frankle_measures(cfg, th.gamma)
    for name in ("a_distance", "W_distance", "w_par_sign_flip_fraction", "anisotropy"):
        s[name + "_theory"] = fm[name]
    kt = ct.nodewise_kernel_theory(sh.a0, sh.W0, sh.probe, th.gamma)
    s["kernel_change_theory"] = kt["kernel_change"]
    s["kernel_distance_theory"] = kt["kernel_distance"]

    # values at the error level
    lv = st.error_level
    one: dict[str, float] = {"S_star": ct.S_star(cfg)}
    x = first_crossing(taus, s["train_error_net"], lv, {
        "gamma": s["gamma_net"], "kernel_change": s["kernel_change_net"],
        "test_misclassification": s["test_misclassification_net"]})
    one["tau_at_error_net"], one["gamma_at_error_net"] = x["tau"], x["gamma"]
    one["kernel_change_at_error_net"] = x["kernel_change"]
    one["test_misclassification_at_error_net"] = x["test_misclassification"]
    if st.linearized:
        x = first_crossing(taus, s["train_error_lin"], lv,
                           {"test_misclassification": s["test_misclassification_lin"]})
        one["tau_at_error_lin"] = x["tau"]
        one["test_misclassification_at_error_lin"] = x["test_misclassification"]
    one["tau_at_error_theory"] = ct.tau_at_error(cfg, lv)
    one["tau_at_error_lazy"] = ct.tau_at_error(cfg, lv, lazy=True)
    one["gamma_at_error_theory"] = float(ct.gamma_at_error(cfg, lv))
    one["kernel_change_at_error_theory"] = float(ct.nodewise_kernel_theory(
        sh.a0, sh.W0, sh.probe, [one["gamma_at_error_theory"]])["kernel_change"][0])

    # rewinding arms
    if st.rewind_at is not None and draws is not None:
        one["gamma_at_rewind"] = float(s["gamma_net"][k_rewind])
        for arm in ARMS:
            for name in ARM_SERIES:
                s[f"{name}_{arm}"] = np.full(n_rec, np.nan)
            ar, Wr = rewind_nodes(arm, sh.a0, sh.W0, saved["a"], saved["W"], draws)
            one[f"mp_{arm}"], one[f"maw_{arm}"] = node_moments(ar, Wr)

            def arm_record(r, a, W, loss, n_unsat, v_a, v_W, arm=arm):
                f_test = _relu_outputs(sh.test.X, a, W, cfg.alpha)
                _model_record(s, "_" + arm, r, N, loss, n_unsat, f_test, sh, a, W, cfg.h)

            _integrate(net_velocity, ar, Wr, grid, rec_at, int(rec_at[k_rewind]), rate,
                       cfg.beta, arm_record)
            rt = ct.rewind_theory(cfg, taus, st.rewind_at, arm)
            s[f"train_error_{arm}_theory"] = rt.train_error
            one[f"mp_{arm}_theory"], one[f"maw_{arm}_theory"] = rt.mp, rt.maw
        one["gamma_at_rewind_theory"] = rt.gamma_k
    return s, one, len(grid) - 1


def run_crossover(config: Config, alphas: Sequence[float], tau_max: float = 10.0,
                  dtau: float = 0.02, dgamma: float = 0.02, growth: float = 0.02,
                  n_times: int = 40, n_probe: int = 200, error_level: float = 0.3,
                  rewind_at: float | None = None, linearized: bool = True) -> CrossoverResult:
    """Run ``net`` (and ``lin``, and the rewinding arms) at every alpha, with the theory
    (see the module docstring; the arguments are the fields of :class:`CrossoverSettings`).

    ``config`` gives the sizes, data law, ``h``, ``beta``, ``sa``, ``sw``, dtype and seed;
    its ``alpha``, ``init``, ``dt``, ``growth``, ``t_max`` and record times are not used
    (``init`` is ``"symmetric"``). Raises :class:`ConfigError` naming an input out of range:
    activation other than relu, loss other than hinge, odd ``M``, mini-batches or online
    data, an integrator other than Euler, a margin or label noise, alphas not positive or not
    strictly increasing, ``rewind_at`` outside ``(0, tau_max)``, ``tau_max <= 0``.
    """
    started = time.perf_counter()
    st = CrossoverSettings(tau_max=tau_max, dtau=dtau, dgamma=dgamma, growth=growth,
                           n_times=n_times, n_probe=n_probe, error_level=error_level,
                           rewind_at=rewind_at, linearized=linearized)
    al = check_inputs(config, alphas, st)
    base = config.replace(init="symmetric", alpha=float(al[0]))
    sh = _shared(base, n_probe)
    taus = record_times(tau_max, n_times, rewind_at)
    series: dict[str, list[np.ndarray]] = {}
    at_alpha: dict[str, list[float]] = {}
    steps, times = [], []
    with np.errstate(over="ignore", invalid="ignore"):
        for alpha in al:
            cfg = base.replace(alpha=float(alpha))
            draws = rewind_draws(cfg) if rewind_at is not None else None
            s, one, n_steps = _run_alpha(sh, cfg, st, taus, draws)
            for k, v in s.items():
                series.setdefault(k, []).append(v)
            for k, v in one.items():
                at_alpha.setdefault(k, []).append(v)
            steps.append(n_steps)
            times.append(ct.mean_field_time(cfg, taus))
    return CrossoverResult(
        config=base, settings=st, alpha=al, t=taus, time=np.stack(times),
        a0=sh.a0.astype(np.float64), w_par0=sh.W0[:, 0].astype(np.float64),
        series={k: np.stack(v) for k, v in series.items()},
        at_alpha={k: np.asarray(v, dtype=np.float64) for k, v in at_alpha.items()},
        alpha_c=ct.alpha_c(base),
        attrs={"n_steps": np.asarray(steps), "elapsed_seconds": time.perf_counter() - started},
    )
