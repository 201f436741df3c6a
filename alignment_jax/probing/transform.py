"""A learned linear transform of features: standardize, then `z = x W + b`.

Stored as `transform.npz` with keys `weights` (p, p), `bias` (p,), `mean`, `std` (scalars, or (p,) for
per-dimension standardization): the gLocal/thingsvision convention, applied as
`((x - mean) / std) @ weights + bias`. Also saved as an orbax checkpoint directory. A given transform
(`config.transform`) is such a file, or a folder in gLocal's layout `FOLDER/<model>/<module>/transform.npz`.
"""

import dataclasses
import os

import numpy as np

from alignment_jax import atomic
from alignment_jax.data.features import check_features
from alignment_jax.errors import InputError

_NPZ_KEYS = ("weights", "bias", "mean", "std")
GIVEN_FILE = "transform.npz"  # the file name in gLocal's layout transforms/<model>/<module>/


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
            value = np.asarray(getattr(self, name))
            if value.dtype.kind not in "fiu":
                raise InputError(f"{self.source}: {name} must be numeric, got dtype {value.dtype}")
            object.__setattr__(self, name, value.astype(np.float32))
        p = self.weights.shape[0] if self.weights.ndim else 0
        if self.weights.ndim != 2 or self.weights.shape != (p, p) or p == 0:
            raise InputError(f"{self.source}: weights must be square (p, p), got {self.weights.shape}")
        if self.bias.shape != (p,):
            raise InputError(f"{self.source}: bias must have shape ({p},), got {self.bias.shape}")
        for name in ("mean", "std"):
            shape = getattr(self, name).shape
            if shape not in ((), (p,)):
                raise InputError(f"{self.source}: {name} must be a scalar or shape ({p},), got {shape}")
        for name in _NPZ_KEYS:
            if not np.all(np.isfinite(getattr(self, name))):
                raise InputError(f"{self.source}: NaN or inf in {name}; this transform cannot be applied")
        if np.any(self.std == 0):
            raise InputError(f"{self.source}: std is 0; features cannot be standardized with it")

    @property
    def dim(self) -> int:
        return self.weights.shape[0]

    def standardize(self, features: np.ndarray) -> np.ndarray:
        """features: (n, p) -> (n, p) standardized with the stored mean/std."""
        return (np.asarray(features, np.float32) - self.mean) / self.std

    def apply(self, features: np.ndarray) -> np.ndarray:
        """features: (n, p) -> ((features - mean) / std) @ weights + bias, (n, p) float32."""
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise InputError(
                f"{self.source}: the transform expects features of shape (n, {self.dim}), got {features.shape}; "
                "were they made by the same model and layer?"
            )
        return self.standardize(check_features(features, "features")) @ self.weights + self.bias

    def save(self, path: str | os.PathLike) -> None:
        """A path ending in .npz: transform.npz (keys weights, bias, mean, std); any other: an orbax folder."""
        self.save_npz(path) if os.fspath(path).endswith(".npz") else self.save_orbax(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Transform":
        """A transform.npz (gLocal, thingsvision or this tool) or an orbax folder `save` wrote."""
        return cls.load_orbax(path) if os.path.isdir(path) else cls.load_npz(path)

    def save_npz(self, path: str | os.PathLike) -> None:
        atomic.save_npz(path, **{k: getattr(self, k) for k in _NPZ_KEYS})

    @classmethod
    def load_npz(cls, path: str | os.PathLike) -> "Transform":
        """Reads a transform.npz: `weights`, `mean` and `std` are required (a transform learned on
        standardized features is wrong without them), `bias` is optional (gLocal writes none for a probe
        without one)."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise InputError(f"{path}: transform file not found")
        try:
            data = np.load(path, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise InputError(f"{path}: not an .npz archive (a single array); expected keys {list(_NPZ_KEYS)}")
            with data:
                missing = [k for k in ("weights", "mean", "std") if k not in data]
                if missing:
                    raise InputError(
                        f"{path}: missing key(s) {missing}; a transform needs weights, mean, std (bias optional)"
                    )
                arrays = {k: data[k] for k in _NPZ_KEYS if k in data}
        except InputError:
            raise
        except Exception as e:  # numpy and zipfile raise many types for a damaged archive
            raise InputError(f"{path}: not a readable .npz transform ({type(e).__name__}: {e})") from e
        weights = arrays["weights"]
        bias = arrays.get("bias", np.zeros(weights.shape[:1]))
        return cls(weights=weights, bias=bias, mean=arrays["mean"], std=arrays["std"], source=path)

    def save_orbax(self, directory: str | os.PathLike) -> None:
        """Saves as an orbax PyTree checkpoint folder; an existing one is replaced only once the new one is
        complete. Under jax.distributed every process may call it: process 0 alone writes (orbax told so: no
        barrier with the others), as two processes cannot both rename a folder into place."""
        import jax
        import orbax.checkpoint as ocp

        if jax.process_index() != 0:
            return
        alone = ocp.options.MultiprocessingOptions(primary_host=0, active_processes={0})
        handler = ocp.PyTreeCheckpointHandler(multiprocessing_options=alone)
        with atomic.atomic_directory(directory) as tmp, ocp.Checkpointer(handler, multiprocessing_options=alone) as c:
            c.save(tmp, {k: getattr(self, k) for k in _NPZ_KEYS})

    @classmethod
    def load_orbax(cls, directory: str | os.PathLike) -> "Transform":
        import orbax.checkpoint as ocp

        directory = os.path.abspath(os.fspath(directory))
        if not os.path.isdir(directory):
            raise InputError(f"{directory}: orbax transform checkpoint not found")
        with ocp.PyTreeCheckpointer() as checkpointer:
            tree = checkpointer.restore(directory)
        return cls(**{k: np.asarray(tree[k]) for k in _NPZ_KEYS}, source=directory)


def given_transform_path(path: str, model: str = "", module: str = "") -> str:
    """The transform file named by `config.transform`: the file itself, or, for a folder in gLocal's layout
    (its repository's `transforms/`), `path/<model>/<module>/transform.npz` (a model name may hold a '/',
    e.g. clip_ViT-L/14)."""
    if os.path.isfile(path):
        if model or module:
            raise InputError(
                f"transform={path} is a file: transform_model/transform_module only pick a file inside a folder "
                "of gLocal's layout; unset them"
            )
        return path
    if not os.path.isdir(path):
        raise InputError(f"transform={path}: no such file or folder (a transform.npz, or gLocal's transforms/ folder)")
    available = sorted(
        os.path.relpath(folder, path).replace(os.sep, "/")
        for folder, _, files in os.walk(path)
        if GIVEN_FILE in files and os.path.abspath(folder) != os.path.abspath(path)
    )
    listed = ", ".join(available[:6]) + (", ..." if len(available) > 6 else "") if available else "none"
    if not (model and module):
        raise InputError(
            f"transform={path} is a folder: set transform_model and transform_module to pick "
            f"<model>/<module>/{GIVEN_FILE} (there: {listed})"
        )
    file = os.path.join(path, *model.split("/"), *module.split("/"), GIVEN_FILE)
    if not os.path.isfile(file):
        raise InputError(f"{file}: no transform for model {model!r}, module {module!r} (there: {listed})")
    return file
