"""Seeded datasets for the particle simulator (conventions of :mod:`meanfield.config`).

Data laws (teacher ``w* = e_1``, so ``x_par = x[0]`` and ``x_perp = x[1:]``):

- ``gaussian``: ``x ~ N(0, I_d)``;
- ``sphere``: ``x`` uniform on the sphere of radius ``sqrt(d)`` (``x = sqrt(d) g / |g|``,
  ``g ~ N(0, I_d)``).

Labels ``y = sign(x_par)`` (``+1`` at ``x_par = 0``, an event of probability zero). Options:

- ``margin`` (``kappa``): examples with ``|x_par| < margin`` are dropped and replaced by new
  draws until ``n`` are kept, for every set (training, held-out, online), since the margin
  defines the data law;
- ``label_noise`` (``p``): each *training* label (fixed training set and online examples) is
  flipped with probability ``p``; held-out labels stay clean, so the held-out errors measure
  agreement with the teacher.

Randomness: one :class:`numpy.random.SeedSequence` per run seed, spawned into independent
streams (:func:`streams`) for the initial weights, the training set, the held-out set, the
mini-batch indices and the online examples. Samples are drawn in float64 and then cast (block
by block), so a float32 run sees the float64 run's data rounded to float32. Arrays are
C-contiguous.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from meanfield.config import Config, ConfigError

STREAMS = ("init", "train", "test", "batch", "online")
# below this acceptance probability the margin rejection loop would never end in practice
_MIN_ACCEPTANCE = 1e-6
BLOCK = 8192  # rows drawn at a time


@dataclass(frozen=True)
class Dataset:
    """``X`` (``n x d``, C-contiguous, run dtype), labels ``y`` (``+-1``, run dtype) and the
    teacher projection ``x_par = X[:, 0]`` in float64 (the value before the cast)."""

    X: np.ndarray
    y: np.ndarray
    x_par: np.ndarray

    def __len__(self) -> int:
        return self.X.shape[0]


def streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent generators ``init``, ``train``, ``test``, ``batch``, ``online`` of a seed.

    ``SeedSequence(seed).spawn(5)`` in the fixed order of :data:`STREAMS`, each wrapped in a
    PCG64 :class:`numpy.random.Generator`.
    """
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    pairs = zip(STREAMS, children, strict=True)
    return {name: np.random.Generator(np.random.PCG64(s)) for name, s in pairs}


def _acceptance(margin: float) -> float:
    """``P(|x_par| >= margin)`` for a standard normal ``x_par`` (also a good estimate on the
    sphere, whose ``x_par`` tends to it as ``d`` grows)."""
    return math.erfc(margin / math.sqrt(2.0))


def _draw_rows(rng: np.random.Generator, n: int, d: int, law: str) -> np.ndarray:
    g = rng.standard_normal((n, d))
    if law == "sphere":
        g *= math.sqrt(d) / np.linalg.norm(g, axis=1, keepdims=True)
    return g


