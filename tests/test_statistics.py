"""Intervals and paired tests (evaluation/statistics.py) against hand-worked numbers, scipy, a brute-force
resampling bootstrap and the coverage of simulated models whose true accuracy is computed exactly."""

import itertools

import numpy as np
import pytest
from scipy import stats

from alignment_jax.data.synthetic import concept_embedding, random_triplets, simulate_choices
from alignment_jax.evaluation.statistics import (
    accuracy_ci,
    mcnemar_exact,
    paired_comparisons,
    proportion_ci,
    spread,
)
from alignment_jax.evaluation.zero_shot import bootstrap_ci, odd_one_out


def table_outcomes(both: int, a_only: int, b_only: int, neither: int) -> np.ndarray:
    """(T, 2) outcomes of two methods with the given 2 x 2 table, rows shuffled."""
    rows = [(1, 1)] * both + [(1, 0)] * a_only + [(0, 1)] * b_only + [(0, 0)] * neither
    return np.random.default_rng(0).permutation(np.array(rows, bool))


def test_mcnemar_on_a_hand_worked_table():
    # 40 both right, 9 only a, 2 only b, 49 neither: under H0 the 11 discordant triplets are fair coin flips,
    # p = 2 * P(X <= 2), X ~ Binomial(11, 1/2) = 2 * (1 + 11 + 55) / 2048
    correct = table_outcomes(40, 9, 2, 49)
    result = paired_comparisons(correct, n_resamples=0)
    assert (result.a_only[0], result.b_only[0], result.n_triplets) == (9, 2, 100)
    assert result.accuracy.tolist() == [0.49, 0.42] and result.difference[0] == pytest.approx(0.07)
    assert result.p_value[0] == pytest.approx(2 * 67 / 2048, rel=1e-12)
    assert result.p_value[0] == pytest.approx(stats.binomtest(2, 11, 0.5).pvalue, rel=1e-12)
    assert np.isnan(result.ci95).all()  # no resamples, no interval
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0  # balanced, or no discordant triplet
    for a, b in [(0, 7), (30, 12), (400, 350), (3, 1)]:
        assert mcnemar_exact(a, b) == pytest.approx(stats.binomtest(a, a + b, 0.5).pvalue, rel=1e-9)


def test_identical_methods_differ_by_exactly_nothing():
    correct = np.random.default_rng(1).random((1500, 1)) < 0.6  # the coverage test's shapes: no new compilation
    result = paired_comparisons(np.concatenate([correct, correct], axis=1), n_resamples=1000)
    assert result.difference[0] == 0 and result.ci95[0].tolist() == [0, 0] and result.p_value[0] == 1


def test_paired_bootstrap_matches_brute_force_resampling():
    """The closed form draws exactly what resampling the triplets draws: compare with resampled indices (the
    coverage test's shapes: no new compilation)."""
    rng = np.random.default_rng(2)
    n_triplets, n_resamples = 1500, 1000
    latent = rng.random(n_triplets)  # shared difficulty: the methods' outcomes are correlated
    correct = np.stack([latent < 0.6, (latent < 0.5) | (rng.random(n_triplets) < 0.2)], 1)
    result = paired_comparisons(correct, n_resamples, seed=3)
    index = rng.integers(0, n_triplets, size=(n_resamples, n_triplets))
    accuracy = np.stack([correct[i].mean(axis=0) for i in index])  # (n_resamples, 3)
    differences = accuracy[:, result.first] - accuracy[:, result.second]
    brute = np.percentile(differences, [2.5, 97.5], axis=0).T
    width = brute[:, 1] - brute[:, 0]
    np.testing.assert_allclose(result.ci95, brute, atol=0.15 * width.min())  # about 5 Monte Carlo errors
    np.testing.assert_allclose(result.difference, correct.mean(0)[0] - correct.mean(0)[1])


def test_every_pair_of_methods_at_once():
    correct = np.random.default_rng(4).random((300, 4)) < [0.3, 0.5, 0.6, 0.8]
    result = paired_comparisons(correct, n_resamples=0)
    pairs = list(zip(result.first.tolist(), result.second.tolist(), strict=True))
    assert pairs == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    for i, (a, b) in enumerate(pairs):
        assert result.a_only[i] == np.sum(correct[:, a] & ~correct[:, b])
        assert result.b_only[i] == np.sum(~correct[:, a] & correct[:, b])
        assert result.difference[i] == pytest.approx(correct[:, a].mean() - correct[:, b].mean(), abs=1e-12)


