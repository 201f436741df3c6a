"""The fast protocol's faster sweep (probing/triplet_matrix.py's gradient, folds in sorted triplet order) selects
the configuration the previous path selected, with CV accuracy and cross-entropy within 0.002: on the demo world
and on a planted world with THINGS' 1,854 objects (49 dimensions, 60k triplets: CI-sized)."""

import jax
import jax.numpy as jnp
import numpy as np

import alignment_jax as aj
from alignment_jax.probing import objective, sweep

TOLERANCE = 0.002


def _autodiff_nll(z, triplets, weights, temperature):
    """The previous path's matrix formulation: autodiff through S = z z^T and three gathers."""
    s = jnp.matmul(z, z.T, precision=objective.PRECISION)
    i, j, k = triplets[:, 0], triplets[:, 1], triplets[:, 2]
    return objective.weighted_mean(objective._nll(s[i, j], s[i, k], s[j, k], temperature), weights)


def _fit_both(monkeypatch, features, train):
    """The probe's summary by today's path and by the previous one (compiled afresh each)."""
    jax.clear_caches()
    today = aj.fit_probe(features, train).summary
    monkeypatch.setattr(objective.triplet_matrix, "mean_nll", _autodiff_nll)
    monkeypatch.setattr(sweep, "_fold_rows", lambda triplets, mask: np.flatnonzero(mask))
    jax.clear_caches()
    previous = aj.fit_probe(features, train).summary
    monkeypatch.undo()
    jax.clear_caches()
    return today, previous


def _assert_equivalent(today, previous):
    assert today["best_lambda"] == previous["best_lambda"]
    for key in ("cv_accuracy", "cv_cross_entropy"):
        assert abs(today[key] - previous[key]) <= TOLERANCE, (key, today[key], previous[key])


def test_demo_world(monkeypatch):
    world = aj.make_world(seed=0)
    _assert_equivalent(*_fit_both(monkeypatch, world.features, world.train))


def test_things_sized_world(monkeypatch):
    world = aj.make_world(seed=0, n_objects=1854, n_concepts=49, n_dims=49, n_train=60_000, n_test=0)
    _assert_equivalent(*_fit_both(monkeypatch, world.features, world.train))
