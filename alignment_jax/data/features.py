"""Reading a precomputed feature matrix (n_objects, p): `.npy`, or HDF5 with a `features` dataset."""

import os

import numpy as np

from alignment_jax.data.npy import read_npy
from alignment_jax.errors import InputError


def load_features(path: str, n_objects: int | None = None) -> np.ndarray:
    """Returns (n, p) float32 features; checks the shape, finiteness and, if given, the row count."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: feature file not found")
    if path.endswith((".h5", ".hdf5")):
        try:
            import h5py
        except ImportError as e:
            raise InputError(f"{path}: reading HDF5 needs h5py (pip install h5py)") from e
        try:
            with h5py.File(path, "r") as f:
                if "features" not in f:
                    raise InputError(f"{path}: no 'features' dataset (found {sorted(f.keys())})")
                features = np.asarray(f["features"])
        except OSError as e:
            raise InputError(f"{path}: not a readable HDF5 file ({e})") from e
    else:
        features = read_npy(path, "feature file")
    return check_features(features, path, n_objects)


def check_features(features: np.ndarray, source: str, n_objects: int | None = None) -> np.ndarray:
    """Validates (n, p) features; returns them as float32."""
    features = np.asarray(features)
    if features.ndim != 2:
        raise InputError(f"{source}: features must have shape (n_objects, p), got {features.shape}")
    if features.dtype.kind not in "fiu":
        raise InputError(f"{source}: features must be numeric, got dtype {features.dtype}")
    if 0 in features.shape:
        empty = "rows" if not len(features) else "columns"
        raise InputError(f"{source}: features have shape {features.shape}: no {empty}; is this the right file?")
    if features.dtype.kind == "f" and features.dtype.itemsize > 4:
        _check_float32_range(features, source)
    features = features.astype(np.float32)
    bad = ~np.isfinite(features)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InputError(f"{source}: NaN or inf in features (row {row}, column {col}); {int(bad.sum())} values in all")
    if n_objects is not None and features.shape[0] != n_objects:
        raise InputError(f"{source}: {features.shape[0]} feature rows but {n_objects} objects; row i must be object i")
    return features


def _check_float32_range(features: np.ndarray, source: str) -> None:
    """Wider floats are read as float32: a finite value beyond its range would become inf, and a row whose
    values are all below its range would become zeros (a silently wrong similarity). Both are errors."""
    with np.errstate(invalid="ignore"):
        magnitude = np.where(np.isfinite(features), np.abs(features), 0.0)
    limits = np.finfo(np.float32)
    if (magnitude > limits.max).any():
        row, col = np.argwhere(magnitude > limits.max)[0]
        raise InputError(
            f"{source}: value {features[row, col]:.3g} (row {row}, column {col}) is beyond float32's range "
            f"({limits.max:.3g}); divide the features by a constant (cosine similarity does not change)"
        )
    row_max = magnitude.max(axis=1) if features.shape[1] else np.zeros(len(features))
    lost = (row_max > 0) & (row_max < limits.tiny)
    if lost.any():
        row = int(np.argmax(lost))
        raise InputError(
            f"{source}: row {row} has only values below float32's range (largest {row_max[row]:.3g}, float32 "
            f"from {limits.tiny:.3g}); multiply the features by a constant (cosine similarity does not change)"
        )
