"""AugReg ViT-L/16 (ImageNet-21k, fine-tuned on ImageNet-1k): extract -> zero-shot -> probe -> transfer.

    python -m alignment_jax.probe --config=configs/vit_l16.py --workdir=runs/vit_l16 \
        --config.things.root=/data/THINGS

Checkpoint: gs://vit_models/augreg/ (registry entry `augreg-l16-i21k-ft-i1k`; or model.checkpoint=FILE).
THINGS from OSF (https://osf.io/f5rn6/, https://osf.io/jum2f/): set things.root (images/, triplets/,
things_concepts.tsv). Arguments: runlocal, variant (i21k | i21k-ft-i1k).
"""

from alignment_jax.config.args import parse_arg, run_locally
from alignment_jax.config.base import base_config


def get_config(arg: str = ""):
    args = parse_arg(arg, runlocal=False, variant="i21k-ft-i1k")
    config = base_config()
    config.model.name = f"augreg-l16-{args.variant}"
    config.model.dtype = "bfloat16"
    config.images.batch_size = 128
    return run_locally(config) if args.runlocal else config
