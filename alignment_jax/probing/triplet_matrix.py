"""The triplet cross-entropy of the matrix formulation with a hand-written gradient, configurations laid last.

For transformed features z (n, p), S = z z^T and triplets (i, j, k) with the human pair (i, j) first:
    value  = sum_t w_t nll_t / sum_t w_t,   nll_t = -log softmax([S_ij, S_ik, S_jk] / T)[0]
    dS     = scatter-add over t of  c_t (q_t - e_1)  at (i, j), (i, k), (j, k),   c_t = w_t / (T sum w)
    dz     = (dS + dS^T) z
with q_t the softmax and e_1 = (1, 0, 0). Autodiff gets the same numbers (tests/test_triplet_matrix.py) but
runs two n^2 p matmuls for dz and XLA's generic gradient of the log-sum-exp, and under the sweep's vmaps
(folds, each with its own triplets; configurations of a fold sharing them) XLA's batched gathers and
scatter-adds run 2 to 3x slower per element than flat ones on a CPU. So value and dS work on groups: S as
(G, n^2, K), G groups (folds, minibatches) of K configurations sharing the group's triplets (G, T, 3); each
vmap level (custom_vmap) merges its axis into G where it maps the triplets and into K where it does not, and
the gathers and scatter-adds index one flat array: triplet t of group g reads row g n^2 + i n + j, K
neighbouring floats (one float when K = 1: (T, 1) arrays do not vectorize).
"""

import functools
import math

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap

PRECISION = jax.lax.Precision.HIGHEST


def _positions(triplets: jax.Array, n: int) -> list[jax.Array]:
    """(G, T, 3) -> the rows of (i, j), (i, k), (j, k) in the flat (G n^2) rows of G similarity matrices: (G T,)."""
    if triplets.shape[0] * n * n >= 2**31:
        raise ValueError(f"{triplets.shape[0]} groups of {n} x {n} similarities do not fit int32 positions")
    offset = (jnp.arange(triplets.shape[0], dtype=triplets.dtype) * (n * n))[:, None]
    i, j, k = triplets[..., 0], triplets[..., 1], triplets[..., 2]
    return [(offset + a * n + b).reshape(-1) for a, b in ((i, j), (i, k), (j, k))]


def _nll_and_softmax(a: jax.Array, b: jax.Array, c: jax.Array):
    """-log softmax([a, b, c])[0] and the softmax's three columns (stable: shifted by the largest)."""
    top = jnp.maximum(jnp.maximum(a, b), c)
    ea, eb, ec = jnp.exp(a - top), jnp.exp(b - top), jnp.exp(c - top)
    total = ea + eb + ec
    return top + jnp.log(total) - a, (ea / total, eb / total, ec / total)


def _rows(s: jax.Array) -> jax.Array:
    """(G, n^2, K) -> the flat rows (G n^2, K), or (G n^2,) when K = 1."""
    g, n2, k = s.shape
    return s.reshape(g * n2) if k == 1 else s.reshape(g * n2, k)


def _per_triplet(values: jax.Array, k: int) -> jax.Array:
    """(G, T) -> a shape that multiplies (G, T[, K]) columns; (G,) -> one that divides (G[, K])."""
    return values if k == 1 else values[..., None]


def _columns(s: jax.Array, triplets: jax.Array, temperature: float):
    """Three (G, T[, K]) columns S_ij / T, S_ik / T, S_jk / T and their flat positions."""
    g, n2, k = s.shape
    rows, positions = _rows(s), _positions(triplets, math.isqrt(n2))
    shape = triplets.shape[:2] + (() if k == 1 else (k,))
    return [jnp.take(rows, at, axis=0).reshape(shape) / temperature for at in positions], positions


def _value_groups(s, triplets, weights, temperature):
    """s (G, n^2, K), triplets (G, T, 3), weights (G, T) -> (G, K) weighted mean nll."""
    k = s.shape[2]
    columns, _ = _columns(s, triplets, temperature)
    nll, _ = _nll_and_softmax(*columns)
    total = jnp.maximum(jnp.sum(weights, axis=1), 1e-12)
    # the weighted sum over triplets as a contraction: XLA:CPU reduces the middle axis of (G, T, K) 5x slower
    weighted = jnp.einsum("gt,gt...->g...", weights, nll, precision=PRECISION)
    return (weighted / _per_triplet(total, k)).reshape(s.shape[0], k)


