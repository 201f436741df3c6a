"""Stage teacher: AligNet-format triplets labelled by a model (+ a transform) over an image set (docs/alignet.md).

Images: `teacher.images`, a folder with one subfolder per class (ImageNet's train layout); an image is named
by its file name, and rows are in sorted file-name order. Features: `teacher.features` (rows in that order)
or extracted with config.model. Transform: the run's (the probe's transform.npz, or config.transform) with
`teacher.transform=auto`, none with `none`. Classes: the subfolders (`labels`) or k-means clusters of the
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
from alignment_jax.extract.sources import is_image_file
from alignment_jax.run_context import RunContext

OUTPUTS = ("teacher",)
MEMORY = "teacher.shard_size (triplets per shard)"
CLASSES = ("labels", "kmeans")
TRANSFORMS = ("auto", "none")


def has_inputs(config) -> bool:
    teacher = config.teacher
    model = config.model.name or config.model.variant
    return teacher.n_triplets > 0 and bool(teacher.images) and bool(teacher.features or model)


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
    if teacher.n_triplets > 0 and not teacher.images:
        raise InputError("teacher.n_triplets set without teacher.images=FOLDER (one subfolder per class)")
    if teacher.images and not (teacher.features or config.model.name or config.model.variant):
        raise InputError("teacher.images: give teacher.features=FILE.npy or a model (model.name) to extract them")


def image_set(folder: str) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """(names (n,) sorted file names, labels (n,) class id = index of the sorted subfolder, paths, class
    names) of FOLDER/<class>/<file>."""
    if not os.path.isdir(folder):
        raise InputError(f"teacher.images={folder}: image folder not found")
    classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    entries = []
    for label, name in enumerate(classes):
        for root, _, files in os.walk(os.path.join(folder, name)):
            entries.extend((f, label, os.path.join(root, f)) for f in files if is_image_file(f))
    if not entries:
        raise InputError(f"teacher.images={folder}: no image files in class subfolders (FOLDER/<class>/<file>)")
    entries.sort()
    names = np.array([e[0] for e in entries])
    repeated = names[1:][names[1:] == names[:-1]]
    if len(repeated):
        raise InputError(
            f"teacher.images={folder}: file name {repeated[0]!s} appears in two class folders; images are "
            "identified by file name, so names must be unique"
        )
    return names, np.array([e[1] for e in entries], np.int32), [e[2] for e in entries], classes


def check_inputs(ctx: RunContext) -> None:
    """The image folder lists images with unique names; given features have one row per image; a k-means
    run has at least k images; the class rule can serve each scheme with a positive share (labels)."""
    config = ctx.config
    names, labels, _, _ = image_set(config.teacher.images)
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
        from alignment_jax.extract.pipeline import extract_layers_with_config
        from alignment_jax.extract.sources import file_source

        source = file_source(paths, list(names), kind="teacher")
        extraction = extract_layers_with_config(config, source, os.path.join(ctx.workdir, "features"), "")
        result, store = next(iter(extraction.layers.values()))
        if result.computed:
            ctx.log(f"teacher images: {result.computed} extracted ({result.images_per_s:.1f} images/s) into {store}")
        x = result.features
    ctx.__dict__["teacher_features"] = x
    return x


def _transform(ctx: RunContext):
    return None if ctx.config.teacher.transform == "none" else ctx.transform


def provenance(ctx: RunContext) -> dict:
    teacher = ctx.config.teacher
    out = {
        "teacher:images": facts.files_fingerprint([teacher.images]),
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
    names, labels, paths, class_names = image_set(teacher.images)
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
        "images": facts.files_fingerprint([teacher.images]),
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
        "class_folders": len(class_names),
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
