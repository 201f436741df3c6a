"""The run's local image set for gLocal (`probe.local.*`, docs/glocal.md): features from a file, or images
(a folder, or `tfds:NAME:SPLIT`) run through config.model into the feature store `workdir/features/`,
so a second run reuses them; split into training and held-out rows (alignment_jax/data/local_set.py).
"""

import os

import ml_collections

from alignment_jax.data.features import load_features
from alignment_jax.data.local_set import LocalSet, check_dims, load_local_set, make_local_set
from alignment_jax.errors import InputError
from alignment_jax.evaluation.locality import transform_locality
from alignment_jax.extract.sources import ImageSource, folder_source, tfds_source
from alignment_jax.probing.glocal import GlocalSettings
from alignment_jax.probing.transform import Transform
from alignment_jax.run_context import RunContext

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


def check_inputs(ctx: RunContext) -> None:
    """The local set's feature files or image folder are there (after the demo world wrote its own)."""
    local = ctx.config.probe.local
    for field in ("features", "test_features"):
        path = local[field]
        if path and not os.path.isfile(path):
            raise InputError(f"{path}: local feature file not found (probe.local.{field})")
    if local.images:
        kind, where, _ = parse_images(local.images)
        if kind == "folder" and not os.path.isdir(where):
            raise InputError(f"probe.local.images={where}: image folder not found (or write tfds:NAME:SPLIT)")


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


def local_set(ctx: RunContext, dim: int) -> LocalSet:
    """The run's local set, its features in the space of the THINGS features (dim = their p)."""
    config = ctx.config
    local = config.probe.local
    heldout = GlocalSettings.from_config(config.probe).heldout
    if not (local.features or local.images):
        raise InputError("no local images: set probe.local.features=FILE.npy or probe.local.images=FOLDER")
    if local.features:
        result = load_local_set(local.features, local.test_features, heldout, config.seed)
    else:
        from alignment_jax.extract.pipeline import extract_with_config

        extraction, store = extract_with_config(config, image_source(config), os.path.join(ctx.workdir, "features"))
        if extraction.computed:
            ctx.log(f"local images: {extraction.computed} extracted ({extraction.images_per_s:.1f} images/s), {store}")
        test = load_features(local.test_features) if local.test_features else None
        result = make_local_set(extraction.features, store, test, heldout, config.seed)
    check_dims(result, dim, ctx.features_path or "THINGS features")
    return result


def locality(ctx: RunContext, transform: Transform) -> dict:
    """`transform_locality` of `transform` on the held-out local images at the first of probe.taus:
    {"local_heldout_loss", "local_knn_overlap", "local_tau", "local_k", "local_n_heldout"}; {} (and a
    log line) when nothing is held out."""
    local = local_set(ctx, transform.dim)
    if local.heldout is None:
        ctx.log("local measures: no held-out local images (probe.local.heldout=0 and no test_features)")
        return {}
    if local.heldout.shape[0] <= KNN:
        raise InputError(
            f"{local.source}: {local.heldout.shape[0]} held-out local images; the {KNN}-NN overlap needs at least "
            f"{KNN + 1} (raise probe.local.heldout, or give probe.local.test_features)"
        )
    return transform_locality(transform, local.heldout, float(ctx.config.probe.taus[0]), KNN)


def locality_line(name: str, section: dict) -> str:
    """The log line of the `locality` measures in `section`."""
    return (
        f"{name}: {section['local_k']}-NN overlap {section['local_knn_overlap']:.3f}, contrastive loss "
        f"{section['local_heldout_loss']:.4f} (tau {section['local_tau']:g}) on {section['local_n_heldout']} "
        "held-out local images"
    )