def _dS_groups(s, triplets, weights, g, temperature):
    """s (G, n^2, K), g (G, K) -> (G, n^2, K): the gradient of sum(g * value) with respect to S."""
    k = s.shape[2]
    columns, positions = _columns(s, triplets, temperature)
    _, (qa, qb, qc) = _nll_and_softmax(*columns)
    per_group = g / (temperature * jnp.maximum(jnp.sum(weights, axis=1), 1e-12)[:, None])  # (G, K)
    scale = _per_triplet(weights, k) * (per_group[:, None, :] if k > 1 else per_group)
    dS = jnp.zeros_like(_rows(s))
    for at, residual in zip(positions, (qa - 1, qb, qc), strict=True):
        dS = dS.at[at].add((scale * residual).reshape(at.shape + dS.shape[1:]))
    return dS.reshape(s.shape)


def _mapped(x: jax.Array, size: int, batched: bool) -> jax.Array:
    """x with the vmapped axis in front (broadcast where x is not mapped)."""
    return x if batched else jnp.broadcast_to(x, (size, *x.shape))


def _into_groups(x: jax.Array) -> jax.Array:
    """(B, G, ...) -> (B G, ...)."""
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def _into_configurations(s: jax.Array) -> jax.Array:
    """(B, G, n^2, K) -> (G, n^2, B K)."""
    b, g, n2, k = s.shape
    return s.transpose(1, 2, 0, 3).reshape(g, n2, b * k)


@functools.cache
def _kernel(temperature: float):
    """The matrix nll of z for one temperature: a custom_vjp whose value and dS take every vmap as groups or
    configurations."""
    value = custom_vmap(functools.partial(_value_groups, temperature=temperature))
    dS = custom_vmap(functools.partial(_dS_groups, temperature=temperature))

    @value.def_vmap
    def _(size, batched, s, triplets, weights):
        s = _mapped(s, size, batched[0])
        if batched[1] or batched[2]:  # its own triplets: more groups
            t, w = _mapped(triplets, size, batched[1]), _mapped(weights, size, batched[2])
            out = value(_into_groups(s), _into_groups(t), _into_groups(w))
            return out.reshape(size, -1, out.shape[-1]), True
        out = value(_into_configurations(s), triplets, weights)  # (G, B K)
        return out.reshape(out.shape[0], size, -1).transpose(1, 0, 2), True

    @dS.def_vmap
    def _(size, batched, s, triplets, weights, g):
        s, g = _mapped(s, size, batched[0]), _mapped(g, size, batched[3])
        if batched[1] or batched[2]:
            t, w = _mapped(triplets, size, batched[1]), _mapped(weights, size, batched[2])
            out = dS(_into_groups(s), _into_groups(t), _into_groups(w), _into_groups(g))
            return out.reshape(size, -1, *out.shape[1:]), True
        out = dS(_into_configurations(s), triplets, weights, g.transpose(1, 0, 2).reshape(g.shape[1], -1))
        groups, n2, _ = out.shape
        return out.reshape(groups, n2, size, -1).transpose(2, 0, 1, 3), True

    def one(s: jax.Array) -> jax.Array:
        """(n, n) -> one group of one configuration (1, n^2, 1)."""
        return s.reshape(1, -1, 1)

    @jax.custom_vjp
    def nll(z, triplets, weights):
        return value(one(jnp.matmul(z, z.T, precision=PRECISION)), triplets[None], weights[None])[0, 0]

    def forward(z, triplets, weights):
        s = jnp.matmul(z, z.T, precision=PRECISION)
        return value(one(s), triplets[None], weights[None])[0, 0], (z, s, triplets, weights)

    def backward(saved, g):
        z, s, triplets, weights = saved
        grad_s = dS(one(s), triplets[None], weights[None], g.reshape(1, 1)).reshape(s.shape)
        return jnp.matmul(grad_s + grad_s.T, z, precision=PRECISION), None, None

    nll.defvjp(forward, backward)
    return nll


def mean_nll(z: jax.Array, triplets: jax.Array, weights: jax.Array, temperature: float) -> jax.Array:
    """z: (n, p) transformed features, triplets (B, 3) int32 rows of z, weights (B,) -> the weighted mean
    -log softmax([S_ij, S_ik, S_jk] / temperature)[0] over the triplets, S = z z^T (0 when all weights are 0)."""
    return _kernel(float(temperature))(z, triplets, weights)
