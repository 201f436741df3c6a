"""Whether a config names the inputs that the THINGS stages need."""

import os

import ml_collections
import numpy as np

from alignment_jax.stages import extract

READS = ("features", "features_known", "model_runner", "things", "workdir")
SETTINGS = ("features", "things.root", "things.train", "model", "images", "progress", *extract.SETTINGS)


def has_things(config: ml_collections.ConfigDict) -> bool:
    """THINGS triplets are configured (a root folder or a train file)."""
    return bool(config.things.root or config.things.train)


def has_features(config: ml_collections.ConfigDict) -> bool:
    """THINGS features are given, or a model and images to extract them from."""
    return bool(config.features) or extract.has_inputs(config)


def check_things_and_features(ctx) -> None:
    """Loads (and so validates) the THINGS triplets, and the features when they are known before the run
    (a file; extracted features are checked when the extract stage has made them)."""
    _ = ctx.things
    if ctx.features_known:
        _ = ctx.features


def extracted_features(ctx, source, kind: str) -> np.ndarray:
    """(n, p) features of config.model (its model.layer) for the images of `source` (extract/sources.py), row
    i = image i, through the run's feature store (DIR/features; resumable, reused when it matches); logs how
    many it computed now."""
    from alignment_jax.extract.pipeline import extract_layers_with_config

    folder = os.path.join(ctx.workdir, "features")
    extraction = extract_layers_with_config(ctx.config, source, folder, "", runner=ctx.model_runner)
    result, store = extraction.layers[extraction.default]
    if result.computed:
        ctx.log(f"{kind} images: {result.computed} extracted ({result.images_per_s:.1f} images/s) into {store}")
    return result.features
