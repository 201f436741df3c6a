"""The human noise ceiling from repeated triplets, with a bootstrap interval over sets, and chance level.

A set is three objects asked several times (by different people, in any order). Within a set the majority
choice predicts each of its responses; the ceiling is the fraction of all responses it predicts:
    ceiling = sum_s majority_s / sum_s responses_s
over the sets asked at least twice (majority_s: how many of the set's responses chose its most common odd
one out). THINGS measures it on triplets collected for that purpose, each asked many times; with few
responses per set the ratio is biased upward (two responses never score below 1/2), so repeats that occur
by chance in training data are used only when there are enough sets (`ceiling_summary`).
"""

import dataclasses

import numpy as np

from alignment_jax import json_values
from alignment_jax.errors import InputError

CHANCE = 1.0 / 3.0
_CHUNK = 1 << 22  # resampled set indices per step: bounds the (resamples, sets) working array


@dataclasses.dataclass(frozen=True)
class NoiseCeiling:
    """accuracy: how often a response agrees with the majority response to the same three objects (nan without
    repeated sets); ci95: 95% percentile bootstrap interval over sets ((nan, nan) without resamples)."""

    accuracy: float
    n_repeated_sets: int
    n_responses: int
    ci95: tuple[float, float] = (float("nan"), float("nan"))


def repeated_sets(triplets: np.ndarray, n_objects: int) -> tuple[np.ndarray, np.ndarray]:
    """triplets: (T, 3), column 2 = odd one out -> (responses (S,), majority (S,)) int64 for the S sets of three
    objects asked at least twice: how often each set was asked, and how many of those answers chose its most
    common odd one out."""
    triplets = np.asarray(triplets, np.int64)
    ordered = np.sort(triplets, axis=1)
    set_key = (ordered[:, 0] * n_objects + ordered[:, 1]) * n_objects + ordered[:, 2]
    _, set_index, set_size = np.unique(set_key, return_inverse=True, return_counts=True)
    repeated = set_size[set_index] >= 2
    choice_key = set_index[repeated] * n_objects + triplets[repeated, 2]
    choice_ids, choice_count = np.unique(choice_key, return_counts=True)
    majority = np.zeros(len(set_size), np.int64)
    np.maximum.at(majority, choice_ids // n_objects, choice_count)
    keep = set_size >= 2
    return set_size[keep].astype(np.int64), majority[keep]


def sets_bootstrap_ci(
    responses: np.ndarray, majority: np.ndarray, n_resamples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of sum(majority) / sum(responses) when the S sets are resampled with replacement.

    responses, majority: (S,). Each resample draws S set indices; (nan, nan) for S = 0 or n_resamples <= 0.
    """
    n_sets = len(responses)
    if not n_sets or n_resamples <= 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    per_step = max(1, _CHUNK // n_sets)
    ratios = []
    for start in range(0, n_resamples, per_step):
        index = rng.integers(0, n_sets, size=(min(per_step, n_resamples - start), n_sets))
        ratios.append(majority[index].sum(axis=1) / responses[index].sum(axis=1))
    low, high = np.percentile(np.concatenate(ratios), [2.5, 97.5])
    return (float(low), float(high))


def noise_ceiling(triplets: np.ndarray, n_objects: int, bootstrap: int = 0, seed: int = 0) -> NoiseCeiling:
    """The majority-agreement ceiling of every set of three objects asked at least twice in triplets (T, 3), with
    a bootstrap interval over sets when bootstrap > 0 (resamples)."""
    responses, majority = repeated_sets(triplets, n_objects)
    if not len(responses):
        return NoiseCeiling(float("nan"), 0, 0)
    accuracy = float(majority.sum() / responses.sum())
    ci95 = sets_bootstrap_ci(responses, majority, bootstrap, seed)
    return NoiseCeiling(accuracy, len(responses), int(responses.sum()), ci95)


def ceiling_summary(
    triplets: np.ndarray,
    n_objects: int,
    source: str,
    dedicated: bool,
    min_sets: int,
    bootstrap: int = 0,
    seed: int = 0,
) -> tuple[dict, str]:
    """The results.json `noise_ceiling` entry and one line for the log.

    dedicated: the triplets were collected for the ceiling (THINGS' repeated set): it is reported from any
    number of sets (none is an InputError). Otherwise (repeats found in the train/test data) only from at
    least min_sets sets; with fewer, accuracy is None and `note` says why. Entry: {"accuracy", "ci95",
    "source", "n_sets", "n_responses"} (+ "note" when there is no ceiling).
    """
    ceiling = noise_ceiling(triplets, n_objects, bootstrap, seed)
    entry = {
        "accuracy": None,
        "ci95": [None, None],
        "source": source,
        "n_sets": ceiling.n_repeated_sets,
        "n_responses": ceiling.n_responses,
    }
    if dedicated and not ceiling.n_repeated_sets:
        raise InputError(
            f"{source}: no set of three objects is asked twice; the noise-ceiling file holds triplets asked repeatedly"
        )
    if ceiling.n_repeated_sets < min_sets and not dedicated:
        entry["note"] = (
            f"no noise ceiling: {ceiling.n_repeated_sets} set(s) of three objects asked twice or more in {source}, "
            f"fewer than {min_sets} (things.noise_ceiling_min_sets); give THINGS' repeated triplets as "
            "things.noise_ceiling_triplets=FILE"
        )
        return entry, entry["note"]
    entry["accuracy"] = ceiling.accuracy
    entry["ci95"] = json_values.interval(ceiling.ci95)
    interval = "" if np.isnan(ceiling.ci95[0]) else f" [{ceiling.ci95[0]:.3f}, {ceiling.ci95[1]:.3f}]"
    line = (
        f"noise ceiling: {ceiling.accuracy:.3f}{interval} from {source} ({ceiling.n_repeated_sets:,} sets, "
        f"{ceiling.n_responses:,} responses, {ceiling.n_responses / ceiling.n_repeated_sets:.1f} per set)"
    )
    return entry, line
