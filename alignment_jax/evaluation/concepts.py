"""Per-concept odd-one-out accuracy: which human concepts a model's similarities capture.

Each triplet is assigned to the concept dimension(s) that best explain the human choice: the largest
mean weight of a concept embedding over the human-chosen pair (i, j) (columns 0 and 1). With top_k > 1 a
triplet counts towards each of its k best dimensions. Per dimension: the number of triplets and the
fraction the model gets right.
"""

import numpy as np

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
    dims = np.asarray(assignment).reshape(len(assignment), -1)
    hits = np.broadcast_to(np.asarray(correct, bool)[:, None], dims.shape)
    counts = np.bincount(dims.ravel(), minlength=n_concepts)
    right = np.bincount(dims.ravel(), weights=hits.ravel().astype(np.float64), minlength=n_concepts)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(counts > 0, right / np.maximum(counts, 1), np.nan)
    return counts, accuracy


def concept_rows(
    labels: tuple[str, ...],
    assignment: np.ndarray,
    correct: np.ndarray,
    correct_transformed: np.ndarray | None = None,
) -> list[dict]:
    """The results.json `concepts` section: one row per dimension, in embedding order.

    Rows: {"concept", "n_triplets", "accuracy", "accuracy_transformed"}; accuracies are None for a
    dimension without triplets, and `accuracy_transformed` is None without a transform.
    """
    counts, accuracy = concept_accuracy(assignment, correct, len(labels))
    if correct_transformed is not None:
        _, transformed = concept_accuracy(assignment, correct_transformed, len(labels))
    rows = []
    for d, label in enumerate(labels):
        rows.append(
            {
                "concept": label,
                "n_triplets": int(counts[d]),
                "accuracy": _number(accuracy[d]),
                "accuracy_transformed": _number(transformed[d]) if correct_transformed is not None else None,
            }
        )
    return rows


def _number(value: float) -> float | None:
    return None if np.isnan(value) else float(value)
