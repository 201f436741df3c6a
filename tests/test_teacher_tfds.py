"""The teacher stage over a TFDS split (teacher.images=tfds:NAME:SPLIT): names from `file_name`, classes from
`label`, the shards' `indices` = positions in the split; checked against the same images as a class folder."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from extract_testlib import import_tfds, write_images

from alignment_jax import probe
from alignment_jax.config.base import base_config
from alignment_jax.data.alignet import load_alignet_pair, load_alignet_triplets
from alignment_jax.data.teacher import merge_shards
from alignment_jax.errors import InputError
from alignment_jax.extract.decode import Decoding, decode_image, decoded_images
from alignment_jax.stages import alignet_inputs

N_IMAGES = 12


def build_imagenet_like(tfds, name: str, examples: list[dict], data_dir: str, labels: bool = True):
    """A prepared TFDS dataset with imagenet2012's features (image, file_name, label; label left out when not
    `labels`) holding `examples` in the given (stored) order; array_record, no TensorFlow."""

    class TinyImagenet(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = {"image": tfds.features.Image(), "file_name": tfds.features.Text()}
            if labels:
                features["label"] = tfds.features.ClassLabel(num_classes=3)
            return tfds.core.DatasetInfo(
                builder=self, features=tfds.features.FeaturesDict(features), disable_shuffling=True
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i, example in enumerate(examples):
                yield i, {k: v for k, v in example.items() if labels or k != "label"}

    TinyImagenet.name = name
    builder = TinyImagenet(data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare()
    return builder


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    """(root, stored file names, stored labels): ROOT/tfds holds tiny_imagenet (12 images in 3 classes, stored in
    an order that is not the names' order) and tiny_unlabeled (no label feature); ROOT/folder the same images in
    ImageNet's train layout; ROOT/features.npy random features in sorted file-name order."""
    tfds = import_tfds()
    root = tmp_path_factory.mktemp("imagenet")
    paths = write_images(str(root / "raw"), N_IMAGES, size=(40, 30))
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.arange(N_IMAGES) % 3)
    names = [f"n{label:08d}_{100 - i}.JPEG" for i, label in enumerate(labels)]
    examples = [
        {"image": path, "file_name": name, "label": int(label)}
        for path, name, label in zip(paths, names, labels, strict=True)
    ]
    build_imagenet_like(tfds, "tiny_imagenet", examples, str(root / "tfds"))
    build_imagenet_like(tfds, "tiny_unlabeled", examples, str(root / "tfds"), labels=False)
    for path, name, label in zip(paths, names, labels, strict=True):
        os.makedirs(root / "folder" / f"n{label:08d}", exist_ok=True)
        shutil.copy(path, root / "folder" / f"n{label:08d}" / name)
    np.save(root / "features.npy", rng.normal(size=(N_IMAGES, 6)).astype(np.float32))
    return root, np.array(names), labels


def config_for(root, images: str, **teacher):
    config = base_config()
    config.stages = "teacher"
    config.progress = "off"
    config.images.tfds_data_dir = str(root / "tfds")
    config.teacher.update(images=images, n_triplets=300, shard_size=100, transform="none", similarity="dot")
    config.teacher.update(teacher)
    return config


def read(workdir):
    """(the teacher section, its shards as AlignetTriplets) of a run."""
    section = json.loads((workdir / "results.json").read_text())["teacher"]
    manifest = json.loads((workdir / "teacher" / "manifest.json").read_text())
    return section, [load_alignet_triplets(str(workdir / "teacher" / s["file"])) for s in manifest["shards"]]


def with_model(config):
    config.model.variant, config.model.image_size, config.model.layer = "mu/8", 32, "encoded"
    config.images.token_pooling, config.images.batch_size, config.images.shard_size = "mean", 8, 8
    return config


