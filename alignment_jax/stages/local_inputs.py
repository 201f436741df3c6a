"""The run's local image set for gLocal (`probe.local.*`, docs/glocal.md): features from a file, or images
(a folder, or `tfds:NAME:SPLIT`) run through config.model into the feature store `workdir/features/`,
so a second run reuses them (with model.layers every layer in one pass); split into training and held-out
rows (alignment_jax/data/local_set.py).
"""

import os

import ml_collections

from alignment_jax.data.features import load_features
from alignment_jax.data.local_set import LocalSet, check_counts, check_dims, load_local_set, make_local_set
from alignment_jax.errors import InputError
from alignment_jax.evaluation.locality import transform_locality
from alignment_jax.extract.sources import ImageSource, folder_source, tfds_source
from alignment_jax.probing.glocal import GlocalSettings
from alignment_jax.probing.transform import Transform
from alignment_jax.provenance import file_digest
from alignment_jax.run_context import RunContext

READS = ("features", "features_path", "layer", "layer_features", "layer_paths", "layers", "model_runner", "workdir")
SETTINGS = ("probe", "seed", "model", "images", "progress", "world.enabled", "world.n_local")

TFDS_PREFIX = "tfds:"
KNN = 10  # neighbours compared by local_knn_overlap


def has_local(config: ml_collections.ConfigDict) -> bool:
    """A local set is configured (features or images), or the demo world will write one (world.n_local)."""
    world = config.world.enabled and config.world.n_local > 0
    return bool(config.probe.local.features or config.probe.local.images or world)


def check(config: ml_collections.ConfigDict) -> None:
    """The objective's settings, before anything slow runs."""
    settings = GlocalSettings.from_config(config.probe)
    local = config.probe.local
    if local.features and local.images:
        raise InputError("probe.local: set features or images, not both")
    if local.images:
        parse_images(local.images)
        if not (config.model.name or config.model.variant):
            raise InputError(
                "probe.local.images: extracting the local images needs config.model (the model of the THINGS "
                "features); or give their features as probe.local.features"
            )
    if settings.objective == "glocal" and not has_local(config):
        raise InputError(
            "probe.objective=glocal needs local images: set probe.local.features=FILE.npy (row = image) or "
            "probe.local.images=FOLDER (or tfds:NAME:SPLIT, e.g. tfds:imagenet2012:train[:50000])"
        )
    if settings.objective == "glocal" and local.features and config.model.layers.strip():
        raise InputError(
            f"probe.local.features holds one layer's features, but model.layers={config.model.layers!r} trains gLocal "
            "on every layer: give the images (probe.local.images) to extract each layer, or set model.layers=''"
        )


def check_inputs(ctx: RunContext) -> None:
    """The local set's feature files (read and checked: shape, finite values) or image folder are there (after
    the demo world wrote its own), and hold enough images for the held-out measures and the local term's
    training and validation (data/local_set.py: check_counts)."""
    local = ctx.config.probe.local
    for field in ("features", "test_features"):
        path = local[field]
        if path and not os.path.isfile(path):
            raise InputError(f"{path}: local feature file not found (probe.local.{field})")
    n_images = None
    if local.images:
        kind, where, _ = parse_images(local.images)
        if kind == "folder" and not os.path.isdir(where):
            raise InputError(f"probe.local.images={where}: image folder not found (or write tfds:NAME:SPLIT)")
        if kind == "folder":
            n_images = len(folder_source(where))
    if local.features:
        n_images = load_features(local.features).shape[0]
    if n_images is None:  # a TFDS split: counted when it is extracted
        return
    n_test = load_features(local.test_features).shape[0] if local.test_features else None
    settings = GlocalSettings.from_config(ctx.config.probe)
    trains = settings.objective == "glocal"
    source = local.features or local.images
    check_counts(n_images, n_test, settings.heldout, settings.validation, trains, KNN, source)


def provenance(ctx: RunContext) -> dict:
    """The bytes of the local feature files, when given (their paths are among the probe.local settings)."""
    local = ctx.config.probe.local
    return {f"local_{field}": file_digest(local[field]) for field in ("features", "test_features") if local[field]}


