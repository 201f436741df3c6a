"""Levels (Muttenthaler et al., "Aligning machine and human visual representations across abstraction levels",
Nature 2025): odd-one-out accuracy per abstraction level against the leave-one-out noise ceiling, and the
model's uncertainty against people's (docs/levels.md).

    python -m alignment_jax.probe --config=configs/levels.py --workdir=DIR \
        --config.levels.root=LEVELS --config.model.name=augreg-b16-i21k

LEVELS: the release (GIN fborn/Dataset_Levels): its trial files (*.json, JSON lines) anywhere under it and
its images in LEVELS/images (or --config.levels.images=FOLDER); the model extracts the images' features into
DIR/features (or give --config.levels.features=F.npy, one row per image in sorted file-name order). To report
the gain of a THINGS-trained transform on Levels, add THINGS (--config.things.root=THINGS: the probe learns
it in the same run, before the levels stage) or give one (--config.transform=transform.npz).
Argument runlocal: the demo world's Levels set and THINGS-like triplets with planted features (no files): every
stage runs, the probe learns a transform on the THINGS-like triplets and the levels stage reports every number
before and after it.
"""

from alignment_jax.config.args import parse_arg
from alignment_jax.config.base import base_config


def get_config(arg: str = ""):
    args = parse_arg(arg, runlocal=False)
    config = base_config()
    if args.runlocal:
        config.world.enabled = True  # planted features: the world's THINGS-like triplets and its Levels set
        config.world.n_levels = 100
        config.probe.lambdas = (1e-2, 1e-3)
    return config
