"""The settings of gLocal's objective (`probe.objective`, `probe.alphas`, `probe.taus`, `probe.local.*`) and
how local features enter it (docs/glocal.md).

gLocal feeds the local images' features to the transform raw: the teacher is U(F), the student
U(F W + b), while the THINGS features are standardized with one global mean/std, the `mean`/`std` of
its transform.npz (main_glocal_probing_final.py). `probe.local.standardize = "none"` does the same;
`"things"` standardizes the student's rows with the THINGS mean/std first, so the local term trains
the transform as `transform.npz` is applied ((x - mean) / std) W + b. The teacher is the raw features
either way.
"""

import dataclasses

import ml_collections
import numpy as np

from alignment_jax.errors import InputError

OBJECTIVES = ("global", "glocal")
LOCAL_STANDARDIZE = ("none", "things")


@dataclasses.dataclass(frozen=True)
class GlocalSettings:
    """objective: global | glocal; alphas, taus: the values swept (alpha in [0, 1], tau > 0); batch_size:
    local images per step (gLocal: 1024); standardize: none | things (module docstring); heldout: the
    fraction of local images held out for evaluation when no test file is given."""

    objective: str
    alphas: tuple[float, ...]
    taus: tuple[float, ...]
    batch_size: int
    standardize: str
    heldout: float

    @classmethod
    def from_config(cls, probe: ml_collections.ConfigDict) -> "GlocalSettings":
        if probe.objective not in OBJECTIVES:
            raise InputError(f"probe.objective={probe.objective!r} is not one of {', '.join(OBJECTIVES)}")
        alphas, taus = _floats(probe.alphas, "probe.alphas"), _floats(probe.taus, "probe.taus")
        if any(not 0.0 <= a <= 1.0 for a in alphas):
            raise InputError(f"probe.alphas={probe.alphas!r}: each alpha must be in [0, 1]")
        if any(not (t > 0 and np.isfinite(t)) for t in taus):
            raise InputError(f"probe.taus={probe.taus!r}: each temperature must be a positive number")
        local = probe.local
        if local.batch_size < 2:
            raise InputError(f"probe.local.batch_size={local.batch_size}: needs at least 2 images (gLocal: 1024)")
        if local.standardize not in LOCAL_STANDARDIZE:
            raise InputError(
                f"probe.local.standardize={local.standardize!r} is not one of {', '.join(LOCAL_STANDARDIZE)}"
            )
        if not 0.0 <= local.heldout < 1.0:
            raise InputError(f"probe.local.heldout={local.heldout}: must be a fraction in [0, 1)")
        return cls(probe.objective, alphas, taus, local.batch_size, local.standardize, local.heldout)


def student_rows(local_features: np.ndarray, mean: np.ndarray, std: np.ndarray, standardize: str) -> np.ndarray:
    """local_features: (B, p) raw -> the rows the transform maps in the local term: raw (`none`, gLocal)
    or standardized with the THINGS mean/std (`things`)."""
    if standardize == "none":
        return np.asarray(local_features, np.float32)
    if standardize == "things":
        return ((np.asarray(local_features, np.float32) - mean) / std).astype(np.float32)
    raise InputError(f"probe.local.standardize={standardize!r} is not one of {', '.join(LOCAL_STANDARDIZE)}")


def _floats(value, field: str) -> tuple[float, ...]:
    """A non-empty tuple of floats (the command line gives `--config.probe.taus=0.1,1`)."""
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError) as e:
        raise InputError(f"{field}={value!r}: expected numbers, e.g. 0.1,0.25") from e
    if not out:
        raise InputError(f"{field} is empty")
    return out
