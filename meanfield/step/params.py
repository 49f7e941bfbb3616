"""The model's parameters besides the weights, and the table of hand-written activations.

Every activation with a hand-written kernel has one entry in :data:`ACTIVATION_TABLE`: its
code (a named module-level integer; Numba freezes such globals into compile-time constants, so
``if kind == RELU:`` compiles exactly as a literal), whether it is *homogeneous*
(``sigma(z) = z sigma'(z)``: then the velocity of ``a`` follows from that of ``W`` at no cost),
and a Lipschitz constant of ``sigma`` (``sup |sigma'|``; ``None`` turns the forward skipping
off). Adding an activation is one entry here plus its pair ``(sigma, sigma')`` in
:func:`meanfield.step.rows.sig` / :func:`meanfield.step.rows.dsig` and in the NumPy reference
(:data:`meanfield.step.reference.NUMPY_ACTIVATIONS`). Any other expression goes through the
generic path (``sigma`` and ``sigma'`` compiled from the expression by ``analytic.codegen``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)

# activation codes (compile-time constants in the Numba kernels)
RELU = 0
LEAKY_RELU = 1
ERF = 2
TANH = 3
LINEAR = 4
GENERIC = 5


class Activation(NamedTuple):
    """One row of :data:`ACTIVATION_TABLE`."""

    code: int
    homogeneous: bool
    """``sigma(z) == z sigma'(z)`` for every ``z``."""
    lipschitz: float | None
    """``sup |sigma'|`` (``None``: unknown, no forward skipping)."""


ACTIVATION_TABLE: dict[str, Activation] = {
    "relu": Activation(RELU, True, 1.0),
    "leaky_relu": Activation(LEAKY_RELU, True, 1.0),  # slope in [0, 1)
    "erf": Activation(ERF, False, TWO_OVER_SQRT_PI),
    "tanh": Activation(TANH, False, 1.0),
    "linear": Activation(LINEAR, True, 1.0),
    "generic": Activation(GENERIC, False, None),
}

ACTIVATIONS = tuple(name for name in ACTIVATION_TABLE if name != "generic")
"""Activations with hand-written kernels; any other expression goes through the generic path."""

# loss codes (compile-time constants in the Numba kernels)
HINGE = 0
SQUARED = 1
LOGISTIC = 2
LOSS_CODES = {"hinge": HINGE, "squared": SQUARED, "logistic": LOGISTIC}
LOSSES = tuple(LOSS_CODES)


@dataclass(frozen=True)
class StepParams:
    """Everything the kernels need to know about the model, besides the weights.

    ``activation`` is a name or an expression accepted by
    :func:`analytic.activations.get_activation` (``"leaky_relu:0.1"`` gives the slope).
    ``dtype`` is ``"float32"`` or ``"float64"``: the dtype of ``X``, ``a``, ``W`` and the
    velocities. Derived: ``kind`` (hand-written kernel or ``"generic"``), ``slope`` (leaky
    ReLU), ``lipschitz`` (a Lipschitz constant of ``sigma``, ``None`` if not known: then the
    forward skipping is off).
    """

    activation: str = "relu"
    loss: str = "hinge"
    h: float = 1.0
    alpha: float = 1.0
    dtype: Any = "float64"
    kind: str = field(init=False)
    slope: float = field(init=False)
    lipschitz: float | None = field(init=False)

    def __post_init__(self) -> None:
        from analytic.activations import X, get_activation

        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {self.loss!r}")
        if np.dtype(self.dtype) not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64; got {self.dtype!r}")
        act = get_activation(self.activation)
        base = act.name.split(":")[0]
        kind = base if base in ACTIVATIONS else "generic"
        slope = float(-act.expr.subs(X, -1)) if kind == "leaky_relu" else 0.0
        object.__setattr__(self, "dtype", np.dtype(self.dtype))
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "slope", slope)
        object.__setattr__(self, "lipschitz", ACTIVATION_TABLE[kind].lipschitz)

    @property
    def code(self) -> int:
        """The activation's code in the Numba kernels."""
        return ACTIVATION_TABLE[self.kind].code

    @property
    def homogeneous(self) -> bool:
        """``sigma(z) == z sigma'(z)``."""
        return ACTIVATION_TABLE[self.kind].homogeneous

    @property
    def loss_code(self) -> int:
        """The loss's code in the Numba kernels."""
        return LOSS_CODES[self.loss]
