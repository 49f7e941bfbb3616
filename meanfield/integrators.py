"""Explicit integrators of the flow ``d theta/dt = beta v(theta)`` on a step grid.

With ``h_n = beta (t_{n+1} - t_n)`` (in the dtype of the weights) and ``k1 = v(theta_n)``:

- :class:`Euler`: ``theta_{n+1} = theta_n + h_n k1``;
- :class:`Heun` (explicit trapezoid, second order): ``theta* = theta_n + h_n k1``,
  ``k2 = v(theta*)``, ``theta_{n+1} = theta_n + (h_n / 2) (k1 + k2)``.

Each integrator is a small object with preallocated buffers: :meth:`extra_stages` evaluates
the velocities after the first (which the driver computes itself, since the state at ``t_n`` is
also measured from it) and :meth:`update` advances the weights in place. ``velocity(a, W,
out_a, out_W) -> evaluations`` is the driver's velocity of the current batch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Velocity = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], int]


class Euler:
    """Explicit Euler: one velocity per step."""

    def __init__(self, a: np.ndarray, W: np.ndarray) -> None:
        del a, W  # no buffers

    def extra_stages(self, a: np.ndarray, W: np.ndarray, k1: tuple[np.ndarray, np.ndarray],
                     h: np.floating, velocity: Velocity) -> int:
        """No stage beyond the first; returns 0 evaluations."""
        return 0

    def update(self, a: np.ndarray, W: np.ndarray, k1: tuple[np.ndarray, np.ndarray],
               h: np.floating) -> None:
        """``theta += h k1`` in place."""
        a += h * k1[0]
        W += h * k1[1]


class Heun:
    """Heun's method (explicit trapezoid): two velocities per step, the second at the Euler
    predictor ``theta* = theta + h k1`` (same batch)."""

    def __init__(self, a: np.ndarray, W: np.ndarray) -> None:
        self.a_mid, self.W_mid = np.empty_like(a), np.empty_like(W)
        self.k2 = (np.empty_like(a), np.empty_like(W))

    def extra_stages(self, a: np.ndarray, W: np.ndarray, k1: tuple[np.ndarray, np.ndarray],
                     h: np.floating, velocity: Velocity) -> int:
        """``k2 = v(theta + h k1)``; returns its forward evaluations."""
        np.multiply(k1[0], h, out=self.a_mid)
        self.a_mid += a
        np.multiply(k1[1], h, out=self.W_mid)
        self.W_mid += W
        return velocity(self.a_mid, self.W_mid, *self.k2)

    def update(self, a: np.ndarray, W: np.ndarray, k1: tuple[np.ndarray, np.ndarray],
               h: np.floating) -> None:
        """``theta += (h/2) (k1 + k2)`` in place (``k1`` is overwritten by ``k1 + k2``)."""
        half = h.dtype.type(0.5) * h
        ka, kW = k1
        ka += self.k2[0]
        kW += self.k2[1]
        a += half * ka
        W += half * kW


INTEGRATORS = {"euler": Euler, "heun": Heun}
