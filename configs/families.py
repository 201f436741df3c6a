"""A sweep comparing model families on the same human data: a supervised ViT, CLIP, SigLIP, self-supervised
DINOv2 (with and without registers) and BiT ResNets (the 2023 paper's convolutional networks), optionally
AligNet's SigLIP-B before and after AligNet post-training; DIR/summary.csv, summary.png and comparisons.csv
put them side by side.

    python -m alignment_jax.sweep --config=configs/families.py --workdir=runs/families \
        --config.shared.things.root=/data/THINGS
    python -m alignment_jax.sweep --config=configs/families.py:runlocal=True --workdir=runs/families_local

Arguments: runlocal (every model's tiny stand-in in its real file format on the demo world: a few minutes on
a laptop CPU), alignet (add AligNet's SigLIP-B base and aligned SavedModels: needs TensorFlow,
pip install 'alignment_jax[tensorflow]'). Each model is configs/family.py with its registry name.
"""

import ml_collections
from ml_collections.config_dict import placeholder

from alignment_jax.config.args import parse_arg

FAMILIES = {  # run name -> registry entry
    "vit_b16": "augreg-b16-i21k-ft-i1k",
    "clip_b16": "openclip-vit-b16-laion2b",
    "siglip_b16": "siglip-b16-224",
    "dinov2_b14": "dinov2-b14",
    "dinov2_b14_reg4": "dinov2-b14-reg4",
    "bit_m_r50x1": "bit-m-r50x1",
    "bit_s_r50x1": "bit-s-r50x1",
}
ALIGNET = {"alignet_siglip_base": "alignet-siglip-b-base", "alignet_siglip_alignet": "alignet-siglip-b-alignet"}


def get_config(arg: str = ""):
    args = parse_arg(arg, runlocal=False, alignet=False)
    models = {**FAMILIES, **(ALIGNET if args.alignet else {})}
    local = ",runlocal=True" if args.runlocal else ""
    config = ml_collections.ConfigDict()
    config.models = tuple(f"{run}=configs/family.py:model={name}{local}" for run, name in models.items())
    config.plot = True  # DIR/summary.png and DIR/comparisons.png
    config.bootstrap = 1000  # paired bootstrap resamples for DIR/comparisons.csv

    # Set in every model's config; None (a placeholder) leaves the model's own value.
    config.shared = ml_collections.ConfigDict()
    config.shared.things = ml_collections.ConfigDict()
    config.shared.things.root = placeholder(str)  # THINGS from OSF (https://osf.io/f5rn6/): ROOT/triplets/...
    config.shared.model = ml_collections.ConfigDict()
    config.shared.model.layers = placeholder(str)  # e.g. "all": every model's depth curve in DIR/depth.png
    config.shared.probe = ml_collections.ConfigDict()
    config.shared.probe.lambdas = placeholder(tuple)
    config.shared.probe.folds = placeholder(int)
    config.shared.images = ml_collections.ConfigDict()
    config.shared.images.batch_size = placeholder(int)
    config.shared.world = ml_collections.ConfigDict()  # only used with runlocal (the demo world)
    config.shared.world.n_objects = 200
    config.shared.world.n_train = 30_000
    config.shared.world.n_test = 5_000
    return config
