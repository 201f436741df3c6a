"""A giant ViT (the design card's example): extract -> zero-shot -> probe -> transfer.

    python -m alignment_jax.probe --config=configs/vit_g.py --workdir=runs/vit_g \
        --config.things.root=/data/THINGS
    python -m alignment_jax.probe --config=configs/vit_g.py:model=openclip --workdir=runs/vit_g14

model=siglip2 (default): SigLIP 2 g-opt/16 image tower at 256 px from the public big_vision bucket
  (gs://big_vision/siglip2/siglip2_g-opt16_256.npz, `:img` sub-tree; res=384 for the 384 px model).
model=openclip: the classic ViT-g/14 of OpenCLIP (LAION-2B, laion2b_s34b_b88k; data=s12b for
  laion2b_s12b_b42k) from Hugging Face (open_clip_model.safetensors), read without PyTorch.
THINGS from OSF (https://osf.io/f5rn6/, https://osf.io/jum2f/): set things.root (images/, triplets/,
things_concepts.tsv). On several accelerators extraction shards the batch over all of them; bfloat16
matmuls by default. Arguments: runlocal, model, res, data.
"""

from alignment_jax.config.args import parse_arg, run_locally
from alignment_jax.config.base import base_config


def get_config(arg: str = ""):
    args = parse_arg(arg, runlocal=False, model="siglip2", res=256, data="s34b")
    config = base_config()
    if args.model == "siglip2":
        config.model.name = f"siglip2-gopt16-{args.res}"
    elif args.model == "openclip":
        config.model.name = f"openclip-vit-g14-laion2b-{args.data}"
    else:
        raise ValueError(f"model={args.model!r}: use siglip2 or openclip")
    config.model.dtype = "bfloat16"
    config.images.batch_size = 256
    return run_locally(config) if args.runlocal else config
