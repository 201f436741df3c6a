"""Stage extract: features of config.model for the images of config.images, into a store in
`workdir/features/`; later stages read them (ctx.features). A second run reuses the finished store,
an interrupted one resumes it; features made another way are never reused (the store name holds a
hash of model, checkpoint, layer, pooling, dtype and matmul precision, decoding and images)."""

import os

import ml_collections

from alignment_jax.caches import cache_folder
from alignment_jax.errors import InputError
from alignment_jax.extract.pipeline import extract_with_config, image_source
from alignment_jax.models.registry import DTYPES, MODELS
from alignment_jax.run_context import RunContext


def has_inputs(config: ml_collections.ConfigDict) -> bool:
    """A model and an image source are configured, and no precomputed `features` file is given."""
    if config.features or not (config.model.name or config.model.variant):
        return False
    images = config.images
    if images.source == "things":
        return bool(images.root) or bool(
            config.things.root and os.path.isdir(os.path.join(config.things.root, "images"))
        )
    if images.source == "folder":
        return bool(images.root or images.list)
    if images.source == "tfds":
        return bool(images.tfds_name)
    return True  # an unknown source: run() says what is wrong


def check(config: ml_collections.ConfigDict) -> None:
    """model.dtype is known; a stand-in names a registry entry and no checkpoint of its own."""
    m = config.model
    if m.dtype not in DTYPES:
        raise InputError(f"model.dtype {m.dtype!r}: use one of {', '.join(DTYPES)} (README: Precision)")
    if m.standin and m.name not in MODELS:
        raise InputError(f"model.standin: model.name {m.name!r} is not a registry entry; set one or standin=False")
    if m.standin and m.checkpoint:
        raise InputError("model.standin replaces the checkpoint's weights; leave model.checkpoint empty")
    cache_folder(config.images.cache, "images", "images.cache")


def run(ctx: RunContext) -> dict:
    """Returns the `extract` section: store, features path, n, p, images computed now, images/s, and
    with a decoded-image cache its folder and how many images came from it."""
    result, store = extract_with_config(ctx.config, image_source(ctx.config), os.path.join(ctx.workdir, "features"))
    ctx.features_path = os.path.join(store, f"features.{ctx.config.images.store_format}")
    n, p = result.features.shape
    if result.computed:
        ctx.log(
            f"extract: {result.computed} images -> {n} x {p} features ({result.images_per_s:.1f} images/s), {store}"
        )
    else:
        ctx.log(f"extract: reused {n} x {p} features from {store}")
    if result.image_cache:
        decoded = result.computed - result.from_cache
        ctx.log(f"extract: {result.from_cache} images read from the decoded-image cache, {decoded} decoded into it "
                f"({result.image_cache})")  # fmt: skip
    section = {"store": store, "features": ctx.features_path, "n": n, "p": p, "computed": result.computed}
    if result.computed:
        section["images_per_s"] = result.images_per_s
    if result.image_cache:
        section.update(image_cache=result.image_cache, from_cache=result.from_cache)
    return section
