"""The feature store: shards, resume points, final files, and refusing a store made another way."""

import json
import os

import numpy as np
import pytest

from alignment_jax.data.features import load_features
from alignment_jax.errors import InputError
from alignment_jax.extract.store import FeatureStore

IDS = tuple(f"obj{i}" for i in range(10))
KEY = {"model": {"name": "tiny", "sha256": "abc"}, "layer": "tokens", "pooling": "cls"}


def _filled(path, fmt="npy"):
    store = FeatureStore(str(path), KEY, IDS, shard_size=4, fmt=fmt)
    features = np.arange(30, dtype=np.float32).reshape(10, 3)
    for shard in range(store.n_shards):
        rows = store.shard_rows(shard)
        store.write_shard(shard, features[rows.start : rows.stop])
    return store, features


def test_shards_then_final_files(tmp_path):
    store, features = _filled(tmp_path / "s")
    assert store.n_shards == 3 and list(store.shard_rows(2)) == [8, 9]
    assert store.done().all() and not store.complete
    store.finish(np.concatenate([store.read_shard(s) for s in range(3)]))
    assert store.complete and not os.path.exists(tmp_path / "s" / "shards")
    np.testing.assert_array_equal(load_features(store.features_path), features)
    assert (tmp_path / "s" / "object_ids.txt").read_text().split() == list(IDS)
    record = json.loads((tmp_path / "s" / "record.json").read_text())
    assert record["complete"] and record["p"] == 3 and record["key"] == KEY
    again = FeatureStore(str(tmp_path / "s"), KEY, IDS, shard_size=99)
    assert again.complete and again.shard_size == 4  # the stored layout wins
    np.testing.assert_array_equal(again.load(), features)


def test_done_ignores_missing_short_and_half_written_shards(tmp_path):
    store = FeatureStore(str(tmp_path), KEY, IDS, shard_size=4)
    store.write_shard(1, np.ones((4, 3), np.float32))
    np.save(tmp_path / "shards" / "00002.npy", np.ones((1, 3), np.float32))  # 1 row, shard 2 has 2
    (tmp_path / "shards" / ".00000.npy.abc.aj-tmp.npy").write_bytes(b"partial")  # left by a killed write
    assert store.done().tolist() == [False, True, False]
    FeatureStore(str(tmp_path), KEY, IDS, shard_size=4)
    assert not (tmp_path / "shards" / ".00000.npy.abc.aj-tmp.npy").exists()
    with pytest.raises(ValueError, match="shard 0: 3 rows, expected 4"):
        store.write_shard(0, np.ones((3, 3), np.float32))


@pytest.mark.parametrize(
    "key, ids, match",
    [
        ({**KEY, "layer": "block03"}, IDS, r"layer: stored 'tokens', now 'block03'"),
        ({**KEY, "model": {"name": "tiny", "sha256": "def"}}, IDS, r"model: stored"),
        (KEY, IDS[:9], "holds other images"),
        (KEY, IDS[::-1], "holds other images"),
    ],
)
def test_a_store_made_another_way_is_refused(tmp_path, key, ids, match):
    store, features = _filled(tmp_path / "s")
    store.finish(features)
    with pytest.raises(InputError, match=match):
        FeatureStore(str(tmp_path / "s"), key, ids, shard_size=4)


def test_an_unfinished_store_is_refused_too(tmp_path):
    FeatureStore(str(tmp_path), KEY, IDS, shard_size=4).write_shard(0, np.zeros((4, 3), np.float32))
    with pytest.raises(InputError, match="made another way"):
        FeatureStore(str(tmp_path), {**KEY, "pooling": "mean"}, IDS, shard_size=4)
    with pytest.raises(InputError, match="holds other images"):
        FeatureStore(str(tmp_path), KEY, IDS[::-1], shard_size=4)


def test_hdf5_store_and_format_switch(tmp_path):
    pytest.importorskip("h5py", reason="h5py not installed (the hdf5 extra)")
    import h5py

    store, features = _filled(tmp_path, fmt="h5")
    store.finish(features)
    assert store.features_path.endswith("features.h5")
    np.testing.assert_array_equal(load_features(store.features_path), features)
    with h5py.File(store.features_path) as f:
        assert [i.decode() for i in f["object_ids"][:]] == list(IDS)
    as_npy = FeatureStore(str(tmp_path), KEY, IDS, shard_size=4, fmt="npy")
    np.testing.assert_array_equal(as_npy.load(), features)  # written from the .h5 on demand
    assert os.path.exists(tmp_path / "features.npy")


def test_bad_settings(tmp_path):
    with pytest.raises(InputError, match="store_format"):
        FeatureStore(str(tmp_path / "a"), KEY, IDS, shard_size=4, fmt="zarr")
    with pytest.raises(InputError, match="shard_size"):
        FeatureStore(str(tmp_path / "b"), KEY, IDS, shard_size=0)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "record.json").write_text("{broken")
    with pytest.raises(InputError, match="not valid JSON"):
        FeatureStore(str(tmp_path / "c"), KEY, IDS, shard_size=4)
