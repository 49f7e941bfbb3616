"""Velocities of the two-layer network under gradient flow (the simulator's hot loop).

Model (conventions of :mod:`meanfield.config`), for rows ``x_mu`` of ``X`` (shape ``(N, d)``),
labels ``y_mu = +-1``, second-layer weights ``a`` (shape ``(M,)``) and first-layer weights ``W``
(shape ``(M, d)``):

    z_mu_i = w_i . x_mu / sqrt(d),      f(x_mu) = (alpha / M) sum_i a_i sigma(z_mu_i),
    L = (1/N) sum_mu l(y_mu f(x_mu)).

Losses ``l(m)`` of the signed output ``m = y f``:

- ``hinge``: ``l = max(h - m, 0)``; ``l'(m) = -1`` if ``m < h`` and ``0`` if ``m >= h``
  (the subgradient 0 is taken at the kink ``m = h``). An example is *satisfied* when
  ``y f >= h``; satisfied examples contribute nothing to the velocities.
- ``squared``: ``l = (1 - m)^2 / 2`` (equal to ``(y - f)^2 / 2`` for ``y = +-1``);
  ``l'(m) = m - 1``. ``h`` is not used by the loss.
- ``logistic``: ``l = log(1 + exp(-m))``, evaluated as ``max(-m, 0) + log1p(exp(-|m|))``;
  ``l'(m) = -1 / (1 + exp(m))``, evaluated without overflow. ``h`` is not used by the loss.

For every loss ``n_unsat`` counts the examples with ``y f < h``. Losses are accumulated in
float64 whatever the dtype.

Velocities (NOT gradients, and WITHOUT the rate ``beta``, which the driver multiplies in):
the flow is ``d theta/dt = beta * v`` with ``v = -M dL/dtheta``, i.e.

    v_a[i] = -(alpha/N) sum_mu l'(y_mu f_mu) y_mu sigma(z_mu_i),
    v_W[i] = -(alpha/N) a_i sum_mu l'(y_mu f_mu) y_mu sigma'(z_mu_i) x_mu / sqrt(d).

Units: ``v`` is per unit of mean-field time ``t`` divided by ``beta``.

Modules: :mod:`~meanfield.step.params` (:class:`StepParams`, the activation and loss tables),
:mod:`~meanfield.step.reference` (plain NumPy), :mod:`~meanfield.step.rows` (the Numba row
passes), :mod:`~meanfield.step.engine` (the blocked BLAS loop, :func:`dense_velocity`),
:mod:`~meanfield.step.certificate` (exact forward skipping), :mod:`~meanfield.step.policy`
(when the certificate runs: its counted cost against what it saves),
:mod:`~meanfield.step.stepper`
(:class:`FullBatchStepper`), :mod:`~meanfield.step.threads`, :mod:`~meanfield.step.array_api`
(the dense step on any NumPy-compatible namespace: CuPy for ``device = "cuda"``, NumPy in the
tests; :class:`ArrayStep`, :class:`ArrayStepper`).
"""

from meanfield.step.array_api import ArrayStep, ArrayStepper
from meanfield.step.engine import DEFAULT_BLOCK, SMALL_WORK, dense_velocity, row_period
from meanfield.step.params import ACTIVATIONS, LOSSES, StepParams
from meanfield.step.reference import numpy_outputs, numpy_velocity
from meanfield.step.stepper import FullBatchStepper
from meanfield.step.threads import set_threads, thread_settings

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_BLOCK",
    "LOSSES",
    "SMALL_WORK",
    "ArrayStep",
    "ArrayStepper",
    "FullBatchStepper",
    "StepParams",
    "dense_velocity",
    "numpy_outputs",
    "numpy_velocity",
    "row_period",
    "set_threads",
    "thread_settings",
]
