"""The locality measures of a transform (evaluation/locality.py) against direct numpy computations."""

import numpy as np
import pytest

from alignment_jax.evaluation import locality
from alignment_jax.probing.transform import Transform


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def numpy_heldout_loss(before, after, tau):
    """All N images as one batch: each row's softmax over the other N - 1 (float64)."""
    n = len(before)
    off = ~np.eye(n, dtype=bool)
    t, s = ((unit(m) @ unit(m).T)[off].reshape(n, n - 1) / tau for m in (before, after))
    p = np.exp(t - t.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    lse = s.max(1) + np.log(np.exp(s - s.max(1, keepdims=True)).sum(1))
    return float(np.mean(lse - (p * s).sum(1)))


def numpy_knn_overlap(before, after, k):
    def neighbours(x):
        sims = unit(x) @ unit(x).T
        np.fill_diagonal(sims, -np.inf)
        return np.argsort(-sims, axis=1, kind="stable")[:, :k]

    a, b = neighbours(before), neighbours(after)
    return float(np.mean([len(set(a[i]) & set(b[i])) / k for i in range(len(a))]))


@pytest.fixture(scope="module")
def held_out():
    """More rows than one block (1024), so the blocked computation is exercised."""
    rng = np.random.default_rng(0)
    before = rng.normal(size=(locality.BLOCK + 77, 8))
    after = before @ (np.eye(8) + 0.8 * rng.normal(size=(8, 8))) + 0.3
    return before, after


def test_heldout_loss_and_knn_overlap_match_numpy(held_out):
    before, after = held_out
    loss = locality.local_heldout_loss(before, after, 0.1)
    assert loss == pytest.approx(numpy_heldout_loss(before, after, 0.1), rel=1e-4)
    overlap = locality.local_knn_overlap(before, after, k=10)
    assert overlap == pytest.approx(numpy_knn_overlap(before, after, 10), abs=1e-6)
    assert 0.0 < overlap < 1.0
    assert locality.local_knn_overlap(before, 3.0 * before, k=10) == 1.0  # a rescaling keeps every neighbour


def test_transform_locality_applies_the_transform_as_stored():
    rng = np.random.default_rng(1)
    features = rng.normal(2.0, 3.0, size=(40, 5))
    transform = Transform(rng.normal(size=(5, 5)), rng.normal(size=5), np.float32(2.0), np.float32(3.0))
    got = locality.transform_locality(transform, features, tau=0.5, k=5)
    after = ((features - 2.0) / 3.0) @ transform.weights + transform.bias
    assert got["local_heldout_loss"] == pytest.approx(numpy_heldout_loss(features, after, 0.5), rel=1e-4)
    assert got["local_knn_overlap"] == pytest.approx(numpy_knn_overlap(features, after, 5), abs=1e-6)
    assert (got["local_tau"], got["local_k"], got["local_n_heldout"]) == (0.5, 5, 40)
    with pytest.raises(ValueError, match="at least 41"):
        locality.local_knn_overlap(features, after, k=40)
