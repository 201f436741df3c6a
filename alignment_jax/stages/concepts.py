"""Stage `concepts`: THINGS odd-one-out accuracy per human concept, before and after the transform.

The triplets are the THINGS test split (the training triplets when there is none); each is assigned to
the concept embedding's dimension(s) with the largest mean weight over the human-chosen pair
(`concepts.top_k`). Accuracy uses `config.similarity`, on the original features and on the features
mapped by `workdir/transform.npz` when the probe stage wrote one.
"""

import ml_collections
import numpy as np

from alignment_jax import provenance as facts
from alignment_jax.config import checks
from alignment_jax.data.concept_embedding import load_concept_embedding
from alignment_jax.errors import InputError
from alignment_jax.evaluation.concepts import assign_concepts, concept_rows
from alignment_jax.evaluation.zero_shot import odd_one_out
from alignment_jax.models.layers import select_layers
from alignment_jax.run_context import RunContext
from alignment_jax.stages import StageResult, layers

READS = (
    "digest", "earlier_transform", "features", "features_known", "layer_features", "layers", "things", "transform",
    "transform_path", "transform_source", *layers.READS
)  # fmt: skip
SETTINGS = ("concepts", "similarity", "seed", "zero_shot.bootstrap", *layers.SETTINGS)


def has_inputs(config: ml_collections.ConfigDict) -> bool:
    return bool(config.concepts.embedding)


def check(config: ml_collections.ConfigDict) -> None:
    if not config.concepts.embedding:
        raise InputError("concepts.embedding is empty: give the VICE/SPoSE weights file (n_objects, d)")
    checks.integer(config, "concepts.top_k", minimum=1)


def check_inputs(ctx: RunContext) -> None:
    """The embedding fits the THINGS objects and top_k, the split has triplets, and a transform made before
    this run (the probe stage does not run now) is readable and of the features' width."""
    _embedding(ctx)
    _triplets(ctx)
    transform = ctx.earlier_transform
    if transform is not None and ctx.features_known and ctx.features.shape[1] != transform.dim:
        raise InputError(
            f"{ctx.transform_path}: maps {transform.dim} dimensions but the features have {ctx.features.shape[1]}; "
            "rerun the probe stage on these features"
        )


def provenance(ctx: RunContext) -> dict:
    settings = ctx.config.concepts
    return {
        "features": ctx.digest("features"),
        "things": ctx.digest("things"),
        "transform": ctx.transform_source(),
        "files:concepts": facts.files_fingerprint([settings.embedding, settings.labels]),
        **facts.settings(ctx.config, "concepts", "similarity"),
        **layers.provenance(ctx),
    }


def _embedding(ctx: RunContext):
    settings = ctx.config.concepts
    embedding = load_concept_embedding(settings.embedding, settings.labels, n_objects=ctx.things.n_objects)
    if not 1 <= settings.top_k <= embedding.n_dims:
        raise InputError(f"concepts.top_k={settings.top_k}: must be between 1 and the {embedding.n_dims} dimensions")
    return embedding


def _triplets(ctx: RunContext) -> tuple[np.ndarray, str]:
    """The triplets to assign: the test split, else the training triplets; and which they are."""
    things = ctx.things
    split, name = (things.test, "test") if things.test is not None and len(things.test) else (things.train, "train")
    if not len(split.triplets):
        raise InputError(f"{split.source}: no triplets to assign to concepts")
    return split.triplets, name


def run(ctx: RunContext) -> list[dict]:
    """Returns the `concepts` section: [{"concept", "n_triplets", "accuracy", "accuracy_transformed"}] (+ their
    "<column>_ci95" bootstrap intervals over the concept's triplets with zero_shot.bootstrap > 0)."""
    settings = ctx.config.concepts
    embedding = _embedding(ctx)
    triplets, name = _triplets(ctx)
    correct = odd_one_out(ctx.features, triplets, ctx.config.similarity, bootstrap=0).correct
    transform = ctx.transform
    correct_transformed = None
    if transform is not None:
        correct_transformed = odd_one_out(transform.apply(ctx.features), triplets, ctx.config.similarity, 0).correct
    assignment = assign_concepts(embedding.weights, triplets, settings.top_k)
    rows = concept_rows(
        embedding.labels,
        assignment,
        correct,
        correct_transformed,
        bootstrap=ctx.config.zero_shot.bootstrap,
        seed=ctx.config.seed,
    )
    ranked = sorted((r for r in rows if r["n_triplets"]), key=lambda r: r["accuracy"])
    ctx.log(
        f"concepts: {len(ranked)} of {embedding.n_dims} concepts over {len(triplets)} {name} triplets; "
        f"lowest {ranked[0]['concept']} ({ranked[0]['accuracy']:.3f}), "
        f"highest {ranked[-1]['concept']} ({ranked[-1]['accuracy']:.3f})"
    )
    chosen = select_layers(settings.layers, ctx.layers, "concepts.layers")
    if chosen:
        layers.require_transforms(ctx, chosen, "concepts.layers")
        values = {}
        for layer in chosen:
            features, transform = ctx.layer_features(layer), layers.layer_transform(ctx, layer)
            before = odd_one_out(features, triplets, ctx.config.similarity, bootstrap=0).correct
            after = None
            if transform is not None:
                after = odd_one_out(transform.apply(features), triplets, ctx.config.similarity, 0).correct
            values[layer] = concept_rows(embedding.labels, assignment, before, after)
        ctx.log(f"concepts: per layer for {', '.join(chosen)} (results.json layers)")
        return StageResult(rows, {"layers": layers.update(ctx, "concepts", values)})
    return rows
