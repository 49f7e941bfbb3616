"""Datasets: laws, labels, margin, label noise, seeding, dtypes.

Statistical checks use tolerances of 5 standard errors of the estimated quantity (stated at
each assert), so a correct sampler fails with probability below 1e-6 per check and a wrong law
(a different moment by more than the tolerance) fails for sure.
"""

import math

import numpy as np
import pytest

from meanfield.config import Config, ConfigError
from meanfield.data import (
    BLOCK,
    batch_indices,
    held_out_set,
    initial_weights,
    make_dataset,
    online_examples,
    sample_inputs,
    streams,
    training_set,
)


def test_gaussian_moments():
    n, d = 40_000, 6
    X, x_par = sample_inputs(streams(1)["train"], n, d, "gaussian")
    np.testing.assert_array_equal(x_par, X[:, 0])
    # mean: standard error 1/sqrt(n); second moments: standard error sqrt(2/n) (diagonal)
    np.testing.assert_allclose(X.mean(0), 0, atol=5 / math.sqrt(n))
    cov = X.T @ X / n
    np.testing.assert_allclose(cov, np.eye(d), atol=5 * math.sqrt(2 / n))
    # fourth moment of a coordinate is 3 (standard error sqrt(96/n))
    assert abs((X[:, 0] ** 4).mean() - 3) < 5 * math.sqrt(96 / n)


def test_blocked_draws_equal_one_large_draw():
    n, d = BLOCK * 2 + 123, 5
    X, _ = sample_inputs(streams(6)["train"], n, d, "gaussian")
    np.testing.assert_array_equal(X, streams(6)["train"].standard_normal((n, d)))
    X32, _ = sample_inputs(streams(6)["train"], n, d, "gaussian", dtype="float32")
    assert X32.dtype == np.float32 and X32.flags.c_contiguous
    np.testing.assert_array_equal(X32, X.astype(np.float32))


def test_sphere_radius_and_moments():
    n, d = 40_000, 4
    X, _ = sample_inputs(streams(2)["train"], n, d, "sphere")
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), math.sqrt(d), rtol=1e-13)
    # isotropy: E x x^T = I exactly (radius^2 / d = 1); each entry has standard error <= 2/sqrt(n)
    np.testing.assert_allclose(X.T @ X / n, np.eye(d), atol=5 * 2 / math.sqrt(n))
    # E x_par^4 = 3 d / (d + 2) = 2 on the sphere (3 for the Gaussian); x_par^4 <= d^2 = 16
    assert abs((X[:, 0] ** 4).mean() - 2.0) < 5 * 16 / math.sqrt(n)


def test_labels_follow_the_teacher_and_x_par_is_the_first_coordinate():
    ds = make_dataset(streams(3)["train"], 5000, 7)
    np.testing.assert_array_equal(ds.x_par, ds.X[:, 0])
    np.testing.assert_array_equal(ds.y, np.sign(ds.x_par))
    assert ds.X.flags.c_contiguous and ds.X.shape == (5000, 7)


def test_label_noise_flips_the_asked_fraction():
    n, p = 50_000, 0.2
    ds = make_dataset(streams(4)["train"], n, 3, label_noise=p)
    flipped = np.mean(ds.y != np.sign(ds.x_par))
    assert abs(flipped - p) < 5 * math.sqrt(p * (1 - p) / n)  # binomial standard error


@pytest.mark.parametrize("law", ["gaussian", "sphere"])
def test_margin_drops_small_x_par_and_keeps_n(law):
    n, d, kappa = 20_000, 50, 1.0
    ds = make_dataset(streams(5)["train"], n, d, law=law, margin=kappa)
    assert len(ds) == n
    assert np.all(np.abs(ds.x_par) >= kappa)
    if law == "gaussian":
        # E[|z| : |z| >= kappa] = phi(kappa) / Phi(-kappa), an independent closed form
        phi = math.exp(-kappa**2 / 2) / math.sqrt(2 * math.pi)
        tail = 0.5 * math.erfc(kappa / math.sqrt(2))
        expected = phi / tail
        # conditional std of |z| is below 1, so 5 standard errors < 5/sqrt(n)
        assert abs(np.abs(ds.x_par).mean() - expected) < 5 / math.sqrt(n)
        # x_perp is untouched by the selection
        np.testing.assert_allclose(ds.X[:, 1:].var(0), 1, atol=5 * math.sqrt(2 / n))


def test_margin_too_large_is_refused():
    with pytest.raises(ConfigError, match="margin"):
        sample_inputs(streams(0)["train"], 10, 3, margin=6.0)


def test_same_seed_same_arrays_and_different_seeds_differ():
    c = Config(N=300, d=8, n_test=100, M=20)
    first = training_set(c, streams(11)["train"])
    again = training_set(c, streams(11)["train"])
    other = training_set(c, streams(12)["train"])
    np.testing.assert_array_equal(first.X, again.X)
    np.testing.assert_array_equal(first.y, again.y)
    assert not np.array_equal(first.X, other.X)
    a1, W1 = initial_weights(c, streams(11)["init"])
    a2, W2 = initial_weights(c, streams(11)["init"])
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(W1, W2)


