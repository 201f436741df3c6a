"""A sweep: several model configs on the same human data, compared in DIR/summary.csv and DIR/summary.png.

    python -m alignment_jax.sweep --config=configs/sweep.py --workdir=runs/sweep

By default three variants of the bundled demo on planted features (no download, seconds each): as is,
with dot-product similarity, and on another random world. Real models on THINGS:

    python -m alignment_jax.sweep --config=configs/sweep.py --workdir=runs/things \
        --config.models="configs/vit_b16.py,configs/vit_l16.py" --config.shared.things.root=/data/things

A model spec is `[NAME=]PATH[:ARG][ KEY=VALUE ...]`: get_config(ARG) of PATH, then the fields of `shared`,
then the spec's own KEY=VALUE fields (alignment_jax/config/files.py). Each model runs in DIR/NAME; a rerun
skips finished models whose config did not change.
"""

import ml_collections
from ml_collections.config_dict import placeholder


def get_config(arg: str = ""):
    del arg
    config = ml_collections.ConfigDict()
    config.models = ",".join(
        (
            "demo=configs/demo.py:features=True",
            "demo_dot=configs/demo.py:features=True similarity=dot",
            "demo_seed1=configs/demo.py:features=True seed=1",
        )
    )
    config.plot = True  # DIR/summary.png: zero-shot vs probe per model; DIR/comparisons.png: accuracies with CIs
    config.bootstrap = 1000  # paired bootstrap resamples for DIR/comparisons.csv

    # Set in every model's config; None (a placeholder) leaves the model's own value.
    config.shared = ml_collections.ConfigDict()
    config.shared.things = ml_collections.ConfigDict()
    config.shared.things.root = placeholder(str)  # THINGS from OSF (https://osf.io/f5rn6/): ROOT/triplets/...
    config.shared.things.noise_ceiling_triplets = placeholder(str)  # THINGS' repeated triplets, for the ceiling
    config.shared.model = ml_collections.ConfigDict()
    config.shared.model.layers = placeholder(str)  # e.g. "all": every model's depth curve in DIR/depth.png
    config.shared.probe = ml_collections.ConfigDict()
    config.shared.probe.lambdas = placeholder(tuple)
    config.shared.probe.folds = placeholder(int)
    config.shared.probe.protocol = placeholder(str)
    config.shared.transfer = ml_collections.ConfigDict()
    config.shared.transfer.datasets = placeholder(str)  # KIND:PATH,... (configs/demo.py's world brings its own)
    config.shared.world = ml_collections.ConfigDict()  # only used by configs with world.enabled (the demo)
    config.shared.world.n_objects = 200
    config.shared.world.n_train = 30_000
    config.shared.world.n_test = 5_000
    return config
