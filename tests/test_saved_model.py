"""TensorFlow SavedModels (AligNet's release format) as a model source: a small SavedModel with AligNet's signature
is built here, and its outputs through our loader, jit and the extraction pipeline are checked against a direct
call. Skips without TensorFlow, unless ALIGNMENT_JAX_REQUIRE_TENSORFLOW=1 (CI) makes that a failure."""

import importlib.util
import os
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from alignment_jax.config.base import base_config
from alignment_jax.errors import InputError
from alignment_jax.extract.pipeline import layer_features_for_images
from alignment_jax.models import saved_model
from alignment_jax.models.registry import MODELS, load_model
from alignment_jax.models.standins import file_format, standin_model

HAS_TF = importlib.util.find_spec("tensorflow") is not None
if not HAS_TF and os.environ.get("ALIGNMENT_JAX_REQUIRE_TENSORFLOW") == "1":
    raise RuntimeError("ALIGNMENT_JAX_REQUIRE_TENSORFLOW=1 but TensorFlow does not import: pip install '.[tensorflow]'")
needs_tf = pytest.mark.skipif(not HAS_TF, reason="TensorFlow is not installed (pip install '.[tensorflow]')")
SIZE = 32  # 2 x 2 patches of 16


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved")
    path = str(folder / "Tiny-B-alignet.tar.gz")
    saved_model.write_saved_model(path, image_size=SIZE, width=8, depth=3, seed=4)
    return path


def direct(folder: str, images: np.ndarray) -> dict[str, np.ndarray]:
    import tensorflow as tf

    out = tf.saved_model.load(folder).signatures["serving_default"](images=tf.constant(images))
    return {k: v.numpy() for k, v in out.items()}


@needs_tf
def test_outputs_are_layers_and_match_a_direct_call(archive):
    model = load_model("saved_model", archive, image_size=SIZE)
    images = np.random.default_rng(0).uniform(-1, 1, (3, SIZE, SIZE, 3)).astype(np.float32)
    ref = direct(archive + ".d/Tiny-B-alignet", images)
    assert sorted(ref) == sorted(model.outputs.names)
    assert model.outputs.names == ("layer_0", "layer_1", "layer_2", "pre_logits", "triplet_logits", "i1k_logits")
    assert model.outputs.blocks == ("layer_0", "layer_1", "layer_2")
    _, eager = model.apply(images)
    jitted = jax.jit(lambda x: model.module.apply({}, x)[1])(images)
    for name, value in ref.items():
        np.testing.assert_allclose(np.asarray(eager[name]), value, rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(np.asarray(jitted[name]), value, rtol=1e-6, err_msg=name)
    assert ref["layer_1"].shape == (3, 4, 8) and ref["triplet_logits"].shape == (3, 1024)
    assert model.module.prefix_tokens("layer_1") == 0  # 4 = 2 x 2 patch tokens, no class token
    assert model.default_layer == "pre_logits" and model.info["source"] == "saved_model"
    assert len(model.info["sha256"]) == 64 and model.info["config"]["outputs"]["layer_0"] == [4, 8]


@needs_tf
def test_extraction_keeps_the_store_guarantees(archive, tmp_path):
    """Through the pipeline: features of every output layer (token layers mean-pooled), one pass, in a store that
    a second run reuses."""
    paths = []
    rng = np.random.default_rng(1)
    for i in range(5):
        paths.append(str(tmp_path / f"img_{i}.png"))
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(paths[-1])
    config = base_config()
    config.model.name, config.model.checkpoint, config.model.image_size = "saved_model", archive, SIZE
    config.images.resize, config.images.batch_size, config.images.shard_size = "full", 2, 2
    config.images.cache, config.images.token_pooling = "off", "mean"
    config.progress = "off"
    features = layer_features_for_images(config, paths, "tiny", str(tmp_path / "work"), "layer_1,i1k_logits")
    assert sorted(features) == ["i1k_logits", "layer_1", "pre_logits"]
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths]).astype(np.float32) / 127.5 - 1
    ref = direct(archive + ".d/Tiny-B-alignet", pixels)
    np.testing.assert_allclose(features["pre_logits"], ref["pre_logits"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(features["layer_1"], ref["layer_1"].mean(axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(features["i1k_logits"], ref["i1k_logits"], rtol=1e-5, atol=1e-5)
    store = tmp_path / "work" / "features" / "tiny"
    before = {p: os.path.getmtime(p) for p in store.rglob("*") if p.is_file()}
    again = layer_features_for_images(config, paths, "tiny", str(tmp_path / "work"), "layer_1,i1k_logits")
    np.testing.assert_array_equal(again["pre_logits"], features["pre_logits"])
    assert {p: os.path.getmtime(p) for p in store.rglob("*") if p.is_file()} == before  # reused, not rewritten


@needs_tf
def test_registry_entries_and_their_standins():
    names = [n for n in MODELS if n.startswith("alignet-")]
    assert len(names) == 24 and "alignet-clip-b-untransformed" in names
    assert MODELS["alignet-siglip-b-base"].checkpoint == "gs://alignet/models/SigLIP-B-base_model.tar.gz"
    assert file_format(MODELS["alignet-dinov2-b-alignet"]) == "saved_model_tar_gz"
    model = standin_model("alignet-dinov2-b-alignet")
    assert model.info["standin"] and model.image_size == 224
    _, out = model.apply(model.preprocess(np.zeros((1, 50, 60, 3), np.uint8)))
    assert out["layer_1"].shape == (1, 196, 32) and out["i1k_logits"].shape == (1, 1000)


@needs_tf
def test_bad_inputs_name_the_fix(tmp_path, archive):
    with pytest.raises(InputError, match="needs a SavedModel folder or its .tar.gz"):
        load_model("saved_model")
    with pytest.raises(InputError, match="dtype other than float32"):
        load_model("saved_model", archive, dtype="bfloat16")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no saved_model.pb inside"):
        load_model("saved_model", str(tmp_path / "empty"))
    (tmp_path / "bad.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(InputError, match="not a readable .tar.gz"):
        load_model("saved_model", str(tmp_path / "bad.tar.gz"))


def test_without_tensorflow_the_error_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "saved_model.pb").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow raises ImportError
    with pytest.raises(InputError, match=r"pip install 'alignment_jax\[tensorflow\]'"):
        load_model("saved_model", str(tmp_path / "model"))


def test_an_entry_without_checkpoint_is_refused_before_any_work():
    from alignment_jax.config.base import base_config
    from alignment_jax.stages import extract

    config = base_config()
    config.model.name = "saved_model"
    with pytest.raises(InputError, match="model.checkpoint: 'saved_model' needs one"):
        extract.check(config)
    config.model.standin = True  # the stand-in brings its own file
    extract.check(config)


@needs_tf
@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in MODELS if MODELS[n].source == "saved_model"])
def test_every_entry_runs_on_its_standin(name):
    model = standin_model(name)
    _, out = model.apply(model.preprocess(np.zeros((1, 30, 40, 3), np.uint8)))
    assert model.info["checkpoint"] == MODELS[name].checkpoint
    assert set(out) >= {"pre_logits", "triplet_logits", "i1k_logits", "layer_0"}
