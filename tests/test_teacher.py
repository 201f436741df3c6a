"""Teacher triplets (alignment_jax/data/teacher.py) and k-means (alignment_jax/evaluation/kmeans.py)."""

import json
import os

import numpy as np
import pytest

from alignment_jax.data import teacher
from alignment_jax.data.alignet import load_alignet_triplets
from alignment_jax.evaluation.kmeans import initial_centroids, kmeans


@pytest.fixture(scope="module")
def labels():
    rng = np.random.default_rng(0)
    sizes = [1, 2, 5, 9, 3, 1, 40]  # classes of one and two images serve only some schemes
    return rng.permutation(np.repeat(np.arange(len(sizes)), sizes))


def test_each_scheme_keeps_its_class_rule(labels):
    triplets, sampling = teacher.sample_teacher_triplets(labels, 3000, (0.5, 0.3, 0.2), seed=1)
    assert triplets.shape == (3000, 3) and sampling.shape == (3000,)
    np.testing.assert_array_equal(np.bincount(sampling, minlength=3), [1500, 900, 600])
    assert (triplets[:, 0] != triplets[:, 1]).all() and (triplets[:, 0] != triplets[:, 2]).all()
    assert (triplets[:, 1] != triplets[:, 2]).all()
    c = labels[triplets]
    between, border, within = (c[sampling == s] for s in range(3))
    assert (
        (between[:, 0] != between[:, 1]) & (between[:, 0] != between[:, 2]) & (between[:, 1] != between[:, 2])
    ).all()
    assert ((border[:, 0] == border[:, 1]) & (border[:, 2] != border[:, 0])).all()
    assert ((within[:, 0] == within[:, 1]) & (within[:, 1] == within[:, 2])).all()
    assert set(np.unique(within)) <= {2, 3, 4, 6}  # classes with at least 3 images
    assert len(set(np.unique(between))) == 7  # every class can serve between_class
    # classes drawn uniformly, not by size: the 40-image class is not most of the between_class draws
    assert np.mean(between == 6) < 0.25


def test_sampling_is_deterministic_per_seed_and_uses_every_image(labels):
    a = teacher.sample_teacher_triplets(labels, 2000, (1, 1, 1), seed=(3, 0))
    b = teacher.sample_teacher_triplets(labels, 2000, (1, 1, 1), seed=(3, 0))
    c = teacher.sample_teacher_triplets(labels, 2000, (1, 1, 1), seed=(3, 1))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert len(np.unique(a[0])) == len(labels)


def test_a_scheme_without_classes_is_one_clear_line():
    from alignment_jax.errors import InputError

    with pytest.raises(InputError, match="within_class 0.2 but there is no a class with 3 images"):
        teacher.check_classes(np.array([0, 0, 1, 1, 2]), (0.5, 0.3, 0.2))
    teacher.check_classes(np.array([0, 0, 1, 1, 2]), (0.5, 0.5, 0.0))


def test_similarities_in_blocks_equal_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 5)).astype(np.float32)
    triplets = np.array([rng.choice(30, 3, replace=False) for _ in range(100)])
    z = teacher.teacher_embedding(x, None, "cosine")
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    expected = np.stack([(unit[triplets[:, a]] * unit[triplets[:, b]]).sum(1) for a, b in ((0, 1), (0, 2), (1, 2))], 1)
    np.testing.assert_allclose(teacher.triplet_similarities(z, triplets, block=16), expected, atol=1e-5)
    dot = teacher.triplet_similarities(teacher.teacher_embedding(x, None, "dot"), triplets, block=7)
    np.testing.assert_allclose(dot[:, 2], (x[triplets[:, 1]] * x[triplets[:, 2]]).sum(1), rtol=1e-5)


def numpy_kmeans(x, k, seed, iterations):
    """Lloyd's algorithm written out: the same initial rows, nearest centroid, mean of the members."""
    centroids = initial_centroids(x, k, seed).astype(np.float64)
    assignment = None
    for _ in range(iterations + 1):
        d = ((x[:, None, :] - centroids[None]) ** 2).sum(-1)
        new = d.argmin(1)
        if assignment is not None and np.array_equal(new, assignment):
            break
        assignment = new
        for c in range(k):
            if (assignment == c).any():
                centroids[c] = x[assignment == c].mean(0)
    return centroids, assignment


