"""The extract stage in a run, and `features_for_images`, with a random-weight mu/8 ViT from the registry."""

import json
import os

import numpy as np
import pytest
from extract_testlib import write_images

from alignment_jax.config.base import base_config
from alignment_jax.errors import InputError
from alignment_jax.extract.pipeline import features_for_images
from alignment_jax.probe import run
from alignment_jax.stages import load

N_OBJECTS = 30


@pytest.fixture()
def things_root(tmp_path):
    """ROOT/things_concepts.tsv, ROOT/triplets/{train_90,test_10}.npy, ROOT/images/<id>.jpg (or <id>/)."""
    root = tmp_path / "things"
    ids = [f"object_{i:02d}" for i in range(N_OBJECTS)]
    (root / "triplets").mkdir(parents=True)
    (root / "things_concepts.tsv").write_text("Word\tuniqueID\n" + "".join(f"w\t{i}\n" for i in ids))
    rng = np.random.default_rng(0)
    triplets = np.array([rng.choice(N_OBJECTS, 3, replace=False) for _ in range(600)])
    np.save(root / "triplets" / "train_90.npy", triplets[:500])
    np.save(root / "triplets" / "test_10.npy", triplets[500:])
    paths = write_images(str(tmp_path / "raw"), N_OBJECTS, size=(40, 30))
    for i, (object_id, path) in enumerate(zip(ids, paths, strict=True)):
        folder = root / "images" / object_id if i % 3 == 0 else root / "images"
        folder.mkdir(parents=True, exist_ok=True)
        os.replace(path, folder / (("00.jpg") if i % 3 == 0 else f"{object_id}.jpg"))
    return root


def _config(root, **images):
    config = base_config()
    config.things.root = str(root)
    config.model.variant = "mu/8"
    config.model.image_size = 32
    config.model.layer = "encoded"
    config.images.batch_size = 8
    config.images.shard_size = 16
    config.progress = "off"
    config.images.update(images)
    config.zero_shot.bootstrap = 0
    return config


def test_model_and_things_images_run_extract_then_zero_shot_and_reuse(things_root, tmp_path):
    config = _config(things_root, token_pooling="mean")
    config.report.plots = False
    ctx = run(config, str(tmp_path / "run"))  # no stages named: every stage whose inputs are there
    assert list(ctx.results)[:3] == ["extract", "zero_shot", "probe"]
    section = ctx.results["extract"]
    assert section["n"] == N_OBJECTS and section["p"] == 32 and section["computed"] == N_OBJECTS
    assert os.path.basename(section["store"]).startswith("things-mu_8-encoded-")
    features = np.load(section["features"])
    assert features.shape == (N_OBJECTS, 32) and np.isfinite(features).all()
    assert 0 <= ctx.results["zero_shot"]["accuracy"] <= 1
    record = json.load(open(os.path.join(section["store"], "record.json")))
    assert record["key"]["model"]["variant"] == "mu/8" and record["key"]["model"]["image_size"] == 32
    assert record["key"]["pooling"] == "mean" and record["key"]["decoding"]["size"] == 32
    config.stages = "extract"
    again = run(config, str(tmp_path / "run"))
    assert again.results["extract"]["computed"] == 0 and again.results["extract"]["store"] == section["store"]
    config.images.token_pooling = "cls"  # mu/8 pools by GAP: no class token
    with pytest.raises(InputError, match="no class token"):
        run(config, str(tmp_path / "run"))


def test_another_layer_gets_another_store_from_the_same_decoded_images(things_root, tmp_path, monkeypatch):
    """Two models with one decoding (as in a sweep): the first decodes every image into the decoded-image
    cache, the second decodes none."""
    from alignment_jax.extract import decode

    decodes = []
    real_decode = decode.decode_image
    monkeypatch.setattr(decode, "decode_image", lambda ref, name, d: decodes.append(name) or real_decode(ref, name, d))
    stores, sections = set(), []
    for layer in ("encoded", "pre_logits"):
        config = _config(things_root, cache=str(tmp_path / "decoded"))
        config.model.layer = layer
        config.images.token_pooling = "mean"
        config.stages = "extract"
        sections.append(run(config, str(tmp_path / "run")).results["extract"])
        stores.add(sections[-1]["store"])
    assert len(stores) == 2
    assert len(decodes) == N_OBJECTS and len(set(decodes)) == N_OBJECTS  # each image once, for the first model
    assert [s["from_cache"] for s in sections] == [0, N_OBJECTS]
    assert sections[0]["image_cache"] == sections[1]["image_cache"]
    assert sections[0]["image_cache"].startswith(str(tmp_path / "decoded"))


