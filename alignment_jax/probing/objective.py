"""The probe's objective: triplet softmax cross-entropy of linearly transformed features, plus lambda * R(W).

For a triplet (i, j, k) with human-chosen pair (i, j) and transformed features z = x W (+ b):
    nll = -log softmax([z_i.z_j, z_i.z_k, z_j.z_k] / temperature)[0]
Three ways to get the pair similarities of a batch of B triplets (n objects, p dims), picked by cost
(docs/design.md), counted for forward + backward (about 3x the forward FLOPs; 2x for the matrix, whose
gradient is written by hand: probing/triplet_matrix.py, and S is computed as an upper staircase of b row blocks,
(1 + 1/b) n^2 p FLOPs) plus the gathers:
    rows   : transform only the 3B gathered rows of X     3 * 6 B p^2         + g * 3 B p
    objects: Z = X W once, gather rows of Z, dot them     3 * (2 n p^2 + 6 B p) + g * 3 B p
    matrix : Z = X W, S = Z Z^T, gather three scalars     4 n p^2 + (3 + 1/b) n^2 p + g * 3 B
g is the cost of one gathered float in FLOPs (its backward is a scatter-add); measured on a 2-core CPU,
g ~ 1000, so for THINGS (n = 1854, p = 768) rows wins below ~650 triplets, matrix above ~2,800 and
objects in between (bench/probe_sweep.py prints the measured step times). All give the same numbers.
Every matmul runs at full float32 precision (HIGHEST) on every device, also where JAX's default would be
TF32 (NVIDIA GPUs) or one bfloat16 pass (TPUs): the probe's numbers do not depend on the hardware.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from alignment_jax.evaluation.similarity import human_pair_most_similar
from alignment_jax.probing import triplet_matrix

Params = dict[str, jax.Array]  # {"weights": (p, p)} plus {"bias": (p,)} when the probe has a bias
FORMULATIONS = ("rows", "objects", "matrix")
PRECISION = triplet_matrix.PRECISION  # HIGHEST: full float32 matmuls (also in the gradients: transposes keep it)


GATHER_COST = 1000.0  # FLOPs per gathered float, forward gather + backward scatter-add (measured on CPU)


def formulation_costs(n_objects: int, batch_size: int, dims: int) -> dict[str, float]:
    """FLOP-equivalent cost of one loss + gradient evaluation in each formulation (the table above)."""
    n, b, p, g = float(n_objects), float(batch_size), float(dims), GATHER_COST
    blocks = triplet_matrix.UpperBlocks.of(n_objects).blocks
    return {
        "rows": 3 * 6 * b * p * p + g * 3 * b * p,
        "objects": 3 * (2 * n * p * p + 6 * b * p) + g * 3 * b * p,
        "matrix": 4 * n * p * p + (3 + 1 / blocks) * n * n * p + g * 3 * b,
    }


def choose_formulation(n_objects: int, batch_size: int, dims: int) -> str:
    """The cheapest formulation for B = batch_size triplets by the cost model above."""
    costs = formulation_costs(n_objects, batch_size, dims)
    return min(costs, key=costs.get)


def transform(params: Params, x: jax.Array) -> jax.Array:
    """x: (..., p) -> x W (+ b): (..., p)."""
    z = jnp.matmul(x, params["weights"], precision=PRECISION)
    return z + params["bias"] if "bias" in params else z


def pair_similarities(params: Params, x: jax.Array, triplets: jax.Array, formulation: str) -> jax.Array:
    """x: (n, p) standardized features; triplets: (B, 3) -> (B, 3) [s_ij, s_ik, s_jk] of transformed features."""
    return jnp.stack(_pair_columns(params, x, triplets, formulation), axis=1)


def _pair_columns(
    params: Params, x: jax.Array, triplets: jax.Array, formulation: str
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(s_ij, s_ik, s_jk), each (B,): the columns of pair_similarities, kept apart (cheaper to vmap than a
    (B, 3) array reduced over its short axis)."""
    i, j, k = triplets[:, 0], triplets[:, 1], triplets[:, 2]
    if formulation == "matrix":
        z = transform(params, x)
        s = jnp.matmul(z, z.T, precision=PRECISION)
        return s[i, j], s[i, k], s[j, k]
    if formulation == "objects":
        z = transform(params, x)
        zi, zj, zk = z[i], z[j], z[k]
    elif formulation == "rows":
        zi, zj, zk = (transform(params, x[c]) for c in (i, j, k))
    else:
        raise ValueError(f"unknown formulation {formulation!r}; one of {FORMULATIONS}")
    dot = lambda a, b: jnp.sum(a * b, axis=1)
    return dot(zi, zj), dot(zi, zk), dot(zj, zk)


