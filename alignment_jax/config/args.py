"""big_vision-style config arguments: `configs/vit_b16.py:runlocal=True,layer=encoded`."""

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
            raise InputError(f"config argument {key!r} is not one of {', '.join(defaults) or '(none)'}")
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
    """Shrinks a real model config to run in a minute on a laptop CPU: the demo world with rendered images
    and the bundled tiny ViT (`demo-vit`, alignment_jax/models/demo.py) instead of the real checkpoint and
    THINGS; the probe settings stay."""
    config.world.enabled = True
    config.world.images = True
    config.things.root = config.things.train = config.things.test = config.things.objects = ""
    config.images.root = config.images.list = config.images.tfds_name = ""
    config.images.source = "things"
    config.images.batch_size = 64
    config.features = ""
    config.model.name = "demo-vit"
    config.model.variant = config.model.checkpoint = config.model.layer = ""
    config.model.image_size = 0
    config.model.dtype = "float32"
    config.transfer.datasets = config.transfer.features = ""
    config.concepts.embedding = config.concepts.labels = ""
    local = config.probe.local
    if config.probe.objective == "glocal" or local.features or local.images:  # the world's local images instead
        config.world.n_local = config.world.n_local or 1000
        local.features = local.images = local.test_features = ""
    return config
