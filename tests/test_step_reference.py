"""Tests of meanfield.step.reference (plain NumPy): against central finite differences of a
loss written independently, and against independent forward outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from meanfield.step.params import StepParams
from meanfield.step.reference import numpy_outputs

ACTS = ["relu", "leaky_relu:0.1", "erf", "tanh", "linear", "x**3/3 + x"]
LOSSES = ["hinge", "squared", "logistic"]


@pytest.mark.parametrize("act", ACTS)
def test_reference_outputs(act, problem, sigma):
    X, _, a, W = problem(300, 7, 5, seed=2)
    p = StepParams(act, "hinge", 1.0, 1.3, "float64")
    ref = 1.3 / 7 * (sigma(act, X @ W.T / math.sqrt(5)) @ a)
    np.testing.assert_allclose(numpy_outputs(a, W, X, p), ref, rtol=0,
                               atol=1e-13 * np.abs(ref).max())
