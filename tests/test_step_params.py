"""Tests of meanfield.step.params: the activation table's flags, StepParams' validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from meanfield.step.params import (
    ACTIVATION_TABLE,
    ACTIVATIONS,
    GENERIC,
    LOSS_CODES,
    LOSSES,
    StepParams,
)
from meanfield.step.reference import numpy_activation


def _spec(name: str) -> str:
    return "leaky_relu:0.1" if name == "leaky_relu" else name


def test_table_codes_are_distinct_and_names_match():
    codes = [entry.code for entry in ACTIVATION_TABLE.values()]
    assert len(set(codes)) == len(codes)
    assert ACTIVATION_TABLE["generic"].code == GENERIC
    assert set(ACTIVATIONS) == set(ACTIVATION_TABLE) - {"generic"}
    assert len(set(LOSS_CODES.values())) == len(LOSSES)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_flags_hold_for_every_hand_written_activation(name):
    """``homogeneous`` iff sigma(z) = z sigma'(z) on a grid; ``lipschitz`` = sup |sigma'|
    (attained on the grid, which contains 0 and positive points)."""
    p = StepParams(_spec(name))
    assert p.kind == name and p.code == ACTIVATION_TABLE[name].code
    sigma, dsigma = numpy_activation(p)
    u = np.linspace(-6.0, 6.0, 2401)
    homogeneous = np.allclose(sigma(u), u * dsigma(u), rtol=1e-14, atol=1e-14)
    assert homogeneous == p.homogeneous
    sup = float(np.max(np.abs(dsigma(u))))
    assert sup <= p.lipschitz <= sup * (1 + 1e-12)


def test_derived_fields():
    p = StepParams("leaky_relu:0.1", "squared", 0.5, 2.0, "float32")
    assert (p.kind, p.slope, p.lipschitz, p.dtype) == ("leaky_relu", 0.1, 1.0,
                                                        np.dtype("float32"))
    assert p.loss_code == LOSS_CODES["squared"]
    assert StepParams("erf").lipschitz == pytest.approx(2 / math.sqrt(math.pi), rel=1e-15)
    g = StepParams("x*tanh(x)")
    assert (g.kind, g.code, g.lipschitz, g.homogeneous) == ("generic", GENERIC, None, False)
    assert StepParams("relu").slope == 0.0


@pytest.mark.parametrize("kwargs", [{"loss": "hinge2"}, {"dtype": "float16"},
                                    {"activation": "nonsense("}])
def test_invalid_parameters_are_refused(kwargs):
    with pytest.raises(ValueError):
        StepParams(**kwargs)
