"""Checkpoint files: npz / orbax round trips, legacy vit_jax layout, resampling, strict matching, errors."""

import hashlib
import io
import os
import subprocess
import sys
import textwrap

import jax
import ml_dtypes
import numpy as np
import pytest

from alignment_jax import atomic
from alignment_jax.errors import InputError
from alignment_jax.models import checkpoints, storage
from alignment_jax.models.checkpoints import flatten, unflatten
from alignment_jax.models.registry import load_model

IMAGES = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)


def tiny(**kw):
    return load_model("mu/8", image_size=32, pool_type="tok", num_classes=5, seed=kw.pop("seed", 0), **kw)


def outputs(model, images=IMAGES):
    return jax.jit(model.apply)(images)[1]


def same_tree(a, b):
    fa, fb = flatten(a), flatten(b)
    return fa.keys() == fb.keys() and all(np.array_equal(np.asarray(fa[k]), np.asarray(fb[k])) for k in fa)


def test_npz_round_trip_is_exact(tmp_path):
    model = tiny()
    path = str(tmp_path / "m.npz")
    checkpoints.save_big_vision_npz(path, model.params)
    with np.load(path) as f:
        assert "params/Transformer/encoderblock_0/MultiHeadDotProductAttention_0/query/kernel" in f.files
        assert "params/pos_embedding" in f.files and "params/embedding/kernel" in f.files  # what timm's loader reads
    assert same_tree(checkpoints.read_npz(path), model.params)
    again = load_model("mu/8", path)
    assert same_tree(again.params, model.params)
    assert again.image_size == 32 and again.module.pool_type == "tok" and again.module.num_classes == 5
    checkpoints.save_big_vision_npz(str(tmp_path / "again.npz"), again.params)
    with np.load(path) as a, np.load(str(tmp_path / "again.npz")) as b:
        assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)


def test_prefixes_subtrees_and_bfloat16(tmp_path):
    model = tiny()
    flat = flatten(model.params)
    two_tower = {f"params/img/{k}": np.asarray(v).astype(ml_dtypes.bfloat16) for k, v in flat.items()}
    two_tower["params/txt/head/kernel"] = np.zeros((3, 3), np.float32)
    two_tower["opt/state/mu"] = np.zeros(2, np.float32)
    path = str(tmp_path / "two_tower.npz")
    np.savez(path, **two_tower)
    with np.load(path) as f:
        assert f["params/img/cls"].dtype.kind == "V"  # numpy stores bfloat16 as 2-byte void
    img = checkpoints.read_npz(path, "img")
    assert img["cls"].dtype == ml_dtypes.bfloat16
    loaded = load_model("mu/8", path + ":img")
    expected = jax.tree.map(lambda x: np.asarray(x).astype(ml_dtypes.bfloat16).astype(np.float32), model.params)
    assert same_tree(loaded.params, expected)
    np.savez(str(tmp_path / "opt.npz"), **{f"opt/target/{k}": np.asarray(v) for k, v in flat.items()})
    assert same_tree(checkpoints.read_npz(str(tmp_path / "opt.npz")), model.params)
    with pytest.raises(InputError, match="no parameters under 'params/txt2/'"):
        checkpoints.read_npz(path, "txt2")


def test_orbax_round_trip_onto_a_sharding(tmp_path):
    model = tiny(scan=True)
    folder = str(tmp_path / "orbax")
    checkpoints.save_orbax(folder, model.params)
    mesh = jax.make_mesh((1,), ("data",))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    restored = checkpoints.read_orbax(folder, sharding=replicated)
    assert same_tree(restored, model.params)
    assert all(leaf.sharding == replicated for leaf in jax.tree.leaves(restored))
    loop = load_model("mu/8", folder, sharding=replicated)  # scan checkpoint into a loop model
    assert "encoderblock_0" in loop.params["Transformer"]
    np.testing.assert_allclose(outputs(loop)["logits"], outputs(model)["logits"], atol=1e-5)
    checkpoints.save_orbax(folder, {"params": loop.params, "step": np.int32(3)})  # a train state: params picked
    assert same_tree(load_model("mu/8", folder).params, loop.params)


