"""Feature standardization stored with the transform: one global scalar mean/std (paper) or per dimension."""

import numpy as np

from alignment_jax.errors import InputError

MODES = ("global", "per_dim", "none")


def standardization(features: np.ndarray, mode: str = "global") -> tuple[np.ndarray, np.ndarray]:
    """features: (n, p) -> (mean, std): scalars for `global`, (p,) for `per_dim`, (0, 1) for `none`."""
    features = np.asarray(features, np.float64)
    if mode == "global":
        mean, std = features.mean(), features.std()
    elif mode == "per_dim":
        mean, std = features.mean(axis=0), features.std(axis=0)
        std = np.where(std > 0, std, 1.0)
    elif mode == "none":
        mean, std = np.zeros(()), np.ones(())
    else:
        raise InputError(f"probe.standardize={mode!r} is not one of {', '.join(MODES)}")
    if np.any(np.asarray(std) == 0):
        raise InputError("features are constant: their standard deviation is 0, nothing to standardize or learn")
    return np.asarray(mean, np.float32), np.asarray(std, np.float32)
