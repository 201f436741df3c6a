"""AugReg ViT-B/16 (ImageNet-21k, fine-tuned on ImageNet-1k): extract -> zero-shot -> probe -> transfer.

    python -m alignment_jax.probe --config=configs/vit_b16.py --workdir=runs/vit_b16 \
        --config.things.root=/data/THINGS
    python -m alignment_jax.probe --config=configs/vit_b16.py:runlocal=True --workdir=runs/local

Checkpoint: gs://vit_models/augreg/ (public bucket of google-research/vision_transformer; the registry
entry `augreg-b16-i21k-ft-i1k` names the file, or set model.checkpoint to a local copy).
THINGS (Hebart et al. 2023, OSF https://osf.io/f5rn6/ and https://osf.io/jum2f/): ROOT/images/<uniqueID>/
(one folder of images per object), ROOT/things_concepts.tsv, ROOT/triplets/{train_90,test_10}.npy.
Keys to set: things.root (and images.root if the images are elsewhere); optional transfer.datasets
(e.g. peterson:/data/peterson,cichy:/data/cichy118), concepts.embedding / concepts.labels (VICE).
Arguments: runlocal (the bundled demo world, the entry's tiny random stand-in read as its real checkpoint
would be; alignment_jax/models/standins.py), variant (i21k = without fine-tuning).
"""

from alignment_jax.config.args import parse_arg, run_locally
from alignment_jax.config.base import base_config


def get_config(arg: str = ""):
    args = parse_arg(arg, runlocal=False, variant="i21k-ft-i1k")
    config = base_config()
    config.model.name = f"augreg-b16-{args.variant}"
    config.images.batch_size = 256
    return run_locally(config) if args.runlocal else config
