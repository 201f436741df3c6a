"""Whether a config names the inputs that the THINGS stages need."""

import ml_collections

from alignment_jax.stages import load


def has_things(config: ml_collections.ConfigDict) -> bool:
    """THINGS triplets are configured (a root folder or a train file)."""
    return bool(config.things.root or config.things.train)


def has_features(config: ml_collections.ConfigDict) -> bool:
    """THINGS features are given, or a model and images to extract them from."""
    return bool(config.features) or load("extract").has_inputs(config)


def check_things_and_features(ctx) -> None:
    """Loads (and so validates) the THINGS triplets, and the features when they are known before the run
    (a file; extracted features are checked when the extract stage has made them)."""
    _ = ctx.things
    if ctx.features_known:
        _ = ctx.features
