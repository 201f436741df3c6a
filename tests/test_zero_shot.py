import numpy as np
import pytest

from alignment_jax.data.synthetic import random_triplets
from alignment_jax.errors import InputError
from alignment_jax.evaluation.similarity import similarity_matrix, triplet_similarities
from alignment_jax.evaluation.zero_shot import bootstrap_ci, odd_one_out


def numpy_baseline(features, triplets, kind):
    """The straightforward reference: gather the three feature vectors of every triplet."""
    x = features / np.linalg.norm(features, axis=1, keepdims=True) if kind == "cosine" else features
    a, b, c = x[triplets[:, 0]], x[triplets[:, 1]], x[triplets[:, 2]]
    if kind == "euclidean":
        sim = lambda u, v: -np.linalg.norm(u - v, axis=1)
    else:
        sim = lambda u, v: np.sum(u * v, axis=1)
    s = np.stack([sim(a, b), sim(a, c), sim(b, c)], axis=1)
    return (s[:, 0] > s[:, 1]) & (s[:, 0] > s[:, 2]), triplets[np.arange(len(s)), 2 - s.argmax(axis=1)]


def test_hand_worked_triplets_and_ties():
    features = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [2.0, 0.0], [1.0, 1.0]], np.float32)
    triplets = np.array(
        [
            [0, 1, 2],  # 0 and 1 are close: correct, odd one out 2
            [0, 2, 1],  # people paired 0 and 2, the model pairs 0 and 1: wrong, model's odd one out 2
            [0, 3, 1],  # cosine(0, 3) = 1 exactly: correct
            [4, 0, 2],  # cosine(4, 0) == cosine(4, 2) is the top: a tie with the human pair counts as wrong
        ]
    )
    result = odd_one_out(features, triplets, "cosine", bootstrap=0)
    np.testing.assert_array_equal(result.correct, [True, False, True, False])
    np.testing.assert_array_equal(result.choices[:3], [2, 2, 1])
    assert result.accuracy == 0.5
    dot = odd_one_out(features, triplets, "dot", bootstrap=0)
    np.testing.assert_array_equal(dot.correct, [True, False, True, False])  # (0,3) dot 2 beats (0,1) and (3,1)


@pytest.mark.parametrize("kind", ["cosine", "dot", "euclidean"])
@pytest.mark.parametrize("n_triplets", [300, 20_000])  # below and above n^2/3: both formulations
def test_agrees_with_numpy_baseline(kind, n_triplets):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 16)).astype(np.float32)
    triplets = random_triplets(60, n_triplets, rng)
    correct, choices = numpy_baseline(features.astype(np.float64), triplets, kind)
    result = odd_one_out(features, triplets, kind, bootstrap=0)
    assert np.mean(result.correct == correct) > 0.999  # float32 vs float64: only near-ties may differ
    assert np.mean(result.choices == choices) > 0.999
    assert result.accuracy == pytest.approx(correct.mean(), abs=2e-3)


def test_chunks_give_the_same_answer():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(30, 8)).astype(np.float32)
    triplets = random_triplets(30, 1001, rng)
    whole = triplet_similarities(features, triplets, "dot")
    from alignment_jax.evaluation.similarity import _as_tuple, map_triplets

    (chunked,) = map_triplets(_as_tuple, features, triplets, "dot", chunk_size=64)
    np.testing.assert_allclose(chunked, whole, rtol=1e-6)
    s = np.asarray(similarity_matrix(features, "dot"))
    np.testing.assert_allclose(whole[:, 0], s[triplets[:, 0], triplets[:, 1]], rtol=1e-5)


def test_bootstrap_ci():
    correct = np.random.default_rng(0).random(5000) < 0.6
    lo, hi = bootstrap_ci(correct, 2000, seed=0)
    assert lo < correct.mean() < hi
    assert hi - lo == pytest.approx(2 * 1.96 * np.sqrt(0.6 * 0.4 / 5000), rel=0.15)
    assert bootstrap_ci(correct, 2000, seed=0) == (lo, hi)


def test_unknown_similarity():
    with pytest.raises(InputError, match="similarity='manhattan'"):
        odd_one_out(np.eye(3), np.array([[0, 1, 2]]), "manhattan")
