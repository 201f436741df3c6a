"""big_vision-style config arguments: `configs/vit_b16.py:runlocal=True,layer=encoded`."""

import difflib

import ml_collections

from alignment_jax.errors import InputError

_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no", "")


def parse_arg(arg: str, **defaults) -> ml_collections.ConfigDict:
    """'a=1,b=x,flag' -> ConfigDict(a=1, b='x', flag=True); values are typed like `defaults` (unknown keys
    are an error, so a typo does not pass silently)."""
    result = ml_collections.ConfigDict(defaults)
    for item in filter(None, (s.strip() for s in arg.split(","))):
        key, _, value = item.partition("=")
        if key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise InputError(f"config argument {key!r} is not one of {', '.join(defaults) or '(none)'}{hint}")
        if "=" not in item:
            value = "true"
        default = defaults[key]
        if isinstance(default, bool):
            if value.lower() not in _TRUE + _FALSE:
                raise InputError(f"config argument {key}={value!r}: expected true or false")
            result[key] = value.lower() in _TRUE
        else:
            try:
                result[key] = type(default)(value)
            except ValueError as e:
                raise InputError(f"config argument {key}={value!r}: expected {type(default).__name__}") from e
    return result


def run_locally(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Shrinks a real model config to run in a minute or two on a laptop CPU: the demo world (rendered images,
    simulated triplets, a transfer dataset, concepts, and a Levels set when the config names Levels data) instead
    of THINGS and the user's data.

    A registry model keeps its own path: `model.standin` replaces only its weights by a tiny random
    stand-in written in its checkpoint's file format (alignment_jax/models/standins.py), so the entry's
    reader, architecture options, image size, preprocessing, dtype and layer run as in the real run.
    Without a registry model (configs/demo.py) the bundled demo ViT (`demo-vit`) extracts. The probe
    settings stay."""
    config.world.enabled = True
    config.world.images = True
    config.things.root = config.things.train = config.things.test = config.things.objects = ""
    config.images.root = config.images.list = config.images.tfds_name = ""
    config.images.source = "things"
    config.images.batch_size = 64
    config.features = ""
    config.model.standin = bool(config.model.name) and config.model.name != "demo-vit"
    if not config.model.standin:
        config.model.name, config.model.layer, config.model.image_size = "demo-vit", "", 0
        config.model.dtype = "float32"
    config.model.variant = config.model.checkpoint = ""
    config.transfer.datasets = config.transfer.features = ""
    config.concepts.embedding = config.concepts.labels = ""
    if config.levels.root or config.levels.features:  # the world's Levels set instead
        config.world.n_levels = config.world.n_levels or 100
        config.levels.root = config.levels.images = config.levels.features = ""
    local = config.probe.local
    if config.probe.objective == "glocal" or local.features or local.images:  # the world's local images instead
        config.world.n_local = config.world.n_local or 1000
        local.features = local.images = local.test_features = ""
    return config