def test_stage_inputs():
    config = base_config()
    assert not load("extract").has_inputs(config)
    config.model.variant = "mu/8"
    config.images.source = "folder"
    assert not load("extract").has_inputs(config)
    config.images.root = "/somewhere"
    assert load("extract").has_inputs(config)
    config.features = "given.npy"  # precomputed features win
    assert not load("extract").has_inputs(config)


def test_features_for_images_caches_by_name_and_refuses_another_layer(tmp_path):
    paths = write_images(str(tmp_path / "imgs"), 5, size=(33, 47))
    config = base_config()
    config.model.variant = "mu/8"
    config.progress = "off"
    config.images.resize = "center_crop"
    features = features_for_images(config, paths, "peterson_animals", str(tmp_path / "run"))
    assert features.shape == (5, 32)
    store = tmp_path / "run" / "features" / "peterson_animals"
    assert (store / "object_ids.txt").read_text().split() == paths
    mtime = os.path.getmtime(store / "features.npy")
    np.testing.assert_array_equal(
        features_for_images(config, paths, "peterson_animals", str(tmp_path / "run")), features
    )
    assert os.path.getmtime(store / "features.npy") == mtime
    config.model.layer = "encoded"
    config.images.token_pooling = "mean"
    with pytest.raises(InputError, match="peterson_animals: feature store made another way"):
        features_for_images(config, paths, "peterson_animals", str(tmp_path / "run"))
    with pytest.raises(InputError, match="image file not found"):
        features_for_images(config, [str(tmp_path / "nope.jpg")], "other", str(tmp_path / "run"))


def test_token_pooling_counts_the_class_token_only_where_the_layer_has_it(tmp_path):
    """big_vision prepends the class token after `with_posemb`: its tokens are all patches (mean over all;
    cls is an error), while `encoded` of the same "tok" model leads with the class token."""
    import jax

    from alignment_jax.extract.extractor import fetch
    from alignment_jax.extract.pipeline import model_extractor
    from alignment_jax.models.checkpoints import save_big_vision_npz
    from alignment_jax.models.registry import load_model

    model = load_model("mu/8", image_size=24, pool_type="tok", seed=3)
    save_big_vision_npz(str(tmp_path / "tok.npz"), model.params)
    images = np.random.default_rng(0).integers(0, 256, (2, 24, 24, 3), dtype=np.uint8)
    out = jax.jit(model.apply)(model.preprocess.normalize(images))[1]
    assert out["with_posemb"].shape[1] == 9 and out["encoded"].shape[1] == 10  # 3 x 3 patches; + class token
    config = base_config()
    config.model.variant, config.model.checkpoint = "mu/8", str(tmp_path / "tok.npz")
    config.images.batch_size = 2
    expected = {
        ("with_posemb", "mean"): out["with_posemb"].mean(1),
        ("encoded", "mean"): out["encoded"][:, 1:].mean(1),
        ("encoded", "cls"): out["encoded"][:, 0],
    }
    for (layer, pooling), want in expected.items():
        config.model.layer, config.images.token_pooling = layer, pooling
        extractor, _, _ = model_extractor(config)
        np.testing.assert_allclose(fetch(extractor(images)), want, atol=1e-5, err_msg=f"{layer} {pooling}")
    config.model.layer, config.images.token_pooling = "with_posemb", "cls"
    with pytest.raises(InputError, match="no class token"):
        model_extractor(config)


