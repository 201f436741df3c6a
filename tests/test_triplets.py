import numpy as np
import pytest

from alignment_jax.data.triplets import TripletSet, load_object_ids, load_things, load_triplets
from alignment_jax.errors import InputError

TRIPLETS = np.array([[0, 1, 2], [3, 4, 0], [2, 4, 1]])


@pytest.mark.parametrize(
    "text",
    [
        "0 1 2\n3 4 0\n2 4 1\n",
        "i,j,k\n0,1,2\n3,4,0\n2,4,1\n",
        "anchor\tpositive\todd\n0\t1\t2\n3\t4\t0\n\n2\t4\t1\n",
    ],
)
def test_text_formats_with_and_without_header(tmp_path, text):
    path = tmp_path / "t.txt"
    path.write_text(text)
    loaded = load_triplets(str(path), n_objects=5)
    np.testing.assert_array_equal(loaded.triplets, TRIPLETS)
    assert loaded.triplets.dtype == np.int32


def test_npy_and_one_based(tmp_path):
    np.save(tmp_path / "t.npy", TRIPLETS + 1)
    loaded = load_triplets(str(tmp_path / "t.npy"), n_objects=5, one_based=True)
    np.testing.assert_array_equal(loaded.triplets, TRIPLETS)
    with pytest.raises(InputError, match="index 5 out of range for 5 objects.*one_based"):
        load_triplets(str(tmp_path / "t.npy"), n_objects=5)


def test_things_layout_and_object_ids(things_dir, world):
    things = load_things(root=str(things_dir))
    assert things.n_objects == len(world.features)
    assert things.object_ids[:2] == ("object_0000", "object_0001")
    np.testing.assert_array_equal(things.test.triplets, world.test)
    assert len(things.train) == len(world.train) + len(world.repeats)


def test_plain_object_list(tmp_path):
    (tmp_path / "ids.txt").write_text("cat\ndog\n\nfish\n")
    assert load_object_ids(str(tmp_path / "ids.txt")) == ("cat", "dog", "fish")
    (tmp_path / "dup.txt").write_text("cat\ndog\ncat\n")
    with pytest.raises(InputError, match="duplicate object ids \\['cat'\\]"):
        load_object_ids(str(tmp_path / "dup.txt"))


@pytest.mark.parametrize(
    "array, message",
    [
        (np.array([[0, 1, 2, 3]]), "shape \\(T, 3\\)"),
        (np.array([[0, 1, 7]]), "index 7 out of range for 5 objects \\(row 0\\)"),
        (np.array([[0, 1, 2], [0, -1, 2]]), "index -1 out of range.*row 1"),
        (np.array([[0, 1, 2], [3, 3, 1]]), "repeats an object \\(row 1"),
        (np.array([[0.0, 1.0, np.nan]]), "non-finite value in row 0"),
        (np.array([[0.0, 1.5, 2.0]]), "non-integer object index in row 0"),
    ],
)
def test_bad_triplets(array, message):
    with pytest.raises(InputError, match=message):
        TripletSet(array, 5, source="f.npy")


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_triplets(str(tmp_path / "missing.npy"))
    (tmp_path / "ragged.txt").write_text("0 1 2\n3 4\n")
    with pytest.raises(InputError, match="expected 3 values per line, got 2 on data line 2"):
        load_triplets(str(tmp_path / "ragged.txt"))
    (tmp_path / "junk.npy").write_bytes(b"not an npy file")
    with pytest.raises(InputError, match="not a readable .npy"):
        load_triplets(str(tmp_path / "junk.npy"))
    with pytest.raises(InputError, match="THINGS root folder not found"):
        load_things(root=str(tmp_path / "nowhere"))


def test_object_list_must_match_feature_rows(things_dir):
    with pytest.raises(InputError, match="lists 120 objects but the features have 100 rows"):
        load_things(root=str(things_dir), n_objects=100)
