"""A learned linear transform of features: standardize, then `z = x W + b`.

Stored as `transform.npz` with keys `weights` (p, p), `bias` (p,), `mean`, `std` (scalars, or (p,) for
per-dimension standardization): the gLocal/thingsvision convention, applied as
`((x - mean) / std) @ weights + bias`. Also saved as an orbax checkpoint directory.
"""

import dataclasses
import os

import numpy as np

from alignment_jax import atomic
from alignment_jax.errors import InputError

_NPZ_KEYS = ("weights", "bias", "mean", "std")


@dataclasses.dataclass(frozen=True)
class Transform:
    """weights: (p, p); bias: (p,); mean, std: () or (p,); source: the file it came from, for errors."""

    weights: np.ndarray
    bias: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    source: str = "transform"

    def __post_init__(self):
        for name in _NPZ_KEYS:
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.float32))
        if self.weights.ndim != 2 or self.weights.shape[0] != self.weights.shape[1] or not self.weights.size:
            raise InputError(f"{self.source}: weights must be square (p, p), got {self.weights.shape}")
        p = self.weights.shape[0]
        if self.bias.shape != (p,):
            raise InputError(f"{self.source}: bias must have shape ({p},), got {self.bias.shape}")
        for name in ("mean", "std"):
            shape = getattr(self, name).shape
            if shape not in ((), (p,)):
                raise InputError(f"{self.source}: {name} must be a scalar or shape ({p},), got {shape}")
        for name in _NPZ_KEYS:
            if not np.isfinite(getattr(self, name)).all():
                raise InputError(f"{self.source}: NaN or inf in {name}; this transform cannot be applied")
        if (self.std == 0).any():
            raise InputError(f"{self.source}: std is 0; this transform cannot be applied")

    @property
    def dim(self) -> int:
        return self.weights.shape[0]

    def standardize(self, features: np.ndarray) -> np.ndarray:
        """features: (n, p) -> (n, p) standardized with the stored mean/std."""
        return (np.asarray(features, np.float32) - self.mean) / self.std

    def apply(self, features: np.ndarray) -> np.ndarray:
        """features: (n, p) -> transformed (n, p)."""
        features = np.asarray(features, np.float32)
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise InputError(
                f"{self.source}: the transform expects features of shape (n, {self.dim}), got {features.shape}; "
                "were they made by the same model and layer?"
            )
        return self.standardize(features) @ self.weights + self.bias

    def save_npz(self, path: str | os.PathLike) -> None:
        atomic.save_npz(path, **{k: getattr(self, k) for k in _NPZ_KEYS})

    @classmethod
    def load_npz(cls, path: str | os.PathLike) -> "Transform":
        path = os.fspath(path)
        if not os.path.exists(path):
            raise InputError(f"{path}: transform file not found")
        try:
            data = np.load(path, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise InputError(f"{path}: a single array, not an .npz transform with keys {list(_NPZ_KEYS)}")
            with data:
                missing = [k for k in ("weights",) if k not in data]
                if missing:
                    raise InputError(f"{path}: missing key(s) {missing}; expected {list(_NPZ_KEYS)}")
                arrays = {k: data[k] for k in _NPZ_KEYS if k in data}
            for name, array in arrays.items():
                if array.dtype.kind not in "fiu":
                    raise InputError(f"{path}: {name} must be numbers, got dtype {array.dtype}")
            weights = arrays["weights"]
            p = weights.shape[0] if weights.ndim else 0
            arrays.setdefault("bias", np.zeros(p))
            arrays.setdefault("mean", np.zeros(()))
            arrays.setdefault("std", np.ones(()))
        except InputError:
            raise
        except Exception as e:  # numpy and zipfile raise many types for a damaged archive
            raise InputError(f"{path}: not a readable .npz transform ({type(e).__name__}: {e})") from e
        return cls(**arrays, source=path)

    def save_orbax(self, directory: str | os.PathLike) -> None:
        """Saves as an orbax PyTree checkpoint folder; an existing one is replaced only once the new one is
        complete."""
        import orbax.checkpoint as ocp

        with atomic.atomic_directory(directory) as tmp, ocp.PyTreeCheckpointer() as checkpointer:
            checkpointer.save(tmp, {k: getattr(self, k) for k in _NPZ_KEYS})

    @classmethod
    def load_orbax(cls, directory: str | os.PathLike) -> "Transform":
        import orbax.checkpoint as ocp

        directory = os.path.abspath(os.fspath(directory))
        if not os.path.isdir(directory):
            raise InputError(f"{directory}: orbax transform checkpoint not found")
        with ocp.PyTreeCheckpointer() as checkpointer:
            tree = checkpointer.restore(directory)
        return cls(**{k: np.asarray(tree[k]) for k in _NPZ_KEYS}, source=directory)
