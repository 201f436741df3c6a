"""Stage extract: features of config.model for the images of config.images, into a store in
`workdir/features/`; later stages read them (ctx.features). A second run reuses the finished store,
an interrupted one resumes it; features made another way are never reused (the store name holds a
hash of model, checkpoint, layer, pooling, dtype and matmul precision, decoding and images). With
model.layers, every layer comes from one pass over the images, each into its own store (stages/layers.py:
results.json `layers`)."""

import os
import re

import ml_collections

from alignment_jax.caches import cache_folder
from alignment_jax.config import checks
from alignment_jax.errors import InputError
from alignment_jax.extract.decode import RESIZE_MODES
from alignment_jax.extract.extractor import POOLINGS
from alignment_jax.extract.pipeline import SOURCES, extract_layers_with_config, image_source
from alignment_jax.extract.store import FORMATS
from alignment_jax.models import storage
from alignment_jax.models.checkpoints import split_subtree
from alignment_jax.models.registry import DTYPES, MODELS, NORMALIZATIONS
from alignment_jax.models.vit import VARIANTS
from alignment_jax.run_context import RunContext
from alignment_jax.stages import layers

READS = ("digest", "features", "features_path", "layer_paths", "layer_rows", "model_runner", "workdir", *layers.READS)
WRITES = ("features_path", "layer_paths", *layers.WRITES)
SETTINGS = ("features", "model", "images", "progress", "things.root", "things.objects", *layers.SETTINGS)

MEMORY = "images.batch_size (or model.dtype=bfloat16)"


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
    """The model, decoding and store settings (the transfer stage extracts with them too)."""
    model = config.model
    name = model.name or model.variant
    bit_variant = bool(re.fullmatch(r"r\d+x\d+", name))  # a BiT ResNet without a registry name (models/bit.py)
    if name and name not in MODELS and name.partition("/")[0] not in VARIANTS and not bit_variant:
        raise InputError(
            f"model {name!r}: neither a registry name (model.name, e.g. demo-vit, augreg-b16-i21k, siglip2-b16-224; "
            f"all {len(MODELS)} are in alignment_jax/models/registry.py) nor a variant like 'B/16' (model.variant)"
        )
    checks.choice(config, "model.dtype", DTYPES)
    if name in MODELS and not MODELS[name].checkpoint and not model.checkpoint and not model.standin:
        raise InputError(f"model.checkpoint: {name!r} needs one (a SavedModel folder or its .tar.gz); set it")
    if model.standin and model.name not in MODELS:
        raise InputError(f"model.standin: model.name {model.name!r} is not a registry entry; set one or standin=False")
    if model.standin and model.checkpoint:
        raise InputError("model.standin replaces the checkpoint's weights; leave model.checkpoint empty")
    checks.choice(config, "model.normalization", ("", *NORMALIZATIONS))
    checks.integer(config, "model.image_size", minimum=0, maximum=8192)
    images = config.images
    checks.choice(config, "images.source", SOURCES)
    checks.choice(config, "images.resize", ("model", *RESIZE_MODES))
    checks.choice(config, "images.token_pooling", POOLINGS)
    checks.choice(config, "images.store_format", FORMATS)
    checks.integer(config, "images.batch_size", minimum=1)
    checks.integer(config, "images.shard_size", minimum=1)
    checks.integer(config, "images.num_workers", minimum=0, maximum=1024)
    checks.integer(config, "images.prefetch", minimum=1, maximum=1024)
    cache_folder(images.cache, "images", "images.cache")
    if images.source == "tfds" and not images.tfds_name:
        raise InputError("images.source=tfds needs images.tfds_name (a TFDS name or a prepared dataset folder)")


def check_inputs(ctx: RunContext) -> None:
    """The images are there (listed now, before the model loads) and a local checkpoint exists."""
    checkpoint = split_subtree(ctx.config.model.checkpoint)[0]
    if checkpoint and checkpoint != "random" and not storage.is_remote(checkpoint) and not os.path.exists(checkpoint):
        raise InputError(f"{checkpoint}: checkpoint not found (model.checkpoint); give an existing file or folder")
    image_source(ctx.config)


def provenance(ctx: RunContext) -> dict:
    return {"features": ctx.digest("features")}


def run(ctx: RunContext) -> dict:
    """Returns the `extract` section: store, features path, n, p, images computed now, images/s (of
    model.layer; with model.layers every layer comes from the same pass: `layers` lists each one's layer,
    depth, p and features file, and the later stages fill in results.json `layers`)."""
    config = ctx.config
    extraction = extract_layers_with_config(
        config, image_source(config), os.path.join(ctx.workdir, "features"), config.model.layers,
        runner=ctx.model_runner,
    )  # fmt: skip
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
    if result.image_cache:
        decoded = result.computed - result.from_cache
        ctx.log(f"extract: {result.from_cache} images read from the decoded-image cache, {decoded} decoded into it "
                f"({result.image_cache})")  # fmt: skip
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
    section = {"store": store, "features": ctx.features_path, "n": n, "p": p, "computed": result.computed}
    if result.computed:
        section["images_per_s"] = result.images_per_s
    if result.image_cache:
        section.update(image_cache=result.image_cache, from_cache=result.from_cache)
    if ctx.layer_rows:
        section["layers"] = ctx.layer_rows
    return section


def _features_file(store: str, config: ml_collections.ConfigDict) -> str:
    return os.path.join(store, f"features.{config.images.store_format}")
