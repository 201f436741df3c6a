import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gradcheck import assert_gradient_matches_finite_differences

from alignment_jax.data.synthetic import random_triplets
from alignment_jax.probing import objective


def problem(seed=0, n=15, p=6, t=80, bias=True):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(n, p)))
    params = {"weights": jnp.asarray(rng.normal(size=(p, p)) * 0.3)}
    if bias:
        params["bias"] = jnp.asarray(rng.normal(size=p) * 0.1)
    triplets = jnp.asarray(random_triplets(n, t, rng), jnp.int32)
    weights = jnp.asarray((rng.random(t) < 0.8).astype(float))
    return params, x, triplets, weights


@pytest.mark.parametrize("regularizer", list(objective.REGULARIZERS))
@pytest.mark.parametrize("formulation", objective.FORMULATIONS)
def test_gradients_match_finite_differences(regularizer, formulation):
    with jax.enable_x64(True):
        params, x, triplets, weights = problem()
        f = lambda prm: objective.loss(
            prm, x, triplets, weights, 0.3, regularizer=regularizer, temperature=0.7, formulation=formulation
        )
        assert_gradient_matches_finite_differences(f, params)


def test_regularizers_by_hand():
    w = jnp.array([[1.0, 2.0], [3.0, 5.0]])
    assert float(objective.frobenius(w)) == pytest.approx(np.sqrt(39.0))
    assert float(objective.frobenius_sq(w)) == pytest.approx(39.0)
    # mean(diag) = 3: (1-3)^2 + 2^2 + 3^2 + (5-3)^2
    assert float(objective.identity(w)) == pytest.approx(21.0)
    assert float(objective.orthonormal(jnp.eye(2))) == 0.0
    rotation = jnp.array([[0.6, -0.8], [0.8, 0.6]])
    assert float(objective.orthonormal(rotation)) == pytest.approx(0.0, abs=1e-12)
    assert float(objective.orthonormal(2 * rotation)) == pytest.approx(18.0, rel=1e-5)
    assert not np.isnan(jax.grad(objective.frobenius)(jnp.zeros((2, 2)))).any()


def test_formulations_agree_and_nll_by_hand():
    params, x, triplets, _ = problem(n=10, p=4, t=30)
    sims = [objective.pair_similarities(params, x, triplets, f) for f in objective.FORMULATIONS]
    for other in sims[1:]:
        np.testing.assert_allclose(other, sims[0], rtol=1e-4, atol=1e-4)
    s = jnp.array([[2.0, 1.0, 0.0]])
    expected = -np.log(np.exp(2.0) / (np.exp(2.0) + np.exp(1.0) + 1.0))
    assert float(objective.triplet_nll(s)[0]) == pytest.approx(expected, rel=1e-6)
    assert float(objective.triplet_nll(2 * s, temperature=2.0)[0]) == pytest.approx(expected, rel=1e-6)


def test_formulation_follows_the_cost_model():
    n, p = 1854, 768
    assert objective.choose_formulation(n, 256, p) == "rows"  # the paper's batches
    assert objective.choose_formulation(n, 2048, p) == "objects"
    assert objective.choose_formulation(n, 65_536, p) == "matrix"
    assert objective.choose_formulation(n, 4_000_000, p) == "matrix"  # full batch
    costs = objective.formulation_costs(n, 4_000_000, p)
    assert costs["matrix"] < costs["objects"] < costs["rows"]