def test_kmeans_matches_numpy():
    rng = np.random.default_rng(2)
    centers = rng.normal(size=(6, 4)) * 4
    x = (centers[rng.integers(0, 6, 300)] + rng.normal(size=(300, 4))).astype(np.float32)
    ours_c, ours = kmeans(x, 6, seed=5, iterations=30, block=64)
    ref_c, ref = numpy_kmeans(x.astype(np.float64), 6, seed=5, iterations=30)
    np.testing.assert_array_equal(ours, ref)
    np.testing.assert_allclose(ours_c, ref_c, atol=1e-4)


def write(folder, n_triplets=250, shard_size=100, seed=0, key=None):
    rng = np.random.default_rng(0)
    names = np.array(sorted(f"n{c}_{i}.JPEG" for i, c in enumerate(rng.integers(0, 4, 40))))
    labels = np.array([int(n[1]) for n in names])
    z = teacher.teacher_embedding(rng.normal(size=(40, 6)).astype(np.float32), None, "cosine")
    return teacher.write_teacher_shards(
        str(folder), names, np.arange(40) * 3, labels, z, n_triplets, (0.4, 0.4, 0.2), seed, shard_size,
        key or {"seed": seed}, log=lambda line: None,
    ), names, z  # fmt: skip


def test_shards_are_alignet_files_with_the_odd_one_out_last(tmp_path):
    manifest, names, z = write(tmp_path)
    assert manifest["complete"] and [s["n"] for s in manifest["shards"]] == [100, 100, 50]
    assert json.loads((tmp_path / "manifest.json").read_text())["complete"]
    for shard in manifest["shards"]:
        data = load_alignet_triplets(str(tmp_path / shard["file"]))  # the reader accepts what the writer wrote
        assert data.n_not_first == 0  # (0, 1) is the most similar pair in every row
        assert set(data.names) <= set(names) and list(data.names) == sorted(data.names)
        rows = np.searchsorted(names, data.names[data.triplets])
        expected = np.stack([(z[rows[:, a]] * z[rows[:, b]]).sum(1) for a, b in ((0, 1), (0, 2), (1, 2))], 1)
        np.testing.assert_allclose(data.similarities, expected, atol=1e-5)
        np.testing.assert_array_equal(data.image_indices[data.triplets], rows * 3)
        assert set(data.sampling) <= set(teacher.SCHEMES)


def test_resume_after_a_killed_shard_and_determinism(tmp_path, monkeypatch):
    whole, _, _ = write(tmp_path / "whole")
    real = teacher.triplet_similarities
    calls = []

    def dies_on_the_third(z, triplets, block=teacher.BLOCK):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed while shard 2 is computed
        return real(z, triplets, block)

    monkeypatch.setattr(teacher, "triplet_similarities", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path / "killed")
    monkeypatch.setattr(teacher, "triplet_similarities", real)
    done = sorted(os.listdir(tmp_path / "killed"))
    assert done == ["manifest.json", "triplets-00000-of-00003.npz", "triplets-00001-of-00003.npz"]
    assert not json.loads((tmp_path / "killed" / "manifest.json").read_text())["complete"]
    before = os.path.getmtime(tmp_path / "killed" / done[1])
    resumed, _, _ = write(tmp_path / "killed")
    assert resumed["shards_written_by_this_run"] == 1
    assert os.path.getmtime(tmp_path / "killed" / done[1]) == before
    for shard in whole["shards"]:
        a, b = np.load(tmp_path / "whole" / shard["file"]), np.load(tmp_path / "killed" / shard["file"])
        for key in ("filenames", "similarities", "indices", "sampling"):
            np.testing.assert_array_equal(a[key], b[key])
    other, _, _ = write(tmp_path / "killed", seed=1)  # another key: written again
    assert other["shards_written_by_this_run"] == 3