def triplet_nll(pair_sims: jax.Array, temperature: float = 1.0) -> jax.Array:
    """pair_sims: (B, 3) with the human-chosen pair first -> (B,) -log softmax(pair_sims / T)[0]."""
    return _nll(pair_sims[:, 0], pair_sims[:, 1], pair_sims[:, 2], temperature)


def _nll(s_ij: jax.Array, s_ik: jax.Array, s_jk: jax.Array, temperature: float) -> jax.Array:
    """-log softmax([s_ij, s_ik, s_jk] / T)[0] per triplet, from the three (B,) columns (stable log-sum-exp)."""
    a, b, c = s_ij / temperature, s_ik / temperature, s_jk / temperature
    top = jax.lax.stop_gradient(jnp.maximum(jnp.maximum(a, b), c))
    return top + jnp.log(jnp.exp(a - top) + jnp.exp(b - top) + jnp.exp(c - top)) - a


def triplet_correct(pair_sims: jax.Array) -> jax.Array:
    """(B, 3) -> (B,) bool: the human pair is strictly the most similar (ties count as wrong)."""
    return human_pair_most_similar(pair_sims[:, 0], pair_sims[:, 1], pair_sims[:, 2])


def _safe_norm(w: jax.Array) -> jax.Array:
    """||w||_F with a zero (not NaN) gradient at w = 0."""
    sq = jnp.sum(w**2)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def frobenius(w: jax.Array) -> jax.Array:
    """||W||_F, not squared (the paper's penalty)."""
    return _safe_norm(w)


def frobenius_sq(w: jax.Array) -> jax.Array:
    """||W||_F^2."""
    return jnp.sum(w**2)


def identity(w: jax.Array) -> jax.Array:
    """sum((W - mean(diag W) I)^2): pulls W towards a scaled identity (gLocal)."""
    return jnp.sum((w - jnp.mean(jnp.diag(w)) * jnp.eye(w.shape[0], dtype=w.dtype)) ** 2)


def orthonormal(w: jax.Array) -> jax.Array:
    """||W^T W - I||_F^2."""
    return jnp.sum((jnp.matmul(w.T, w, precision=PRECISION) - jnp.eye(w.shape[0], dtype=w.dtype)) ** 2)


REGULARIZERS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "frobenius": frobenius,
    "frobenius_sq": frobenius_sq,
    "identity": identity,
    "orthonormal": orthonormal,
}


def weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
    """(B,), (B,) -> sum(w v) / sum(w); 0 when all weights are 0 (an empty fold or a padding batch)."""
    total = jnp.sum(weights)
    return jnp.sum(weights * values) / jnp.maximum(total, 1e-12)


def loss(
    params: Params,
    x: jax.Array,
    triplets: jax.Array,
    weights: jax.Array,
    lam: jax.Array,
    *,
    regularizer: str,
    temperature: float,
    formulation: str,
) -> jax.Array:
    """Weighted mean triplet NLL over (B, 3) triplets (weights (B,) mask folds and padding) + lam * R(W)."""
    return mean_triplet_nll(params, x, triplets, weights, temperature, formulation) + lam * REGULARIZERS[regularizer](
        params["weights"]
    )


def mean_triplet_nll(
    params: Params, x: jax.Array, triplets: jax.Array, weights: jax.Array, temperature: float, formulation: str
) -> jax.Array:
    """sum(w nll) / sum(w) over (B, 3) triplets; the matrix formulation's with its hand-written gradient
    (probing/triplet_matrix.py)."""
    if formulation == "matrix":
        return triplet_matrix.mean_nll(transform(params, x), triplets, weights, temperature)
    return weighted_mean(_nll(*_pair_columns(params, x, triplets, formulation), temperature), weights)


