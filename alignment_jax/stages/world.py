"""Stage world: writes the bundled synthetic THINGS-like world to WORKDIR/world and points the config at it.

It makes the demo runnable on a fresh machine with no download. In the THINGS layout: train and test
triplets, a separate set of triplets each asked several times (for the noise ceiling), object ids, and
either images rendered from the objects' concepts (`world.images`, for the extract stage's model) or
ready-made features; the planted concept embedding with its labels (concepts stage); a held-out
dataset of further objects with a human similarity matrix (transfer stage, generic `rsm` layout); and,
with `world.n_local`, a local image set of further objects without human data for gLocal
(WORKDIR/world/local: images/ or features.npy; probe.local points at it); with `world.n_levels`, a small
Levels set in the release's format (WORKDIR/world/levels: trials/*.json and images/ or features.npy;
levels.root points at it; alignment_jax/data/synthetic.py `make_levels`).
"""

import io
import json
import os

import numpy as np

from alignment_jax import atomic
from alignment_jax import provenance as facts
from alignment_jax.config import checks
from alignment_jax.data.render import render
from alignment_jax.data.synthetic import World, make_levels, make_world
from alignment_jax.errors import InputError
from alignment_jax.run_context import RunContext
from alignment_jax.stages import ALL_SETTINGS

READS = ("features_path", "workdir")
SETTINGS = ALL_SETTINGS  # it checks every input it replaces and points the config at the files it writes
WRITES = ("features_path",)


def has_inputs(config) -> bool:
    return bool(config.world.enabled)


def check(config) -> None:
    for field, minimum in (("n_objects", 3), ("n_concepts", 1), ("n_train", 1), ("n_test", 0)):
        checks.integer(config, f"world.{field}", minimum=minimum)
    checks.integer(config, "world.n_dims", minimum=config.world.n_concepts)
    checks.integer(config, "world.n_repeated_sets", minimum=0)
    checks.integer(config, "world.n_local", minimum=0)
    checks.integer(config, "world.n_levels", minimum=0)
    checks.integer(config, "world.n_transfer", minimum=3)  # RSA needs 3 stimuli
    checks.integer(config, "world.image_size", minimum=8, maximum=1024)


def provenance(ctx: RunContext) -> dict:
    return facts.settings(ctx.config, "world", "seed")


# Inputs the world replaces with its own: a value the user gives them would be silently unused.
# (things.train, things.test and things.objects name files that are read instead of the world's: used.)
REPLACED = ("things.root", "images.source", "images.root", "images.list", "images.tfds_name")


def check_unused_inputs(config) -> None:
    """InputError naming the first input setting that differs from its default while the world, which
    replaces it, is enabled (e.g. images.root with configs/demo.py)."""
    from alignment_jax.config.base import base_config

    defaults = base_config()
    for field in REPLACED:
        value = checks.get(config, field)
        if value != checks.get(defaults, field):
            raise InputError(
                f"{field}={value!r} is not used: the demo world (world.enabled=True, set by the config or its "
                "runlocal) provides the THINGS data and images; drop that setting, or set world.enabled=False "
                "to run on your own data"
            )


def configure(config, root: str) -> None:
    """Points `config` at the world written to `root` (what `run` does to the config, without writing):
    THINGS root, noise-ceiling triplets, images or features, concept embedding, transfer dataset, local set,
    where the user set none."""
    settings = config.world
    transfer = os.path.join(root, "transfer_rsm")
    config.things.root = root
    if not config.things.noise_ceiling_triplets:
        config.things.noise_ceiling_triplets = os.path.join(root, "triplets", "noise_ceiling.npy")
    if settings.images:
        config.images.source, config.images.root = "things", os.path.join(root, "images")
    elif not config.features:
        config.features = os.path.join(root, "features.npy")
        config.transfer.features = f"transfer_rsm:{os.path.join(transfer, 'features.npy')}"
    if not config.concepts.embedding:
        config.concepts.embedding = os.path.join(root, "concept_embedding.npy")
        config.concepts.labels = os.path.join(root, "concept_labels.txt")
    if not config.transfer.datasets:
        config.transfer.datasets = f"rsm:{transfer}"
    if settings.n_levels and not config.levels.root:
        config.levels.root = os.path.join(root, "levels")
        if not settings.images and not config.levels.features:
            config.levels.features = os.path.join(root, "levels", "features.npy")
    local = config.probe.local
    if settings.n_local and not (local.features or local.images):
        if settings.images:
            local.images = os.path.join(root, "local", "images")
        else:
            local.features = os.path.join(root, "local", "features.npy")
    teacher = config.teacher  # the local set is also the pool of unlabeled images the teacher labels (AligNet)
    if settings.n_local and teacher.n_triplets and not (teacher.images or teacher.features):
        teacher.images, teacher.features = local.images, local.features


def root_of(workdir: str) -> str:
    return os.path.join(workdir, "world")


