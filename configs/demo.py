"""The bundled demo: every stage on a synthetic THINGS-like world, no download needed.

    python -m alignment_jax.probe --config=configs/demo.py --workdir=runs/demo

The world stage writes planted-concept objects, simulated human triplets (train, test, repeats for a
noise ceiling) and model features under WORKDIR/world; the other stages run on them as on THINGS.
"""

from alignment_jax.config_base import base_config


def get_config(arg: str = ""):
    del arg
    config = base_config()
    config.world.enabled = True
    config.zero_shot.bootstrap = 1000
    config.probe.lambdas = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
    return config
