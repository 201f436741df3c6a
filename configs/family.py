"""One model of any family by registry name (ViTs, CLIP, SigLIP, DINOv2, BiT ResNets, AligNet's SavedModels):
extract -> zero-shot -> probe -> transfer, with the entry's own preprocessing and default layer.

    python -m alignment_jax.probe --config=configs/family.py:model=dinov2-b14 --workdir=runs/dinov2_b14 \
        --config.things.root=/data/THINGS
    python -m alignment_jax.probe --config=configs/family.py:model=bit-m-r50x1,runlocal=True --workdir=runs/local

Arguments: model (a registry name, alignment_jax/models/registry.py; docs/models.md lists the families),
runlocal (the demo world and the entry's tiny stand-in in its real file format, read through the real
loader). AligNet's SavedModels need TensorFlow (pip install 'alignment_jax[tensorflow]'), also for runlocal.
"""

from alignment_jax.config.args import parse_arg, run_locally
from alignment_jax.config.base import base_config


def get_config(arg: str = ""):
    args = parse_arg(arg, model="dinov2-b14", runlocal=False)
    config = base_config()
    config.model.name = args.model
    config.images.batch_size = 128
    return run_locally(config) if args.runlocal else config