def parse_images(spec: str) -> tuple[str, str, str]:
    """`probe.local.images` -> ("folder", path, "") or ("tfds", name, split); the split may hold ':'."""
    if spec.startswith(TFDS_PREFIX):
        name, sep, split = spec[len(TFDS_PREFIX) :].partition(":")
        if not (name and sep and split):
            raise InputError(f"probe.local.images={spec!r}: write tfds:NAME:SPLIT, e.g. tfds:imagenet2012:train")
        return "tfds", name, split
    return "folder", spec, ""


def image_source(config: ml_collections.ConfigDict) -> ImageSource:
    """The local images as an ImageSource (TFDS reads images.tfds_data_dir and the `image` feature)."""
    kind, where, split = parse_images(config.probe.local.images)
    if kind == "tfds":
        return tfds_source(where, split, "image", config.images.tfds_data_dir)
    return folder_source(where)


def local_sets(ctx: RunContext) -> dict[str, LocalSet]:
    """The run's local set in the space of each layer's features: {layer: LocalSet} for every layer of
    model.layers when the images are extracted (one pass), else {main layer: LocalSet} (a features file
    holds one layer: model.layer's; so does probe.local.test_features: the other layers then have no
    held-out images). The main layer is ctx.layer ("" without model.layers)."""
    config = ctx.config
    local = config.probe.local
    heldout = GlocalSettings.from_config(config.probe).heldout
    if not (local.features or local.images):
        raise InputError("no local images: set probe.local.features=FILE.npy or probe.local.images=FOLDER")
    if local.features:
        result = load_local_set(local.features, local.test_features, heldout, config.seed)
        check_dims(result, ctx.features.shape[1], ctx.features_path or "THINGS features")
        return {ctx.layer: result}
    from alignment_jax.extract.pipeline import extract_layers_with_config

    layers = config.model.layers if ctx.layers else ""
    extraction = extract_layers_with_config(
        config, image_source(config), os.path.join(ctx.workdir, "features"), layers, runner=ctx.model_runner
    )
    computed = sum(e.computed for e, _ in extraction.layers.values())
    if computed:
        first, store = next(iter(extraction.layers.values()))
        where = os.path.dirname(store)
        ctx.log(f"local images: {first.computed} extracted ({first.images_per_s:.1f} images/s) into {where}")
    test = load_features(local.test_features) if local.test_features else None
    sets = {}
    for layer, (result, store) in extraction.layers.items():
        name = layer if ctx.layers else ctx.layer
        if test is not None and layer != extraction.default:  # the test file holds model.layer's features only
            sets[name] = LocalSet(result.features, None, store)
        else:
            sets[name] = make_local_set(result.features, store, test, heldout, config.seed)
        features = ctx.layer_features(layer) if ctx.layers else ctx.features
        check_dims(sets[name], features.shape[1], ctx.layer_paths.get(layer, ctx.features_path) or "THINGS features")
    return sets


def locality(ctx: RunContext, local: LocalSet, transform: Transform, tau: float) -> dict:
    """`transform_locality` of `transform` on the held-out images of `local` at temperature tau:
    {"local_heldout_loss", "local_knn_overlap", "local_tau", "local_k", "local_n_heldout"}; {} (and a
    log line) when nothing is held out."""
    if local.heldout is None:
        ctx.log("local measures: no held-out local images (probe.local.heldout=0 and no test_features)")
        return {}
    if local.heldout.shape[0] <= KNN:
        raise InputError(
            f"{local.source}: {local.heldout.shape[0]} held-out local images; the {KNN}-NN overlap needs at least "
            f"{KNN + 1} (raise probe.local.heldout, or give probe.local.test_features)"
        )
    return transform_locality(transform, local.heldout, tau, KNN)


def locality_line(name: str, section: dict) -> str:
    """The log line of the `locality` measures in `section`."""
    return (
        f"{name}: {section['local_k']}-NN overlap {section['local_knn_overlap']:.3f}, contrastive loss "
        f"{section['local_heldout_loss']:.4f} (tau {section['local_tau']:g}) on {section['local_n_heldout']} "
        "held-out local images"
    )
