"""The AligNet triplet reader (alignment_jax/data/alignet.py) on files the tests write in AligNet's format."""

import numpy as np
import pytest

from alignment_jax.data.alignet import (
    load_alignet_pair,
    load_alignet_triplets,
    odd_one_out_last,
    soft_targets,
    triplet_accuracy,
)
from alignment_jax.errors import InputError

NAMES = np.array(["n02_7.JPEG", "n01_3.JPEG", "n03_1.JPEG", "n01_10.JPEG", "n02_2.JPEG"])
TFDS = np.array([70, 13, 31, 110, 22])  # a TFDS index per name above


def triplet_rows(rng, n):
    return np.array([rng.choice(len(NAMES), 3, replace=False) for _ in range(n)])


def write(path, rows, sims=None, names=NAMES, tfds=TFDS, **extra):
    sims = np.random.default_rng(1).normal(size=(len(rows), 3)).astype(np.float32) if sims is None else sims
    arrays = {"filenames": names[rows], "similarities": sims, "indices": tfds[rows], **extra}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return str(path)


@pytest.mark.parametrize("chunk_rows", [1, 7, 1000])
@pytest.mark.parametrize("as_bytes", [False, True])
def test_names_sorted_and_triplets_point_at_them(tmp_path, chunk_rows, as_bytes):
    rng = np.random.default_rng(0)
    rows = triplet_rows(rng, 40)
    names = NAMES.astype("S") if as_bytes else NAMES
    sims = rng.normal(size=(40, 3)).astype(np.float32)
    data = load_alignet_triplets(write(tmp_path / "t.npz", rows, sims, names=names), chunk_rows=chunk_rows)
    assert list(data.names) == sorted(NAMES[np.unique(rows)])  # sorted distinct names, as str
    assert data.names.dtype.kind == "U"
    np.testing.assert_array_equal(data.names[data.triplets], NAMES[rows])  # same file names, same order
    np.testing.assert_array_equal(data.similarities, sims)
    assert data.triplets.dtype == np.int32
    np.testing.assert_array_equal(data.image_indices[data.triplets], TFDS[rows])
    assert data.n_not_first == int((~((sims[:, 0] > sims[:, 1]) & (sims[:, 0] > sims[:, 2]))).sum())


def test_non_ascii_names_and_no_indices(tmp_path):
    names = np.array(["b\u00e9.jpg", "a.jpg", "c\u4e2d.jpg", "\u00e0.jpg"])
    rows = np.array([[0, 1, 2], [3, 2, 1], [1, 0, 3]])
    path = write(tmp_path / "u.npz", rows, names=names, tfds=np.zeros(4, int), indices=None)
    np.savez(path, filenames=names[rows], similarities=np.ones((3, 3), np.float32))
    data = load_alignet_triplets(path, chunk_rows=2)
    assert list(data.names) == sorted(names)
    np.testing.assert_array_equal(data.names[data.triplets], names[rows])
    assert (data.image_indices == -1).all()


def test_train_and_test_share_one_sorted_image_set(tmp_path):
    train = write(tmp_path / "train.npz", np.array([[0, 1, 2], [2, 1, 0]]))
    test = write(tmp_path / "test.npz", np.array([[3, 4, 0]]))
    first, second = load_alignet_pair(train, test)
    assert list(first.names) == sorted(NAMES) and list(second.names) == sorted(NAMES)
    np.testing.assert_array_equal(second.names[second.triplets], [NAMES[[3, 4, 0]]])
    np.testing.assert_array_equal(first.names[first.triplets[1]], NAMES[[2, 1, 0]])
    np.testing.assert_array_equal(first.image_indices, TFDS[np.argsort(NAMES)])


