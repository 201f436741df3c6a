"""Pairwise similarities of object features, and the three pair similarities of each triplet.

Kinds: `cosine` (default), `dot`, `euclidean` (negative squared distance: the same ordering as negative
distance, without a square root). Two ways to get a triplet's three similarities, chosen by cost
(docs/design.md): the object-level n x n matrix S = X X^T costs 2 n^2 p FLOPs once, then three gathers
per triplet; per-triplet dot products of gathered rows cost 6 T p. S wins once T > n^2 / 3.
S is computed at full float32 precision on every device (not TF32 on a GPU): a near-tie decides the same way
everywhere.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from alignment_jax.errors import InputError

KINDS = ("cosine", "dot", "euclidean")


def human_pair_most_similar(s_ij, s_ik, s_jk):
    """The one rule of a correct choice, everywhere: the pair people kept together (i, j) is strictly the most
    similar of the three; a tie counts as wrong (as in the reference code). Arrays (T,) -> (T,) bool."""
    return (s_ij > s_ik) & (s_ij > s_jk)


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InputError(f"similarity={kind!r} is not one of {', '.join(KINDS)}")
    return kind


def prepare(features: jax.Array, kind: str) -> jax.Array:
    """Rows unit-normalized for cosine; unchanged otherwise. features: (n, p).

    Each row is divided by its largest |value| before its norm is taken, so the squares neither overflow
    (features of 1e30) nor underflow (1e-30): the cosine does not depend on the scale of the features.
    """
    if kind == "cosine":
        return unit_rows(features)
    return features


def unit_rows(x: jax.Array) -> jax.Array:
    """(n, p) -> (n, p) rows of norm 1 (all-zero rows stay 0), at any scale of x."""
    largest = jnp.max(jnp.abs(x), axis=1, keepdims=True)
    x = x / jnp.where(largest > 0, largest, 1.0)
    norms = jnp.linalg.norm(x, axis=1, keepdims=True)
    return x / jnp.where(norms > 0, norms, 1.0)


def power_of_two_scale(features: np.ndarray) -> np.ndarray:
    """features: (n, p) multiplied by the power of two that brings the largest |value| into [0.5, 1).

    Exact in floating point (only the exponents change), so every comparison of dot products or distances
    between the rows decides as on the original features, while their squares can neither overflow nor
    underflow in float32.
    """
    features = np.asarray(features, np.float32)
    largest = float(np.max(np.abs(features))) if features.size else 0.0
    if not largest or not np.isfinite(largest):
        return features
    return np.ldexp(features, -np.frexp(largest)[1]).astype(np.float32)


@functools.partial(jax.jit, static_argnames="kind")
def similarity_matrix(features: jax.Array, kind: str = "cosine") -> jax.Array:
    """features: (n, p) -> S: (n, n) with S[a, b] = sim(x_a, x_b)."""
    x = prepare(jnp.asarray(features, jnp.float32), kind)
    gram = jnp.matmul(x, x.T, precision=jax.lax.Precision.HIGHEST)
    if kind == "euclidean":
        sq = jnp.diag(gram)
        return -jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0)
    return gram


def _pair_dots_from_matrix(matrix: jax.Array, triplets: jax.Array) -> jax.Array:
    """matrix: (n, n), triplets: (T, 3) -> (T, 3) as [s_ij, s_ik, s_jk]."""
    i, j, k = triplets[:, 0], triplets[:, 1], triplets[:, 2]
    return jnp.stack([matrix[i, j], matrix[i, k], matrix[j, k]], axis=1)


def _pair_dots_from_rows(x: jax.Array, triplets: jax.Array, kind: str) -> jax.Array:
    """x: (n, p) prepared features, triplets: (T, 3) -> (T, 3) as [s_ij, s_ik, s_jk]."""
    xi, xj, xk = x[triplets[:, 0]], x[triplets[:, 1]], x[triplets[:, 2]]
    if kind == "euclidean":
        sim = lambda a, b: -jnp.sum((a - b) ** 2, axis=1)
    else:
        sim = lambda a, b: jnp.sum(a * b, axis=1)
    return jnp.stack([sim(xi, xj), sim(xi, xk), sim(xj, xk)], axis=1)


def use_matrix(n_objects: int, n_triplets: int) -> bool:
    """The cost model: the n x n matrix pays off once T > n^2 / 3."""
    return 3 * n_triplets > n_objects**2


def map_triplets(
    fn, features: np.ndarray, triplets: np.ndarray, kind: str = "cosine", chunk_size: int = 1 << 23
) -> list[np.ndarray]:
    """Applies `fn((T_chunk, 3) pair similarities) -> tuple of (T_chunk,) arrays` over fixed-size chunks.

    features: (n, p), triplets: (T, 3). Returns the outputs concatenated over all T triplets. Memory stays
    bounded by the chunk size; all chunks share one shape, so `fn` compiles once.
    """
    check_kind(kind)
    features = jnp.asarray(features, jnp.float32)
    triplets = np.asarray(triplets, np.int32)
    by_matrix = use_matrix(features.shape[0], len(triplets))
    table = similarity_matrix(features, kind) if by_matrix else _prepare_jit(features, kind)
    pieces = [
        [np.asarray(out)[:size] for out in _chunk_step(table, chunk, fn, kind, by_matrix)]
        for chunk, size in _chunks(triplets, chunk_size)
    ]
    return [np.concatenate(outputs) for outputs in zip(*pieces, strict=True)]


_prepare_jit = jax.jit(prepare, static_argnames="kind")


@functools.partial(jax.jit, static_argnames=("fn", "kind", "by_matrix"))
def _chunk_step(table: jax.Array, chunk: jax.Array, fn, kind: str, by_matrix: bool):
    """table: S (n, n) if by_matrix else prepared features (n, p); chunk: (C, 3)."""
    sims = _pair_dots_from_matrix(table, chunk) if by_matrix else _pair_dots_from_rows(table, chunk, kind)
    return fn(sims)


def _as_tuple(pair_similarities: jax.Array) -> tuple[jax.Array]:
    return (pair_similarities,)


def triplet_similarities(features: np.ndarray, triplets: np.ndarray, kind: str = "cosine") -> np.ndarray:
    """features: (n, p), triplets: (T, 3) -> (T, 3) float32 [s_ij, s_ik, s_jk]."""
    (pair_similarities,) = map_triplets(_as_tuple, features, triplets, kind)
    return pair_similarities


def _chunks(triplets: np.ndarray, chunk_size: int):
    """Yields (padded chunk (chunk, 3), true size); all chunks share one shape, so one compilation."""
    chunk_size = max(1, min(chunk_size, len(triplets)))
    for start in range(0, max(len(triplets), 1), chunk_size):
        chunk = triplets[start : start + chunk_size]
        size = len(chunk)
        if size < chunk_size:
            chunk = np.concatenate([chunk, np.zeros((chunk_size - size, 3), np.int32)])
        yield jnp.asarray(chunk), size