def run(ctx: RunContext) -> dict:
    settings, config = ctx.config.world, ctx.config
    sizes = ("n_objects", "n_concepts", "n_dims", "n_train", "n_test", "n_repeated_sets", "n_transfer", "n_local")
    world = make_world(**{name: settings[name] for name in sizes}, seed=config.seed)
    root = root_of(ctx.workdir)
    ids = [f"object_{i:04d}" for i in range(settings.n_objects)]
    _save_npy(os.path.join(root, "triplets", "train_90.npy"), world.train)
    _save_npy(os.path.join(root, "triplets", "test_10.npy"), world.test)
    _save_npy(os.path.join(root, "triplets", "noise_ceiling.npy"), world.repeats)
    _write(os.path.join(root, "things_concepts.tsv"), ("uniqueID\n" + "\n".join(ids) + "\n").encode())
    _save_npy(os.path.join(root, "concept_embedding.npy"), world.embedding)
    _write(os.path.join(root, "concept_labels.txt"), ("\n".join(world.concept_names) + "\n").encode())
    _write_transfer(world, os.path.join(root, "transfer_rsm"), settings, config.seed)
    given_features = config.features
    configure(config, root)
    if settings.images:
        _write_images(os.path.join(root, "images"), ids, render(world.embedding, settings.image_size, config.seed))
    elif not given_features:
        ctx.features_path = config.features
        _save_npy(config.features, world.features)
    if settings.n_local:
        _write_local(world, os.path.join(root, "local"), settings, config.seed)
    if settings.n_levels:
        _write_levels(world, os.path.join(root, "levels"), settings, config.seed)
    ctx.log(
        f"world: {settings.n_objects} objects ({'images' if settings.images else 'features'}), "
        f"{len(world.train):,} train / {len(world.test):,} test triplets, {settings.n_concepts} planted concepts, "
        f"{settings.n_transfer} held-out objects for transfer"
        + (f", {settings.n_local} local images" if settings.n_local else "")
        + (f", a Levels set ({settings.n_levels} triplets per level)" if settings.n_levels else "")
        + f" -> {root}"
    )
    return {"root": root, "n_objects": settings.n_objects, "n_concepts": settings.n_concepts, "images": settings.images}


def _write_transfer(world: World, folder: str, settings, seed: int) -> str:
    """Held-out objects: human similarity = the planted embedding's dot products, images or features."""
    embedding = world.transfer_embedding
    _save_npy(os.path.join(folder, "similarity.npy"), embedding @ embedding.T)
    if settings.images:
        names = [f"stimulus_{i:03d}" for i in range(len(embedding))]
        _write_images(os.path.join(folder, "images"), names, render(embedding, settings.image_size, seed + 1))
    else:
        _save_npy(os.path.join(folder, "features.npy"), world.transfer_features)
    return folder


def _write_local(world: World, folder: str, settings, seed: int) -> None:
    """gLocal's local set: rendered images (for the run's model) or features."""
    if settings.images:
        names = [f"local_{i:05d}" for i in range(len(world.local_embedding))]
        _write_images(
            os.path.join(folder, "images"), names, render(world.local_embedding, settings.image_size, seed + 2)
        )
    else:
        _save_npy(os.path.join(folder, "features.npy"), world.local_features)


def _write_levels(world: World, folder: str, settings, seed: int) -> None:
    """A Levels set in the release's format: trials/subject_*.json (JSON lines) and images/ (or features.npy,
    rows in sorted file-name order)."""
    levels = make_levels(world, n_per_level=settings.n_levels, seed=seed + 3)
    for part in range(2):  # two trial files, like a release split by session
        lines = "".join(json.dumps(row) + "\n" for row in levels.trials[part::2])
        _write(os.path.join(folder, "trials", f"part_{part}.json"), lines.encode())
    order = np.argsort(levels.names)
    if settings.images:
        stems = [levels.names[i][: -len(".png")] for i in order]
        _write_images(
            os.path.join(folder, "images"), stems, render(levels.embedding[order], settings.image_size, seed + 3)
        )
    else:
        _save_npy(os.path.join(folder, "features.npy"), levels.features[order])


def _write_images(folder: str, names: list[str], images: np.ndarray) -> None:
    """images: (n, H, W, 3) uint8 -> folder/<name>.png, each written atomically, and only when its bytes
    change: a rerun leaves the files (and their modification times) alone, so the feature store is reused."""
    from PIL import Image

    for name, image in zip(names, images, strict=True):
        path = os.path.join(folder, f"{name}.png")
        encoded = io.BytesIO()
        Image.fromarray(image).save(encoded, format="PNG")
        _write(path, encoded.getvalue())


def _save_npy(path: str, array: np.ndarray) -> None:
    encoded = io.BytesIO()
    np.save(encoded, np.asarray(array))
    _write(path, encoded.getvalue())


def _write(path: str, data: bytes) -> None:
    """Writes `data` atomically, only when the file does not already hold exactly it: a rerun leaves the
    files (and their modification times) alone."""
    if not _holds(path, data):
        atomic.write_bytes(path, data)


def _holds(path: str, data: bytes) -> bool:
    """Whether the file at `path` exists and holds exactly `data`."""
    if not os.path.exists(path):
        return False
    with open(path, "rb") as f:
        return f.read() == data
