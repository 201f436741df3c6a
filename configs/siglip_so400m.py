"""SigLIP So400m/14 image tower (WebLI): extract -> zero-shot -> probe -> transfer.

    python -m alignment_jax.probe --config=configs/siglip_so400m.py --workdir=runs/so400m \
        --config.things.root=/data/THINGS

Checkpoint: gs://big_vision/siglip/ (public big_vision bucket; `.npz:img` selects the image tower; the
registry entry `siglip-so400m14-<res>` names the file, or model.checkpoint=FILE:img). Features: the
MAP-pooled `head_input` by default. THINGS from OSF (https://osf.io/f5rn6/): set things.root.
Arguments: runlocal, res (224 | 384), siglip2 (the SigLIP 2 checkpoint at 224).
"""

from alignment_jax.config.args import parse_arg, run_locally
from alignment_jax.config.base import base_config


def get_config(arg: str = ""):
    args = parse_arg(arg, runlocal=False, res=224, siglip2=False)
    config = base_config()
    config.model.name = "siglip2-so400m14-224" if args.siglip2 else f"siglip-so400m14-{args.res}"
    config.model.dtype = "bfloat16"
    config.images.batch_size = 128
    return run_locally(config) if args.runlocal else config
