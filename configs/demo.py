"""The bundled demo: every stage on a synthetic THINGS-like world, no download needed.

    python -m alignment_jax.probe --config=configs/demo.py --workdir=runs/demo

The world stage writes planted-concept objects, simulated human triplets (train, test, repeats for a
noise ceiling), images rendered from the objects' concepts, a held-out dataset with a human similarity
matrix, the concept labels and a small Levels set (a three-level class hierarchy of rendered images, 4-5
simulated responses per triplet; docs/levels.md) under WORKDIR/world. The bundled tiny ViT (`demo-vit`, trained on other
rendered objects; nothing is downloaded) extracts features from the images; zero-shot, the probe sweep,
transfer and concepts run on them as on THINGS, and report.md gathers the plots. Every layer of the model
(model.layers=all: its 4 blocks and the pooled output) goes through extraction, zero-shot and the probe, so
the report shows accuracy against depth (about 15 s on a 2-core CPU). Argument `features=True` skips the
images and the model and uses planted features instead. Argument `glocal=True` adds gLocal's local image
set (1,000 further rendered objects, or their features) under WORKDIR/world/local and trains with gLocal's
objective (docs/glocal.md) beside the global probe (alpha = 0 in the same sweep), on model.layer alone and
with batches of 256 local images, so it too takes seconds: the report puts the two side by side (the global
probe wins slightly on the test triplets and loses clearly on the held-out images' 10 nearest neighbours).
Argument `alignet=True` closes AligNet's loop (docs/alignet.md): a pool of 2,000 further unlabeled objects
under WORKDIR/world/local, the probe's transform labels 30k teacher triplets over it (30 k-means classes),
and a student probe trained with KL on those triplets alone is scored on the human test triplets beside the
teacher and zero-shot.
"""

from alignment_jax.config.args import parse_arg, run_locally
from alignment_jax.config.base import base_config


def get_config(arg: str = ""):
    args = parse_arg(arg, features=False, glocal=False, alignet=False)
    config = base_config()
    config.world.n_levels = 100  # a small Levels set (docs/levels.md): accuracy per abstraction level, uncertainty
    if args.alignet:
        config.world.n_local = 2000  # the unlabeled pool
        config.teacher.n_triplets = 30_000
        config.teacher.classes, config.teacher.n_clusters, config.teacher.similarity = "kmeans", 30, "dot"
        config.student.objective, config.student.taus = "kl", (0.5, 2.0)
    if args.glocal:
        config.probe.objective = "glocal"
        config.world.n_local = 1000
        config.probe.local.batch_size = 256
    if args.features:
        config.world.enabled = True
        return config
    config = run_locally(config)
    config.model.layers = "all"  # every block of the tiny ViT in one extraction and one probe sweep: a depth curve
    config.probe.lambdas = (1e-2, 1e-3, 1e-4)  # 5 layers x 3 lambdas x 3 folds keep the demo within seconds
    if args.alignet:  # one layer: the pool is extracted for model.layer
        config.model.layers = ""
    if args.glocal:  # 3 lambdas x (alpha 0 + 2 alphas x 2 taus) x 3 folds of one layer
        config.model.layers = ""
        config.probe.local.batch_size = 256
    return config
