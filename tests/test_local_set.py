"""gLocal's local image set: settings, loading, the held-out split and the demo world's local set."""

import numpy as np
import pytest

from alignment_jax import probe
from alignment_jax.config.base import base_config
from alignment_jax.data.local_set import load_local_set, split_heldout
from alignment_jax.errors import InputError
from alignment_jax.probing.transform import Transform
from alignment_jax.run_context import RunContext
from alignment_jax.stages import local_inputs, world


def test_heldout_split_is_a_seeded_partition():
    train, held = split_heldout(50, 0.1, seed=3)
    assert len(held) == 5 and len(train) == 45
    np.testing.assert_array_equal(np.sort(np.concatenate([train, held])), np.arange(50))
    np.testing.assert_array_equal(split_heldout(50, 0.1, seed=3)[1], held)
    assert not np.array_equal(split_heldout(50, 0.1, seed=4)[1], held)
    assert len(split_heldout(50, 0.0, 0)[1]) == 0 and len(split_heldout(3, 0.01, 0)[1]) == 1


def test_load_with_a_test_file_or_a_fraction(tmp_path):
    rng = np.random.default_rng(0)
    features, test = rng.normal(size=(40, 6)), rng.normal(size=(12, 6))
    np.save(tmp_path / "local.npy", features)
    np.save(tmp_path / "test.npy", test)
    np.save(tmp_path / "other.npy", test[:, :5])
    given = load_local_set(str(tmp_path / "local.npy"), str(tmp_path / "test.npy"), 0.1, 0)
    np.testing.assert_allclose(given.train, features, rtol=1e-6)
    np.testing.assert_allclose(given.heldout, test, rtol=1e-6)
    split = load_local_set(str(tmp_path / "local.npy"), "", 0.25, 0)
    train, held = split_heldout(40, 0.25, 0)
    np.testing.assert_allclose(split.heldout, features[held], rtol=1e-6)
    np.testing.assert_allclose(split.train, features[train], rtol=1e-6)
    with pytest.raises(InputError, match="5 dimensions but .*local.npy has 6"):
        load_local_set(str(tmp_path / "local.npy"), str(tmp_path / "other.npy"), 0.1, 0)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"objective": "local"}, "probe.objective='local' is not one of global, glocal"),
        ({"alphas": (0.5, 1.5)}, "each alpha must be in \\[0, 1\\]"),
        ({"taus": (0.0,)}, "each temperature must be a positive number"),
        ({"local.batch_size": 1}, "needs at least 2 images"),
        ({"local.heldout": 1.0}, "must be a fraction"),
        ({"local.standardize": "per_dim"}, "not one of none, things"),
        ({"local.images": "tfds:imagenet2012"}, "write tfds:NAME:SPLIT"),
        ({"objective": "glocal"}, "glocal needs local images"),
    ],
)
def test_settings_are_checked_first(changes, message):
    config = base_config()
    for key, value in changes.items():
        config.probe.update_from_flattened_dict({key: value})
    with pytest.raises(InputError, match=message):
        probe.check_settings(config)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"local.features": "/nowhere.npy"}, "/nowhere.npy: local feature file not found"),
        ({"local.images": "/no/folder"}, "image folder not found"),
    ],
)
def test_missing_local_files_fail_before_any_stage_writes(changes, message, things_dir, tmp_path):
    config = base_config()
    config.features, config.things.root = str(things_dir / "features.npy"), str(things_dir)
    config.model.name = "demo-vit"  # would extract the local images
    config.probe.update_from_flattened_dict(changes)
    with pytest.raises(InputError, match=message):
        probe.run(config, str(tmp_path / "run"))
    assert not (tmp_path / "run" / "results.json").exists()


