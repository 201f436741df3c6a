"""The settings every run config starts from; `configs/*.py` override a few fields of it."""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    """Every field of a run, with its default."""
    config = ml_collections.ConfigDict()
    config.stages = ""  # comma-separated subset of stages.ORDER; "" = every stage whose inputs are set
    config.seed = 0
    config.features = ""  # THINGS features (n_objects, p): .npy or .h5 (dataset "features"); row i = object i
    config.similarity = "cosine"  # cosine | dot | euclidean

    config.things = ml_collections.ConfigDict()
    config.things.root = ""  # ROOT/triplets/{train_90,test_10}.npy (+ ROOT/things_concepts.tsv)
    config.things.train = ""  # or explicit files: .npy or text, (T, 3), column 2 = odd one out
    config.things.test = ""
    config.things.objects = ""  # things_concepts.tsv (uniqueID column) or a plain list, one id per line
    config.things.one_based = False  # the triplet files count objects from 1

    config.zero_shot = ml_collections.ConfigDict()
    config.zero_shot.bootstrap = 1000  # resamples for the 95% CI (0 = none)

    config.probe = ml_collections.ConfigDict()
    config.probe.lambdas = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
    config.probe.lrs = ()  # learning rates to sweep too; () = just `lr`
    config.probe.folds = 3
    config.probe.protocol = "fast"  # fast (object-level, large batch) | paper (batch 256 minibatches)
    config.probe.regularizer = "frobenius"  # frobenius | frobenius_sq | identity | orthonormal
    config.probe.optimizer = "adam"  # adam | adamw | sgd (momentum 0.9)
    config.probe.lr = -1.0  # -1 = the protocol's default
    config.probe.batch_size = -1  # -1 = the protocol's default; 0 = full batch
    config.probe.epochs = -1
    config.probe.min_epochs = 10
    config.probe.patience = 10
    config.probe.min_delta = 1e-4
    config.probe.clip_norm = 1.0
    config.probe.bias = False
    config.probe.init = "normal"  # normal: N(0, init_scale^2) | identity: init_scale * I
    config.probe.init_scale = 1e-3
    config.probe.standardize = "global"  # global (one scalar mean/std) | per_dim | none
    config.probe.select_by = "cross_entropy"  # cross_entropy | accuracy
    config.probe.temperature = 1.0

    config.model = ml_collections.ConfigDict()
    config.model.name = ""  # a registry entry (alignment_jax.models.registry), or "" for a custom model
    config.model.variant = ""  # e.g. "B/16" when no registry name is given
    config.model.checkpoint = ""  # local path, gs:// path, or orbax directory
    config.model.layer = ""  # named intermediate output; "" = the registry default
    config.model.dtype = "float32"  # float32 | bfloat16 matmuls

    config.images = ml_collections.ConfigDict()
    config.images.root = ""  # THINGS layout: images/<uniqueID>.jpg or images/<uniqueID>/<first file>
    config.images.batch_size = 64

    config.transfer = ml_collections.ConfigDict()
    config.concepts = ml_collections.ConfigDict()
    config.report = ml_collections.ConfigDict()
    config.report.plots = True
    return config
