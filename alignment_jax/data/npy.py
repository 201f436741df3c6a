"""Reading a `.npy` file a user named, with errors that say which file and what is wrong."""

import os

import numpy as np

from alignment_jax.errors import InputError


def read_npy(path: str, what: str) -> np.ndarray:
    """The array in `path`; `what` names it in the error ("triplet file", "feature file", ...)."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: {what} not found")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{path}: not a readable .npy file ({e})") from e
