"""k-means (Lloyd's algorithm) in JAX: the teacher stage's classes when images have no labels (AligNet used
k = 500 clusters of the teacher's ImageNet features).

Distances are computed in blocks of rows (an n x k block, never n x n); the update is a segment sum. The
initial centroids are k distinct rows drawn by the seed; a cluster that loses every row keeps its centroid.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

BLOCK = 65_536  # rows per block of distances


def initial_centroids(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k distinct rows of x (n, p), drawn by the seed: (k, p)."""
    rows = np.random.default_rng(seed).choice(len(x), size=k, replace=False)
    return np.asarray(x[np.sort(rows)], np.float32)


@jax.jit
def _assign(x: jax.Array, centroids: jax.Array) -> jax.Array:
    """(B, p), (k, p) -> (B,) the nearest centroid by squared distance (ties: the lowest index)."""
    d = jnp.sum(centroids**2, axis=1)[None, :] - 2 * jnp.matmul(x, centroids.T, precision=jax.lax.Precision.HIGHEST)
    return jnp.argmin(d, axis=1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("k",))
def _sums(x: jax.Array, assignment: jax.Array, *, k: int) -> tuple[jax.Array, jax.Array]:
    return jax.ops.segment_sum(x, assignment, num_segments=k), jax.ops.segment_sum(
        jnp.ones(x.shape[0], jnp.float32), assignment, num_segments=k
    )


def assign(x: np.ndarray, centroids: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """(n, p), (k, p) -> (n,) int32 nearest centroid, in blocks of rows (padded to one compiled shape)."""
    c = jnp.asarray(centroids, jnp.float32)
    out = np.empty(len(x), np.int32)
    size = min(block, len(x))
    for start in range(0, len(x), size):
        part = np.asarray(x[start : start + size], np.float32)
        if len(part) < size:
            part = np.concatenate([part, np.zeros((size - len(part), x.shape[1]), np.float32)])
        out[start : start + size] = np.asarray(_assign(jnp.asarray(part), c))[: min(size, len(x) - start)]
    return out


def kmeans(
    x: np.ndarray, k: int, seed: int = 0, iterations: int = 50, block: int = BLOCK
) -> tuple[np.ndarray, np.ndarray]:
    """x: (n, p) -> (centroids (k, p) float32, assignment (n,) int32 cluster id per row). Stops early when no
    assignment changes."""
    x = np.asarray(x, np.float32)
    if not 1 <= k <= len(x):
        raise ValueError(f"k = {k} clusters for {len(x)} rows: need 1 <= k <= rows")
    centroids = initial_centroids(x, k, seed)
    assignment = assign(x, centroids, block)
    for _ in range(iterations):
        sums, counts = np.zeros((k, x.shape[1]), np.float64), np.zeros(k, np.float64)
        for start in range(0, len(x), block):
            s, c = _sums(jnp.asarray(x[start : start + block]), jnp.asarray(assignment[start : start + block]), k=k)
            sums += np.asarray(s, np.float64)
            counts += np.asarray(c, np.float64)
        filled = counts > 0
        centroids = centroids.copy()
        centroids[filled] = (sums[filled] / counts[filled, None]).astype(np.float32)
        new = assign(x, centroids, block)
        if np.array_equal(new, assignment):
            break
        assignment = new
    return centroids, assignment
