"""Stage world: writes the bundled synthetic THINGS-like world to WORKDIR/world and points the config at it.

It makes the demo runnable on a fresh machine with no download: THINGS-layout triplets (with repeated
triplets for a noise ceiling), object ids, a model's features, and the planted concept embedding with its
labels for the concepts stage.
"""

import os

import numpy as np

from alignment_jax import atomic
from alignment_jax.data.synthetic import make_world
from alignment_jax.run_context import RunContext


def has_inputs(config) -> bool:
    return bool(config.world.enabled)


def run(ctx: RunContext) -> dict:
    settings = ctx.config.world
    world = make_world(
        n_objects=settings.n_objects,
        n_concepts=settings.n_concepts,
        n_dims=settings.n_dims,
        n_train=settings.n_train,
        n_test=settings.n_test,
        n_repeated_sets=settings.n_repeated_sets,
        seed=ctx.config.seed,
    )
    root = os.path.join(ctx.workdir, "world")
    ids = [f"object_{i:04d}" for i in range(settings.n_objects)]
    atomic.save_npy(os.path.join(root, "triplets", "train_90.npy"), np.concatenate([world.train, world.repeats]))
    atomic.save_npy(os.path.join(root, "triplets", "test_10.npy"), world.test)
    atomic.write_text(os.path.join(root, "things_concepts.tsv"), "uniqueID\n" + "\n".join(ids) + "\n")
    atomic.save_npy(os.path.join(root, "features.npy"), world.features)
    atomic.save_npy(os.path.join(root, "concept_embedding.npy"), world.embedding)
    atomic.write_text(os.path.join(root, "concept_labels.txt"), "\n".join(world.concept_names) + "\n")
    config = ctx.config
    config.things.root = root
    if not config.features and not config.model.name and not config.model.variant:
        config.features = ctx.features_path = os.path.join(root, "features.npy")
    if not config.concepts.embedding:
        config.concepts.embedding = os.path.join(root, "concept_embedding.npy")
        config.concepts.labels = os.path.join(root, "concept_labels.txt")
    ctx.log(
        f"world: {settings.n_objects} objects, {len(world.train):,} train / {len(world.test):,} test triplets, "
        f"{settings.n_concepts} planted concepts, features {world.features.shape} -> {root}"
    )
    return {"root": root, "n_objects": settings.n_objects, "n_concepts": settings.n_concepts}
