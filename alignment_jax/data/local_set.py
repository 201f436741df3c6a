"""gLocal's local image set: features of other natural images (ImageNet in gLocal), one row per image,
split into the rows the local term trains on and held-out rows for evaluation.

Held out: a separate file (`probe.local.test_features`), or a random fraction of the rows
(`probe.local.heldout`), drawn from the run's seed so a rerun holds out the same images.
"""

import dataclasses

import numpy as np

from alignment_jax.data.features import load_features
from alignment_jax.errors import InputError


@dataclasses.dataclass(frozen=True)
class LocalSet:
    """train: (n_train, p) features the local term trains on; heldout: (n_heldout, p) for evaluation
    (None when nothing is held out); source: what error messages call the set."""

    train: np.ndarray
    heldout: np.ndarray | None
    source: str

    @property
    def dim(self) -> int:
        return self.train.shape[1]


def split_heldout(n_images: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, heldout), each sorted: round(fraction * n) random rows held out (at least one
    when fraction > 0), and at least one row left to train on."""
    if not 0.0 <= fraction < 1.0:
        raise InputError(f"probe.local.heldout={fraction}: must be a fraction in [0, 1)")
    n_heldout = 0 if fraction == 0 else min(n_images - 1, max(1, round(fraction * n_images)))
    order = np.random.default_rng([seed, n_images]).permutation(n_images)
    return np.sort(order[n_heldout:]), np.sort(order[:n_heldout])


def check_counts(
    n_images: int, n_test: int | None, heldout: float, validation: float, trains: bool, knn: int, source: str
) -> None:
    """Before anything slow runs: n_images local images (n_test held out in their own file, else a `heldout`
    fraction of them) are enough for the locality measures (more than `knn` held out, or none) and, when the
    local term `trains`, for at least 2 training and 2 validation images (a `validation` fraction of the rest).
    The counts are those split_heldout gives for any seed."""
    if n_images < 2:
        raise InputError(f"{source}: {n_images} local image(s); the local term needs at least 2")
    n_held = n_test if n_test is not None else len(split_heldout(n_images, heldout, 0)[1])
    if 0 < n_held <= knn:
        raise InputError(
            f"{source}: {n_held} held-out local images; the {knn}-NN overlap needs at least {knn + 1} "
            "(raise probe.local.heldout, or give probe.local.test_features)"
        )
    n_train = n_images if n_test is not None else n_images - n_held
    n_val = len(split_heldout(n_train, validation, 0)[1])
    if trains and (n_train - n_val < 2 or n_val < 2):
        raise InputError(
            f"{source}: {n_images} local images leave {n_train - n_val} to train and {n_val} to validate on "
            f"({n_held} held out: probe.local.heldout={heldout}; validation: probe.local.validation={validation}); "
            "the local term needs at least 2 of each: give more local images or change those fractions"
        )


def make_local_set(
    features: np.ndarray, source: str, test_features: np.ndarray | None, heldout: float, seed: int
) -> LocalSet:
    """features: (n, p) of the local images; test_features: (m, p) held out as given, else a `heldout`
    fraction of `features` (probe.local.heldout)."""
    if features.shape[0] < 2:
        raise InputError(f"{source}: {features.shape[0]} local image(s); the local term needs at least 2")
    if test_features is not None:
        if test_features.shape[1] != features.shape[1]:
            raise InputError(
                f"probe.local.test_features: {test_features.shape[1]} dimensions but {source} has "
                f"{features.shape[1]}; both must come from the same model and layer"
            )
        return LocalSet(features, test_features, source)
    train, held = split_heldout(features.shape[0], heldout, seed)
    return LocalSet(features[train], features[held] if len(held) else None, source)


def load_local_set(features_path: str, test_path: str, heldout: float, seed: int) -> LocalSet:
    """The local set from feature files (.npy, or .h5 with a `features` dataset; row = image)."""
    features = load_features(features_path)
    test = load_features(test_path) if test_path else None
    return make_local_set(features, features_path, test, heldout, seed)


def check_dims(local: LocalSet, dim: int, things_source: str) -> None:
    """The local features must live in the space of the THINGS features the transform maps."""
    if local.dim != dim:
        raise InputError(
            f"{local.source}: local features have {local.dim} dimensions but the THINGS features "
            f"({things_source}) have {dim}; extract both with the same model and layer"
        )
