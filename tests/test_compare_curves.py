"""meanfield.compare.curves: resampling in asinh t, the finite-M edge spread."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from meanfield.compare.curves import Curves, resample, with_edge_spread
from meanfield.compare.metrics import log_slope
from meanfield.config import make_config


def test_log_slope_and_resample_are_exact_on_their_model_functions():
    t = np.concatenate([[0.0], np.geomspace(1, 1e4, 30)])
    # centred differences are exact for a function linear in log t
    s = log_slope(t, np.log(t + (t == 0)) / 4 + 0.3)
    assert np.allclose(s[1:], 0.25, atol=1e-12) and np.isnan(s[0])
    # linear interpolation in asinh(t / t1) is exact for a function linear in it
    src = Curves("x", t, *(np.arcsinh(t / t[1]) for _ in range(5)))
    dst = np.array([0.0, 0.5, 3.3, 77.0, 9999.0, 2e4])
    out = resample(src, dst)
    assert np.allclose(out.gamma[:-1], np.arcsinh(dst[:-1] / t[1]), rtol=1e-12)
    assert np.isnan(out.gamma[-1])  # outside the theory's range: no extrapolation


def test_edge_spread_matches_monte_carlo_of_m_node_networks():
    """The finite-M band of panel (d): the std of f at |x_par| = X over draws of M nodes
    (hyperbolae of the same gamma, frozen w_perp) and of x_perp, by direct Monte Carlo."""
    config = make_config(M=50, d=30, t_max=100.0)
    t = np.array([0.0, 5.0, 20.0, 60.0])
    curves = Curves("x", t, np.array([0.0, 0.5, 1.2, 2.0]),
                        *(np.zeros(4) for _ in range(2)), np.zeros(4), np.zeros(4))
    curves = dataclasses.replace(curves, X=np.array([np.inf, 2.0, 0.7, 0.3]))
    out = with_edge_spread(curves, config).edge_spread
    assert np.isnan(out[0])  # X = inf at t = 0: no edge
    rng = np.random.default_rng(5)
    R = 20_000  # networks; the Monte Carlo std has relative error ~ 1/sqrt(2R) = 0.5%
    for i in range(1, 4):
        g, X = curves.gamma[i], curves.X[i]
        a0 = config.sa * rng.standard_normal((R, config.M))
        w0 = config.sw * rng.standard_normal((R, config.M))
        a = a0 * np.cosh(g) + w0 * np.sinh(g)
        w_par = w0 * np.cosh(g) + a0 * np.sinh(g)
        # w_perp . x_perp / sqrt(d) ~ N(0, sw^2 (d - 1)/d) for |x_perp|^2 = d - 1
        u = (w_par * X + config.sw * math.sqrt(config.d - 1) * rng.standard_normal(
            (R, config.M))) / math.sqrt(config.d)
        f = config.alpha * np.mean(a * np.maximum(u, 0.0), axis=1)
        assert out[i] == pytest.approx(f.std(), rel=0.03), i