def test_soft_targets_and_accuracy():
    sims = np.array([[2.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    e = np.exp(sims)
    np.testing.assert_allclose(soft_targets(sims), e / e.sum(1, keepdims=True), rtol=1e-6)
    assert triplet_accuracy(sims) == pytest.approx(1 / 3)  # a tie counts wrong


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.pop("similarities"), "no similarities in the archive"),
        (lambda a: a.pop("filenames"), "no filenames in the archive"),
        (lambda a: a.update(similarities=a["similarities"][:-1]), "different numbers of triplets"),
        (lambda a: a.update(indices=a["indices"][:, :2]), "indices must have shape \\(n, 3\\)"),
        (lambda a: a["similarities"].__setitem__((2, 1), np.nan), "NaN or inf in row 2"),
        (lambda a: a["indices"].__setitem__((1, 0), 1_281_167), "indices\\[1, 0\\] = 1281167 out of range"),
        (lambda a: a["indices"].__setitem__((3, 2), -1), "indices\\[3, 2\\] = -1 out of range"),
        (lambda a: a["filenames"].__setitem__((1, 2), a["filenames"][1, 0]), "repeats an image \\(row 1"),
        (lambda a: a.update(filenames=a["filenames"].astype(object)), "not as Python objects"),
        (lambda a: a.update(filenames=np.zeros((5, 3))), "filenames must be strings"),
        (lambda a: a.update(similarities=a["similarities"].astype(str)), "similarities must hold floats"),
        (
            lambda a: a.update(
                filenames=a["filenames"][:0], similarities=a["similarities"][:0], indices=a["indices"][:0]
            ),
            "no triplets",
        ),
        (lambda a: a["indices"].__setitem__((0, 0), 999), "has two TFDS indices"),
    ],
)
def test_bad_files_get_one_clear_line(tmp_path, change, message):
    rows = np.array([[0, 1, 2], [3, 4, 0], [2, 4, 1], [1, 3, 4], [0, 2, 4]])
    arrays = {
        "filenames": NAMES[rows],
        "similarities": np.ones((5, 3), np.float32),
        "indices": TFDS[rows],
    }
    change(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(InputError, match=message) as error:
        load_alignet_triplets(str(tmp_path / "bad.npz"))
    assert str(tmp_path / "bad.npz") in str(error.value) and "\n" not in str(error.value)


def test_not_an_archive_and_missing_file(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a readable .npz archive"):
        load_alignet_triplets(str(tmp_path / "x.npz"))
    with pytest.raises(InputError, match="not found"):
        load_alignet_triplets(str(tmp_path / "missing.npz"))


def test_words_sort_as_the_strings_and_a_hash_collision_falls_back(tmp_path, monkeypatch):
    from alignment_jax.data import alignet

    names = np.array(["b", "ab", "a", "abc", "a\u00e9", "\u4e2d", "Z", "a b"])
    words = alignet.name_words(names)
    assert [names[i] for i in np.lexsort(words.T[::-1])] == sorted(names)
    rng = np.random.default_rng(2)
    rows = triplet_rows(rng, 30)
    path = write(tmp_path / "t.npz", rows)
    expected = load_alignet_triplets(path, chunk_rows=4)
    monkeypatch.setattr(alignet, "name_hashes", lambda w: np.zeros(len(w), np.uint64))  # every name collides
    fallback = load_alignet_triplets(path, chunk_rows=4)
    np.testing.assert_array_equal(fallback.names, expected.names)
    np.testing.assert_array_equal(fallback.triplets, expected.triplets)


def test_a_hash_shared_across_chunks_falls_back(tmp_path, monkeypatch):
    from alignment_jax.data import alignet

    rows = np.array([[0, 1, 2], [3, 4, 0], [2, 4, 1]])
    path = write(tmp_path / "t.npz", rows)
    expected = load_alignet_triplets(path, chunk_rows=1)
    # the position in the chunk as the hash: distinct within each chunk, shared by other names across chunks
    monkeypatch.setattr(alignet, "name_hashes", lambda w: np.arange(len(w), dtype=np.uint64))
    fallback = load_alignet_triplets(path, chunk_rows=1)
    np.testing.assert_array_equal(fallback.triplets, expected.triplets)
    assert list(fallback.names) == sorted(NAMES)


def test_odd_one_out_last_puts_the_most_similar_pair_first():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(10, 4))
    rows = np.array([rng.choice(10, 3, replace=False) for _ in range(200)])
    pair = lambda r, a, b: (features[r[:, a]] * features[r[:, b]]).sum(1)
    sims = np.stack([pair(rows, 0, 1), pair(rows, 0, 2), pair(rows, 1, 2)], axis=1)
    ordered, ordered_sims = odd_one_out_last(rows, sims)
    assert triplet_accuracy(ordered_sims) == 1.0
    np.testing.assert_allclose(
        ordered_sims, np.stack([pair(ordered, 0, 1), pair(ordered, 0, 2), pair(ordered, 1, 2)], 1)
    )
    np.testing.assert_array_equal(np.sort(ordered, axis=1), np.sort(rows, axis=1))  # the same three images
