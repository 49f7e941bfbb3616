"""When the skipping certificate runs: it must save more forward work than it costs.

The certificate (:mod:`meanfield.step.certificate`) costs work at every call (the bounds of
every example, the eigenvalues of the motion, the bookkeeping of the evaluated rows) and saves
the forward pass of the examples it certifies. Both are known after each call: the cost as an
operation count (:attr:`Certificate.cost`, in forward evaluations of one example, scaled by
the thread count: :data:`~meanfield.step.certificate.COST_THREADS`) and the saving as the
number of examples skipped. The policy compares them:

- ``on``: the certificate runs. After ``PATIENCE`` calls in a row that do not pay (skipped <
  cost) it is switched off for ``off`` calls.
- ``off``: every example is evaluated, no certificate work at all (its bookkeeping goes stale).
- ``arm``: one dense call that also records every example (fresh margins, zero bounds); the
  call after it is a *trial*: if it pays, ``on`` again; if not, ``off`` again for twice as
  long (at most ``MAX_OFF`` calls). A stretch on shorter than ``MIN_ON`` calls also doubles
  the next stretch off; a longer one resets it to ``MIN_OFF``.

So a certificate that stops paying (large steps, many examples at risk) costs at most one trial
every ``MAX_OFF`` calls, and one that would pay again (smaller steps, a shrinking unsatisfied
set) is back within ``off`` calls. The decisions depend only on operation counts and the
trajectory, never on the clock: the same run makes the same decisions (the recorded
``n_evaluated`` are reproducible), and the velocities are bitwise those of the dense path in
every mode.
"""

from __future__ import annotations

from typing import Any

ON, OFF, ARM = "on", "off", "arm"
_MODES = (ON, OFF, ARM)

PAY_RATIO = 1.25
"""A call pays when it skips at least this many times its counted cost: the counts are
calibrated to about 20% (``benchmarks/certificate_cost.py``), and a certificate that saves
about what it costs loses in practice (the skip path's scattered rows)."""

PATIENCE = 2
"""Calls in a row that do not pay before the certificate is switched off."""

MIN_OFF = 4
"""Calls off after a long stretch on."""

MIN_ON = 16
"""A stretch on shorter than this (from an ``arm``, or from the start) does not repay the
arm that began it: the next stretch off is twice as long."""

MAX_OFF = 64
"""The longest stretch off: a trial at least this often, whatever the history."""


class SkipPolicy:
    """The mode of each call (``on``, ``off`` or ``arm``; see the module docstring).

    Example::

        policy = SkipPolicy()
        mode = policy.next_mode()          # before a call
        ...                                # the call, in that mode
        policy.observe(skipped, cost)      # after a call in mode "on"
    """

    _STATE = ("mode", "off", "left", "strikes", "stretch", "trial", "calls_on")

    def __init__(self, adaptive: bool = True) -> None:
        self.adaptive = adaptive
        """``False``: always ``on`` (the certificate runs at every call)."""
        self.mode = ON
        self.off = MIN_OFF
        """The length of the next stretch off."""
        self.left = 0
        """Calls still to go off."""
        self.strikes = 0
        """Calls in a row (mode ``on``) that did not pay."""
        self.stretch = 0
        """Calls on since the last ``arm`` (or the start)."""
        self.trial = False
        """Whether the next ``on`` call follows an ``arm``."""
        self.calls_on = 0
        """Calls that ran the certificate (and could skip)."""

    def next_mode(self) -> str:
        """The mode of the coming call."""
        if self.mode == OFF:
            if self.left > 0:
                self.left -= 1
                return OFF
            self.mode, self.trial = ARM, True
            return ARM
        if self.mode == ARM:
            self.mode = ON
        return ON

    def observe(self, skipped: int, cost: float) -> None:
        """After a call in mode ``on`` that could skip: ``skipped`` examples were certified,
        for a certificate ``cost`` in forward evaluations of one example."""
        self.calls_on += 1
        self.stretch += 1
        pays = skipped >= PAY_RATIO * cost or not self.adaptive
        if self.trial:
            self.trial = False
            if not pays:
                self._switch_off(failed=True)
            return
        self.strikes = 0 if pays else self.strikes + 1
        if self.strikes >= PATIENCE:
            self._switch_off(failed=self.stretch < MIN_ON)

    def _switch_off(self, failed: bool) -> None:
        """Off for ``off`` calls: twice as long as last time after a failed trial or a short
        stretch on, ``MIN_OFF`` after a long one."""
        self.off = min(2 * self.off, MAX_OFF) if failed else MIN_OFF
        self.mode, self.left, self.strikes, self.stretch = OFF, self.off, 0, 0

    def get_state(self) -> dict[str, int]:
        """The policy's counters (for checkpoints): ``policy_<name>`` integer keys."""
        state = {f"policy_{key}": int(getattr(self, key)) for key in self._STATE[1:]}
        state["policy_mode"] = _MODES.index(self.mode)
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`get_state` (a state without policy keys: a fresh policy)."""
        self.__init__(self.adaptive)
        if state.get("policy_mode") is None:
            return
        self.mode = _MODES[int(state["policy_mode"])]
        for key in self._STATE[1:]:
            setattr(self, key, int(state[f"policy_{key}"]))
        self.trial = bool(self.trial)
