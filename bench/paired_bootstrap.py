"""Paired bootstrap of every pair of 20 models on 480k shared test triplets, 1,000 resamples; prints JSON.

Ours (alignment_jax.evaluation.statistics.paired_comparisons): one compiled computation, the M x M agreement
counts of the (T, M) correctness matrix and, per pair, the exact multinomial draws of the discordant counts.
Baseline: the textbook loop, one resample of the T triplet indices per iteration, every model's accuracy on
it, the pairs' differences; timed on a few resamples and scaled to all of them. The two give the same
distribution: their intervals are compared on a smaller problem where the loop runs in full.

    python bench/paired_bootstrap.py [--triplets 480000 --models 20 --resamples 1000 --subset 20]
"""

import argparse
import json
import platform
import time

import jax
import numpy as np
from common import best_of

from alignment_jax.evaluation.statistics import paired_comparisons


def simulated_outcomes(n_triplets: int, n_models: int, seed: int = 0) -> np.ndarray:
    """(T, M) bool: models of accuracy 0.45 to 0.65 whose errors share a per-triplet difficulty (correlated)."""
    rng = np.random.default_rng(seed)
    difficulty = rng.random(n_triplets)
    accuracy = np.linspace(0.45, 0.65, n_models)
    own = rng.random((n_triplets, n_models))
    return np.where(rng.random((n_triplets, n_models)) < 0.7, difficulty[:, None] < accuracy, own < accuracy)


def loop_bootstrap(correct: np.ndarray, n_resamples: int, seed: int = 0) -> np.ndarray:
    """The baseline: (n_resamples, pairs) differences of resampled accuracies, one resample per iteration."""
    rng = np.random.default_rng(seed)
    first, second = np.triu_indices(correct.shape[1], k=1)
    out = np.empty((n_resamples, len(first)))
    for b in range(n_resamples):
        accuracy = correct[rng.integers(0, len(correct), len(correct))].mean(axis=0)
        out[b] = accuracy[first] - accuracy[second]
    return out


def main(n_triplets: int, n_models: int, n_resamples: int, subset: int) -> None:
    correct = simulated_outcomes(n_triplets, n_models)
    start = time.perf_counter()
    paired_comparisons(correct, n_resamples, seed=0)
    first_call = time.perf_counter() - start
    ours = best_of(lambda: paired_comparisons(correct, n_resamples, seed=1), 3)
    baseline = best_of(lambda: loop_bootstrap(correct, subset), 2) * n_resamples / subset

    small = simulated_outcomes(20_000, 4, seed=1)  # agreement: both in full
    closed_form = paired_comparisons(small, 2000, seed=2).ci95
    loop = np.percentile(loop_bootstrap(small, 2000, seed=3), [2.5, 97.5], axis=0).T
    width = (loop[:, 1] - loop[:, 0]).mean()
    print(
        json.dumps(
            {
                "benchmark": "paired_bootstrap",
                "n_triplets": n_triplets,
                "n_models": n_models,
                "pairs": n_models * (n_models - 1) // 2,
                "resamples": n_resamples,
                "seconds": round(ours, 4),
                "first_call_seconds_with_compilation": round(first_call, 2),
                "baseline_numpy_loop_seconds": round(baseline, 2),
                "baseline_measured_on_resamples": subset,
                "speedup": round(baseline / ours, 1),
                "agreement_20k_triplets_4_models_2000_resamples": {
                    "max_interval_end_difference": round(float(np.abs(closed_form - loop).max()), 5),
                    "mean_interval_width": round(float(width), 5),
                },
                "device": str(jax.devices()[0]),
                "machine": f"{platform.machine()}, {jax.device_count()} device(s)",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triplets", type=int, default=480_000)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--subset", type=int, default=20, help="baseline resamples actually run")
    args = parser.parse_args()
    main(args.triplets, args.models, args.resamples, args.subset)
