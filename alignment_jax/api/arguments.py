"""Checks of the Python API's arguments: the same checks (and one-line InputError messages) the command line
runs on files and settings, applied to arrays and keyword arguments, so no wrong number is returned for
NaN/inf features, out-of-range, negative, non-integer or repeated indices, wrong shapes or empty inputs."""

from collections.abc import Sequence
from typing import Any

import numpy as np

from alignment_jax.config import checks
from alignment_jax.data.features import check_features
from alignment_jax.data.triplets import validate_triplets
from alignment_jax.errors import InputError


def features(array: Any, name: str = "features", n_rows: int | None = None) -> np.ndarray:
    """(n, p) finite numbers -> float32 (data/features.check_features, as for a feature file)."""
    if array is None:
        raise InputError(f"{name}: None; give an (n, p) array")
    return check_features(array, name, n_rows)


def triplets(array: Any, n_objects: int, name: str = "triplets", allow_empty: bool = False) -> np.ndarray:
    """(T, 3) integer object indices in [0, n_objects), three distinct per row -> int32 (data/triplets)."""
    if array is None:
        raise InputError(f"{name}: None; give a (T, 3) array of object indices")
    checked = validate_triplets(np.asarray(array), n_objects, name)
    if not len(checked) and not allow_empty:
        raise InputError(f"{name}: no triplets (shape {np.shape(array)})")
    return checked


def integer(value: Any, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    return checks.integer({name: value}, name, minimum=minimum, maximum=maximum)


def choice(value: Any, name: str, choices: Sequence[str]) -> str:
    return checks.choice({name: value}, name, choices)
