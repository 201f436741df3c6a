"""Stage teacher: AligNet-format triplets labelled by a model (+ a transform) over an image set (docs/alignet.md).

Images: `teacher.images`, a folder with one subfolder per class (ImageNet's train layout), a flat folder of
unlabeled images (then teacher.classes=kmeans), or a prepared TFDS split, `tfds:NAME:SPLIT` (AligNet's:
tfds:imagenet2012:train, in images.tfds_data_dir; names from its `file_name` feature, classes from `label`, and
the shards' `indices` are the images' positions in the split, as in AligNet's files); an image is named by its
file name, and rows are in sorted file-name order. Features: `teacher.features` (rows in that order) or
extracted with config.model (a TFDS split in its stored order, then put in the rows' order); features alone (no
images) name their rows image_0000000, ... and need teacher.classes=kmeans. The demo world's pool of unlabeled
images (world.n_local) is pointed at by the world stage when teacher.n_triplets is set.
Transform: the run's (the probe's transform.npz, or the given transform) with `teacher.transform=auto`, none with
`none`. Classes: the subfolders or TFDS labels (`labels`) or k-means clusters of the
teacher rows (`kmeans`, k = teacher.n_clusters, computed in JAX; the cluster ids are saved). Output:
WORKDIR/teacher/ with the shards, manifest.json and classes.npy (class id per image row) plus names.txt.
"""

import dataclasses
import os
import time

import numpy as np

from alignment_jax import atomic
from alignment_jax import provenance as facts
from alignment_jax.config import checks
from alignment_jax.data import teacher as triplets
from alignment_jax.data.features import load_features
from alignment_jax.errors import InputError
from alignment_jax.extract.sources import file_source, is_image_file, tfds_columns, tfds_source, tfds_split
from alignment_jax.run_context import RunContext
from alignment_jax.stages import inputs
from alignment_jax.stages.inputs import extracted_features

READS = ("memo", "transform", "transform_source", "workdir", *inputs.READS)
SETTINGS = ("teacher", "model", "images.tfds_data_dir", *inputs.SETTINGS)

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
            "teacher.n_triplets set without images: teacher.images=FOLDER (one subfolder per class), "
            "teacher.images=tfds:NAME:SPLIT or teacher.features=FILE.npy"
        )
    if teacher.n_triplets > 0 and not teacher.images and teacher.classes == "labels":
        raise InputError(
            "teacher.features without teacher.images has no class labels: set teacher.classes=kmeans, or give the "
            "class folders (teacher.images)"
        )
    tfds_spec(teacher.images)
    if teacher.images and not (teacher.features or config.model.name or config.model.variant):
        raise InputError("teacher.images: give teacher.features=FILE.npy or a model (model.name) to extract them")


def tfds_spec(spec: str) -> tuple[str, str] | None:
    """teacher.images=tfds:NAME:SPLIT -> (NAME, SPLIT); None for a folder."""
    if not spec.startswith("tfds:"):
        return None
    name, sep, split = spec[len("tfds:") :].partition(":")
    if not (name and sep and split):
        raise InputError(f"teacher.images={spec!r}: write tfds:NAME:SPLIT, e.g. tfds:imagenet2012:train")
    return name, split


@dataclasses.dataclass(frozen=True)
class ImageSet:
    """The teacher's images, row i = the i-th file name in sorted order.

    names: (n,) file names; labels: (n,) int32 class ids (-1: no classes); indices: (n,) int64, what the shards'
    `indices` hold per image (its position in the TFDS split, or the row); paths: (n,) files of a folder, or
    None; tfds: (NAME, SPLIT) of a TFDS split, or None.
    """

    names: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    paths: list[str] | None = None
    tfds: tuple[str, str] | None = None


def image_set(folder: str) -> ImageSet:
    """The images of FOLDER/<class>/<file> (class id = index of the sorted subfolder) or FOLDER/<file> (-1)."""
    if not os.path.isdir(folder):
        raise InputError(f"teacher.images={folder}: image folder not found")
    classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    entries = []
    for label, name in enumerate(classes):
        for root, _, files in os.walk(os.path.join(folder, name)):
            entries.extend((f, label, os.path.join(root, f)) for f in files if is_image_file(f))
    if not entries:  # a flat folder of unlabeled images
        entries = [(f, -1, os.path.join(folder, f)) for f in os.listdir(folder) if is_image_file(f)]
    if not entries:
        raise InputError(f"teacher.images={folder}: no image files (FOLDER/<class>/<file> or FOLDER/<file>)")
    entries.sort()
    names = np.array([e[0] for e in entries])
    _check_unique(names, f"teacher.images={folder}", "appears in two class folders")
    labels = np.array([e[1] for e in entries], np.int32)
    return ImageSet(names, labels, np.arange(len(names)), paths=[e[2] for e in entries])


