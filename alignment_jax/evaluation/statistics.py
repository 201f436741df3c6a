"""Intervals and paired tests for accuracies over triplets: pure, vectorized functions.

An accuracy is the mean of T independent 0/1 outcomes, one per triplet. The percentile bootstrap over
triplets (resample the T triplets with replacement, recompute, take the 2.5th and 97.5th percentiles)
then has closed forms that need no T x n_resamples work, and give exactly its distribution:
  - one accuracy k / T: a resample's accuracy is Binomial(T, k / T) / T;
  - two methods a, b scored on the SAME triplets (paired): acc_a - acc_b = (n_ab - n_ba) / T, where n_ab
    counts the triplets a gets right and b wrong; the triplets where both agree do not move it. A
    resample's (n_ab, n_ba, rest) is Multinomial(T; n_ab / T, n_ba / T, rest / T), drawn exactly as
    n_ab* ~ Binomial(T, p_ab) and n_ba* | n_ab* ~ Binomial(T - n_ab*, p_ba / (1 - p_ab)).
Every pair of M methods is one compiled computation: the M x M agreement counts C^T C of the (T, M)
correctness matrix, then the (n_resamples, pairs) binomial draws and their percentiles.

The exact McNemar test on the discordant triplets: under "both methods are equally accurate" each of
the n_ab + n_ba discordant triplets favours a or b with probability 1/2.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

PERCENTILES = (2.5, 97.5)
_MAX_TRIPLETS = 1 << 24  # counts are exact in float32 up to 2^24


def proportion_ci(successes: np.ndarray, trials: np.ndarray, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """95% percentile bootstrap intervals of successes / trials, for any number of proportions at once.

    successes, trials: (...,) counts -> (..., 2) [low, high]; nan where trials == 0 or n_resamples <= 0.
    Each resample of a proportion is Binomial(trials, successes / trials) / trials.
    """
    successes, trials = np.broadcast_arrays(np.asarray(successes, np.int64), np.asarray(trials, np.int64))
    out = np.full(successes.shape + (2,), np.nan)
    valid = trials > 0
    if n_resamples <= 0 or not valid.any():
        return out
    rate = successes[valid] / trials[valid]
    rng = np.random.default_rng(seed)
    draws = rng.binomial(trials[valid], rate, size=(n_resamples, len(rate))) / trials[valid]
    out[valid] = np.percentile(draws, PERCENTILES, axis=0).T
    return out


def accuracy_ci(correct: np.ndarray, n_resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """correct: (T,) bool -> 95% percentile bootstrap interval of its mean over triplets ((nan, nan) if T = 0)."""
    correct = np.asarray(correct, bool)
    low, high = proportion_ci(np.array(correct.sum()), np.array(correct.size), n_resamples, seed)
    return (float(low), float(high))


def spread(values) -> dict[str, float | None]:
    """Spread of a few numbers (e.g. one accuracy per cross-validation fold): {"std" (sample, ddof 1; None for
    fewer than two), "min", "max"}; None for missing values (None or nan) and when there are none."""
    finite = np.array([v for v in values if v is not None and np.isfinite(v)], np.float64)
    if not len(finite):
        return {"std": None, "min": None, "max": None}
    return {
        "std": float(finite.std(ddof=1)) if len(finite) > 1 else None,
        "min": float(finite.min()),
        "max": float(finite.max()),
    }


def mcnemar_exact(a_only: np.ndarray, b_only: np.ndarray) -> np.ndarray:
    """Two-sided exact McNemar p-values: a_only, b_only (...,) discordant counts -> (...,) p.

    p = min(1, 2 P(X <= min(a_only, b_only))) with X ~ Binomial(a_only + b_only, 1/2); 1 without discordant
    triplets. (For p = 1/2 this is scipy.stats.binomtest's two-sided p-value.)
    """
    a_only, b_only = np.asarray(a_only, np.int64), np.asarray(b_only, np.int64)
    return np.minimum(1.0, 2.0 * stats.binom.cdf(np.minimum(a_only, b_only), a_only + b_only, 0.5))


@dataclasses.dataclass(frozen=True)
class PairedComparisons:
    """Every pair (first[i], second[i]), first < second, of M methods scored on the same n_triplets.

    accuracy: (M,); a_only / b_only: (P,) triplets only the first / only the second gets right;
    difference: (P,) accuracy[first] - accuracy[second]; ci95: (P, 2) paired bootstrap interval of the
    difference; p_value: (P,) exact McNemar.
    """

    first: np.ndarray
    second: np.ndarray
    n_triplets: int
    accuracy: np.ndarray
    a_only: np.ndarray
    b_only: np.ndarray
    difference: np.ndarray
    ci95: np.ndarray
    p_value: np.ndarray

    def rows(self, names: list[str]) -> list[dict]:
        """One dict per pair, names[m] naming method m: {"a", "b", "n_triplets", "accuracy_a", "accuracy_b",
        "difference", "ci95" [low, high] (None without resamples), "p_value", "a_only", "b_only"}."""
        return [
            {
                "a": names[a],
                "b": names[b],
                "n_triplets": self.n_triplets,
                "accuracy_a": float(self.accuracy[a]),
                "accuracy_b": float(self.accuracy[b]),
                "difference": float(self.difference[i]),
                "ci95": [None if np.isnan(v) else float(v) for v in self.ci95[i]],
                "p_value": float(self.p_value[i]),
                "a_only": int(self.a_only[i]),
                "b_only": int(self.b_only[i]),
            }
            for i, (a, b) in enumerate(zip(self.first, self.second, strict=True))
        ]


def paired_comparisons(correct: np.ndarray, n_resamples: int = 1000, seed: int = 0) -> PairedComparisons:
    """correct: (T, M) bool, column m = method m's outcome on each of the same T triplets.

    Difference, paired bootstrap interval (n_resamples resamples of the T triplets; none when 0) and exact
    McNemar p-value of every pair of columns, from one compiled computation.
    """
    correct = np.asarray(correct, bool)
    if correct.ndim != 2 or not correct.shape[0]:
        raise ValueError(f"correct must be (T, M) with T > 0, got shape {correct.shape}")
    n_triplets, n_methods = correct.shape
    if n_triplets >= _MAX_TRIPLETS:
        raise ValueError(f"{n_triplets} triplets: counts are exact only below {_MAX_TRIPLETS}")
    first, second = (a.astype(np.int32) for a in np.triu_indices(n_methods, k=1))
    # Rows of zeros (wrong for every method) up to a power of two change no count used here, and let problems of
    # similar size share one compilation; the true T is passed as a value.
    padded = np.zeros((max(1024, 1 << (n_triplets - 1).bit_length()), n_methods), bool)
    padded[:n_triplets] = correct
    if n_resamples > 0:
        key = jax.random.key(seed)
        right, a_only, b_only, net = _paired_bootstrap(padded, first, second, n_triplets, key, n_resamples)
        ci95 = np.asarray(net, np.float64) / n_triplets
    else:
        right, a_only, b_only = _paired_counts(padded, first, second)
        ci95 = np.full((len(first), 2), np.nan)
    right, a_only, b_only = (np.asarray(x).astype(np.int64) for x in (right, a_only, b_only))
    return PairedComparisons(
        first=first,
        second=second,
        n_triplets=n_triplets,
        accuracy=right / n_triplets,
        a_only=a_only,
        b_only=b_only,
        difference=(a_only - b_only) / n_triplets,
        ci95=ci95,
        p_value=mcnemar_exact(a_only, b_only),
    )


@jax.jit
def _paired_counts(correct: jax.Array, first: jax.Array, second: jax.Array):
    """correct: (T, M) bool; first, second: (P,) -> (right (M,), a_only (P,), b_only (P,)) as float32 counts.

    Sums of 0/1 in float32 are exact below 2^24 triplets; one matmul of the (T, M) matrix gives all pairs.
    """
    x = correct.astype(jnp.float32)
    right = jnp.sum(x, axis=0)
    both = jnp.dot(x.T, x, precision=jax.lax.Precision.HIGHEST)  # (M, M): both right
    return right, right[first] - both[first, second], right[second] - both[first, second]


@functools.partial(jax.jit, static_argnames="n_resamples")
def _paired_bootstrap(
    correct: jax.Array, first: jax.Array, second: jax.Array, n_triplets: jax.Array, key: jax.Array, n_resamples: int
):
    """The counts of _paired_counts and net (P, 2): the 2.5th and 97.5th percentiles of the resampled
    n_ab - n_ba (the difference times T) over n_resamples multinomial resamples of the n_triplets triplets
    (correct may have rows of zeros beyond them)."""
    right, a_only, b_only = _paired_counts(correct, first, second)
    n = jnp.asarray(n_triplets, jnp.float32)
    p_a, p_b = a_only / n, b_only / n
    key_a, key_b = jax.random.split(key)
    draws_a = jax.random.binomial(key_a, n, p_a, shape=(n_resamples, first.shape[0]))
    p_b_given_a = jnp.clip(jnp.where(p_a < 1, p_b / jnp.maximum(1 - p_a, 1e-30), 0.0), 0.0, 1.0)
    draws_b = jax.random.binomial(key_b, n - draws_a, p_b_given_a)
    net = jnp.percentile(draws_a - draws_b, jnp.array(PERCENTILES), axis=0).T  # (P, 2) in triplets
    return right, a_only, b_only, net
