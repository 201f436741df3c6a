"""The human noise ceiling from repeated triplets, and chance level."""

import dataclasses

import numpy as np

CHANCE = 1.0 / 3.0


@dataclasses.dataclass(frozen=True)
class NoiseCeiling:
    """accuracy: how often a response agrees with the majority response to the same three objects."""

    accuracy: float
    n_repeated_sets: int
    n_responses: int


def noise_ceiling(triplets: np.ndarray, n_objects: int) -> NoiseCeiling:
    """triplets: (T, 3), column 2 = odd one out. Uses every set of three objects asked at least twice.

    For each such set, the majority choice (ties broken by any of the tied choices) predicts all of its
    responses; the ceiling is the fraction of responses it predicts correctly.
    """
    triplets = np.asarray(triplets, np.int64)
    ordered = np.sort(triplets, axis=1)
    set_key = (ordered[:, 0] * n_objects + ordered[:, 1]) * n_objects + ordered[:, 2]
    set_ids, set_index, set_size = np.unique(set_key, return_inverse=True, return_counts=True)
    repeated = set_size[set_index] >= 2
    if not repeated.any():
        return NoiseCeiling(float("nan"), 0, 0)
    choice_key = set_index[repeated] * n_objects + triplets[repeated, 2]
    choice_ids, choice_count = np.unique(choice_key, return_counts=True)
    majority = np.zeros(len(set_ids), np.int64)
    np.maximum.at(majority, choice_ids // n_objects, choice_count)
    n_sets = int((set_size >= 2).sum())
    n_responses = int(repeated.sum())
    return NoiseCeiling(float(majority.sum() / n_responses), n_sets, n_responses)