def test_streams_are_independent_of_each_other():
    """The training set does not change when the held-out size or the batch draws change."""
    c1 = Config(N=200, d=5, n_test=10)
    c2 = Config(N=200, d=5, n_test=999)
    s1, s2 = streams(7), streams(7)
    held_out_set(c2, s2["test"])
    s2["batch"].random(17)
    np.testing.assert_array_equal(training_set(c1, s1["train"]).X,
                                  training_set(c2, s2["train"]).X)
    test = held_out_set(c1, streams(7)["test"])
    assert not np.array_equal(test.X, training_set(c1, streams(7)["train"]).X[:10])


def test_held_out_labels_are_clean_and_online_labels_are_noisy():
    c = Config(N=10, d=4, n_test=20_000, label_noise=0.3)
    test = held_out_set(c, streams(1)["test"])
    np.testing.assert_array_equal(test.y, np.sign(test.x_par))
    fresh = online_examples(c, streams(1)["online"], 20_000)
    assert abs(np.mean(fresh.y != np.sign(fresh.x_par)) - 0.3) < 5 * math.sqrt(0.21 / 20_000)


def test_float32_is_the_float64_draw_rounded():
    c64 = Config(N=500, d=9, dtype="float64")
    c32 = Config(N=500, d=9, dtype="float32")
    d64 = training_set(c64, streams(9)["train"])
    d32 = training_set(c32, streams(9)["train"])
    assert d32.X.dtype == np.float32 and d32.y.dtype == np.float32
    assert d32.X.flags.c_contiguous
    np.testing.assert_array_equal(d32.X, d64.X.astype(np.float32))
    a, W = initial_weights(c32, streams(9)["init"])
    assert a.dtype == W.dtype == np.float32 and W.flags.c_contiguous


def test_initial_weight_moments():
    c = Config(M=20_000, d=5, sa=0.5, sw=2.0)
    a, W = initial_weights(c, streams(3)["init"])
    # sample variance of N(0, s^2): standard error s^2 sqrt(2/n)
    assert abs(a.var() - 0.25) < 5 * 0.25 * math.sqrt(2 / a.size)
    assert abs(W.var() - 4.0) < 5 * 4.0 * math.sqrt(2 / W.size)


def test_iid_initial_weights_are_the_plain_draws():
    """The default init: ``a`` then ``W``, all ``M`` nodes, drawn in float64 (written out
    here by hand from the generator, an independent reference) and cast."""
    for dtype in ("float64", "float32"):
        c = Config(M=9, d=4, sa=0.5, sw=2.0, dtype=dtype)
        a, W = initial_weights(c, streams(5)["init"])
        rng = streams(5)["init"]
        np.testing.assert_array_equal(a, (0.5 * rng.standard_normal(9)).astype(dtype))
        np.testing.assert_array_equal(W, (2.0 * rng.standard_normal((9, 4))).astype(dtype))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_symmetric_initial_weights_are_mirrored_pairs(dtype):
    """``init = "symmetric"``: ``M/2`` nodes drawn as the iid law draws them (by hand here),
    node ``i + M/2`` with ``a = -a_i`` and ``w = w_i``, bit for bit."""
    c = Config(M=10, d=4, sa=0.5, sw=2.0, dtype=dtype, init="symmetric")
    a, W = initial_weights(c, streams(5)["init"])
    assert a.dtype == W.dtype == np.dtype(dtype) and W.flags.c_contiguous
    assert a.shape == (10,) and W.shape == (10, 4)
    rng = streams(5)["init"]
    np.testing.assert_array_equal(a[:5], (0.5 * rng.standard_normal(5)).astype(dtype))
    np.testing.assert_array_equal(W[:5], (2.0 * rng.standard_normal((5, 4))).astype(dtype))
    np.testing.assert_array_equal(a[5:], -a[:5])
    np.testing.assert_array_equal(W[5:], W[:5])
    assert np.all(a[:5] != 0)  # a real draw: the pairs are not trivially zero


def test_symmetric_initial_weight_moments():
    """Every node of a pair has the law of an iid node (5 standard errors, as above)."""
    c = Config(M=20_000, d=5, sa=0.5, sw=2.0, init="symmetric")
    a, W = initial_weights(c, streams(3)["init"])
    half = c.M // 2
    assert abs(a.var() - 0.25) < 5 * 0.25 * math.sqrt(2 / half)
    assert abs(W.var() - 4.0) < 5 * 4.0 * math.sqrt(2 / W[:half].size)


def test_symmetric_initial_weights_refuse_an_odd_M():
    """A Config built without validation still cannot draw unpaired nodes."""
    with pytest.raises(ConfigError, match="init = symmetric needs an even M, got M=5"):
        initial_weights(Config(M=5, d=3, init="symmetric"), streams(0)["init"])


def test_batch_indices_are_distinct_sorted_and_seeded():
    idx = batch_indices(streams(4)["batch"], 1000, 100)
    assert len(np.unique(idx)) == 100 and np.all(np.diff(idx) > 0)
    assert idx.min() >= 0 and idx.max() < 1000
    np.testing.assert_array_equal(idx, batch_indices(streams(4)["batch"], 1000, 100))