def sample_inputs(
    rng: np.random.Generator,
    n: int,
    d: int,
    law: str = "gaussian",
    margin: float = 0.0,
    dtype: str | np.dtype = "float64",
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` inputs of the data law with ``|x_par| >= margin``: ``(X, x_par)`` with ``X``
    (``n x d``, C-contiguous) in ``dtype`` and ``x_par`` in float64 (before the cast).

    Rows are drawn in float64 in blocks of :data:`BLOCK` and cast into the preallocated
    result, so the peak memory is the result plus one block (a sequence of draws equals one
    large draw: the result does not depend on the block size). Rejected rows (margin) are
    replaced by fresh draws, in rounds sized by the expected acceptance, so the result is a
    deterministic function of the generator state.
    """
    if law not in ("gaussian", "sphere"):
        raise ConfigError(f"data must be one of gaussian, sphere; got {law!r}")
    accept = _acceptance(margin) if margin > 0 else 1.0
    if accept < _MIN_ACCEPTANCE:
        raise ConfigError(
            f"margin must keep a fraction >= {_MIN_ACCEPTANCE:g} of the examples; "
            f"margin={margin} keeps {accept:.3g}"
        )
    X = np.empty((n, d), dtype=dtype)
    x_par = np.empty(n)
    have = 0
    while have < n:
        need = n - have
        size = min(BLOCK, need) if margin <= 0 else min(BLOCK, math.ceil(1.1 * need / accept) + 16)
        rows = _draw_rows(rng, size, d, law)
        if margin > 0:
            rows = rows[np.abs(rows[:, 0]) >= margin][:need]
        k = rows.shape[0]
        X[have:have + k] = rows
        x_par[have:have + k] = rows[:, 0]
        have += k
    return X, x_par


def make_dataset(
    rng: np.random.Generator,
    n: int,
    d: int,
    *,
    law: str = "gaussian",
    margin: float = 0.0,
    label_noise: float = 0.0,
    dtype: str | np.dtype = "float64",
) -> Dataset:
    """``n`` labelled examples: inputs by :func:`sample_inputs`, then (only if
    ``label_noise > 0``) one uniform per example from the same generator to flip labels."""
    X, x_par = sample_inputs(rng, n, d, law, margin, dtype)
    y = np.where(x_par >= 0, 1.0, -1.0)
    if label_noise > 0:
        flip = rng.random(n) < label_noise
        y[flip] = -y[flip]
    return Dataset(X=X, y=y.astype(dtype), x_par=x_par)


def training_set(config: Config, rng: np.random.Generator) -> Dataset:
    """The fixed training set: ``N`` examples, label noise applied."""
    return make_dataset(
        rng, config.N, config.d, law=config.data, margin=config.margin,
        label_noise=config.label_noise, dtype=config.dtype,
    )


def held_out_set(config: Config, rng: np.random.Generator) -> Dataset:
    """The held-out set: ``n_test`` examples with clean labels."""
    return make_dataset(
        rng, config.n_test, config.d, law=config.data, margin=config.margin,
        label_noise=0.0, dtype=config.dtype,
    )


def online_examples(config: Config, rng: np.random.Generator, n: int) -> Dataset:
    """``n`` fresh training examples (online learning), label noise applied."""
    return make_dataset(
        rng, n, config.d, law=config.data, margin=config.margin,
        label_noise=config.label_noise, dtype=config.dtype,
    )


def initial_weights(
    config: Config, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``a ~ N(0, sa^2)`` (length ``M``) and ``W ~ N(0, sw^2)`` (``M x d``, C-contiguous),
    drawn in float64 (``a`` first) and cast to the run dtype.

    ``init = "iid"``: all ``M`` nodes drawn so. ``init = "symmetric"`` (``M`` even): the first
    ``M/2`` nodes drawn so, and node ``i + M/2`` their mirror, ``a = -a_i``, ``w = w_i``
    (exactly, after the cast too), so that ``f(x) = 0`` for every ``x`` at ``t = 0``: summed
    pair by pair it is exactly 0.0; the simulator's sums in node order leave only their
    rounding (relative ``~ M u`` of ``sum_i |a_i sigma(z_i)|``, ``u`` the unit roundoff).
    """
    if config.init == "symmetric":
        if config.M % 2:
            raise ConfigError(f"init = symmetric needs an even M, got M={config.M}")
        half = config.M // 2
        a_half = (config.sa * rng.standard_normal(half)).astype(config.dtype)
        a = np.concatenate([a_half, -a_half])
        W = np.empty((config.M, config.d), dtype=config.dtype)
        W[:half] = config.sw * rng.standard_normal((half, config.d))
        W[half:] = W[:half]
        return a, W
    a = config.sa * rng.standard_normal(config.M)
    W = config.sw * rng.standard_normal((config.M, config.d))
    return a.astype(config.dtype), np.ascontiguousarray(W, dtype=config.dtype)


def batch_indices(rng: np.random.Generator, n: int, batch: int) -> np.ndarray:
    """``batch`` distinct indices in ``[0, n)`` (sampled without replacement), sorted."""
    return np.sort(rng.choice(n, size=batch, replace=False))
