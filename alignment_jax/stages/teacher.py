"""Stage teacher: AligNet-format triplets labelled by a model (+ a transform) over an image set (docs/alignet.md).

Images: `teacher.images`, a folder with one subfolder per class (ImageNet's train layout), or a flat folder of
unlabeled images (then teacher.classes=kmeans); an image is named by its file name, and rows are in sorted
file-name order. Features: `teacher.features` (rows in that order) or extracted with config.model; features
alone (no images) name their rows image_0000000, ... and need teacher.classes=kmeans. The demo world's pool
of unlabeled images (world.n_local) is pointed at by the world stage when teacher.n_triplets is set.
Transform: the run's (the probe's transform.npz, or config.transform) with `teacher.transform=auto`, none with
`none`. Classes: the subfolders (`labels`) or k-means clusters of the
teacher rows (`kmeans`, k = teacher.n_clusters, computed in JAX; the cluster ids are saved). Output:
WORKDIR/teacher/ with the shards, manifest.json and classes.npy (class id per image row) plus names.txt.
"""

import os
import time

import numpy as np

from alignment_jax import atomic
from alignment_jax import provenance as facts
from alignment_jax.config import checks
from alignment_jax.data import teacher as triplets
from alignment_jax.data.features import load_features
from alignment_jax.errors import InputError
from alignment_jax.extract.sources import file_source, is_image_file
from alignment_jax.run_context import RunContext
from alignment_jax.stages.inputs import extracted_features

OUTPUTS = ("teacher",)
MEMORY = "teacher.shard_size (triplets per shard)"
CLASSES = ("labels", "kmeans")
TRANSFORMS = ("auto", "none")


def has_inputs(config) -> bool:
    teacher = config.teacher
    model = config.model.name or config.model.variant
    return teacher.n_triplets > 0 and bool(teacher.features or (teacher.images and model))


def check(config) -> None:
    teacher = config.teacher
    checks.integer(config, "teacher.n_triplets", minimum=0)
    checks.integer(config, "teacher.shard_size", minimum=1)
    checks.integer(config, "teacher.n_clusters", minimum=1)
    checks.integer(config, "teacher.seed", minimum=0)
    checks.choice(config, "teacher.classes", CLASSES)
    checks.choice(config, "teacher.similarity", triplets.SIMILARITIES)
    checks.choice(config, "teacher.transform", TRANSFORMS)
    proportions = checks.float_tuple(teacher.proportions, "teacher.proportions", "0.5,0.3,0.2")
    if len(proportions) != 3 or any(p < 0 for p in proportions) or sum(proportions) <= 0:
        raise InputError(
            f"teacher.proportions={teacher.proportions!r}: three shares >= 0 (between_class, class_border, "
            "within_class), not all 0; e.g. 0.5,0.3,0.2"
        )
    if teacher.n_triplets > 0 and not (teacher.images or teacher.features):
        raise InputError(
            "teacher.n_triplets set without images: teacher.images=FOLDER (one subfolder per class) or "
            "teacher.features=FILE.npy"
        )
    if teacher.n_triplets > 0 and not teacher.images and teacher.classes == "labels":
        raise InputError(
            "teacher.features without teacher.images has no class labels: set teacher.classes=kmeans, or give the "
            "class folders (teacher.images)"
        )
    if teacher.images and not (teacher.features or config.model.name or config.model.variant):
        raise InputError("teacher.images: give teacher.features=FILE.npy or a model (model.name) to extract them")


def image_set(folder: str) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """(names (n,) sorted file names, labels (n,) class id = index of the sorted subfolder (-1: a flat folder,
    no classes), paths, class names) of FOLDER/<class>/<file> or FOLDER/<file>."""
    if not os.path.isdir(folder):
        raise InputError(f"teacher.images={folder}: image folder not found")
    classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    entries = []
    for label, name in enumerate(classes):
        for root, _, files in os.walk(os.path.join(folder, name)):
            entries.extend((f, label, os.path.join(root, f)) for f in files if is_image_file(f))
    if not entries:  # a flat folder of unlabeled images
        classes = []
        entries = [(f, -1, os.path.join(folder, f)) for f in os.listdir(folder) if is_image_file(f)]
    if not entries:
        raise InputError(f"teacher.images={folder}: no image files (FOLDER/<class>/<file> or FOLDER/<file>)")
    entries.sort()
    names = np.array([e[0] for e in entries])
    repeated = names[1:][names[1:] == names[:-1]]
    if len(repeated):
        raise InputError(
            f"teacher.images={folder}: file name {repeated[0]!s} appears in two class folders; images are "
            "identified by file name, so names must be unique"
        )
    return names, np.array([e[1] for e in entries], np.int32), [e[2] for e in entries], classes


def pool(config) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """(names, labels (-1 = none), paths or None) of the teacher's image set."""
    if config.teacher.images:
        names, labels, paths, _ = image_set(config.teacher.images)
        return names, labels, paths
    n = len(load_features(config.teacher.features))
    return np.array([f"image_{i:07d}" for i in range(n)]), np.full(n, -1, np.int32), None


