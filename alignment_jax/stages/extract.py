"""Stage extract: features of config.model for the images of config.images, into a store in
`workdir/features/`; later stages read them (ctx.features). A second run reuses the finished store,
an interrupted one resumes it; features made another way are never reused (the store name holds a
hash of model, checkpoint, layer, pooling, dtype, decoding and images). With model.layers, every layer
comes from one pass over the images, each into its own store (stages/layers.py: results.json `layers`)."""

import os

import ml_collections

from alignment_jax.errors import InputError
from alignment_jax.extract.pipeline import extract_layers_with_config, image_source
from alignment_jax.run_context import RunContext
from alignment_jax.stages import layers


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
    """model.layers needs a model to extract the layers with."""
    if config.model.layers.strip() and (config.features or not (config.model.name or config.model.variant)):
        raise InputError(
            f"model.layers={config.model.layers!r} extracts layers with config.model, and "
            + ("features= gives precomputed features of one layer" if config.features else "no model is set")
            + "; set model.name (or model.variant) and leave features empty, or set model.layers=''"
        )


def run(ctx: RunContext) -> dict:
    """Returns the `extract` section: store, features path, n, p, images computed now, images/s (of
    model.layer; with model.layers every layer comes from the same pass and gets an entry in `layers`)."""
    config = ctx.config
    extraction = extract_layers_with_config(
        config, image_source(config), os.path.join(ctx.workdir, "features"), config.model.layers
    )
    result, store = extraction.layers[extraction.default]
    ctx.features_path = _features_file(store, config)
    n, p = result.features.shape
    what = f"{n} x {p} features"
    others = [layer for layer in extraction.layers if layer != extraction.default]
    if others:
        what += f" of {extraction.default} and those of {len(others)} more layers ({', '.join(others)})"
    if result.computed:
        speed = f"{result.images_per_s:.1f} images/s, one pass"
        ctx.log(f"extract: {result.computed} images -> {what} ({speed}), {store}")
    else:
        ctx.log(f"extract: reused {what} from {store}")
    if config.model.layers.strip():
        ctx.layer_paths = {layer: _features_file(path, config) for layer, (_, path) in extraction.layers.items()}
        rows = [
            {
                "layer": layer,
                "depth": extraction.depths[layer],
                "p": e.features.shape[1],
                "features": ctx.layer_paths[layer],
            }
            for layer, (e, _) in extraction.layers.items()
        ]
        layers.start(ctx, extraction.default, rows)
    else:
        layers.stop(ctx)
    section = {"store": store, "features": ctx.features_path, "n": n, "p": p, "computed": result.computed}
    if result.computed:
        section["images_per_s"] = result.images_per_s
    return section


def _features_file(store: str, config: ml_collections.ConfigDict) -> str:
    return os.path.join(store, f"features.{config.images.store_format}")
