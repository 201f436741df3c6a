"""The matrix formulation's hand-written gradient and configuration-last vmaps equal autodiff of the plain loss,
alone, vmapped over configurations that share their triplets (the sweep's full batch), over configurations with
their own triplets (minibatches) and over folds of configurations (the sweep's two levels); with S as one
matrix and as an upper block staircase (blocks of 6 rows here, the last shorter)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignment_jax.probing import objective, triplet_matrix

N, P, T = 23, 6, 400


def _reference(z, triplets, weights, temperature):
    s = jnp.matmul(z, z.T, precision=objective.PRECISION)
    i, j, k = triplets[:, 0], triplets[:, 1], triplets[:, 2]
    nll = objective._nll(s[i, j], s[i, k], s[j, k], temperature)
    return objective.weighted_mean(nll, weights)


@pytest.fixture(params=["one block", "staircase"])
def blocks(request, monkeypatch):
    """Every kernel test runs with S as one N x N block and as a staircase of blocks of 6 rows (6, 6, 6, 5)."""
    if request.param == "staircase":
        monkeypatch.setattr(triplet_matrix, "MIN_BLOCK_ROWS", 5)
    return triplet_matrix.UpperBlocks.of(N)


@pytest.mark.parametrize("n, size", [(1, 1), (5, 5), (7, 3), (N, 6), (N, 4)])
def test_staircase_holds_the_upper_blocks_and_symmetrizes(n, size):
    layout = triplet_matrix.UpperBlocks(n, size)
    rng = np.random.default_rng(n + size)
    z = jnp.asarray(rng.normal(size=(n, 3)).astype(np.float32))
    u, v = (a.ravel() for a in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
    where = np.asarray(layout.position(jnp.asarray(u), jnp.asarray(v)))
    np.testing.assert_array_equal(where, np.asarray(layout.position(jnp.asarray(v), jnp.asarray(u))))
    upper = u <= v
    assert len(np.unique(where[upper])) == upper.sum() and where.min() >= 0 and where.max() < layout.length
    np.testing.assert_allclose(np.asarray(layout.pack(z))[where], (z @ z.T).ravel(), rtol=1e-6, atol=1e-6)
    packed = np.zeros(layout.length, np.float32)  # a gradient: entries at the pairs' positions only
    packed[where[upper]] = rng.normal(size=upper.sum())
    dense = np.zeros((n, n), np.float32)
    np.add.at(dense, (u[upper], v[upper]), packed[where[upper]])
    np.testing.assert_allclose(np.asarray(layout.symmetric(jnp.asarray(packed))), dense + dense.T, rtol=1e-6)


def test_blocks_follow_the_size_rule():
    assert triplet_matrix.UpperBlocks.of(767) == (767, 767)  # under two blocks' rows: the full matrix
    assert triplet_matrix.UpperBlocks.of(1236) == (1236, 412)
    assert triplet_matrix.UpperBlocks.of(1854) == (1854, 464)  # four blocks at most
    assert triplet_matrix.UpperBlocks.of(10_000) == (10_000, 2500)


@pytest.fixture
def data(blocks):
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.normal(size=(3, 4, N, P)).astype(np.float32))  # (folds, configurations, n, p)
    triplets = jnp.asarray(rng.integers(0, N, (3, T, 3)).astype(np.int32))
    weights = jnp.asarray((rng.random((3, T)) * (rng.random((3, T)) > 0.2)).astype(np.float32))
    return z, triplets, weights


def _both(fn_of_loss, temperature):
    kernel = lambda z, t, w: triplet_matrix.mean_nll(z, t, w, temperature)
    reference = lambda z, t, w: _reference(z, t, w, temperature)
    return fn_of_loss(jax.value_and_grad(kernel)), fn_of_loss(jax.value_and_grad(reference))


def _close(got, want):
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_one_configuration(data, temperature):
    z, t, w = data
    kernel, reference = _both(jax.jit, temperature)
    _close(kernel(z[0, 0], t[0], w[0]), reference(z[0, 0], t[0], w[0]))


def test_configurations_sharing_triplets(data):
    z, t, w = data
    kernel, reference = _both(lambda f: jax.jit(jax.vmap(f, (0, None, None))), 1.0)
    _close(kernel(z[0], t[0], w[0]), reference(z[0], t[0], w[0]))


def test_configurations_with_their_own_triplets(data):
    z, t, w = data
    kernel, reference = _both(lambda f: jax.jit(jax.vmap(f)), 2.0)
    _close(kernel(z[:, 0], t, w), reference(z[:, 0], t, w))


def test_folds_of_configurations(data):
    z, t, w = data
    kernel, reference = _both(lambda f: jax.jit(jax.vmap(jax.vmap(f, (0, None, None)))), 1.0)
    _close(kernel(z, t, w), reference(z, t, w))


def test_no_weight_gives_zero_and_no_gradient(data):
    z, t, _ = data
    value, grad = jax.value_and_grad(triplet_matrix.mean_nll)(z[0, 0], t[0], jnp.zeros(T), 1.0)
    assert float(value) == 0.0 and not np.any(np.asarray(grad))


def test_the_probe_loss_uses_it_with_a_bias(data):
    z, t, w = data
    params = {"weights": z[0, 0, :P], "bias": z[0, 1, 0]}
    x = z[1, 0]
    loss = lambda prm, formulation: objective.loss(
        prm, x, t[0], w[0], 0.1, regularizer="frobenius", temperature=1.0, formulation=formulation
    )
    _close(jax.grad(loss)(params, "matrix"), jax.grad(loss)(params, "objects"))