def evaluate(
    params: Params, x: jax.Array, triplets: jax.Array, weights: jax.Array, *, temperature: float, formulation: str
) -> tuple[jax.Array, jax.Array]:
    """(cross-entropy, accuracy) over weighted triplets, without the penalty."""
    s_ij, s_ik, s_jk = _pair_columns(params, x, triplets, formulation)
    correct = human_pair_most_similar(s_ij, s_ik, s_jk)
    return weighted_mean(_nll(s_ij, s_ik, s_jk, temperature), weights), weighted_mean(correct, weights)


# Soft targets (AligNet, google-deepmind/alignet): a target distribution p over the three pairs of a triplet
# (the softmax of a teacher's pair similarities, or a human response distribution) and the prediction
# q = softmax([s_ij, s_ik, s_jk] / tau) of the transformed features; the loss is KL(p || q) or JSD(p, q).
DIVERGENCES = ("kl", "jsd")


def kl_divergence(p: jax.Array, q: jax.Array) -> jax.Array:
    """KL(p || q) = sum_c p_c (log p_c - log q_c) per example: p, q (..., 3) distributions -> (...).

    Terms with p_c = 0 count 0 (0 log 0 = 0)."""
    return _kl(p, jnp.log(q))


def js_divergence(p: jax.Array, q: jax.Array) -> jax.Array:
    """JSD(p, q) = KL(p || m) / 2 + KL(q || m) / 2, m = (p + q) / 2, per example: (..., 3) -> (...); in nats,
    at most log 2."""
    log_m = jnp.log((p + q) / 2)
    return (_kl(p, log_m) + _kl(q, log_m)) / 2


def _kl(p: jax.Array, log_q: jax.Array) -> jax.Array:
    """sum_c p_c (log p_c - log_q_c) with 0 log 0 = 0 (also in the gradient)."""
    positive = p > 0
    log_p = jnp.log(jnp.where(positive, p, 1.0))
    return jnp.sum(jnp.where(positive, p * (log_p - log_q), 0.0), axis=-1)


def soft_divergence(pair_sims: jax.Array, targets: jax.Array, tau: jax.Array, divergence: str) -> jax.Array:
    """pair_sims (B, 3) [s_ij, s_ik, s_jk], targets (B, 3) p -> (B,) KL(p || q) or JSD(p, q) with
    q = softmax(pair_sims / tau)."""
    log_q = jax.nn.log_softmax(pair_sims / tau, axis=-1)
    if divergence == "kl":
        return _kl(targets, log_q)
    if divergence == "jsd":
        return js_divergence(targets, jnp.exp(log_q))
    raise ValueError(f"unknown divergence {divergence!r}; one of {DIVERGENCES}")


def soft_loss(
    params: Params,
    x: jax.Array,
    triplets: jax.Array,
    targets: jax.Array,
    weights: jax.Array,
    lam: jax.Array,
    tau: jax.Array,
    *,
    divergence: str,
    regularizer: str,
    formulation: str,
) -> jax.Array:
    """Weighted mean divergence over (B, 3) triplets with targets (B, 3) + lam * R(W) (AligNet's objective
    for a linear probe)."""
    sims = pair_similarities(params, x, triplets, formulation)
    value = weighted_mean(soft_divergence(sims, targets, tau, divergence), weights)
    return value + lam * REGULARIZERS[regularizer](params["weights"])


def soft_evaluate(
    params: Params,
    x: jax.Array,
    triplets: jax.Array,
    targets: jax.Array,
    weights: jax.Array,
    tau: jax.Array,
    *,
    divergence: str,
    formulation: str,
) -> tuple[jax.Array, jax.Array]:
    """(mean divergence, AligNet's triplet accuracy: s_ij strictly the largest) over weighted triplets."""
    sims = pair_similarities(params, x, triplets, formulation)
    correct = triplet_correct(sims)
    return weighted_mean(soft_divergence(sims, targets, tau, divergence), weights), weighted_mean(correct, weights)
