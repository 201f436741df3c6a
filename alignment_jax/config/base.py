"""The settings every run config starts from; `configs/*.py` override a few fields of it."""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    """Every field of a run, with its default."""
    config = ml_collections.ConfigDict()
    config.stages = ""  # comma-separated subset of stages.ORDER; "" = every stage whose inputs are set
    config.seed = 0
    config.features = ""  # THINGS features (n_objects, p): .npy or .h5 (dataset "features"); row i = object i
    config.similarity = "cosine"  # cosine | dot | euclidean
    # evaluate a given transform instead of training the probe: a transform.npz (keys weights, bias, mean, std;
    # gLocal, thingsvision or an earlier run), or a folder in gLocal's layout FOLDER/<model>/<module>/transform.npz
    # with transform_model (e.g. clip_ViT-L/14) and transform_module (e.g. visual)
    config.transform = ""
    config.transform_model = ""
    config.transform_module = ""
    # auto: bars on a terminal or in a notebook, a few plain lines elsewhere (log files, CI) | bar | lines | off
    config.progress = "auto"
    # JAX's persistent compilation cache, so a rerun or the next model with the same shapes skips compiling:
    # auto (<package cache folder>/jax, or JAX_COMPILATION_CACHE_DIR when set) | off | a folder
    config.compilation_cache = "auto"

    config.world = ml_collections.ConfigDict()  # the bundled synthetic world (configs/demo.py)
    config.world.enabled = False
    config.world.n_objects = 300
    config.world.n_concepts = 10
    config.world.n_dims = 64
    config.world.n_train = 60_000
    config.world.n_test = 10_000
    config.world.n_repeated_sets = 500
    config.world.n_transfer = 60  # further objects with a human RSM: the transfer dataset
    config.world.n_local = 0  # further objects without human data: gLocal's local image set (probe.local points at it)
    config.world.n_levels = 0  # random triplets per level of a small Levels set (levels.root points at it); 0 = none
    config.world.images = False  # render images for the extract stage instead of writing features
    config.world.image_size = 32

    config.things = ml_collections.ConfigDict()
    config.things.root = ""  # ROOT/triplets/{train_90,test_10}.npy (+ ROOT/things_concepts.tsv)
    config.things.train = ""  # or explicit files: .npy or text, (T, 3), column 2 = odd one out
    config.things.test = ""
    config.things.objects = ""  # things_concepts.tsv (uniqueID column) or a plain list, one id per line
    config.things.one_based = False  # the triplet files count objects from 1
    # triplets asked repeatedly, for the human noise ceiling (same formats as train/test; THINGS publishes them)
    config.things.noise_ceiling_triplets = ""
    config.things.noise_ceiling_min_sets = 30  # without that file: repeated sets the train/test data need for one

    # AligNet's teacher triplets (docs/alignet.md): with alignet.train the probe trains on them instead of THINGS
    config.alignet = ml_collections.ConfigDict()
    config.alignet.train = ""  # alignet_train.npz: filenames, similarities [s01, s02, s12], indices, each (n, 3)
    config.alignet.test = ""  # alignet_valid.npz: scored as the probe's test_divergence and test_accuracy
    # features of the image set: the distinct file names of train + test in sorted order, one row each (.npy/.h5)
    config.alignet.features = ""
    # or the images, extracted with config.model: FOLDER/<name> or FOLDER/<synset>/<name>, or tfds:NAME:SPLIT (the
    # files' `indices` into it: AligNet's tfds:imagenet2012:train; TFDS data in images.tfds_data_dir)
    config.alignet.images = ""

    # the teacher stage: AligNet-format triplets labelled by config.model's features (+ a transform) (docs/alignet.md)
    config.teacher = ml_collections.ConfigDict()
    # FOLDER/<class>/<file> (ImageNet's train layout) or tfds:NAME:SPLIT (AligNet's tfds:imagenet2012:train, in
    # images.tfds_data_dir: names from its file_name feature, classes from label, `indices` = positions in the split);
    # images named by file name, rows in sorted file-name order
    config.teacher.images = ""
    config.teacher.features = ""  # or their features (n_images, p), rows in sorted file-name order ("" = extract)
    config.teacher.n_triplets = 0  # triplets to write (AligNet: 10,000,000); 0 = no teacher stage
    config.teacher.proportions = (1 / 3, 1 / 3, 1 / 3)  # between_class, class_border, within_class
    config.teacher.classes = "labels"  # labels: class subfolders or TFDS labels | kmeans: clusters of teacher rows
    config.teacher.n_clusters = 500  # k of teacher.classes=kmeans (AligNet: 500)
    config.teacher.similarity = "cosine"  # cosine | dot of the transformed features
    config.teacher.transform = "auto"  # auto: the run's transform (the probe's, or config.transform) if any | none
    config.teacher.seed = 0  # sampling (shard i from (seed, i)) and k-means initialization
    config.teacher.shard_size = 1_000_000  # triplets per .npz shard (each written atomically; a rerun resumes)

    # the student stage: a probe trained on the teacher stage's triplets alone, scored on THINGS' test triplets
    config.student = ml_collections.ConfigDict()
    config.student.objective = ""  # "" = no student stage | kl | jsd (AligNet's divergences to the soft targets)
    config.student.taus = (0.5, 1.0, 2.0)  # temperatures of its prediction, swept with probe.lambdas

    config.zero_shot = ml_collections.ConfigDict()
    config.zero_shot.bootstrap = 1000  # resamples for the 95% CI (0 = none)

    config.probe = ml_collections.ConfigDict()
    config.probe.lambdas = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
    config.probe.lrs = ()  # learning rates to sweep too; () = just `lr`
    config.probe.folds = 3
    config.probe.split = "objects"  # objects: the paper's CV over objects | triplets: plain k-fold over triplets
    config.probe.protocol = "fast"  # fast (object-level, large batch) | paper (batch 256 minibatches)
    # frobenius | frobenius_sq | identity | orthonormal; "" = the objective's: frobenius (global, the paper's) |
    # identity (glocal, gLocal's ||W - mean(diag W) I||^2)
    config.probe.regularizer = ""
    config.probe.optimizer = "adam"  # adam | adamw | sgd (momentum 0.9)
    config.probe.lr = -1.0  # -1 = the protocol's default
    config.probe.batch_size = -1  # -1 = the protocol's default; 0 = full batch
    config.probe.epochs = -1
    config.probe.min_epochs = 10
    config.probe.patience = 10
    config.probe.min_delta = 1e-4
    config.probe.clip_norm = 1.0
    config.probe.bias = False
    # normal: W ~ N(0, init_scale^2), bias 0 | identity: W = init_scale * I, bias init_scale (gLocal's); "" = the
    # objective's: normal (global) | identity (glocal)
    config.probe.init = ""
    config.probe.init_scale = 1e-3
    config.probe.standardize = "global"  # global (one scalar mean/std) | per_dim | none
    config.probe.select_by = "cross_entropy"  # cross_entropy | accuracy
    config.probe.temperature = 1.0
    # global (the paper's) | glocal: (1 - alpha) triplet + alpha local + lambda R | kl | jsd: AligNet's divergence
    # between soft targets (softmax of alignet.train's similarities) and softmax(s / tau), + lambda R
    config.probe.objective = "global"
    # glocal: weights of the local term, swept like lambdas; alpha = 0 is the global probe, trained in the same
    # sweep and reported beside gLocal's choice (`global_probe`)
    config.probe.alphas = (0.0, 0.1, 0.25)
    # glocal: temperatures of the local term (the first scores global/given transforms); kl | jsd: temperatures of
    # the prediction q = softmax(s / tau), swept with lambda in the same program and selected by validation divergence
    config.probe.taus = (0.1, 1.0)
    config.probe.local = ml_collections.ConfigDict()  # gLocal's local image set (docs/glocal.md)
    config.probe.local.batch_size = 1024  # local images per step (gLocal's)
    config.probe.local.features = ""  # features of the local images (n_local, p): .npy or .h5; row = image
    config.probe.local.images = ""  # or the images, extracted with config.model: FOLDER | tfds:NAME:SPLIT
    config.probe.local.test_features = ""  # held-out local features for evaluation ("" = hold out `heldout`)
    config.probe.local.heldout = 0.1  # fraction of the local images held out for evaluation (random, by seed)
    config.probe.local.validation = 0.1  # fraction of the others that validate (early stopping, selection); by seed
    config.probe.local.standardize = "none"  # none: raw rows into W (gLocal) | things: THINGS mean/std first
    config.probe.memory_gb = 0.0  # device memory the sweep may use per device; 0 = 70% of the free memory (or RAM)

    config.model = ml_collections.ConfigDict()
    config.model.name = ""  # a registry entry (alignment_jax.models.registry), or "" for a custom model
    config.model.variant = ""  # e.g. "B/16" when no registry name is given
    config.model.checkpoint = ""  # local path, gs:// path, or orbax directory
    config.model.layer = ""  # named intermediate output; "" = the registry default
    # more layers in the same extraction pass, each through every stage: "" = model.layer alone | all = every
    # transformer block (block00, ...) and model.layer | a comma list, e.g. block03,block07,pre_logits
    config.model.layers = ""
    # float32: full float32 matmuls on every device (the CPU's numbers on a GPU) | tensorfloat32: TF32 tensor
    # cores on NVIDIA GPUs (faster, ~1e-3 relative error) | bfloat16: bfloat16 inputs (fastest); README: Precision
    config.model.dtype = "float32"
    config.model.normalization = ""  # "" = the model's own | minus_one_one | imagenet | clip (mean/std)
    config.model.image_size = 0  # input side in pixels; 0 = the registry's, else the checkpoint's grid, else 224
    # runlocal: a tiny random stand-in of the registry entry, written in its checkpoint's file format and read
    # through the real loader, preprocessing and layer selection (alignment_jax/models/standins.py)
    config.model.standin = False
    config.model.cache_dir = ""  # where remote checkpoints are copied; "" = $ALIGNMENT_JAX_CACHE or ~/.cache/...

    config.images = ml_collections.ConfigDict()
    config.images.source = "things"  # things | folder | tfds (alignment_jax/extract/sources.py)
    # things: folder of <uniqueID>.jpg or <uniqueID>/<first file> ("" = things.root/images), in things.objects order;
    # folder: every image under it (sorted relative paths), or the folder the `list` paths are relative to
    config.images.root = ""
    config.images.list = ""  # folder: a text file with one image path per line (row order)
    config.images.tfds_name = ""  # tfds: a TFDS name (in tfds_data_dir) or a prepared dataset folder
    config.images.tfds_split = "test"
    config.images.tfds_data_dir = ""
    config.images.image_key = "image"  # tfds: the image feature
    config.images.id_key = ""  # tfds: a feature holding the image id ("" = the example index)
    config.images.batch_size = 64  # global batch, rounded up to a multiple of the device count
    # model: the model's own resizing | full: squash to its size | center_crop: shorter side, then centre crop
    config.images.resize = "model"
    config.images.jpeg_draft = False  # decode JPEGs at a reduced scale first (faster, slightly different pixels)
    config.images.token_pooling = "cls"  # token layers (B, T, p): cls (token 0) | mean (of the patch tokens)
    config.images.store_format = "npy"  # npy | h5 (needs h5py; thingsvision layout)
    config.images.shard_size = 1024  # images per store shard: the unit of resuming after a kill
    config.images.num_workers = 0  # decoding threads (0 = one per CPU core)
    config.images.prefetch = 2  # batches decoded ahead of the model
    # decoded pixels, kept for every later model and run with the same decoding (alignment_jax/extract/image_cache.py):
    # auto (<package cache folder>/images, shared by all runs and sweeps) | off | a folder
    config.images.cache = "auto"

    config.transfer = ml_collections.ConfigDict()
    # KIND:PATH,... with KIND = peterson[_<category>] | cichy | king[_set1|_set2] | rsm | triplets
    # (layouts: alignment_jax/data/rsm_datasets.py), e.g. "peterson:/data/peterson,cichy:/data/cichy118"
    config.transfer.datasets = ""
    # features per dataset, row i = stimulus i: NAME:FILE entries (.npy/.h5) and/or folders holding NAME.npy,
    # e.g. "peterson_animals:/f/a.npy,/f/transfer"; datasets without any are extracted with config.model
    config.transfer.features = ""
    config.transfer.kernels = "cosine,pearson"  # model RSM kernels: cosine | pearson
    config.transfer.bootstrap = 0  # resamples over stimuli for 95% CIs of the RSA correlations (0 = none)
    config.transfer.layers = ""  # per layer too (each with its own transform): all | a comma list of model.layers

    config.concepts = ml_collections.ConfigDict()
    config.concepts.embedding = ""  # VICE/SPoSE weights (n_objects, d) >= 0: .npy or whitespace text
    config.concepts.labels = ""  # dimension names, one per line ("" = dimension 1, 2, ...)
    config.concepts.top_k = 1  # a triplet counts towards its top_k concepts (by mean weight of the chosen pair)
    config.concepts.layers = ""  # per layer too (each with its own transform): all | a comma list of model.layers

    config.levels = ml_collections.ConfigDict()  # Levels (Muttenthaler et al. 2025): alignment per abstraction level
    config.levels.root = ""  # the release's trial files: *.json (JSON lines, one trial each) under ROOT, recursively
    config.levels.images = ""  # its images, matched by file name anywhere under the folder ("" = ROOT/images)
    # or their features (n_images, p): .npy or .h5, row i = the i-th image in sorted file-name order; "" = extract
    # them from levels.images with config.model (a store in WORKDIR/features, like the THINGS images)
    config.levels.features = ""
    config.levels.max_rt_ms = 10_000  # trials with a longer response time (ms) are dropped
    config.levels.min_responses = 4  # triplets with fewer kept responses are dropped
    config.levels.max_responses = 5  # triplets with more keep a random sample (by seed) of this many

    config.report = ml_collections.ConfigDict()
    config.report.plots = True  # PNG figures in DIR/plots/, embedded in DIR/report.md
    return config
