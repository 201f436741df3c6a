"""Stage world: writes the bundled synthetic THINGS-like world to WORKDIR/world and points the config at it.

It makes the demo runnable on a fresh machine with no download. In the THINGS layout: train and test
triplets, a separate set of triplets each asked several times (for the noise ceiling), object ids, and
either images rendered from the objects' concepts (`world.images`, for the extract stage's model) or
ready-made features; the planted concept embedding with its labels (concepts stage); a held-out
dataset of further objects with a human similarity matrix (transfer stage, generic `rsm` layout); and,
with `world.n_local`, a local image set of further objects without human data for gLocal
(WORKDIR/world/local: images/ or features.npy; probe.local points at it).
"""

import io
import os

import numpy as np

from alignment_jax import atomic
from alignment_jax.data.render import render
from alignment_jax.data.synthetic import World, make_world
from alignment_jax.run_context import RunContext


def has_inputs(config) -> bool:
    return bool(config.world.enabled)


def run(ctx: RunContext) -> dict:
    settings, config = ctx.config.world, ctx.config
    world = make_world(
        n_objects=settings.n_objects,
        n_concepts=settings.n_concepts,
        n_dims=settings.n_dims,
        n_train=settings.n_train,
        n_test=settings.n_test,
        n_repeated_sets=settings.n_repeated_sets,
        n_transfer=settings.n_transfer,
        n_local=settings.n_local,
        seed=config.seed,
    )
    root = os.path.join(ctx.workdir, "world")
    ids = [f"object_{i:04d}" for i in range(settings.n_objects)]
    atomic.save_npy(os.path.join(root, "triplets", "train_90.npy"), world.train)
    atomic.save_npy(os.path.join(root, "triplets", "test_10.npy"), world.test)
    atomic.save_npy(os.path.join(root, "triplets", "noise_ceiling.npy"), world.repeats)
    atomic.write_text(os.path.join(root, "things_concepts.tsv"), "uniqueID\n" + "\n".join(ids) + "\n")
    atomic.save_npy(os.path.join(root, "concept_embedding.npy"), world.embedding)
    atomic.write_text(os.path.join(root, "concept_labels.txt"), "\n".join(world.concept_names) + "\n")
    transfer = _write_transfer(world, os.path.join(root, "transfer_rsm"), settings, config.seed)

    config.things.root = root
    if not config.things.noise_ceiling_triplets:
        config.things.noise_ceiling_triplets = os.path.join(root, "triplets", "noise_ceiling.npy")
    if settings.images:
        _write_images(os.path.join(root, "images"), ids, render(world.embedding, settings.image_size, config.seed))
        config.images.source, config.images.root = "things", os.path.join(root, "images")
    elif not config.features:
        config.features = ctx.features_path = os.path.join(root, "features.npy")
        atomic.save_npy(config.features, world.features)
        config.transfer.features = f"transfer_rsm:{os.path.join(transfer, 'features.npy')}"
    if settings.n_local:
        _write_local(world, os.path.join(root, "local"), config)
    if not config.concepts.embedding:
        config.concepts.embedding = os.path.join(root, "concept_embedding.npy")
        config.concepts.labels = os.path.join(root, "concept_labels.txt")
    if not config.transfer.datasets:
        config.transfer.datasets = f"rsm:{transfer}"
    ctx.log(
        f"world: {settings.n_objects} objects ({'images' if settings.images else 'features'}), "
        f"{len(world.train):,} train / {len(world.test):,} test triplets, {settings.n_concepts} planted concepts, "
        f"{settings.n_transfer} held-out objects for transfer"
        + (f", {settings.n_local} local images" if settings.n_local else "")
        + f" -> {root}"
    )
    return {"root": root, "n_objects": settings.n_objects, "n_concepts": settings.n_concepts, "images": settings.images}


def _write_transfer(world: World, folder: str, settings, seed: int) -> str:
    """Held-out objects: human similarity = the planted embedding's dot products, images or features."""
    embedding = world.transfer_embedding
    atomic.save_npy(os.path.join(folder, "similarity.npy"), embedding @ embedding.T)
    if settings.images:
        names = [f"stimulus_{i:03d}" for i in range(len(embedding))]
        _write_images(os.path.join(folder, "images"), names, render(embedding, settings.image_size, seed + 1))
    else:
        atomic.save_npy(os.path.join(folder, "features.npy"), world.transfer_features)
    return folder


def _write_local(world: World, folder: str, config) -> None:
    """gLocal's local set: rendered images (for the run's model) or features; probe.local points at them
    unless it names a local set already."""
    local = config.probe.local
    if config.world.images:
        names = [f"local_{i:05d}" for i in range(len(world.local_embedding))]
        _write_images(
            os.path.join(folder, "images"),
            names,
            render(world.local_embedding, config.world.image_size, config.seed + 2),
        )
        if not (local.features or local.images):
            local.images = os.path.join(folder, "images")
    else:
        atomic.save_npy(os.path.join(folder, "features.npy"), world.local_features)
        if not (local.features or local.images):
            local.features = os.path.join(folder, "features.npy")


def _write_images(folder: str, names: list[str], images: np.ndarray) -> None:
    """images: (n, H, W, 3) uint8 -> folder/<name>.png, each written atomically, and only when its bytes
    change: a rerun leaves the files (and their modification times) alone, so the feature store is reused."""
    from PIL import Image

    for name, image in zip(names, images, strict=True):
        path = os.path.join(folder, f"{name}.png")
        encoded = io.BytesIO()
        Image.fromarray(image).save(encoded, format="PNG")
        if not _holds(path, encoded.getvalue()):
            atomic.write_bytes(path, encoded.getvalue())


def _holds(path: str, data: bytes) -> bool:
    """Whether the file at `path` exists and holds exactly `data`."""
    if not os.path.exists(path):
        return False
    with open(path, "rb") as f:
        return f.read() == data
