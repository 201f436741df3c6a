"""The run's AligNet triplets (`alignet.*`, docs/alignet.md): what the probe trains on instead of THINGS when
`alignet.train` is set. Not a stage: the probe stage's helper (like local_inputs.py for gLocal).

The image set is the sorted union of the distinct file names of alignet.train and alignet.test; its features
are given (`alignet.features`, one row per name in that order) or extracted with config.model from a folder
(`alignet.images`: FOLDER/<name>, or ImageNet's train layout FOLDER/<synset>/<name> with the synset the
part of the name before '_'). Everything is read once per run and kept on the run context.
"""

import dataclasses
import os

import ml_collections
import numpy as np

from alignment_jax import provenance as facts
from alignment_jax.data.alignet import AlignetTriplets, load_alignet_pair, soft_targets
from alignment_jax.data.features import load_features
from alignment_jax.errors import InputError
from alignment_jax.extract.sources import ImageSource, file_source, subset_source, tfds_source
from alignment_jax.run_context import RunContext
from alignment_jax.stages import inputs
from alignment_jax.stages.inputs import extracted_features

READS = ("memo", *inputs.READS)
SETTINGS = ("alignet", "model", "images.tfds_data_dir", *inputs.SETTINGS)


@dataclasses.dataclass(frozen=True)
class AlignetData:
    """train/test: AlignetTriplets over one image set; features: (n_images, p) or None until extracted."""

    train: AlignetTriplets
    test: AlignetTriplets | None

    @property
    def targets(self) -> np.ndarray:
        """(T, 3) soft targets of the training triplets: softmax of the teacher's similarities."""
        return soft_targets(self.train.similarities)

    @property
    def test_targets(self) -> np.ndarray | None:
        return None if self.test is None else soft_targets(self.test.similarities)


def has_alignet(config: ml_collections.ConfigDict) -> bool:
    return bool(config.alignet.train)


def has_features(config: ml_collections.ConfigDict) -> bool:
    """Features of the AligNet images are given, or a model and their folder to extract them."""
    model = config.model.name or config.model.variant
    return bool(config.alignet.features) or bool(config.alignet.images and model)


def check(config: ml_collections.ConfigDict) -> None:
    """Settings only: the files are named consistently."""
    alignet = config.alignet
    if not alignet.train:
        if alignet.test or alignet.features or alignet.images:
            raise InputError("alignet.test, alignet.features or alignet.images set without alignet.train=FILE.npz")
        return
    if alignet.features and alignet.images:
        raise InputError("alignet: set features or images, not both")
    if not (alignet.features or alignet.images):
        raise InputError(
            "alignet.train needs the features of its images: alignet.features=FILE.npy (one row per distinct file "
            "name of train + test, sorted) or alignet.images=FOLDER with config.model"
        )
    if alignet.images and not (config.model.name or config.model.variant):
        raise InputError("alignet.images: extracting the AligNet images needs config.model (model.name or variant)")


def data(ctx: RunContext) -> AlignetData:
    """The run's AligNet triplets, read (and validated) once."""
    if "alignet" not in ctx.memo:
        train, test = load_alignet_pair(ctx.config.alignet.train, ctx.config.alignet.test)
        ctx.memo["alignet"] = AlignetData(train, test)
    return ctx.memo["alignet"]


def features(ctx: RunContext) -> np.ndarray:
    """(n_images, p) features of the image set, row i = names[i]: read, or extracted with config.model."""
    if "alignet_features" in ctx.memo:
        return ctx.memo["alignet_features"]
    config, loaded = ctx.config, data(ctx)
    names = loaded.train.names
    if config.alignet.features:
        x = load_features(config.alignet.features)
        if len(x) != len(names):
            raise InputError(
                f"{config.alignet.features}: {len(x):,} feature rows but alignet.train and alignet.test name "
                f"{len(names):,} distinct images; row i must be the i-th file name in sorted order"
            )
    else:
        x = extracted_features(ctx, image_source(config, loaded), "alignet")
    ctx.memo["alignet_features"] = x
    return x


def image_source(config: ml_collections.ConfigDict, loaded: AlignetData) -> ImageSource:
    """The AligNet image set, row i = names[i]: files of the alignet.images folder, or, for
    alignet.images=tfds:NAME:SPLIT (AligNet's: tfds:imagenet2012:train), the examples at the files' `indices`
    (TFDS data in images.tfds_data_dir)."""
    names = loaded.train.names
    spec = config.alignet.images
    if not spec.startswith("tfds:"):
        return file_source(image_paths(spec, names), list(names), kind="alignet")
    name, sep, split = spec[len("tfds:") :].partition(":")
    if not (name and sep and split):
        raise InputError(f"alignet.images={spec!r}: write tfds:NAME:SPLIT, e.g. tfds:imagenet2012:train")
    indices = loaded.train.image_indices
    if (indices < 0).any():
        missing = str(names[int(np.argmax(indices < 0))])
        raise InputError(
            f"alignet.images={spec}: {missing} has no TFDS index (the triplet files give `indices` for only some "
            "images); use an image folder (alignet.images=FOLDER) or given features"
        )
    dataset = tfds_source(name, split, data_dir=config.images.tfds_data_dir)
    return subset_source(dataset, indices, [str(n) for n in names], kind="alignet")


def image_paths(folder: str, names: np.ndarray) -> list[str]:
    """FOLDER/<name> or FOLDER/<synset>/<name> (ImageNet's train layout) for each name; missing ones fail."""
    if not os.path.isdir(folder):
        raise InputError(f"alignet.images={folder}: image folder not found")
    paths = []
    for name in names:
        flat = os.path.join(folder, str(name))
        nested = os.path.join(folder, str(name).split("_")[0], str(name))
        paths.append(flat if os.path.isfile(flat) or not os.path.isfile(nested) else nested)
    return paths


def check_inputs(ctx: RunContext) -> None:
    """The triplet files load; the given features have one row per image."""
    loaded = data(ctx)
    if ctx.config.alignet.features:
        features(ctx)
    ctx.log(summary_line(loaded))


def summary_line(loaded: AlignetData) -> str:
    train = loaded.train
    line = f"alignet: {len(train):,} training triplets over {train.n_images:,} images"
    if loaded.test is not None:
        line += f", {len(loaded.test):,} test triplets"
    counted = [(t, name) for t, name in ((train, "train"), (loaded.test, "test")) if t is not None and t.n_not_first]
    if counted:
        parts = ", ".join(f"{t.n_not_first:,} of {len(t):,} in {name}" for t, name in counted)
        line += f"; rows where s01 is not the largest similarity: {parts} (AligNet's accuracy counts them wrong)"
    return line


def section(loaded: AlignetData) -> dict:
    """What the probe section records about its AligNet data."""
    out = {
        "train": loaded.train.source,
        "n_train": len(loaded.train),
        "n_images": loaded.train.n_images,
        "train_rows_s01_not_largest": loaded.train.n_not_first,
    }
    if loaded.test is not None:
        out.update(test=loaded.test.source, n_test=len(loaded.test), test_rows_s01_not_largest=loaded.test.n_not_first)
    return out


def provenance(ctx: RunContext) -> dict:
    alignet = ctx.config.alignet
    """Sizes and modification times of the files (hashing a 10M-triplet file would cost more than reading it)."""
    paths = (("train", alignet.train), ("test", alignet.test), ("features", alignet.features))
    out = {f"alignet:{key}": facts.files_fingerprint([path]) for key, path in paths if path}
    if alignet.images:
        out["alignet:images"] = facts.files_fingerprint([alignet.images])
    return out