def check_inputs(ctx: RunContext) -> None:
    """The image folder lists images with unique names; given features have one row per image; a k-means
    run has at least k images; the class rule can serve each scheme with a positive share (labels)."""
    config = ctx.config
    names, labels, _ = pool(config)
    if config.teacher.classes == "labels" and (labels < 0).any():
        raise InputError(
            f"teacher.images={config.teacher.images}: no class subfolders (FOLDER/<class>/<file>) for "
            "teacher.classes=labels; set teacher.classes=kmeans"
        )
    if config.teacher.features:
        rows = _features(ctx, names)
        if len(rows) != len(names):
            raise InputError(
                f"{config.teacher.features}: {len(rows):,} feature rows but teacher.images holds {len(names):,} "
                "images; row i must be the i-th file name in sorted order"
            )
    proportions = tuple(float(p) for p in config.teacher.proportions)
    if config.teacher.classes == "kmeans":
        if config.teacher.n_clusters > len(names):
            raise InputError(
                f"teacher.n_clusters={config.teacher.n_clusters} is more than the {len(names)} images; lower it"
            )
    else:
        triplets.check_classes(labels, proportions, f"teacher.images={config.teacher.images}")


def _features(ctx: RunContext, names: np.ndarray, paths: list[str] | None = None) -> np.ndarray:
    config = ctx.config
    if "teacher_features" in ctx.__dict__:
        return ctx.__dict__["teacher_features"]
    if config.teacher.features:
        x = load_features(config.teacher.features)
    else:
        x = extracted_features(ctx, file_source(paths, list(names), kind="teacher"), "teacher")
    ctx.__dict__["teacher_features"] = x
    return x


def _transform(ctx: RunContext):
    return None if ctx.config.teacher.transform == "none" else ctx.transform


def provenance(ctx: RunContext) -> dict:
    teacher = ctx.config.teacher
    out = {
        "teacher:images": facts.files_fingerprint([teacher.images]) if teacher.images else None,
        **facts.settings(ctx.config, "teacher", "model"),
    }
    if teacher.features:
        out["teacher:features"] = facts.files_fingerprint([teacher.features])
    if teacher.transform == "auto":
        out["transform"] = ctx.transform_source()
    return out


def run(ctx: RunContext) -> dict:
    config, teacher = ctx.config, ctx.config.teacher
    start = time.perf_counter()
    names, labels, paths = pool(config)
    features = _features(ctx, names, paths)
    transform = _transform(ctx)
    z = triplets.teacher_embedding(features, transform, teacher.similarity)
    folder = os.path.join(ctx.workdir, "teacher")
    os.makedirs(folder, exist_ok=True)
    if teacher.classes == "kmeans":
        from alignment_jax.evaluation.kmeans import kmeans

        _, classes = kmeans(z, teacher.n_clusters, seed=teacher.seed)
        ctx.log(f"teacher: {teacher.n_clusters} k-means clusters of the teacher rows")
    else:
        classes = labels
    proportions = tuple(float(p) for p in teacher.proportions)
    triplets.check_classes(classes, proportions, f"teacher.classes={teacher.classes}")
    atomic.save_npy(os.path.join(folder, "classes.npy"), classes.astype(np.int32))
    atomic.write_text(os.path.join(folder, "names.txt"), "\n".join(names) + "\n")
    key = {
        "images": facts.files_fingerprint([teacher.images]) if teacher.images else None,
        "features": facts.files_fingerprint([teacher.features]) if teacher.features else config.model.to_dict(),
        "transform": None if transform is None else ctx.transform_source(),
        **{k: v for k, v in teacher.to_dict().items() if k not in ("images", "features")},
    }
    sampled = time.perf_counter()
    manifest = triplets.write_teacher_shards(
        folder, names, np.arange(len(names)), classes, z, teacher.n_triplets, proportions, teacher.seed,
        teacher.shard_size, atomic.strict(key), log=ctx.log,
    )  # fmt: skip
    seconds = time.perf_counter() - sampled
    written = manifest["shards_written_by_this_run"]
    counts = triplets.scheme_counts(teacher.n_triplets, proportions)
    section = {
        "folder": "teacher",
        "manifest": os.path.join("teacher", triplets.MANIFEST),
        "n_triplets": teacher.n_triplets,
        "n_images": len(names),
        "n_classes": int(len(np.unique(classes))),
        "classes": teacher.classes,
        "class_folders": int(len(np.unique(labels[labels >= 0]))),
        "similarity": teacher.similarity,
        "transform": "none" if transform is None else ctx.transform_source(),
        "scheme_counts": dict(zip(triplets.SCHEMES, (int(c) for c in counts), strict=True)),
        "n_shards": len(manifest["shards"]),
        "shards_written": written,
        "triplets_per_s": teacher.n_triplets / seconds if written == len(manifest["shards"]) and seconds > 0 else None,
        "seconds": time.perf_counter() - start,
    }
    ctx.log(
        f"teacher: {teacher.n_triplets:,} triplets over {len(names):,} images ({section['n_classes']} classes, "
        f"{teacher.similarity}, transform {'none' if transform is None else 'the run' + chr(39) + 's'}) in "
        f"{section['n_shards']} shard(s) ({written} written now) under {folder}"
    )
    return section
