"""Precomputed THINGS features: zero-shot odd-one-out, the cross-validated probe and the report, plus transfer
and concepts when their inputs are given (every stage whose inputs are set runs).

    python -m alignment_jax.probe --config=configs/features.py --workdir=DIR \
        --config.features=features.npy --config.things.root=THINGS

features.npy: (1854, p) float, row i = the i-th object of things_concepts.tsv (e.g. from thingsvision).
THINGS odd-one-out data (Hebart et al. 2023) from OSF (https://osf.io/f5rn6/): ROOT/triplets/train_90.npy,
ROOT/triplets/test_10.npy (0-based, column 2 = odd one out) and ROOT/things_concepts.tsv. Transfer needs
features of its datasets too: --config.transfer.datasets=KIND:PATH --config.transfer.features=NAME:FILE.
Argument runlocal: the bundled demo world's planted features and triplets instead (no files needed).
"""

from alignment_jax.config.args import parse_arg
from alignment_jax.config.base import base_config


def get_config(arg: str = ""):
    args = parse_arg(arg, runlocal=False)
    config = base_config()
    config.world.enabled = args.runlocal  # the bundled demo world's planted features and triplets instead of files
    return config
