"""Full-batch velocities over a fixed training set: the engine plus the skipping certificate."""

from __future__ import annotations

from typing import Any

import numpy as np

from meanfield.step.certificate import COST_THREADS, Certificate
from meanfield.step.engine import DEFAULT_BLOCK, Engine, row_period
from meanfield.step.params import StepParams
from meanfield.step.policy import ARM, OFF, ON, SkipPolicy
from meanfield.step.threads import set_threads


class FullBatchStepper:
    """Full-batch velocities over a fixed training set, with exact forward skipping.

    ``velocity(a, W, v_a_out, v_W_out) -> (L, n_unsat)`` gives the velocities of
    :mod:`meanfield.step`, bitwise equal to the dense computation. After a call, ``satisfied``
    holds ``y f >= h`` of every example at the weights of that call (evaluated now, or
    certified) and ``n_evaluated`` the number of examples whose forward pass ran.

    Skipping (``skip=True``; hinge loss and activations with a known Lipschitz constant only):
    see :mod:`meanfield.step.certificate` (``directions``, ``max_dirs``, ``refresh``,
    ``perp_dirs`` are its parameters). It runs only while it pays: :mod:`meanfield.step.policy`
    switches it off when its counted cost exceeds the forward evaluations it saves, and tries
    it again later (``certificate_calls`` counts the calls that used it; ``adaptive=False``
    keeps it on). Bitwise equality with the dense path rests on the BLAS product giving every
    row of ``Z`` the same bits whatever the other rows of its block: blocks always have
    ``block`` rows and an example always sits at a row congruent to its index modulo the
    period measured by :func:`meanfield.step.engine.row_period`; if no period is found,
    skipping is turned off.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, params: StepParams, threads: int = 0,
                 skip: bool = True, directions: np.ndarray | None = None,
                 block: int = DEFAULT_BLOCK, max_dirs: int = 4, refresh: int = 25,
                 perp_dirs: int = 8, adaptive: bool = True) -> None:
        self.X = np.ascontiguousarray(X, dtype=params.dtype)
        self.y = np.ascontiguousarray(y, dtype=params.dtype)
        self.params = params
        self.threads = set_threads(threads)
        self.skip = bool(skip and params.loss == "hinge" and params.lipschitz is not None)
        self.N, self.d = self.X.shape
        self.block = max(1, min(block, self.N))
        self.satisfied = np.zeros(self.N, dtype=bool)
        self.n_evaluated = 0
        self.period = 0
        """The BLAS row period (measured at the first call; 0 before, or if none)."""
        self.certificate = Certificate(self.X, params, directions, max_dirs, refresh, perp_dirs)
        self.policy = SkipPolicy(adaptive)
        self.mode = ON
        """The mode of the last call: ``on``, ``off`` or ``arm`` (:mod:`~meanfield.step.policy`),
        ``dense`` without skipping."""
        self._engine: Engine | None = None

    @property
    def certificate_calls(self) -> int:
        """Calls that ran the skipping certificate (after its first two, which evaluate all)."""
        return self.policy.calls_on

    def velocity(self, a: np.ndarray, W: np.ndarray, v_a_out: np.ndarray,
                 v_W_out: np.ndarray) -> tuple[float, int]:
        """Velocities of the training set at ``(a, W)``; returns ``(L, n_unsat)``."""
        eng = self._get_engine(a.shape[0])
        mode = self.mode = self.policy.next_mode() if self.skip else "dense"
        if mode in ("dense", OFF):  # no certificate work; its bookkeeping goes stale until ARM
            self.n_evaluated = self.N
            return eng.run(self.X, self.y, a, W, None, v_a_out, v_W_out, record=self._mark)
        certified = None
        if mode == ARM:
            self.certificate.rearm(a, W)
        else:
            certified = self.certificate.begin(a, W)
        rows = None if certified is None else np.flatnonzero(~certified)
        self.satisfied[:] = False if certified is None else certified
        self.n_evaluated = self.N if rows is None else rows.shape[0]
        out = eng.run(self.X, self.y, a, W, rows, v_a_out, v_W_out, record=self._record)
        self.certificate.end(a, W)
        if certified is not None:
            cost = self.certificate.cost * self.threads / COST_THREADS
            self.policy.observe(self.N - self.n_evaluated, cost)
        return out

    def outputs(self, a: np.ndarray, W: np.ndarray, X: np.ndarray | None = None) -> np.ndarray:
        """Dense forward ``f(x)`` (float64) of the training set (or of the rows of ``X``)."""
        if X is None:
            return self._get_engine(a.shape[0]).outputs(self.X, a, W)
        X = np.ascontiguousarray(X, dtype=self.params.dtype)
        eng = Engine(a.shape[0], self.d, self.params, max(1, min(self.block, X.shape[0])))
        return eng.outputs(X, a, W)

    def get_state(self) -> dict[str, Any]:
        """The certificate's state and ``satisfied``, for checkpoints (copies)."""
        state = self.certificate.get_state()
        if state["calls"]:
            state["satisfied"] = self.satisfied.copy()
            state.update(self.policy.get_state())
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`get_state`. The velocities never depend on this state (they are
        bitwise those of the dense path); it only saves work."""
        self.certificate.set_state(state)
        self.policy.set_state(state)
        if self.certificate.calls:
            self.satisfied[:] = np.asarray(state["satisfied"], dtype=bool)

    def _get_engine(self, M: int) -> Engine:
        """The engine (created at the first call: the BLAS row period is measured then)."""
        if self._engine is None:
            self.period = row_period(self.params.dtype, M, self.d, self.block)
            self.skip = self.skip and self.period != 0
            self._engine = Engine(M, self.d, self.params, self.block, self.period)
        return self._engine

    def _mark(self, rows, slot, Z, S, yb, f) -> None:
        self.satisfied[rows] = yb * f >= self.params.h

    def _record(self, rows, slot, Z, S, yb, f) -> None:
        self._mark(rows, slot, Z, S, yb, f)
        self.certificate.record(rows, slot, Z, S, yb, f)