def test_orbax_restores_onto_two_devices():
    script = textwrap.dedent(
        """
        import os, sys, tempfile, jax, numpy as np
        from alignment_jax.models import checkpoints
        from alignment_jax.models.registry import load_model
        assert len(jax.devices()) == 2
        model = load_model("mu/8", image_size=16, pool_type="gap")
        folder = os.path.join(tempfile.mkdtemp(), "ckpt")
        checkpoints.save_orbax(folder, model.params)
        mesh = jax.make_mesh((2,), ("data",))
        replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        loaded = load_model("mu/8", folder, sharding=replicated)
        leaf = loaded.params["embedding"]["kernel"]
        assert leaf.sharding == replicated and len(leaf.addressable_shards) == 2
        assert np.array_equal(np.asarray(leaf), np.asarray(model.params["embedding"]["kernel"]))
        print("ok")
        """
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def legacy_twin(params, rng):
    """The same model written the way vit_jax / AugReg files are: pre-linen numbering and a class slot
    in `Transformer/posembed_input/pos_embedding` (class token concatenated before adding it)."""
    flat = {}
    for name, value in flatten(params).items():
        name = name.replace("MultiHeadDotProductAttention_0", "MultiHeadDotProductAttention_1")
        name = name.replace("LayerNorm_1", "LayerNorm_2").replace("MlpBlock_0", "MlpBlock_3")
        flat[name] = np.asarray(value)
    cls_row = rng.normal(size=flat["cls"].shape).astype(np.float32)
    flat["cls"] = flat["cls"] - cls_row
    pe = flat.pop("pos_embedding")
    flat["Transformer/posembed_input/pos_embedding"] = np.concatenate([cls_row, pe], axis=1)
    return flat


def test_legacy_vit_jax_layout_loads_into_the_same_outputs(tmp_path):
    model = tiny()
    legacy = legacy_twin(model.params, np.random.default_rng(1))
    assert "Transformer/encoderblock_0/LayerNorm_2/scale" in legacy
    path = str(tmp_path / "legacy.npz")
    np.savez(path, **legacy)
    loaded = load_model("mu/8", path)
    assert loaded.module.pool_type == "tok" and loaded.image_size == 32
    a, b = outputs(loaded), outputs(model)
    for name in ("block00", "encoded", "logits"):
        np.testing.assert_allclose(a[name], b[name], atol=1e-5, err_msg=name)
    clip_style = load_model("mu/8", path, posemb_with_cls=True)  # keeps the class row instead of folding it
    assert clip_style.params["pos_embedding"].shape == (1, 17, 32)
    np.testing.assert_allclose(outputs(clip_style)["logits"], b["logits"], atol=1e-5)


def test_position_embeddings_are_resampled_to_the_image_size(tmp_path):
    model = tiny()
    params = jax.tree.map(np.asarray, model.params)
    i, j = np.meshgrid(np.arange(4.0), np.arange(4.0), indexing="ij")
    ramp = (0.5 * i + 2.0 * j).reshape(1, 16, 1) * np.ones((1, 1, 32))
    params["pos_embedding"] = ramp.astype(np.float32)
    path = str(tmp_path / "ramp.npz")
    checkpoints.save_big_vision_npz(path, params)
    bigger = load_model("mu/8", path, image_size=56)  # 4x4 -> 7x7 grid
    got = np.asarray(bigger.params["pos_embedding"]).reshape(7, 7, 32)[..., 0]
    ii, jj = np.meshgrid(np.linspace(0, 3, 7), np.linspace(0, 3, 7), indexing="ij")
    np.testing.assert_allclose(got, 0.5 * ii + 2.0 * jj, atol=1e-5)  # bilinear keeps a linear ramp linear
    assert outputs(bigger, np.zeros((1, 56, 56, 3), np.float32))["block00"].shape == (1, 50, 32)
    with_slot = checkpoints.resample_posemb(np.concatenate([np.full((1, 1, 32), 9.0), ramp], 1), 50, True)
    assert with_slot.shape == (1, 50, 32) and np.all(with_slot[0, 0] == 9.0)
    with pytest.raises(InputError, match="square grids"):
        checkpoints.resample_posemb(ramp[:, :12], 16, False)


def test_strict_matching_lists_every_problem_and_dont_load_keeps_init(tmp_path):
    model = tiny()
    flat = {k: np.asarray(v) for k, v in flatten(model.params).items()}
    del flat["Transformer/encoder_norm/scale"]
    flat["Transformer/encoderblock_0/extra/kernel"] = np.zeros((2, 2), np.float32)
    flat["Transformer/encoderblock_0/LayerNorm_0/bias"] = np.zeros(7, np.float32)
    path = str(tmp_path / "bad.npz")
    np.savez(path, **flat)
    with pytest.raises(InputError) as err:
        load_model("mu/8", path)
    message = str(err.value)
    for fragment in (
        "1 missing ['Transformer/encoder_norm/scale']",
        "1 unexpected ['Transformer/encoderblock_0/extra/kernel']",
        "Transformer/encoderblock_0/LayerNorm_0/bias (7,) vs model (32,)",
        "(= mu/8)",
    ):
        assert fragment in message
    good = str(tmp_path / "good.npz")
    checkpoints.save_big_vision_npz(good, model.params)
    with pytest.raises(InputError, match="mis-shaped.*head/kernel"):
        load_model("mu/8", good, num_classes=7)
    fresh_head = load_model("mu/8", good, num_classes=7, dont_load=["head/.*"], seed=3)
    assert fresh_head.params["head"]["kernel"].shape == (32, 7)
    assert not np.any(np.asarray(fresh_head.params["head"]["kernel"]))  # big_vision zero-inits the head
    assert np.array_equal(fresh_head.params["cls"], model.params["cls"])
    with pytest.raises(InputError, match="matches no model parameter"):
        load_model("mu/8", good, dont_load=["heads/.*"])


def test_clear_errors_for_truncated_file_wrong_variant_missing_key(tmp_path):
    model = tiny()
    path = str(tmp_path / "m.npz")
    checkpoints.save_big_vision_npz(path, model.params)
    data = open(path, "rb").read()
    cut = str(tmp_path / "cut.npz")
    with open(cut, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.npz: not a readable .npz checkpoint.*truncated"):
        load_model("mu/8", cut)
    described = r"width 32, depth 1, mlp 128, heads 2, patch 8 \(= mu/8\), not variant 'Ti/8'"
    with pytest.raises(InputError, match=described):
        load_model("Ti/8", path)
    flat = {k: np.asarray(v) for k, v in flatten(model.params).items() if k != "embedding/kernel"}
    np.savez(str(tmp_path / "nokernel.npz"), **flat)
    with pytest.raises(InputError, match="no 'embedding/kernel' parameter"):
        load_model("mu/8", str(tmp_path / "nokernel.npz"))
    with pytest.raises(InputError, match="checkpoint not found"):
        load_model("mu/8", str(tmp_path / "absent.npz"))
    np.save(tmp_path / "array.npy", np.zeros((2, 3), np.float32))  # a .npy given by mistake
    with pytest.raises(InputError, match=r"array.npy: a single array \(2, 3\), not a checkpoint"):
        load_model("mu/8", str(tmp_path / "array.npy"))


def test_names_are_normalized_like_big_vision():
    legacy = unflatten(
        {
            "Transformer/pos_embedding": np.zeros((1, 4, 2)),
            "Transformer/encoderblock_10/LayerNorm_2/scale": np.ones(2),
            "Transformer/encoderblock_9/LayerNorm_0/scale": np.ones(2),
            "probe": np.zeros((1, 1, 2)),
            "MlpBlock_0/Dense_0/kernel": np.zeros((2, 2)),
        }
    )
    names = set(flatten(checkpoints.normalize_names(legacy)))
    assert names == {
        "pos_embedding",
        "Transformer/encoderblock_1/LayerNorm_0/scale",  # 9 < 10: renumbered by value, not as text
        "Transformer/encoderblock_0/LayerNorm_0/scale",
        "MAPHead_0/probe",
        "MAPHead_0/MlpBlock_0/Dense_0/kernel",
    }
    assert checkpoints.split_subtree("gs://b/x.npz:img") == ("gs://b/x.npz", "img")
    assert checkpoints.split_subtree("/a:b/x.npz") == ("/a:b/x.npz", "")


def test_remote_paths_are_cached_and_hashed_without_network(tmp_path, monkeypatch):
    source = tmp_path / "src.npz"
    source.write_bytes(b"0123456789" * 1000)
    url = source.as_uri()
    cache = str(tmp_path / "cache")
    local = storage.fetch(url, cache)
    assert local.startswith(cache) and open(local, "rb").read() == source.read_bytes()
    assert storage.sha256(local) == hashlib.sha256(source.read_bytes()).hexdigest()
    source.unlink()
    assert storage.fetch(url, cache) == local  # served from the cache
    monkeypatch.setattr(storage, "_openers", lambda path: [("nothing", _refuse)])
    with pytest.raises(InputError, match="gs://bucket/x.npz: cannot open \\(nothing: OSError: offline\\)"):
        storage.fetch("gs://bucket/x.npz", cache)
    assert not [f for f in os.listdir(cache) if atomic.TEMPORARY in f]


def _refuse(path):
    raise OSError("offline")


class _Cut(io.BytesIO):
    """A response whose connection dropped: it announces 1000 bytes and ends after 600."""

    headers = {"Content-Length": "1000"}


def test_a_download_that_ends_early_is_not_cached(tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    monkeypatch.setattr(storage, "_openers", lambda path: [("cut", lambda url: _Cut(b"x" * 600))])
    with pytest.raises(InputError, match="https://host/m.npz: download stopped after 600 of 1000 bytes"):
        storage.fetch("https://host/m.npz", cache)
    assert os.listdir(cache) == []  # nothing half-downloaded is served next time
    monkeypatch.setattr(storage, "_openers", lambda path: [("whole", lambda url: _Cut(b"x" * 1000))])
    assert open(storage.fetch("https://host/m.npz", cache), "rb").read() == b"x" * 1000