def tfds_image_set(spec: str, data_dir: str, labels: bool, images: bool) -> ImageSet:
    """The examples of a prepared TFDS split (teacher.images=tfds:NAME:SPLIT) in sorted order of their
    `file_name` feature, with their `label` feature when `labels`. The dataset and the features it needs
    (`image` when `images` are to be extracted) are checked before the pass that reads every example."""
    name, split = tfds_spec(spec)
    builder, n = tfds_split(name, split, data_dir)
    features = builder.info.features
    why = {
        "file_name": "images are identified by file name",
        "label": "teacher.classes=labels reads the classes from it; or set teacher.classes=kmeans",
        "image": "the features are extracted from it; or give teacher.features",
    }
    needed = ["file_name"] + ["label"] * labels + ["image"] * images
    missing = [key for key in needed if key not in features]
    if missing:
        raise InputError(
            f"teacher.images={spec}: no feature {missing[0]!r} ({why[missing[0]]}); its features: "
            f"{', '.join(sorted(features.keys()))}"
        )
    if n == 0:
        raise InputError(f"teacher.images={spec}: the split holds no examples")
    columns = tfds_columns(builder, split, ("file_name", "label") if labels else ("file_name",))
    order = np.argsort(columns["file_name"], kind="stable")
    names = columns["file_name"][order]
    _check_unique(names, f"teacher.images={spec}", "names two examples")
    classes = columns["label"][order].astype(np.int32) if labels else np.full(n, -1, np.int32)
    return ImageSet(names, classes, order.astype(np.int64), tfds=(name, split))


def _check_unique(names: np.ndarray, where: str, repeated_how: str) -> None:
    repeated = names[1:][names[1:] == names[:-1]]
    if len(repeated):
        raise InputError(
            f"{where}: file name {repeated[0]!s} {repeated_how}; images are identified by file name, so names must "
            "be unique"
        )


def pool(ctx: RunContext) -> ImageSet:
    """The teacher's image set (read once per run): teacher.images, or the rows of teacher.features alone."""
    if "teacher_images" not in ctx.memo:
        teacher = ctx.config.teacher
        if tfds_spec(teacher.images):
            found = tfds_image_set(
                teacher.images, ctx.config.images.tfds_data_dir, teacher.classes == "labels", not teacher.features
            )
        elif teacher.images:
            found = image_set(teacher.images)
        else:
            n = len(load_features(teacher.features))
            found = ImageSet(np.array([f"image_{i:07d}" for i in range(n)]), np.full(n, -1, np.int32), np.arange(n))
        ctx.memo["teacher_images"] = found
    return ctx.memo["teacher_images"]


def check_inputs(ctx: RunContext) -> None:
    """The image set lists images with unique names (a TFDS split: with the features it needs); given features
    have one row per image; a k-means run has at least k images; the class rule can serve each scheme with a
    positive share (labels)."""
    config = ctx.config
    images = pool(ctx)
    if config.teacher.classes == "labels" and (images.labels < 0).any():
        raise InputError(
            f"teacher.images={config.teacher.images}: no class subfolders (FOLDER/<class>/<file>) for "
            "teacher.classes=labels; set teacher.classes=kmeans"
        )
    if config.teacher.features:
        rows = _features(ctx, images)
        if len(rows) != len(images.names):
            raise InputError(
                f"{config.teacher.features}: {len(rows):,} feature rows but teacher.images holds "
                f"{len(images.names):,} images; row i must be the i-th file name in sorted order"
            )
    proportions = tuple(float(p) for p in config.teacher.proportions)
    if config.teacher.classes == "kmeans":
        if config.teacher.n_clusters > len(images.names):
            raise InputError(
                f"teacher.n_clusters={config.teacher.n_clusters} is more than the {len(images.names)} images; lower it"
            )
    else:
        triplets.check_classes(images.labels, proportions, f"teacher.images={config.teacher.images}")


def _features(ctx: RunContext, images: ImageSet) -> np.ndarray:
    """(n_images, p) features, row i = images.names[i]: given, or extracted with config.model (a TFDS split in
    its stored order, read sequentially, then put in the rows' order)."""
    config = ctx.config
    if "teacher_features" in ctx.memo:
        return ctx.memo["teacher_features"]
    if config.teacher.features:
        x = load_features(config.teacher.features)
    elif images.tfds:
        name, split = images.tfds
        stored = extracted_features(ctx, tfds_source(name, split, data_dir=config.images.tfds_data_dir), "teacher")
        x = np.asarray(stored[images.indices])
    else:
        x = extracted_features(ctx, file_source(images.paths, list(images.names), kind="teacher"), "teacher")
    ctx.memo["teacher_features"] = x
    return x


def _images_key(config) -> object:
    """What identifies teacher.images: a TFDS split by its name and data folder (prepared splits do not change),
    a folder by its files' sizes and modification times."""
    if tfds_spec(config.teacher.images):
        return {"tfds": config.teacher.images, "data_dir": config.images.tfds_data_dir}
    return facts.files_fingerprint([config.teacher.images]) if config.teacher.images else None


def _transform(ctx: RunContext):
    return None if ctx.config.teacher.transform == "none" else ctx.transform


def provenance(ctx: RunContext) -> dict:
    teacher = ctx.config.teacher
    out = {
        "teacher:images": _images_key(ctx.config),
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
    images = pool(ctx)
    names, labels = images.names, images.labels
    features = _features(ctx, images)
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
        "images": _images_key(config),
        "features": facts.files_fingerprint([teacher.features]) if teacher.features else config.model.to_dict(),
        "transform": None if transform is None else ctx.transform_source(),
        **{k: v for k, v in teacher.to_dict().items() if k not in ("images", "features")},
    }
    sampled = time.perf_counter()
    manifest = triplets.write_teacher_shards(
        folder, names, images.indices, classes, z, teacher.n_triplets, proportions, teacher.seed,
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
