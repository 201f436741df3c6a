"""The teacher stage end to end: an image folder in ImageNet's train layout, given features, a transform."""

import json
import os

import numpy as np
import pytest

from alignment_jax import probe
from alignment_jax.config.base import base_config
from alignment_jax.data.alignet import load_alignet_triplets
from alignment_jax.errors import InputError
from alignment_jax.evaluation.kmeans import kmeans
from alignment_jax.probing.transform import Transform


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """FOLDER/<class>/<file>: 4 classes, 45 files (only names matter: the features are given), features.npy in
    sorted file-name order."""
    root = tmp_path_factory.mktemp("teacher")
    rng = np.random.default_rng(0)
    names = []
    for i in range(45):
        cls = f"n{i % 4:08d}"
        os.makedirs(root / "images" / cls, exist_ok=True)
        name = f"{cls}_{1000 - i}.JPEG"
        (root / "images" / cls / name).write_bytes(b"")
        names.append(name)
    np.save(root / "features.npy", rng.normal(size=(45, 6)).astype(np.float32))
    return root, np.array(sorted(names))


def config_for(root, **teacher):
    config = base_config()
    config.stages = "teacher"
    config.progress = "off"
    config.teacher.images = str(root / "images")
    config.teacher.features = str(root / "features.npy")
    config.teacher.n_triplets = 500
    config.teacher.shard_size = 200
    for key, value in teacher.items():
        config.teacher[key] = value
    return config


def read(workdir):
    results = json.loads((workdir / "results.json").read_text())
    manifest = json.loads((workdir / "teacher" / "manifest.json").read_text())
    shards = [load_alignet_triplets(str(workdir / "teacher" / s["file"])) for s in manifest["shards"]]
    return results["teacher"], manifest, shards


def test_labels_from_folders_and_the_given_transform(image_folder, tmp_path):
    root, names = image_folder
    rng = np.random.default_rng(1)
    transform = Transform(
        rng.normal(size=(6, 6)).astype(np.float32), np.zeros(6, np.float32), np.float32(0.1), np.float32(2.0)
    )
    transform.save_npz(tmp_path / "transform.npz")
    config = config_for(root, similarity="cosine")
    config.transform = str(tmp_path / "transform.npz")
    probe.run(config, str(tmp_path / "run"))
    section, manifest, shards = read(tmp_path / "run")
    assert section["n_images"] == 45 and section["n_classes"] == 4 and section["n_shards"] == 3
    assert manifest["complete"] and sum(len(s) for s in shards) == 500
    z = transform.apply(np.load(root / "features.npy"))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    labels = np.array([int(n[1:9]) for n in names])
    for shard in shards:
        rows = np.searchsorted(names, shard.names[shard.triplets])  # rows of the sorted image set
        expected = np.stack([(z[rows[:, a]] * z[rows[:, b]]).sum(1) for a, b in ((0, 1), (0, 2), (1, 2))], 1)
        np.testing.assert_allclose(shard.similarities, expected, atol=1e-5)
        assert shard.n_not_first == 0
        c = labels[rows]
        within = shard.sampling == "within_class"
        assert ((c[within, 0] == c[within, 1]) & (c[within, 1] == c[within, 2])).all()
    np.testing.assert_array_equal(np.load(tmp_path / "run" / "teacher" / "classes.npy"), labels)


def test_kmeans_classes_are_saved(image_folder, tmp_path):
    root, _ = image_folder
    probe.run(config_for(root, classes="kmeans", n_clusters=3, similarity="dot", transform="none"), str(tmp_path / "r"))
    section, _, shards = read(tmp_path / "r")
    clusters = np.load(tmp_path / "r" / "teacher" / "classes.npy")
    _, expected = kmeans(np.load(root / "features.npy"), 3, seed=0)
    np.testing.assert_array_equal(clusters, expected)
    assert section["classes"] == "kmeans" and section["n_classes"] == 3


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"proportions": (0.5, 0.5)}, "teacher.proportions=.*three shares"),
        ({"classes": "words"}, "teacher.classes"),
        ({"n_clusters": 100, "classes": "kmeans"}, "teacher.n_clusters=100 is more than the 45 images"),
        ({"similarity": "euclidean"}, "teacher.similarity"),
    ],
)
def test_bad_settings_are_one_line(image_folder, tmp_path, setting, message):
    root, _ = image_folder
    with pytest.raises(InputError, match=message):
        probe.run(config_for(root, **setting), str(tmp_path / "run"))


def test_features_must_match_the_images(image_folder, tmp_path):
    root, _ = image_folder
    np.save(tmp_path / "short.npy", np.zeros((44, 6), np.float32))
    with pytest.raises(InputError, match="44 feature rows but teacher.images holds 45 images"):
        probe.run(config_for(root, features=str(tmp_path / "short.npy")), str(tmp_path / "run"))
