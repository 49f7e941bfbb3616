"""Tests of meanfield.step.rows: the scalar activations and losses, and the fast-math row sums."""

from __future__ import annotations

import numpy as np
import pytest

from meanfield.step.params import (
    ACTIVATION_TABLE,
    ACTIVATIONS,
    LEAKY_RELU,
    LINEAR,
    LOSS_CODES,
    RELU,
    StepParams,
)
from meanfield.step.reference import numpy_activation, numpy_loss
from meanfield.step.rows import dsig, loss_and_g, row_sum, sig


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_row_activations_match_the_reference(name):
    """Every hand-written activation has its Numba pair equal to the NumPy pair (float64)."""
    p = StepParams("leaky_relu:0.1" if name == "leaky_relu" else name)
    sigma, dsigma = numpy_activation(p)
    u = np.linspace(-5.0, 5.0, 101)
    code = ACTIVATION_TABLE[name].code
    s = np.array([sig(code, x, p.slope) for x in u])
    ds = np.array([dsig(code, x, p.slope) for x in u])
    np.testing.assert_allclose(s, sigma(u), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(ds, dsigma(u), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("loss", list(LOSS_CODES))
def test_row_losses_match_the_reference(loss):
    h = 0.7
    p = StepParams("relu", loss, h)
    m = np.array([-800.0, -30.0, -1.0, 0.0, 0.5, 0.7, 0.9, 2.0, 40.0, 800.0])
    ref_l, ref_dl = numpy_loss(p, m)
    out = np.array([loss_and_g(LOSS_CODES[loss], x, h) for x in m])
    np.testing.assert_allclose(out[:, 0], ref_l, rtol=1e-15, atol=0)
    np.testing.assert_allclose(out[:, 1], -ref_dl, rtol=1e-15, atol=0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_row_sums_do_not_depend_on_the_rows_address(dtype):
    """The fast-math (vectorized) row sums must give the same bits for a row wherever it sits
    (the skipping path evaluates an example at another slot, hence another address, than the
    dense path), and agree with a float64 sum to the rounding of the dtype."""
    rng = np.random.default_rng(11)
    u = float(np.finfo(dtype).eps)
    slope = np.asarray(0.1, dtype)
    sigmas = ((RELU, lambda z: np.maximum(z, 0)),
              (LEAKY_RELU, lambda z: np.where(z > 0, z, slope * z)),
              (LINEAR, lambda z: z))
    for M in (7, 25, 33, 101, 400):
        a = rng.standard_normal(M).astype(dtype)
        row = rng.standard_normal(M).astype(dtype)
        for kind, sig_ in sigmas:
            exact = float(a.astype(np.float64) @ sig_(row).astype(np.float64))
            sums = set()
            for off in range(9):
                buf = np.zeros(3 * M + 16, dtype)
                Z = buf[off:off + 2 * M].reshape(2, M)
                Z[1] = row
                sums.add(row_sum(Z, Z, 1, a, kind, 0.1))
            assert len(sums) == 1, (M, kind, sums)
            s = sums.pop()
            assert abs(s - exact) <= (M + 1) * u * float(np.abs(a) @ np.abs(row)) + 1e-300
