"""gLocal's objective: the global triplet loss plus a local term that keeps each image's neighbourhood.

For a batch of B local images (other natural images, ImageNet in gLocal) with features F: (B, p), the
teacher is the batch's cosine similarities before the transform, T = U(F) U(F)^T, and the student the
ones after it, S = U(F W + b) U(F W + b)^T, where U scales every row to unit length. Without the
diagonal (an image is not its own neighbour), each teacher row becomes a distribution over the other
B - 1 images, P_i = softmax_j(T_ij / tau), and the local term is the mean cross-entropy of the
student's softmax_j(S_ij / tau) against it:

    local = 1/B sum_i [ logsumexp_{j != i}(S_ij / tau) - sum_{j != i} P_ij S_ij / tau ]

gLocal's loss (utils/probing/glocal_probe.py, contrastive_loss.py of LukasMut/gLocal; docs/glocal.md):

    loss = (1 - alpha) * triplet NLL + alpha * local + lambda * R(W)

Every function here is pure and takes alpha, tau and lambda as (traced) arrays, so one compiled step
vmaps over configurations; the teacher's matrix T depends only on the batch, so it is computed once per
batch (`cosine_similarities(F)`) and shared by every configuration (vmap with in_axes None).
"""

import jax
import jax.numpy as jnp

from alignment_jax.probing import objective


def unit_rows(x: jax.Array) -> jax.Array:
    """x: (B, p) -> (B, p), every row scaled to unit L2 norm; a zero row stays zero.

    Scale-safe: each row is first divided by its largest absolute entry, so squares neither overflow
    (features ~1e30) nor underflow (~1e-30) in float32. That divisor is held constant for
    differentiation, which leaves the gradient exact: normalizing is invariant to a row's scale.
    """
    scale = jax.lax.stop_gradient(jnp.max(jnp.abs(x), axis=-1, keepdims=True))
    y = x / jnp.where(scale > 0, scale, 1.0)
    squared = jnp.sum(y * y, axis=-1, keepdims=True)
    return y * jax.lax.rsqrt(jnp.where(squared > 0, squared, 1.0))


def cosine_similarities(x: jax.Array) -> jax.Array:
    """x: (B, p) -> (B, B) cosine similarities of its rows (0 for a zero row)."""
    u = unit_rows(x)
    return u @ u.T


def _masked_logsumexp(z: jax.Array, mask: jax.Array) -> jax.Array:
    """z, mask: (R, C) -> (R,) logsumexp over the entries where mask is true (0 for a row without any)."""
    top = jax.lax.stop_gradient(jnp.max(jnp.where(mask, z, -jnp.inf), axis=1, keepdims=True))
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    total = jnp.sum(jnp.where(mask, jnp.exp(jnp.where(mask, z, top) - top), 0.0), axis=1)
    return top[:, 0] + jnp.log(jnp.where(total > 0, total, 1.0))


def contrastive_rows(teacher_sims: jax.Array, student_sims: jax.Array, tau: jax.Array, pairs: jax.Array) -> jax.Array:
    """Per-row cross-entropy of the student's softmax against the teacher's, over the pairs in `pairs`.

    teacher_sims, student_sims: (R, C) similarities of R anchor images to C candidates; pairs: (R, C) bool,
    which candidates count for each anchor (never the anchor itself); tau: scalar temperature.
    Returns (R,): -sum_j P_ij log Q_ij with P = softmax(teacher / tau), Q = softmax(student / tau) over pairs.
    """
    t, s = teacher_sims / tau, student_sims / tau
    log_p = jnp.where(pairs, t - _masked_logsumexp(t, pairs)[:, None], 0.0)
    p = jnp.where(pairs, jnp.exp(log_p), 0.0)
    return _masked_logsumexp(s, pairs) - jnp.sum(jnp.where(pairs, p * s, 0.0), axis=1)


def contrastive_loss(
    teacher_sims: jax.Array, student_sims: jax.Array, tau: jax.Array, valid: jax.Array | None = None
) -> jax.Array:
    """gLocal's ContrastiveLoss of one batch: mean over rows of `contrastive_rows`, diagonal left out.

    teacher_sims, student_sims: (B, B); tau: scalar; valid: (B,) bool or None: padding rows (False) are
    neither anchors nor candidates, so a padded batch gives the loss of its valid rows alone.
    """
    b = teacher_sims.shape[0]
    pairs = ~jnp.eye(b, dtype=bool)
    if valid is None:
        return jnp.mean(contrastive_rows(teacher_sims, student_sims, tau, pairs))
    pairs = pairs & valid[:, None] & valid[None, :]
    rows = contrastive_rows(teacher_sims, student_sims, tau, pairs)
    return objective.weighted_mean(rows, valid.astype(rows.dtype))


def local_loss(
    params: objective.Params,
    local_x: jax.Array,
    teacher_sims: jax.Array,
    tau: jax.Array,
    valid: jax.Array | None = None,
) -> jax.Array:
    """The local term of a batch: local_x (B, p) the rows the transform maps (x W + b), teacher_sims (B, B)
    `cosine_similarities` of the same images before the transform (computed once per batch)."""
    return contrastive_loss(teacher_sims, cosine_similarities(objective.transform(params, local_x)), tau, valid)


def glocal_loss(
    params: objective.Params,
    x: jax.Array,
    triplets: jax.Array,
    weights: jax.Array,
    local_x: jax.Array,
    teacher_sims: jax.Array,
    lam: jax.Array,
    alpha: jax.Array,
    tau: jax.Array,
    *,
    regularizer: str,
    temperature: float,
    formulation: str,
    local_valid: jax.Array | None = None,
) -> jax.Array:
    """(1 - alpha) * weighted triplet NLL + alpha * local + lam * R(W).

    x, triplets, weights, regularizer, temperature, formulation: as `objective.loss` (x the standardized
    THINGS features (n, p)); local_x (B, p), teacher_sims (B, B), local_valid (B,): as `local_loss`.
    alpha = 0 is `objective.loss` exactly.
    """
    nll = objective.mean_triplet_nll(params, x, triplets, weights, temperature, formulation)
    local = local_loss(params, local_x, teacher_sims, tau, local_valid)
    penalty = objective.REGULARIZERS[regularizer](params["weights"])
    return (1.0 - alpha) * nll + alpha * local + lam * penalty


def glocal_validation(
    params: objective.Params, x: jax.Array, triplets: jax.Array, weights: jax.Array, local_x: jax.Array,
    teacher_sims: jax.Array, tau: jax.Array, *, temperature: float, formulation: str,
    local_valid: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:  # fmt: skip
    """(triplet cross-entropy, triplet accuracy, local term) of validation data, without alpha or penalty; the
    arguments as glocal_loss's.

    gLocal's validation loss, which its early stopping watches, is their plain sum: triplet + local
    (GlocalFeatureProbe._shared_eval_step; docs/glocal.md).
    """
    cross_entropy, accuracy = objective.evaluate(
        params, x, triplets, weights, temperature=temperature, formulation=formulation
    )
    return cross_entropy, accuracy, local_loss(params, local_x, teacher_sims, tau, local_valid)
