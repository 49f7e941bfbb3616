"""Velocities of the two-layer network under gradient flow (the simulator's hot loop).

Model (DESIGN.md, section 2), for rows ``x_mu`` of ``X`` (shape ``(N, d)``), labels
``y_mu = +-1``, second-layer weights ``a`` (shape ``(M,)``) and first-layer weights ``W``
(shape ``(M, d)``):

    z_mu_i = w_i . x_mu / sqrt(d),      f(x_mu) = (alpha / M) sum_i a_i sigma(z_mu_i),
    L = (1/N) sum_mu l(y_mu f(x_mu)).

Losses ``l(m)`` of the signed output ``m = y f``:

- ``hinge``: ``l = max(h - m, 0)``; ``l'(m) = -1`` if ``m < h`` and ``0`` if ``m >= h``
  (the subgradient 0 is taken at the kink ``m = h``). An example is *satisfied* when
  ``y f >= h``; satisfied examples contribute nothing to the velocities.
- ``squared``: ``l = (1 - m)^2 / 2`` (equal to ``(y - f)^2 / 2`` for ``y = +-1``);
  ``l'(m) = m - 1``. ``h`` is not used.
- ``logistic``: ``l = log(1 + exp(-m))``, evaluated as ``max(-m, 0) + log1p(exp(-|m|))``;
  ``l'(m) = -1 / (1 + exp(m))``, evaluated without overflow. ``h`` is not used.

For every loss ``n_unsat`` counts the examples with ``y f < h``.

Velocities (NOT gradients, and WITHOUT the rate ``beta``, which the driver multiplies in):
the flow is ``d theta/dt = beta * v`` with ``v = -M dL/dtheta``, i.e.

    v_a[i] = -(alpha/N) sum_mu l'(y_mu f_mu) y_mu sigma(z_mu_i),
    v_W[i] = -(alpha/N) a_i sum_mu l'(y_mu f_mu) y_mu sigma'(z_mu_i) x_mu / sqrt(d).

Units: ``v`` is per unit of mean-field time ``t`` divided by ``beta``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ACTIVATIONS = ("relu", "leaky_relu", "erf", "tanh", "linear")
"""Activations with hand-written kernels; any other expression goes through the generic path."""

LOSSES = ("hinge", "squared", "logistic")


@dataclass(frozen=True)
class StepParams:
    """Everything the kernels need to know about the model, besides the weights.

    ``activation`` is a name or an expression accepted by
    :func:`analytic.activations.get_activation` (``"leaky_relu:0.1"`` gives the slope).
    ``dtype`` is ``"float32"`` or ``"float64"``: the dtype of ``X``, ``a``, ``W`` and the
    velocities; losses are always accumulated in float64.
    """

    activation: str = "relu"
    loss: str = "hinge"
    h: float = 1.0
    alpha: float = 1.0
    dtype: Any = "float64"
    kind: str = field(init=False)
    slope: float = field(init=False)

    def __post_init__(self) -> None:
        from analytic.activations import X, get_activation

        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {self.loss!r}")
        if np.dtype(self.dtype) not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64; got {self.dtype!r}")
        act = get_activation(self.activation)
        base = act.name.split(":")[0]
        kind = base if base in ACTIVATIONS else "generic"
        slope = float(-act.expr.subs(X, -1)) if base == "leaky_relu" else 0.0
        object.__setattr__(self, "dtype", np.dtype(self.dtype))
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "slope", slope)


def _np_activation(params: StepParams):
    """NumPy callables ``(sigma, sigma')`` of the activation."""
    k, s = params.kind, params.slope
    if k == "relu":
        return (lambda u: np.maximum(u, 0)), (lambda u: (u > 0).astype(u.dtype))
    if k == "leaky_relu":
        return (lambda u: np.where(u > 0, u, s * u)), (lambda u: np.where(u > 0, 1.0, s))
    if k == "erf":
        from scipy.special import erf

        c = 2 / math.sqrt(math.pi)
        return erf, (lambda u: c * np.exp(-u * u))
    if k == "tanh":
        return np.tanh, (lambda u: 1 - np.tanh(u) ** 2)
    if k == "linear":
        return (lambda u: u), (lambda u: np.ones_like(u))
    import sympy

    from analytic.activations import X, get_activation

    act = get_activation(params.activation)
    f = sympy.lambdify(X, act.expr, modules=["scipy", "numpy"])
    df = sympy.lambdify(X, act.derivative(1), modules=["scipy", "numpy"])
    return (lambda u: np.broadcast_to(f(u), u.shape)), (lambda u: np.broadcast_to(df(u), u.shape))


def _np_loss(params: StepParams, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Loss ``l(m)`` and derivative ``l'(m)`` (float64) of the signed outputs ``m = y f``."""
    m = m.astype(np.float64)
    if params.loss == "hinge":
        return np.maximum(params.h - m, 0.0), np.where(m < params.h, -1.0, 0.0)
    if params.loss == "squared":
        return 0.5 * (1.0 - m) ** 2, m - 1.0
    loss = np.maximum(-m, 0.0) + np.log1p(np.exp(-np.abs(m)))
    e = np.exp(-np.abs(m))
    dl = np.where(m >= 0, -e / (1.0 + e), -1.0 / (1.0 + e))
    return loss, dl


def numpy_velocity(
    X: np.ndarray,
    y: np.ndarray,
    a: np.ndarray,
    W: np.ndarray,
    params: StepParams,
    v_a_out: np.ndarray,
    v_W_out: np.ndarray,
) -> tuple[float, int]:
    """Reference implementation, plain NumPy: fills ``v_a_out``, ``v_W_out`` with the
    velocities of the module docstring over the rows of ``X``; returns ``(L, n_unsat)``.

    Builds the full ``(N, M)`` pre-activation matrix: obvious, readable, memory-hungry.
    """
    sigma, dsigma = _np_activation(params)
    N, d = X.shape
    M = a.shape[0]
    Z = X @ W.T / math.sqrt(d)
    S = sigma(Z)
    f = (params.alpha / M) * (S @ a)
    m = y * f
    loss, dl = _np_loss(params, m)
    g = (-dl * y).astype(X.dtype)  # -l'(y f) y
    v_a_out[...] = (params.alpha / N) * (S.T @ g)
    G = dsigma(Z) * g[:, None]
    v_W_out[...] = (params.alpha / (N * math.sqrt(d))) * a[:, None] * (G.T @ X)
    return float(loss.mean()), int(np.count_nonzero(m < params.h))


def numpy_outputs(a: np.ndarray, W: np.ndarray, X: np.ndarray, params: StepParams) -> np.ndarray:
    """``f(x_mu)`` for every row of ``X`` (plain NumPy)."""
    sigma, _ = _np_activation(params)
    Z = X @ W.T / math.sqrt(X.shape[1])
    return (params.alpha / a.shape[0]) * (sigma(Z) @ a)


def dense_velocity(
    X: np.ndarray,
    y: np.ndarray,
    a: np.ndarray,
    W: np.ndarray,
    params: StepParams,
    v_a_out: np.ndarray,
    v_W_out: np.ndarray,
) -> tuple[float, int]:
    """Velocities over all rows of ``X`` (mini-batches, online, reference); see the module
    docstring. Returns ``(L, n_unsat)``."""
    return numpy_velocity(X, y, a, W, params, v_a_out, v_W_out)


class FullBatchStepper:
    """Full-batch velocities over a fixed training set, with per-example bookkeeping.

    ``velocity(a, W, v_a_out, v_W_out) -> (L, n_unsat)``; after a call, ``satisfied`` holds
    ``y f >= h`` for every example at the weights of that call and ``n_evaluated`` the number of
    examples whose forward pass ran.
    """

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        params: StepParams,
        threads: int = 0,
        skip: bool = True,
    ) -> None:
        self.X = np.ascontiguousarray(X, dtype=params.dtype)
        self.y = np.ascontiguousarray(y, dtype=params.dtype)
        self.params = params
        self.threads = threads
        self.skip = skip and params.loss == "hinge"
        N = self.X.shape[0]
        self.satisfied = np.zeros(N, dtype=bool)
        self.n_evaluated = 0

    def velocity(
        self, a: np.ndarray, W: np.ndarray, v_a_out: np.ndarray, v_W_out: np.ndarray
    ) -> tuple[float, int]:
        out = dense_velocity(self.X, self.y, a, W, self.params, v_a_out, v_W_out)
        f = numpy_outputs(a, W, self.X, self.params)
        self.satisfied[:] = self.y * f >= self.params.h
        self.n_evaluated = self.X.shape[0]
        return out

    def outputs(self, a: np.ndarray, W: np.ndarray, X: np.ndarray | None = None) -> np.ndarray:
        """Dense forward ``f(x)`` of the training set (or of the rows of ``X``)."""
        return numpy_outputs(a, W, self.X if X is None else X, self.params)

    def get_state(self) -> dict[str, np.ndarray]:
        """Per-example bookkeeping, for checkpoints (arrays only)."""
        return {"satisfied": self.satisfied.copy()}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.satisfied[:] = state["satisfied"]