def test_proportion_and_accuracy_intervals():
    correct = np.random.default_rng(0).random(5000) < 0.6
    low, high = accuracy_ci(correct, 2000, seed=0)
    assert low < correct.mean() < high
    assert high - low == pytest.approx(2 * 1.96 * np.sqrt(0.6 * 0.4 / 5000), rel=0.15)
    assert bootstrap_ci(correct, 2000, seed=0) == (low, high)  # the zero-shot interval is this one
    intervals = proportion_ci(np.array([0, 30, 5]), np.array([0, 100, 5]), 500)
    assert np.isnan(intervals[0]).all() and intervals[2].tolist() == [1.0, 1.0]
    assert intervals[1, 0] < 0.3 < intervals[1, 1]
    assert np.isnan(accuracy_ci(correct, 0)).all() and np.isnan(accuracy_ci(np.array([], bool))).all()


def test_spread_over_folds():
    values = [0.8, 0.83, 0.81]
    assert spread(values) == pytest.approx({"std": np.std(values, ddof=1), "min": 0.8, "max": 0.83})
    assert spread([0.7]) == {"std": None, "min": 0.7, "max": 0.7}
    assert spread([None, float("nan")]) == {"std": None, "min": None, "max": None}


class SimulatedModels:
    """Simulated people (data/synthetic.py's choice model) and models on n objects; the models' true accuracy
    is the mean, over every set of three objects, of the probability that people pick the model's odd one."""

    def __init__(self, n_objects: int = 30, beta: float = 3.0):
        rng = np.random.default_rng(0)
        self.embedding = concept_embedding(n_objects, 5, rng)
        self.beta = beta
        self.features = {  # model features: the concepts, plus some nuisance; a noisier second model
            "good": np.concatenate([self.embedding, 0.5 * rng.normal(size=(n_objects, 5))], 1).astype(np.float32),
            "poor": np.concatenate([self.embedding, 1.5 * rng.normal(size=(n_objects, 5))], 1).astype(np.float32),
        }
        sets = np.array(list(itertools.combinations(range(n_objects), 3)))
        similarity = self.embedding @ self.embedding.T
        logits = beta * np.stack([similarity[sets[:, 1], sets[:, 2]], similarity[sets[:, 0], sets[:, 2]],
                                  similarity[sets[:, 0], sets[:, 1]]], 1)  # fmt: skip
        human = np.exp(logits - logits.max(1, keepdims=True))
        human /= human.sum(1, keepdims=True)  # (sets, 3): P(column c is the odd one out)
        self.true_accuracy = {}
        for name, x in self.features.items():
            x = x / np.linalg.norm(x, axis=1, keepdims=True)
            s = x.astype(np.float64) @ x.T.astype(np.float64)
            pair = np.stack([s[sets[:, 1], sets[:, 2]], s[sets[:, 0], sets[:, 2]], s[sets[:, 0], sets[:, 1]]], 1)
            model_odd = np.argmax(pair, axis=1)  # the most similar pair leaves out column c
            self.true_accuracy[name] = float(human[np.arange(len(sets)), model_odd].mean())

    def sample(self, n_triplets: int, seed: int) -> dict[str, np.ndarray]:
        """Each model's (T,) outcomes on T fresh triplets with simulated human choices."""
        rng = np.random.default_rng(seed)
        triplets = simulate_choices(
            self.embedding, random_triplets(len(self.embedding), n_triplets, rng), self.beta, rng
        )
        return {name: odd_one_out(x, triplets, "cosine", bootstrap=0).correct for name, x in self.features.items()}


@pytest.fixture(scope="module")
def simulated():
    return SimulatedModels()


def test_accuracy_intervals_cover_the_true_accuracy_at_the_nominal_rate(simulated):
    covered = 0
    for seed in range(100):
        correct = simulated.sample(1500, seed)["good"]
        low, high = bootstrap_ci(correct, 1000, seed)
        covered += low <= simulated.true_accuracy["good"] <= high
    assert 90 <= covered <= 99, covered


def test_paired_intervals_cover_the_true_difference_at_the_nominal_rate(simulated):
    truth = simulated.true_accuracy["good"] - simulated.true_accuracy["poor"]
    assert truth > 0.02  # the models differ, so the test below is about a real difference
    covered, rejected = 0, 0
    for seed in range(100):
        outcomes = simulated.sample(1500, seed)
        result = paired_comparisons(np.stack([outcomes["good"], outcomes["poor"]], 1), 1000, seed)
        covered += result.ci95[0, 0] <= truth <= result.ci95[0, 1]
        rejected += result.p_value[0] < 0.05
    assert 90 <= covered <= 99, covered
    assert rejected > 50  # and McNemar sees the difference in most samples
