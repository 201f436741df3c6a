"""Zero-shot odd-one-out: the model picks the pair of highest similarity; the third object is its odd one out.

Accuracy is the fraction of triplets where that pair is the human-chosen pair (i, j). Exact ties count
as wrong, as in the reference code.
"""

import dataclasses

import jax.numpy as jnp
import numpy as np

from alignment_jax.evaluation.similarity import map_triplets, power_of_two_scale
from alignment_jax.evaluation.statistics import accuracy_ci


@dataclasses.dataclass(frozen=True)
class ZeroShotResult:
    """accuracy: fraction correct; correct: (T,) bool; odd_position: (T,) int8 in 0..2, the column of the
    triplet the model calls odd one out."""

    accuracy: float
    correct: np.ndarray
    odd_position: np.ndarray
    triplets: np.ndarray
    ci95: tuple[float, float]
    similarity: str

    @property
    def choices(self) -> np.ndarray:
        """(T,) int32: the object the model calls odd one out."""
        return np.take_along_axis(self.triplets, self.odd_position[:, None].astype(np.int64), axis=1)[:, 0]

    @property
    def n_triplets(self) -> int:
        return len(self.correct)

    def summary(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "ci95": [None if np.isnan(v) else v for v in self.ci95],  # results.json: no NaN
            "n_triplets": self.n_triplets,
            "similarity": self.similarity,
        }


def decide(pair_similarities: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """pair_similarities: (T, 3) [s_ij, s_ik, s_jk] -> (correct (T,) bool, odd-one-out position (T,) in 0..2).

    The odd one out of pair (i, j) is position 2, of (i, k) position 1, of (j, k) position 0. A triplet
    is correct only if s_ij is strictly the largest.
    """
    s_ij, s_ik, s_jk = pair_similarities[:, 0], pair_similarities[:, 1], pair_similarities[:, 2]
    correct = (s_ij > s_ik) & (s_ij > s_jk)
    odd_position = (2 - jnp.argmax(pair_similarities, axis=1)).astype(jnp.int8)
    return correct, odd_position


def odd_one_out(
    features: np.ndarray,
    triplets: np.ndarray,
    similarity: str = "cosine",
    bootstrap: int = 1000,
    seed: int = 0,
) -> ZeroShotResult:
    """features: (n, p); triplets: (T, 3), column 2 = human odd one out. The decisions do not depend on the
    scale of the features (similarity.prepare, similarity.power_of_two_scale)."""
    triplets = np.asarray(triplets, np.int32)
    if similarity != "cosine":  # decisions of dot and euclidean do not change under a positive scale
        features = power_of_two_scale(features)
    correct, odd_position = map_triplets(decide, features, triplets, similarity)
    accuracy = float(correct.mean()) if len(correct) else float("nan")
    return ZeroShotResult(accuracy, correct, odd_position, triplets, bootstrap_ci(correct, bootstrap, seed), similarity)


def bootstrap_ci(correct: np.ndarray, n_resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the accuracy over triplets (statistics.accuracy_ci).

    The mean of T resampled 0/1 outcomes is Binomial(T, accuracy) / T, so each resample is one binomial
    draw (exactly the triplet bootstrap's distribution, without T x n_resamples work).
    """
    return accuracy_ci(correct, n_resamples, seed)
