"""The triplet cross-entropy of the matrix formulation with a hand-written gradient, configurations laid last.

For transformed features z (n, p), S = z z^T and triplets (i, j, k) with the human pair (i, j) first:
    value  = sum_t w_t nll_t / sum_t w_t,   nll_t = -log softmax([S_ij, S_ik, S_jk] / T)[0]
    dS     = scatter-add over t of  c_t (q_t - e_1)  at (i, j), (i, k), (j, k),   c_t = w_t / (T sum w)
    dz     = (dS + dS^T) z
with q_t the softmax and e_1 = (1, 0, 0). Autodiff gets the same numbers (tests/test_triplet_matrix.py) but
runs two n^2 p matmuls for dz and XLA's generic gradient of the log-sum-exp, and under the sweep's vmaps
(folds, each with its own triplets; configurations of a fold sharing them) XLA's batched gathers and
scatter-adds run 2 to 3x slower per element than flat ones on a CPU. So value and dS work on groups: S as
(G, P, K), G groups (folds, minibatches) of K configurations sharing the group's triplets (G, T, 3); each
vmap level (custom_vmap) merges its axis into G where it maps the triplets and into K where it does not, and
the gathers and scatter-adds index one flat array: triplet t of group g reads row g P + position(i, j), K
neighbouring floats (one float when K = 1: (T, 1) arrays do not vectorize).

S is symmetric, so only its upper block staircase is computed (`UpperBlocks`): row block a of z times the
rows from block a on, P = the staircase's size ((b + 1) / 2b of n^2 with b blocks: 2/3 with the 3 blocks of a
THINGS training fold, a third fewer FLOPs for S); a pair reads S at (min, max). dS lives on the same staircase U,
and dz = (U + U^T) z.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap

PRECISION = jax.lax.Precision.HIGHEST
# the triplets are in range (checked where they enter: data loading, the API, the folds' re-indexing): gathers and
# scatter-adds without a bounds check and fill value per element
IN_BOUNDS = "promise_in_bounds"
# the staircase's blocks; measured alone (2 CPU cores, n = 1,236, p = 768, 15 configurations laid out as the kernel
# reads them): S in 169 ms with 3 blocks, 192 with 4, 198 with 2, 271 as one matrix: smaller blocks slow the
# matmuls more than the FLOPs they save
MIN_BLOCK_ROWS, MAX_BLOCKS = 384, 4


class UpperBlocks(NamedTuple):
    """The upper block staircase of an n x n symmetric matrix: row blocks of `size` rows (the last may be
    shorter), block a holding rows a size.. and columns a size..n, laid out row block after row block."""

    n: int
    size: int

    @classmethod
    def of(cls, n: int) -> "UpperBlocks":
        """Blocks of at least MIN_BLOCK_ROWS rows, at most MAX_BLOCKS (n < 2 MIN_BLOCK_ROWS: one block, the
        full matrix)."""
        blocks = max(1, min(MAX_BLOCKS, n // MIN_BLOCK_ROWS))
        return cls(n, -(-n // blocks))

    def shapes(self) -> list[tuple[int, int, int]]:
        """Each block's (first row, rows, columns): it holds rows first.. and columns first..n."""
        return [(lo, min(lo + self.size, self.n) - lo, self.n - lo) for lo in range(0, self.n, self.size)]

    @property
    def blocks(self) -> int:
        return len(self.shapes())

    @property
    def length(self) -> int:
        """P: the staircase's number of entries."""
        return sum(rows * columns for _, rows, columns in self.shapes())

    def pack(self, z: jax.Array) -> jax.Array:
        """z (n, p) -> (P,): the staircase of z z^T."""
        blocks = [jnp.matmul(z[lo : lo + rows], z[lo:].T, precision=PRECISION) for lo, rows, _ in self.shapes()]
        return jnp.concatenate([b.reshape(-1) for b in blocks])

    def symmetric(self, packed: jax.Array) -> jax.Array:
        """(P,) staircase U, zero below the diagonal (a gradient scattered at `position`s) -> (n, n) U + U^T."""
        parts, at = [], 0
        for lo, rows, columns in self.shapes():
            block = packed[at : at + rows * columns].reshape(rows, columns)
            parts.append(jnp.pad(block, ((0, 0), (lo, 0))))
            at += rows * columns
        upper = jnp.concatenate(parts)
        return upper + upper.T

    def position(self, u: jax.Array, v: jax.Array) -> jax.Array:
        """Where S_uv (= S_vu) sits in the staircase, for int32 arrays of objects u, v."""
        lo, hi = jnp.minimum(u, v), jnp.maximum(u, v)
        block = lo // self.size
        start = block * self.size
        before = self.size * (block * self.n - self.size * (block * (block - 1) // 2))  # entries of blocks < block
        return before + (lo - start) * (self.n - start) + (hi - start)


def _positions(triplets: jax.Array, layout: UpperBlocks) -> list[jax.Array]:
    """(G, T, 3) -> the rows of (i, j), (i, k), (j, k) in the flat (G P) rows of G staircases: (G T,)."""
    if triplets.shape[0] * layout.length >= 2**31:
        shape = f"{layout.n} x {layout.n}"
        raise ValueError(f"{triplets.shape[0]} groups of {shape} similarities do not fit int32 positions")
    offset = (jnp.arange(triplets.shape[0], dtype=triplets.dtype) * layout.length)[:, None]
    i, j, k = triplets[..., 0], triplets[..., 1], triplets[..., 2]
    return [(offset + layout.position(a, b)).reshape(-1) for a, b in ((i, j), (i, k), (j, k))]


def _nll(a: jax.Array, b: jax.Array, c: jax.Array) -> jax.Array:
    """-log softmax([a, b, c])[0] (stable: shifted by the largest)."""
    top = jnp.maximum(jnp.maximum(a, b), c)
    return top - a + jnp.log(jnp.exp(a - top) + jnp.exp(b - top) + jnp.exp(c - top))


def _residuals(a: jax.Array, b: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """softmax([a, b, c]) - (1, 0, 0), each column from its own expression: q_b = 1 / (e^(a-b) + 1 + e^(c-b)) (an
    overflow gives 1 / inf = 0, the limit) and q_a - 1 = -(q_b + q_c). XLA:CPU runs the three columns of the
    usual form (shared exponentials and sum) as one multi-output loop 8x slower than these independent ones."""
    q_b = 1 / (jnp.exp(a - b) + 1 + jnp.exp(c - b))
    q_c = 1 / (jnp.exp(a - c) + jnp.exp(b - c) + 1)
    return -(q_b + q_c), q_b, q_c


def _rows(s: jax.Array) -> jax.Array:
    """(G, P, K) -> the flat rows (G P, K), or (G P,) when K = 1."""
    g, length, k = s.shape
    return s.reshape(g * length) if k == 1 else s.reshape(g * length, k)


def _per_triplet(values: jax.Array, k: int) -> jax.Array:
    """(G, T) -> a shape that multiplies (G, T[, K]) columns; (G,) -> one that divides (G[, K])."""
    return values if k == 1 else values[..., None]


def _columns(s: jax.Array, triplets: jax.Array, temperature: float, layout: UpperBlocks):
    """Three (G, T[, K]) columns S_ij / T, S_ik / T, S_jk / T and their flat positions."""
    k = s.shape[2]
    rows, positions = _rows(s), _positions(triplets, layout)
    shape = triplets.shape[:2] + (() if k == 1 else (k,))
    return [rows.at[at].get(mode=IN_BOUNDS).reshape(shape) / temperature for at in positions], positions


def _value_groups(s, triplets, weights, temperature, layout):
    """s (G, P, K) staircases, triplets (G, T, 3), weights (G, T) -> (G, K) weighted mean nll."""
    k = s.shape[2]
    columns, _ = _columns(s, triplets, temperature, layout)
    nll = _nll(*columns)
    total = jnp.maximum(jnp.sum(weights, axis=1), 1e-12)
    # the weighted sum over triplets as a contraction: XLA:CPU reduces the middle axis of (G, T, K) 5x slower
    weighted = jnp.einsum("gt,gt...->g...", weights, nll, precision=PRECISION)
    return (weighted / _per_triplet(total, k)).reshape(s.shape[0], k)


def _dS_groups(s, triplets, weights, g, temperature, layout):
    """s (G, P, K), g (G, K) -> (G, P, K): the gradient of sum(g * value) with respect to the staircase."""
    k = s.shape[2]
    columns, positions = _columns(s, triplets, temperature, layout)
    per_group = g / (temperature * jnp.maximum(jnp.sum(weights, axis=1), 1e-12)[:, None])  # (G, K)
    scale = _per_triplet(weights, k) * (per_group[:, None, :] if k > 1 else per_group)
    dS = jnp.zeros_like(_rows(s))
    for at, residual in zip(positions, _residuals(*columns), strict=True):
        dS = dS.at[at].add((scale * residual).reshape(at.shape + dS.shape[1:]), mode=IN_BOUNDS)
    return dS.reshape(s.shape)


def _mapped(x: jax.Array, size: int, batched: bool) -> jax.Array:
    """x with the vmapped axis in front (broadcast where x is not mapped)."""
    return x if batched else jnp.broadcast_to(x, (size, *x.shape))


def _into_groups(x: jax.Array) -> jax.Array:
    """(B, G, ...) -> (B G, ...)."""
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def _into_configurations(s: jax.Array) -> jax.Array:
    """(B, G, P, K) -> (G, P, B K)."""
    b, g, length, k = s.shape
    return s.transpose(1, 2, 0, 3).reshape(g, length, b * k)


@functools.cache
def _kernel(temperature: float, layout: UpperBlocks):
    """The matrix nll of z (n, p) for one temperature and staircase: a custom_vjp whose value and dS take every
    vmap as groups or configurations."""
    value = custom_vmap(functools.partial(_value_groups, temperature=temperature, layout=layout))
    dS = custom_vmap(functools.partial(_dS_groups, temperature=temperature, layout=layout))

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
        groups, length, _ = out.shape
        return out.reshape(groups, length, size, -1).transpose(2, 0, 1, 3), True

    def one(s: jax.Array) -> jax.Array:
        """(P,) -> one group of one configuration (1, P, 1)."""
        return s.reshape(1, -1, 1)

    @jax.custom_vjp
    def nll(z, triplets, weights):
        return value(one(layout.pack(z)), triplets[None], weights[None])[0, 0]

    def forward(z, triplets, weights):
        s = layout.pack(z)
        return value(one(s), triplets[None], weights[None])[0, 0], (z, s, triplets, weights)

    def backward(saved, g):
        z, s, triplets, weights = saved
        grad_s = dS(one(s), triplets[None], weights[None], g.reshape(1, 1)).reshape(s.shape)
        return jnp.matmul(layout.symmetric(grad_s), z, precision=PRECISION), None, None

    nll.defvjp(forward, backward)
    return nll


def mean_nll(z: jax.Array, triplets: jax.Array, weights: jax.Array, temperature: float) -> jax.Array:
    """z: (n, p) transformed features, triplets (B, 3) int32 rows of z (in range: not checked here), weights (B,) ->
    the weighted mean -log softmax([S_ij, S_ik, S_jk] / temperature)[0] over the triplets, S = z z^T (0 when all
    weights are 0)."""
    return _kernel(float(temperature), UpperBlocks.of(z.shape[0]))(z, triplets, weights)
