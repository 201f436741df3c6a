import h5py
import numpy as np
import pytest

from alignment_jax.data.features import load_features
from alignment_jax.errors import InputError


def test_npy_and_hdf5(tmp_path):
    features = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    np.save(tmp_path / "f.npy", features)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["features"] = features
    np.testing.assert_array_equal(load_features(str(tmp_path / "f.npy")), features)
    np.testing.assert_array_equal(load_features(str(tmp_path / "f.h5"), n_objects=6), features)


@pytest.mark.parametrize(
    "array, n_objects, message",
    [
        (np.zeros(5), None, "shape \\(n_objects, p\\)"),
        (np.array([[0.0, 1.0], [np.nan, 2.0]]), None, "NaN or inf in features \\(row 1, column 0\\)"),
        (np.array([[0.0, np.inf]]), None, "NaN or inf"),
        (np.zeros((3, 2)), 4, "3 feature rows but 4 objects"),
    ],
)
def test_bad_features(tmp_path, array, n_objects, message):
    np.save(tmp_path / "f.npy", array)
    with pytest.raises(InputError, match=message):
        load_features(str(tmp_path / "f.npy"), n_objects)


def test_missing_and_wrong_hdf5(tmp_path):
    with pytest.raises(InputError, match="feature file not found"):
        load_features(str(tmp_path / "none.npy"))
    with h5py.File(tmp_path / "g.h5", "w") as f:
        f["other"] = np.zeros((2, 2))
    with pytest.raises(InputError, match="no 'features' dataset"):
        load_features(str(tmp_path / "g.h5"))
    (tmp_path / "broken.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="not a readable HDF5 file"):
        load_features(str(tmp_path / "broken.h5"))
    np.save(tmp_path / "text.npy", np.array([["a", "b"]]))
    with pytest.raises(InputError, match="must be numeric"):
        load_features(str(tmp_path / "text.npy"))