def test_every_layer_in_one_pass_each_in_its_own_store(things_root, tmp_path, monkeypatch):
    """model.layers=all: one pass over the images (model calls counted) fills one store per layer; a rerun
    and a later single-layer run reuse them; each layer's features are those of a run of that layer alone."""
    from alignment_jax.extract.extractor import Extractor

    calls = []
    call = Extractor.__call__
    monkeypatch.setattr(Extractor, "__call__", lambda self, images: calls.append(self.layers) or call(self, images))
    config = _config(things_root, token_pooling="cls")  # the demo ViT has no class token: its blocks pool by mean
    config.model.update(variant="", name="demo-vit", image_size=0, layer="", layers="all")
    config.stages = "extract"
    ctx = run(config, str(tmp_path / "run"))
    names = ["block00", "block01", "block02", "block03", "head_input"]
    assert len(calls) == -(-N_OBJECTS // 8) and all(c == tuple(names) for c in calls)  # 4 batches of 8, once
    entries = ctx.results["extract"]["layers"]
    assert [e["layer"] for e in entries] == names and [e["depth"] for e in entries] == [0.25, 0.5, 0.75, 1.0, 1.25]
    stores = {os.path.dirname(e["features"]) for e in entries}
    assert len(stores) == 5 and ctx.results["extract"]["features"] == entries[-1]["features"]
    for entry in entries:
        record = json.load(open(os.path.join(os.path.dirname(entry["features"]), "record.json")))
        assert record["complete"] and record["key"]["layer"] == entry["layer"]
        assert record["key"]["pooling"] == ("none" if entry["layer"] == "head_input" else "mean")
    block = np.load(entries[1]["features"])

    calls.clear()
    assert run(config, str(tmp_path / "run")).results["extract"]["computed"] == 0 and not calls
    config.model.update(layers="", layer="block01")  # a single-layer run of the same layer and pooling reuses it
    config.images.token_pooling = "mean"
    again = run(config, str(tmp_path / "run")).results["extract"]
    assert again["computed"] == 0 and again["features"] == entries[1]["features"] and not calls
    alone = run(config, str(tmp_path / "alone")).results["extract"]  # computed afresh in another workdir
    assert alone["computed"] == N_OBJECTS and len(calls) == 4
    np.testing.assert_allclose(np.load(alone["features"]), block, rtol=1e-5, atol=1e-5)


def test_an_interrupted_multi_layer_pass_resumes_every_store(things_root, tmp_path):
    config = _config(things_root, token_pooling="mean")
    config.model.update(variant="", name="demo-vit", image_size=0, layer="", layers="block00,block02")
    config.stages = "extract"
    first = run(config, str(tmp_path / "run")).results["extract"]["layers"]
    complete = {e["layer"]: np.load(e["features"]) for e in first}
    for entry in first:  # as if killed after the first shard: shards 0 of every store on disk, nothing final
        store = os.path.dirname(entry["features"])
        os.makedirs(os.path.join(store, "shards"))
        np.save(os.path.join(store, "shards", "00000.npy"), complete[entry["layer"]][:16])
        os.remove(entry["features"])
        record = json.load(open(os.path.join(store, "record.json")))
        json.dump({**record, "complete": False}, open(os.path.join(store, "record.json"), "w"))
    resumed = run(config, str(tmp_path / "run")).results
    assert resumed["extract"]["computed"] == N_OBJECTS - 16
    for entry in resumed["extract"]["layers"]:
        np.testing.assert_array_equal(np.load(entry["features"]), complete[entry["layer"]])


def test_model_layers_errors(things_root, tmp_path):
    config = _config(things_root, token_pooling="mean")
    config.model.layers = "block00,block07"
    with pytest.raises(InputError, match="model.layers: 'block07' is not an output of this 1-block model"):
        run(config, str(tmp_path / "run"))
    config.features = "precomputed.npy"
    with pytest.raises(InputError, match="model.layers='block00,block07' extracts layers with config.model"):
        run(config, str(tmp_path / "run"))
    config.features, config.model.layers, config.transfer.layers = "", "", "all"
    with pytest.raises(InputError, match="transfer.layers='all' needs model.layers"):
        run(config, str(tmp_path / "run"))
