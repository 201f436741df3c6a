"""How much a transform moves the local structure of held-out images (gLocal's concern, docs/glocal.md).

`local_heldout_loss`: gLocal's contrastive loss (alignment_jax/probing/local.py) of all N held-out images
as ONE batch: each image's softmax runs over the N - 1 others, teacher = features before the transform,
student = after it. `local_knn_overlap`: the mean fraction of each image's k nearest neighbours (cosine,
itself excluded) that are still among its k nearest after the transform (1 = neighbourhoods kept).

Both work through blocks of rows (memory block x N, not N x N) and give the numbers of the full N x N
computation.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from alignment_jax.probing.local import contrastive_rows, unit_rows
from alignment_jax.probing.transform import Transform

BLOCK = 1024  # rows per block


@functools.partial(jax.jit, static_argnames=("k",))
def _block_measures(
    before: jax.Array, after: jax.Array, start: jax.Array, tau: jax.Array, k: int
) -> tuple[jax.Array, jax.Array]:
    """Rows start .. start + block of the unit-row matrices before (N, p), after (N, q) -> per-row
    (contrastive cross-entropy, k-NN overlap); rows past N give junk the caller drops."""
    n = before.shape[0]
    rows = start + jnp.arange(BLOCK)
    index = jnp.minimum(rows, n - 1)
    teacher, student = before[index] @ before.T, after[index] @ after.T  # (BLOCK, N)
    pairs = jnp.arange(n)[None, :] != rows[:, None]
    loss = contrastive_rows(teacher, student, tau, pairs)
    near_before = jax.lax.top_k(jnp.where(pairs, teacher, -jnp.inf), k)[1]
    near_after = jax.lax.top_k(jnp.where(pairs, student, -jnp.inf), k)[1]
    kept = jnp.any(near_before[:, :, None] == near_after[:, None, :], axis=2).sum(axis=1)
    return loss, kept / k


def _measures(before: np.ndarray, after: np.ndarray, tau: float, k: int) -> tuple[float, float]:
    before, after = np.asarray(before, np.float32), np.asarray(after, np.float32)
    n = before.shape[0]
    if after.shape[0] != n or before.ndim != 2 or after.ndim != 2:
        raise ValueError(f"before {before.shape} and after {after.shape} must be (N, p), (N, q) with the same N")
    if not 1 <= k < n:
        raise ValueError(f"{n} images: the {k}-NN overlap needs at least {k + 1}")
    u_before, u_after = unit_rows(jnp.asarray(before)), unit_rows(jnp.asarray(after))
    losses, overlaps = [], []
    for start in range(0, n, BLOCK):
        loss, overlap = _block_measures(u_before, u_after, jnp.int32(start), jnp.float32(tau), k)
        count = min(BLOCK, n - start)
        losses.append(np.asarray(loss)[:count])
        overlaps.append(np.asarray(overlap)[:count])
    return float(np.concatenate(losses).mean()), float(np.concatenate(overlaps).mean())


def local_heldout_loss(before: np.ndarray, after: np.ndarray, tau: float) -> float:
    """before: (N, p) features of N held-out images; after: (N, q) the same images transformed; tau > 0.
    The contrastive loss of the whole set as one batch (probing.local.contrastive_loss of N x N)."""
    return _measures(before, after, tau, 1)[0]


def local_knn_overlap(before: np.ndarray, after: np.ndarray, k: int = 10) -> float:
    """before: (N, p), after: (N, q) -> mean over images of |kNN_before(i) & kNN_after(i)| / k (cosine)."""
    return _measures(before, after, 1.0, k)[1]


def transform_locality(transform: Transform, features: np.ndarray, tau: float, k: int = 10) -> dict:
    """Both measures of `transform` on held-out features (N, p), applied as everywhere else
    (`transform.apply`: standardized with its mean/std, then W, + b); the teacher is the raw features.
    Returns {"local_heldout_loss", "local_knn_overlap", "local_tau", "local_k", "local_n_heldout"}."""
    loss, overlap = _measures(features, transform.apply(features), tau, k)
    return {
        "local_heldout_loss": loss,
        "local_knn_overlap": overlap,
        "local_tau": float(tau),
        "local_k": k,
        "local_n_heldout": int(features.shape[0]),
    }
