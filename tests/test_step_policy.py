"""Tests of meanfield.step.policy: the modes of a hand-worked sequence of calls, the state
round trip, and, through the stepper, that the adaptive skipping is bitwise the dense path in
every mode, certifies rigorously when on, and resumes exactly from a state taken in any mode."""

from __future__ import annotations

import math

import numpy as np
import pytest

from meanfield.step import FullBatchStepper, StepParams
from meanfield.step import policy as policy_mod
from meanfield.step.policy import MAX_OFF, MIN_OFF, MIN_ON, PATIENCE, PAY_RATIO, SkipPolicy

PAYS, LOSES = (100, 100 / PAY_RATIO), (100, 100 / PAY_RATIO + 1)


def _spell(policy, outcomes):
    modes, outcomes = [], list(outcomes)
    while outcomes:
        mode = policy.next_mode()
        modes.append({"on": "N", "off": "F", "arm": "A"}[mode])
        if mode == "on":
            policy.observe(*outcomes.pop(0))
    return "".join(modes)


def test_constants_are_those_the_sequences_below_assume():
    assert (PATIENCE, MIN_OFF, MIN_ON, MAX_OFF) == (2, 4, 16, 64)


def test_a_hand_worked_sequence_of_modes():
    p = SkipPolicy()
    # two calls that do not pay: a short stretch, so off twice MIN_OFF = 8 calls, then a trial
    assert _spell(p, [LOSES, LOSES]) == "NN"
    assert _spell(p, [LOSES]) == "F" * 8 + "AN"
    # the failed trial doubles: 16 off; a trial that pays, then 20 calls that pay
    assert _spell(p, [PAYS] * 21) == "F" * 16 + "A" + "N" * 21
    assert (p.mode, p.off) == ("on", 16)
    # one loss is forgiven (PATIENCE = 2): a loss, a pay, then two losses end a long stretch,
    # which resets the next stretch off to MIN_OFF
    assert _spell(p, [LOSES, PAYS, LOSES, LOSES]) == "NNNN"
    assert (p.mode, p.off, p.left) == ("off", MIN_OFF, MIN_OFF)
    assert _spell(p, [PAYS]) == "F" * 4 + "AN"
    assert p.calls_on == 2 + 1 + 21 + 4 + 1


def test_backoff_is_capped():
    p = SkipPolicy()
    _spell(p, [LOSES, LOSES])
    for _ in range(8):
        _spell(p, [LOSES])  # every trial fails
    assert p.off == MAX_OFF
    assert _spell(p, [LOSES]) == "F" * MAX_OFF + "AN"


def test_not_adaptive_is_always_on():
    p = SkipPolicy(adaptive=False)
    assert _spell(p, [LOSES] * 50) == "N" * 50


def test_the_cost_boundary_is_pay_ratio():
    p = SkipPolicy()
    _spell(p, [(125, 100.0), (125, 100.0)])   # 125 >= 1.25 * 100: pays
    assert p.mode == "on" and p.strikes == 0
    _spell(p, [(124, 100.0), (124, 100.0)])
    assert p.mode == "off"


@pytest.mark.parametrize("split", [1, 3, 9, 10, 11, 27])
def test_state_round_trip_continues_identically(split):
    outcomes = [LOSES, LOSES, LOSES, PAYS, *[PAYS] * 20, LOSES, LOSES, LOSES]
    ref = SkipPolicy()
    whole = _spell(ref, outcomes)
    p = SkipPolicy()
    first = _spell(p, outcomes[:split])
    state = p.get_state()
    assert all(isinstance(v, int) for v in state.values())
    q = SkipPolicy()
    q.set_state(state)
    assert first + _spell(q, outcomes[split:]) == whole
    fresh = SkipPolicy()
    fresh.set_state({"calls": 0})  # a state of an older version: a fresh policy
    assert fresh.get_state() == SkipPolicy().get_state()


def _relu(z):
    return np.maximum(z, 0.0)


def test_adaptive_stepper_is_bitwise_dense_in_every_mode_and_resumes(problem, monkeypatch):
    """At N = 3000, M = 40, d = 10 the certificate saves 0 to 5% of its counted cost: with the
    pay ratio lowered to 3%, the run goes on, off, arm, fails and passes trials. In every call
    the velocities, loss and satisfied mask are the dense ones bit for bit; on calls that ran
    the certificate its bound holds against an independent float64 forward; and a stepper
    restored from a state taken after any call continues with the same modes, evaluations and
    bits."""
    monkeypatch.setattr(policy_mod, "PAY_RATIO", 0.03)
    N, M, d, h, alpha = 3000, 40, 10, 1.0, 2.0
    X, y, a, W = problem(N, M, d, "float64", seed=5)
    p = StepParams("relu", "hinge", h, alpha, "float64")

    def stepper():
        return FullBatchStepper(X, y, p, threads=1, skip=True, directions=np.eye(d)[0],
                                block=512)

    skip, dense = stepper(), FullBatchStepper(X, y, p, threads=1, skip=False, block=512)
    va1, vW1, va0, vW0 = (np.empty_like(v) for v in (a, W, a, W))
    hist, states, weights = [], [], []
    for _ in range(90):
        states.append({k: (v.copy() if isinstance(v, np.ndarray) else v)
                       for k, v in skip.get_state().items()})
        weights.append((a.copy(), W.copy()))
        L1, n1 = skip.velocity(a, W, va1, vW1)
        L0, n0 = dense.velocity(a, W, va0, vW0)
        assert L1 == L0 and n1 == n0
        assert np.array_equal(va1, va0) and np.array_equal(vW1, vW0)
        assert np.array_equal(skip.satisfied, dense.satisfied)
        hist.append((skip.mode, skip.n_evaluated))
        if skip.mode == "on" and skip.certificate.calls > 2:
            c = skip.certificate
            F = alpha / M * (_relu(X @ W.T / math.sqrt(d)) @ a)
            ok = c.margin > 0
            excess = np.abs(F[ok] - (c.margin[ok] + h) * y[ok]) - (c.bound[ok] + c.tau[ok])
            assert np.all(excess <= 1e-12), excess.max()
        a = a + va1
        W = W + vW1
    modes = [m for m, _ in hist]
    assert {"on", "off", "arm"} <= set(modes)
    assert min(n for m, n in hist if m == "on") < N  # it did skip
    assert skip.certificate_calls == skip.policy.calls_on > 0
    for start in (2, 7, modes.index("off") + 1, modes.index("arm"), modes.index("arm") + 1,
                  len(modes) - 20):
        resumed = stepper()
        resumed.set_state(states[start])
        a_r, W_r = (v.copy() for v in weights[start])
        for m_ref, n_ref in hist[start:start + 20]:
            resumed.velocity(a_r, W_r, va1, vW1)
            assert (resumed.mode, resumed.n_evaluated) == (m_ref, n_ref)
            a_r = a_r + va1
            W_r = W_r + vW1
        if start + 20 < len(weights):
            assert np.array_equal(a_r, weights[start + 20][0])
            assert np.array_equal(W_r, weights[start + 20][1])
