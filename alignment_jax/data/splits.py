"""Train/validation splits of triplets, as boolean masks over the triplet set (no copies).

The paper's cross-validation is over OBJECTS: objects are shuffled and cut into k folds (sklearn's
shuffled KFold); for fold f a triplet is on the validation side if all three objects are in fold f, on
the training side if none is, and dropped otherwise, so no object is shared between the two sides.
"""

import numpy as np

from alignment_jax.errors import InputError


def shuffled_folds(n: int, k: int, seed: int = 0, what: str = "objects") -> np.ndarray:
    """(n,) ints (the smallest type that holds k - 1): the fold of each of n items, as sklearn's shuffled
    KFold assigns them; fold sizes differ by at most one (the first n % k are larger)."""
    if k < 2 or k > n:
        raise InputError(f"probe.folds={k}: need 2 <= folds <= number of {what} ({n})")
    sizes = np.full(k, n // k)
    sizes[: n % k] += 1
    fold = np.empty(n, np.min_scalar_type(k - 1))
    fold[np.random.default_rng(seed).permutation(n)] = np.repeat(np.arange(k), sizes)
    return fold


def object_folds(n_objects: int, k: int, seed: int = 0) -> np.ndarray:
    """(n_objects,) ints: the fold of each object."""
    return shuffled_folds(n_objects, k, seed, "objects")


def object_kfold_masks(
    triplets: np.ndarray, n_objects: int, k: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """triplets: (T, 3) -> (train, val) masks, each (k, T) bool; train[f] and val[f] share no object."""
    fold_of_object = object_folds(n_objects, k, seed)
    triplets = np.asarray(triplets)
    f0, f1, f2 = (fold_of_object[triplets[:, c]] for c in range(3))
    one_fold = (f0 == f1) & (f1 == f2)
    fold_ids = np.arange(k, dtype=fold_of_object.dtype)[:, None]
    val = one_fold[None] & (f0[None] == fold_ids)
    train = (f0[None] != fold_ids) & (f1[None] != fold_ids) & (f2[None] != fold_ids)
    return train, val


def triplet_kfold_masks(n_triplets: int, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Plain shuffled k-fold over triplets (objects are shared between the sides) -> (train, val) masks,
    each (k, T) bool; every triplet is in exactly one validation fold."""
    fold_of_triplet = shuffled_folds(n_triplets, k, seed, "triplets")
    val = fold_of_triplet[None] == np.arange(k, dtype=fold_of_triplet.dtype)[:, None]
    return ~val, val


def random_split_mask(n_triplets: int, val_fraction: float, seed: int = 0) -> np.ndarray:
    """(T,) bool, True for the validation side of a plain random triplet split."""
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"val_fraction={val_fraction}: must be between 0 and 1")
    val = np.zeros(n_triplets, bool)
    val[np.random.default_rng(seed).permutation(n_triplets)[: int(round(val_fraction * n_triplets))]] = True
    return val