def _local_file(tmp_path, name, rows, p, nan=False):
    features = np.random.default_rng(0).normal(size=(rows, p)).astype(np.float32)
    if nan:
        features[rows // 2, 0] = np.nan
    np.save(tmp_path / name, features)
    return str(tmp_path / name)


@pytest.mark.parametrize(
    "rows, changes, message",
    [
        (40, {"local.heldout": 0.1}, "4 held-out local images; the 10-NN overlap needs at least 11"),
        (40, {"objective": "glocal", "local.heldout": 0.5, "local.validation": 0.99}, "leave 1 to train and 19"),
        (40, {"objective": "glocal", "local.heldout": 0.95, "alphas": (0.1,)}, "leave 1 to train and 1 to validate"),
        (1, {}, "1 local image"),
        (200, {"nan": True}, "NaN"),
        (200, {"test_rows": 5}, "5 held-out local images"),
    ],
)
def test_local_sets_too_small_or_bad_fail_before_any_stage_writes(rows, changes, message, things_dir, tmp_path):
    """Counts that only the local files tell (held-out images for the 10-NN overlap, training and validation
    images of the local term) and bad values are refused before the first stage writes, with and without a
    given transform (the run then measures the transform's locality)."""
    changes = dict(changes)
    p = np.load(things_dir / "features.npy").shape[1]
    features = _local_file(tmp_path, "local.npy", rows, p, nan=changes.pop("nan", False))
    test_rows = changes.pop("test_rows", None)
    for given in (False, True):
        config = base_config()
        config.features, config.things.root = str(things_dir / "features.npy"), str(things_dir)
        config.probe.local.features = features
        if test_rows:
            config.probe.local.test_features = _local_file(tmp_path, "test.npy", test_rows, p)
        config.probe.update_from_flattened_dict(changes)
        if given:
            if config.probe.objective == "glocal":
                continue  # a given transform trains nothing
            identity = Transform(np.eye(p, dtype=np.float32), np.zeros(p, np.float32), 0.0, 1.0)
            identity.save_npz(str(tmp_path / "transform.npz"))
            config.transform, config.stages = str(tmp_path / "transform.npz"), "zero_shot"
        work = tmp_path / f"run_{given}"
        with pytest.raises(InputError, match=message):
            probe.run(config, str(work))
        assert not (work / "results.json").exists()


def test_image_specs(tmp_path):
    assert local_inputs.parse_images("tfds:imagenet2012:train[:50000]") == ("tfds", "imagenet2012", "train[:50000]")
    assert local_inputs.parse_images(str(tmp_path)) == ("folder", str(tmp_path), "")
    config = base_config()
    config.probe.local.images = str(tmp_path)
    with pytest.raises(InputError, match="needs config.model"):
        probe.check_settings(config)


def test_world_writes_a_local_set(tmp_path):
    features = base_config()
    features.world.update(enabled=True, n_objects=20, n_transfer=4, n_local=9, n_train=100, n_test=20)
    world.run(RunContext(features, str(tmp_path / "features")))
    assert features.probe.local.features == str(tmp_path / "features" / "world" / "local" / "features.npy")
    assert np.load(features.probe.local.features).shape == (9, features.world.n_dims)

    images = base_config()  # the images variant renders the local objects for the run's model
    images.world.update(enabled=True, images=True, n_objects=20, n_transfer=4, n_local=7, n_train=100, n_test=20)
    world.run(RunContext(images, str(tmp_path / "images")))
    assert len(list((tmp_path / "images" / "world" / "local" / "images").glob("local_*.png"))) == 7
    assert images.probe.local.images == str(tmp_path / "images" / "world" / "local" / "images")


def test_demo_config_argument_glocal(tmp_path):
    from test_demo import get_config

    for arg in ("glocal=True", "glocal=True,features=True"):
        config = get_config("demo", arg)
        assert config.probe.objective == "glocal" and config.world.n_local == 1000 and config.world.enabled
        world.configure(config, str(tmp_path / "world"))  # as the run does before its checks
        probe.check_settings(config)  # gLocal's objective is accepted
        assert config.probe.local.features or config.probe.local.images  # the world's local set
