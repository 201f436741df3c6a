"""The settings of gLocal's objective (`probe.objective`, `probe.alphas`, `probe.taus`, `probe.local.*`), how
local features enter it, and the local images of a sweep (docs/glocal.md).

gLocal feeds the local images' features to the transform raw: the teacher is U(F), the student
U(F W + b), while the THINGS features are standardized with one global mean/std, the `mean`/`std` of
its transform.npz (main_glocal_probing_final.py). `probe.local.standardize = "none"` does the same;
`"things"` standardizes the student's rows with the THINGS mean/std first, so the local term trains
the transform as `transform.npz` is applied ((x - mean) / std) W + b. The teacher is the raw features
either way.

In the sweep (probing/sweep.py) the local images are `LocalData`, shared by every fold. Each configuration
reads its own stream of training batches: pass q over the N training images is a permutation drawn from
(seed, fold id, q), cut into ceil(N / B) batches of B rows (the last one padded and masked), and step j of
its epoch e takes stream position e * steps_per_epoch + j; so a configuration sees the same batches whatever
slot it trains in, whenever it starts, and when it runs alone. The teacher's similarities of a batch are
computed once per batch (`train_batch`), not per configuration: configurations of a fold at the same stream
position and view share the batch. Validation images sit in fixed batches of B whose teacher similarities
are computed once for the whole sweep.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from alignment_jax.config import checks
from alignment_jax.errors import InputError
from alignment_jax.probing import local

OBJECTIVES = ("global", "glocal", "kl", "jsd")  # kl, jsd: soft targets (AligNet; probing/objective.py)
LOCAL_STANDARDIZE = ("none", "things")


@dataclasses.dataclass(frozen=True)
class GlocalSettings:
    """objective: global | glocal; alphas, taus: the values swept (alpha in [0, 1], tau > 0; alpha = 0 is the
    global probe, trained beside gLocal's configurations); batch_size: local images per step (gLocal: 1024);
    standardize: none | things (module docstring); heldout: the fraction of local images held out for
    evaluation when no test file is given; validation: the fraction of the other local images that validate
    (early stopping and selection), the rest train."""

    objective: str = "global"
    alphas: tuple[float, ...] = (0.0, 0.1, 0.25)
    taus: tuple[float, ...] = (0.1, 1.0)
    batch_size: int = 1024
    standardize: str = "none"
    heldout: float = 0.1
    validation: float = 0.1

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise InputError(f"probe.objective={self.objective!r} is not one of {', '.join(OBJECTIVES)}")
        if any(not 0.0 <= a <= 1.0 for a in self.alphas):
            raise InputError(f"probe.alphas={self.alphas!r}: each alpha must be in [0, 1]")
        if any(not (t > 0 and np.isfinite(t)) for t in self.taus):
            raise InputError(f"probe.taus={self.taus!r}: each temperature must be a positive number")
        if self.batch_size < 2:
            raise InputError(f"probe.local.batch_size={self.batch_size}: needs at least 2 images (gLocal: 1024)")
        if self.standardize not in LOCAL_STANDARDIZE:
            raise InputError(
                f"probe.local.standardize={self.standardize!r} is not one of {', '.join(LOCAL_STANDARDIZE)}"
            )
        if not 0.0 <= self.heldout < 1.0:
            raise InputError(f"probe.local.heldout={self.heldout}: must be a fraction in [0, 1)")
        if not 0.0 < self.validation < 1.0:
            raise InputError(f"probe.local.validation={self.validation}: must be a fraction in (0, 1)")
        if self.objective == "glocal" and not any(a > 0 for a in self.alphas):
            raise InputError(
                f"probe.alphas={self.alphas!r}: gLocal needs an alpha > 0 (alpha = 0 alone is probe.objective=global)"
            )

    @classmethod
    def from_config(cls, probe: ml_collections.ConfigDict) -> "GlocalSettings":
        """The settings of config.probe and config.probe.local, mapped (checked when built)."""
        alphas = checks.float_tuple(probe.alphas, "probe.alphas", "0,0.1,0.25")
        taus = checks.float_tuple(probe.taus, "probe.taus", "0.1,1")
        local = probe.local
        return cls(probe.objective, alphas, taus, local.batch_size, local.standardize, local.heldout, local.validation)


def student_rows(local_features: np.ndarray, mean: np.ndarray, std: np.ndarray, standardize: str) -> np.ndarray:
    """local_features: (B, p) raw -> the rows the transform maps in the local term: raw (`none`, gLocal)
    or standardized with the THINGS mean/std (`things`)."""
    if standardize == "none":
        return np.asarray(local_features, np.float32)
    if standardize == "things":
        return ((np.asarray(local_features, np.float32) - mean) / std).astype(np.float32)
    raise InputError(f"probe.local.standardize={standardize!r} is not one of {', '.join(LOCAL_STANDARDIZE)}")


class LocalData(NamedTuple):
    """gLocal's local images in a sweep, shared by every fold; V views (layers), like the fold data.

    train: (V, N, p) raw features of the N training images; shift, scale: (V, p): the transform maps the
    student rows (x - shift) / scale (0 and 1: raw, gLocal's; `things`: the view's THINGS standardization);
    val_rows: (V, n_val_batches, Bv, p) raw validation images in fixed batches (zero rows pad the last);
    val_valid: (n_val_batches, Bv) bool; val_teacher: (V, n_val_batches, Bv, Bv) their cosine similarities
    (computed once). n_val_batches = 0 without validation (the refit).
    """

    train: jax.Array
    shift: jax.Array
    scale: jax.Array
    val_rows: jax.Array
    val_valid: jax.Array
    val_teacher: jax.Array


def local_data(
    train: np.ndarray, validation: np.ndarray | None, shift: np.ndarray, scale: np.ndarray, batch_size: int
) -> LocalData:
    """train: (V, N, p), validation: (V, N_val, p) or None raw features; shift, scale: (V, p) or broadcastable;
    batch_size: B. Validation images go in consecutive batches of min(B, N_val) rows."""
    views, _, p = train.shape
    if validation is None:
        validation = np.zeros((views, 0, p), np.float32)
    n_val = validation.shape[1]
    rows = max(1, min(batch_size, n_val))
    n_batches = -(-n_val // rows)
    padded = np.zeros((views, n_batches * rows, p), np.float32)
    padded[:, :n_val] = validation
    val_rows = padded.reshape(views, n_batches, rows, p)
    teacher = jax.jit(jax.vmap(jax.vmap(local.cosine_similarities)))(jnp.asarray(val_rows))
    return LocalData(
        train=jnp.asarray(train, jnp.float32),
        shift=jnp.broadcast_to(jnp.asarray(shift, jnp.float32), (views, p)),
        scale=jnp.broadcast_to(jnp.asarray(scale, jnp.float32), (views, p)),
        val_rows=jnp.asarray(val_rows),
        val_valid=jnp.asarray((np.arange(n_batches * rows) < n_val).reshape(n_batches, rows)),
        val_teacher=teacher,
    )


def effective_batch(batch_size: int, n_images: int) -> int:
    """Rows of a local batch: B, or all N images when there are fewer (gLocal's DataLoader gives one batch
    of all N then; padding them to B would change nothing but the cost)."""
    return max(1, min(batch_size, n_images))


def _pick(array: jax.Array, index: jax.Array) -> jax.Array:
    """array[index] along the leading axis, without a gather when that axis has one entry."""
    return array[0] if array.shape[0] == 1 else array[index]


def train_batch(
    data: LocalData, view: jax.Array, position: jax.Array, fold_id: jax.Array, seed: jax.Array, batch: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Batch `position` of the training stream of a configuration on fold `fold_id` and view `view`
    (module docstring): (student rows (batch, p), teacher similarities (batch, batch), valid (batch,))."""
    n = data.train.shape[1]
    per_pass = -(-n // batch)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed + 2), fold_id), position // per_pass)
    order = jnp.pad(jax.random.permutation(key, n), (0, per_pass * batch - n))
    start = (position % per_pass) * batch
    index = jax.lax.dynamic_slice(order, (start,), (batch,))
    raw = _pick(data.train, view)[index]
    valid = start + jnp.arange(batch) < n
    student = (raw - _pick(data.shift, view)) / _pick(data.scale, view)
    return student, local.cosine_similarities(raw), valid


def validation_loss(data: LocalData, params, view: jax.Array, tau: jax.Array) -> jax.Array:
    """The local term of one configuration on the validation images: the mean over the images of their
    cross-entropy within their batch (`local.contrastive_rows`); a batch with a single image (no neighbour)
    counts for nothing. params: its parameters; view, tau: scalars. One batch is live at a time (vmapped over
    configurations too: the scan runs over batch indices, each step picks its batch)."""
    counts = data.val_valid.sum(axis=1)
    weights = jnp.where(counts > 1, counts, 0).astype(jnp.float32)
    shift, scale = _pick(data.shift, view), _pick(data.scale, view)

    def batch_loss(total, b):
        student = (_pick(data.val_rows[:, b], view) - shift) / scale
        teacher = _pick(data.val_teacher[:, b], view)
        return total + weights[b] * local.local_loss(params, student, teacher, tau, data.val_valid[b]), None

    total, _ = jax.lax.scan(batch_loss, jnp.float32(0), jnp.arange(weights.shape[0]))
    return total / jnp.maximum(weights.sum(), 1.0)
