"""Per-concept odd-one-out accuracy: which human concepts a model's similarities capture.

Each triplet is assigned to the concept dimension(s) that best explain the human choice: the largest
mean weight of a concept embedding over the human-chosen pair (i, j) (columns 0 and 1). With top_k > 1 a
triplet counts towards each of its k best dimensions. Per dimension: the number of triplets and the
fraction the model gets right.
"""

import numpy as np

from alignment_jax.evaluation.statistics import proportion_ci

_CHUNK = 1 << 18  # triplets per step: bounds the (chunk, d) working array


def assign_concepts(weights: np.ndarray, triplets: np.ndarray, top_k: int = 1) -> np.ndarray:
    """weights: (n_objects, d); triplets: (T, 3) -> (T, top_k) int32 dimensions, best first.

    Ties go to the lower dimension index.
    """
    weights = np.asarray(weights, np.float32)
    triplets = np.asarray(triplets)
    if not 1 <= top_k <= weights.shape[1]:
        raise ValueError(f"top_k must be in [1, {weights.shape[1]}], got {top_k}")
    out = np.empty((len(triplets), top_k), np.int32)
    for start in range(0, len(triplets), _CHUNK):
        chunk = triplets[start : start + _CHUNK]
        pair_mean = 0.5 * (weights[chunk[:, 0]] + weights[chunk[:, 1]])  # (chunk, d)
        if top_k == 1:
            out[start : start + len(chunk), 0] = np.argmax(pair_mean, axis=1)
        else:
            out[start : start + len(chunk)] = np.argsort(-pair_mean, axis=1, kind="stable")[:, :top_k]
    return out


def concept_accuracy(assignment: np.ndarray, correct: np.ndarray, n_concepts: int) -> tuple[np.ndarray, np.ndarray]:
    """assignment: (T, k) dimensions; correct: (T,) bool -> (counts (d,) int, accuracy (d,), nan where empty)."""
    counts, right = _concept_counts(assignment, correct, n_concepts)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(counts > 0, right / np.maximum(counts, 1), np.nan)
    return counts, accuracy


def _concept_counts(assignment: np.ndarray, correct: np.ndarray, n_concepts: int) -> tuple[np.ndarray, np.ndarray]:
    """(triplets (d,), of them right (d,)) per concept, int64."""
    dims = np.asarray(assignment).reshape(len(assignment), -1)
    hits = np.broadcast_to(np.asarray(correct, bool)[:, None], dims.shape)
    counts = np.bincount(dims.ravel(), minlength=n_concepts)
    right = np.bincount(dims.ravel(), weights=hits.ravel().astype(np.float64), minlength=n_concepts)
    return counts.astype(np.int64), np.rint(right).astype(np.int64)


def concept_rows(
    labels: tuple[str, ...],
    assignment: np.ndarray,
    correct: np.ndarray,
    correct_transformed: np.ndarray | None = None,
    bootstrap: int = 0,
    seed: int = 0,
) -> list[dict]:
    """The results.json `concepts` section: one row per dimension, in embedding order.

    Rows: {"concept", "n_triplets", "accuracy", "accuracy_transformed"}; accuracies are None for a
    dimension without triplets, and `accuracy_transformed` is None without a transform. With bootstrap > 0
    resamples, also "accuracy_ci95" and "accuracy_transformed_ci95": 95% bootstrap intervals over the
    concept's triplets ([low, high]; None for a dimension without triplets or without a transform).
    """
    counts, _ = _concept_counts(assignment, correct, len(labels))
    outcomes = {}  # column -> (right (d,), intervals (d, 2)), or None without outcomes
    for column, values in (("accuracy", correct), ("accuracy_transformed", correct_transformed)):
        if values is not None:
            _, right = _concept_counts(assignment, values, len(labels))
            outcomes[column] = (right, proportion_ci(right, counts, bootstrap, seed))
        else:
            outcomes[column] = None
    rows = []
    for d, label in enumerate(labels):
        row = {"concept": label, "n_triplets": int(counts[d])}
        for column, outcome in outcomes.items():
            row[column] = float(outcome[0][d] / counts[d]) if outcome is not None and counts[d] else None
        for column, outcome in outcomes.items() if bootstrap > 0 else ():
            row[f"{column}_ci95"] = [float(v) for v in outcome[1][d]] if outcome is not None and counts[d] else None
        rows.append(row)
    return rows