def test_tfds_split_writes_what_its_class_folder_writes_with_indices_into_the_split(imagenet, tmp_path):
    root, stored_names, stored_labels = imagenet
    probe.run(with_model(config_for(root, "tfds:tiny_imagenet:train")), str(tmp_path / "tfds"))
    probe.run(with_model(config_for(root, str(root / "folder"))), str(tmp_path / "folder"))
    section, shards = read(tmp_path / "tfds")
    folder_shards = read(tmp_path / "folder")[1]
    names = (tmp_path / "tfds" / "teacher" / "names.txt").read_text().split()
    assert names == sorted(stored_names) and section["n_classes"] == 3 and sum(map(len, shards)) == 300
    position = {name: i for i, name in enumerate(stored_names)}
    classes = np.load(tmp_path / "tfds" / "teacher" / "classes.npy")
    np.testing.assert_array_equal(classes, [stored_labels[position[n]] for n in names])
    for shard, by_folder in zip(shards, folder_shards, strict=True):
        filenames = shard.names[shard.triplets]
        np.testing.assert_array_equal(filenames, by_folder.names[by_folder.triplets])
        np.testing.assert_allclose(shard.similarities, by_folder.similarities, rtol=1e-4, atol=1e-4)
        index_of = dict(zip(shard.names, shard.image_indices, strict=True))
        assert all(index_of[name] == position[name] for name in shard.names)
    merge_shards(str(tmp_path / "tfds" / "teacher"), str(tmp_path / "merged.npz"))
    train, _ = load_alignet_pair(str(tmp_path / "merged.npz"))
    config = base_config()
    config.alignet.images, config.images.tfds_data_dir = "tfds:tiny_imagenet:train", str(root / "tfds")
    source = alignet_inputs.image_source(config, alignet_inputs.AlignetData(train, None))
    decoding = Decoding.resize(8)
    got = list(decoded_images(source, range(len(train.names)), decoding, num_workers=1))
    for name, image in zip(train.names, got, strict=True):
        path = str(root / "folder" / name.split("_")[0] / name)
        np.testing.assert_array_equal(image, decode_image(path, path, decoding))


def test_given_features_are_deterministic_per_seed(imagenet, tmp_path):
    root, _, _ = imagenet
    features = str(root / "features.npy")
    runs = {}
    for run, seed in (("a", 0), ("b", 0), ("c", 1)):
        probe.run(config_for(root, "tfds:tiny_imagenet:train", features=features, seed=seed), str(tmp_path / run))
        shards = read(tmp_path / run)[1]
        runs[run] = (
            np.concatenate([s.names[s.triplets] for s in shards]),
            np.concatenate([s.similarities for s in shards]),
        )
    np.testing.assert_array_equal(runs["a"][0], runs["b"][0])
    np.testing.assert_array_equal(runs["a"][1], runs["b"][1])
    assert (runs["a"][0] != runs["c"][0]).any()


def test_kmeans_needs_no_labels(imagenet, tmp_path):
    root, _, _ = imagenet
    config = config_for(root, "tfds:tiny_unlabeled:train", features=str(root / "features.npy"), classes="kmeans")
    config.teacher.n_clusters = 3
    probe.run(config, str(tmp_path / "run"))
    assert read(tmp_path / "run")[0]["n_classes"] == 3


@pytest.mark.parametrize(
    "images, teacher, message",
    [
        ("tfds:no_such_dataset:train", {}, "tfds:no_such_dataset: cannot open split 'train'"),
        ("tfds:tiny_imagenet:validation", {}, "tfds:tiny_imagenet: cannot open split 'validation'"),
        ("tfds:tiny_imagenet", {}, "write tfds:NAME:SPLIT"),
        ("tfds:tiny_unlabeled:train", {}, "no feature 'label' (teacher.classes=labels reads the classes from it"),
    ],
)
def test_bad_tfds_inputs_are_one_line(imagenet, tmp_path, images, teacher, message):
    root, _, _ = imagenet
    with pytest.raises(InputError) as error:
        probe.run(config_for(root, images, features=str(root / "features.npy"), **teacher), str(tmp_path / "run"))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_command_line_runs_the_teacher_alone_and_refuses_a_missing_split(imagenet, tmp_path):
    root, _, _ = imagenet

    def cli(images: str, workdir: str):
        flags = [
            f"--config.teacher.images={images}", f"--config.images.tfds_data_dir={root / 'tfds'}",
            "--config.teacher.n_triplets=200", "--config.teacher.transform=none", "--config.model.variant=mu/8",
            "--config.model.image_size=32", "--config.stages=teacher", "--config.progress=off",
        ]  # fmt: skip
        command = [sys.executable, "-m", "alignment_jax.probe", "--config=configs/features.py", f"--workdir={workdir}"]
        cwd = os.path.dirname(os.path.dirname(__file__))
        return subprocess.run(command + flags, capture_output=True, text=True, cwd=cwd)

    done = cli("tfds:tiny_imagenet:train", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr
    assert read(tmp_path / "run")[0]["n_triplets"] == 200
    done = cli("tfds:tiny_imagenet:test", str(tmp_path / "bad"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot open split 'test'" in lines[0], done.stderr
