"""A human concept embedding of the objects (VICE or SPoSE): non-negative weights with named dimensions.

Files: the weights as `.npy` or whitespace-separated text, (n_objects, d), row i = object i (THINGS
order); the labels as text, one dimension name per line, in column order (e.g. Metal, Food,
Plant-related, Animal-related, ...). Without a label file dimensions are named "dimension 1", ...
"""

import dataclasses
import io
import os

import numpy as np

from alignment_jax.data.npy import read_npy
from alignment_jax.data.text import read_text
from alignment_jax.errors import InputError


@dataclasses.dataclass(frozen=True)
class ConceptEmbedding:
    """weights: (n_objects, d) float32, non-negative; labels: (d,) dimension names."""

    weights: np.ndarray
    labels: tuple[str, ...]

    @property
    def n_dims(self) -> int:
        return self.weights.shape[1]


def load_concept_embedding(path: str, labels_path: str = "", n_objects: int | None = None) -> ConceptEmbedding:
    """Reads and validates the weights (and labels); n_objects, if given, must equal the row count."""
    weights = _read_weights(path)
    if weights.ndim != 2 or weights.shape[1] == 0:
        raise InputError(f"{path}: concept embedding must have shape (n_objects, d), got {weights.shape}")
    bad = ~np.isfinite(weights)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InputError(f"{path}: NaN or inf in the concept embedding (row {row}, column {col})")
    if (weights < 0).any():
        row, col = np.argwhere(weights < 0)[0]
        raise InputError(
            f"{path}: negative weight {weights[row, col]:.4g} (row {row}, column {col}); "
            "VICE/SPoSE embeddings are non-negative: is this the right file?"
        )
    if n_objects is not None and weights.shape[0] != n_objects:
        raise InputError(
            f"{path}: {weights.shape[0]} rows but {n_objects} objects; row i must be object i (THINGS order)"
        )
    labels = load_labels(labels_path, weights.shape[1]) if labels_path else _default_labels(weights.shape[1])
    return ConceptEmbedding(weights.astype(np.float32), labels)


def load_labels(path: str, n_dims: int) -> tuple[str, ...]:
    """Dimension names, one per non-empty line; exactly n_dims of them, all distinct."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: concept label file not found (concepts.labels)")
    labels = tuple(line.strip() for line in read_text(path, "concept label file").splitlines() if line.strip())
    if len(labels) != n_dims:
        raise InputError(f"{path}: {len(labels)} labels for {n_dims} embedding dimensions; give one label per column")
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise InputError(f"{path}: duplicate labels {duplicates[:5]}")
    return labels


def _read_weights(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise InputError(f"{path}: concept embedding not found (concepts.embedding)")
    if path.endswith(".npy"):
        array = read_npy(path, "concept embedding")
        if array.dtype.kind not in "fiu":
            raise InputError(f"{path}: concept embedding must be numeric, got dtype {array.dtype}")
        return array.astype(np.float64)
    try:
        return np.loadtxt(io.StringIO(read_text(path, "concept embedding")), dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise InputError(f"{path}: not a whitespace-separated numeric table ({e})") from e


def _default_labels(n_dims: int) -> tuple[str, ...]:
    return tuple(f"dimension {i + 1}" for i in range(n_dims))
