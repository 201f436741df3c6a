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
    features = features.astype(np.float32)
    bad = ~np.isfinite(features)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InputError(f"{source}: NaN or inf in features (row {row}, column {col}); {int(bad.sum())} values in all")
    if n_objects is not None and features.shape[0] != n_objects:
        raise InputError(f"{source}: {features.shape[0]} feature rows but {n_objects} objects; row i must be object i")
    return features
