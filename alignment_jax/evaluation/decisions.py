"""A run's right/wrong outcome on every test triplet, kept in DIR/decisions.npz so that runs can be compared
triplet by triplet (paired) later, e.g. by alignment_jax.sweep.

The file holds `triplets_sha256` (a hash of the test triplets: shape and int32 values in file order, the odd
one out included), `n_triplets`, and one bit-packed (T,) bool array per method: `zero_shot` (raw features),
`probe` (the probe's own choice), `zero_shot_transformed` (config.similarity on transformed features). Two
runs are comparable only when their hashes agree: the same triplets in the same order.
"""

import dataclasses
import hashlib
import os
import zipfile

import numpy as np

from alignment_jax import atomic

FILE = "decisions.npz"
METHODS = ("probe", "zero_shot_transformed", "zero_shot")


@dataclasses.dataclass(frozen=True)
class Decisions:
    """correct: {method: (n_triplets,) bool}, every array on the triplets that triplets_sha256 identifies."""

    triplets_sha256: str
    n_triplets: int
    correct: dict[str, np.ndarray]


def triplets_sha256(triplets: np.ndarray) -> str:
    """Hex SHA-256 of (T, 3) triplets as little-endian int32, with their shape."""
    array = np.ascontiguousarray(np.asarray(triplets), dtype="<i4")
    return hashlib.sha256(repr(array.shape).encode() + array.tobytes()).hexdigest()


def save_decisions(workdir: str, triplets: np.ndarray, **correct: np.ndarray) -> Decisions:
    """Adds (or replaces) methods' (T,) outcomes on `triplets` in workdir/decisions.npz, atomically. Methods saved
    for other triplets are dropped: the file only ever describes one set of test triplets."""
    unknown = sorted(set(correct) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown methods {unknown}; one of {METHODS}")
    digest, n_triplets = triplets_sha256(triplets), len(triplets)
    for name, values in correct.items():
        if np.shape(values) != (n_triplets,):
            raise ValueError(f"{name}: expected ({n_triplets},) outcomes, got shape {np.shape(values)}")
    previous = load_decisions(workdir)
    kept = previous.correct if previous is not None and previous.triplets_sha256 == digest else {}
    merged = {**kept, **{k: np.asarray(v, bool) for k, v in correct.items()}}
    atomic.save_npz(
        os.path.join(workdir, FILE),
        triplets_sha256=np.array(digest),
        n_triplets=np.array(n_triplets, np.int64),
        **{name: np.packbits(values) for name, values in merged.items()},
    )
    return Decisions(digest, n_triplets, merged)


def load_decisions(workdir: str) -> Decisions | None:
    """The decisions in workdir/decisions.npz; None when there is no such file or it cannot be read."""
    path = os.path.join(workdir, FILE)
    try:
        with np.load(path) as data:
            n_triplets = int(data["n_triplets"])
            correct = {
                name: np.unpackbits(data[name], count=n_triplets).astype(bool) for name in METHODS if name in data
            }
            return Decisions(str(data["triplets_sha256"]), n_triplets, correct)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
