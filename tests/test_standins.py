"""Every registry entry runs its own path on its stand-in: file format, reader, conversion, preprocessing,
architecture options and default layer, as a real checkpoint would (nothing is downloaded)."""

import dataclasses
import functools
import os

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file

from alignment_jax.errors import InputError
from alignment_jax.models import storage
from alignment_jax.models.checkpoints import flatten
from alignment_jax.models.registry import MODELS, list_models
from alignment_jax.models.standins import STANDIN_DIMS, file_format, standin_arrays, standin_model, write_standin
from alignment_jax.models.vit import decode_variant

D, H = STANDIN_DIMS["width"], STANDIN_DIMS["num_heads"]
IMAGES = np.random.default_rng(0).integers(0, 256, (3, 40, 56, 3), dtype=np.uint8)  # not square: crop vs squash


@functools.partial(jax.jit, static_argnums=0)
def forward(module, params, images):
    """Entries whose stand-ins have the same options (e.g. AugReg B/16 and L/16) share one compilation."""
    return module.apply({"params": params}, images)


def file_placement(name: str, params: dict) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(what, loaded parameter, where the entry's file format puts it) for the parameters each format is
    particular about, read from the stand-in's file contents independently of the reader."""
    spec = MODELS[name]
    raw = standin_arrays(spec)
    p = {k: np.asarray(v) for k, v in flatten(params).items()}
    fmt = file_format(spec)
    block1 = "Transformer/encoderblock_1/"
    if fmt == "augreg_npz":
        pos = raw["Transformer/posembed_input/pos_embedding"]
        return [
            ("class slot folded into cls", p["cls"], raw["cls"] + pos[:, :1]),
            ("grid rows", p["pos_embedding"], pos[:, 1:]),
            ("LayerNorm_2 -> LayerNorm_1", p[block1 + "LayerNorm_1/scale"], raw[block1 + "LayerNorm_2/scale"]),
            ("MlpBlock_3", p[block1 + "MlpBlock_0/Dense_1/kernel"], raw[block1 + "MlpBlock_3/Dense_1/kernel"]),
        ]
    if fmt == "timm_safetensors":
        pos = raw["pos_embed"]
        return [
            ("class slot folded into cls", p["cls"], raw["cls_token"] + pos[:, :1]),
            ("patch conv", p["embedding/kernel"], raw["patch_embed.proj.weight"].transpose(2, 3, 1, 0)),
            (
                "fused qkv -> key",
                p[block1 + "MultiHeadDotProductAttention_0/key/kernel"],
                raw["blocks.1.attn.qkv.weight"][D : 2 * D].T.reshape(D, H, D // H),
            ),
            ("head (out, in)", p["head/kernel"], raw["head.weight"].T),
        ]
    if fmt == "openclip_safetensors":
        return [
            ("class row kept", p["pos_embedding"], raw["visual.positional_embedding"][None]),
            ("projection", p["head/kernel"], raw["visual.proj"]),
            ("ln_pre", p["ln_pre/scale"], raw["visual.ln_pre.weight"]),
            (
                "fused in_proj -> value",
                p[block1 + "MultiHeadDotProductAttention_0/value/kernel"],
                raw["visual.transformer.resblocks.1.attn.in_proj_weight"][2 * D :].T.reshape(D, H, D // H),
            ),
        ]
    prefix = "params/img/" if fmt != "big_vision_npz" else "params/"
    scanned = fmt == "siglip2_npz"
    dense = (
        raw[prefix + "Transformer/encoderblock/MlpBlock_0/Dense_0/kernel"][1]
        if scanned
        else raw[prefix + block1 + "MlpBlock_0/Dense_0/kernel"]
    )
    checks = [
        ("block 1" + (" (scanned in the file)" if scanned else ""), p[block1 + "MlpBlock_0/Dense_0/kernel"], dense),
        ("pos_embedding", p["pos_embedding"], raw[prefix + "pos_embedding"]),
    ]
    if fmt != "big_vision_npz":
        checks.append(("MAP head probe", p["MAPHead_0/probe"], raw["params/img/MAPHead_0/probe"]))
    return checks


VIT_FORMATS = ("augreg_npz", "timm_safetensors", "siglip_npz", "siglip2_npz", "openclip_safetensors", "big_vision_npz")


# the other families (DINOv2, BiT, AligNet) run their stand-ins in tests/test_{dinov2,bit,saved_model}.py
@pytest.mark.parametrize("name", [n for n in list_models() if file_format(MODELS[n]) in VIT_FORMATS])
def test_every_registry_entry_loads_preprocesses_and_extracts_on_its_standin(name):
    spec = MODELS[name]
    model = standin_model(name)
    info = model.info
    assert info["standin"] and info["checkpoint"] == spec.checkpoint and len(info["sha256"]) == 64
    assert (info["name"], info["source"], model.image_size) == (name, spec.source, spec.image_size)
    assert model.preprocess == dataclasses.replace(spec.preprocess, size=spec.image_size)
    assert model.default_layer == spec.default_layer
    for option, value in {**spec.config, **STANDIN_DIMS}.items():  # the entry's options, the stand-in's size
        assert getattr(model.module, option) == value, option
    assert model.module.patch_size == decode_variant(spec.variant)["patch_size"]
    for what, loaded, in_file in file_placement(name, model.params):
        np.testing.assert_array_equal(loaded, in_file, err_msg=f"{name}: {what}")

    x = model.preprocess(IMAGES)
    assert x.shape == (3, spec.image_size, spec.image_size, 3)
    if spec.preprocess.mean is None:  # [-1, 1]; mean/std values reach beyond it
        assert -1 - 1e-6 <= float(x.min()) and float(x.max()) <= 1 + 1e-6
    _, outputs = forward(model.module, model.params, x)
    assert spec.default_layer in outputs, sorted(outputs)
    features = np.asarray(outputs[spec.default_layer])
    dim = spec.config["num_classes"] if spec.default_layer == "logits" else D
    assert features.shape == (3, dim) and np.isfinite(features).all()
    assert np.all(features.std(axis=0) > 0)  # the images give different features
    grid = spec.image_size // model.module.patch_size[0]
    assert outputs["encoded"].shape == (3, grid * grid + (spec.config.get("pool_type") == "tok"), D)


def test_standin_files_are_in_the_real_formats_and_stable(tmp_path):
    """The bytes on disk: keys and sub-trees of the real files, text towers beside the image tower, and the
    same bytes each time (a stable sha256 keeps a runlocal feature store reusable)."""
    expected_keys = {
        "siglip-so400m14-384": ["params/img/MAPHead_0/probe", "params/txt/Embed_0/embedding", "params/t"],
        "siglip2-gopt16-256": ["params/img/Transformer/encoderblock/LayerNorm_0/scale", "params/b"],
        "augreg-b32-i21k": [
            "Transformer/posembed_input/pos_embedding",
            "Transformer/encoderblock_1/MlpBlock_3/Dense_0/bias",
        ],
        "demo-vit": ["params/head/kernel"],
    }
    for name, keys in expected_keys.items():
        path = str(tmp_path / f"{name}.npz")
        write_standin(MODELS[name], path)
        with np.load(path) as f:
            assert set(keys) <= set(f.files), name
            assert all(f[k].dtype == np.float32 for k in f.files)
        first = open(path, "rb").read()
        write_standin(MODELS[name], path)
        assert open(path, "rb").read() == first, name
    with np.load(str(tmp_path / "siglip-so400m14-384.npz")) as f:
        assert f["params/img/pos_embedding"].shape == (1, 27 * 27, D)  # 384 px / 14 = 27 patches a side
        assert f["params/img/Transformer/encoderblock_1/MultiHeadDotProductAttention_0/query/kernel"].shape == (
            D, H, D // H,
        )  # fmt: skip
    with np.load(str(tmp_path / "siglip2-gopt16-256.npz")) as f:
        assert f["params/img/Transformer/encoderblock/MlpBlock_0/Dense_0/kernel"].shape[0] == STANDIN_DIMS["depth"]
    path = str(tmp_path / "open_clip_model.safetensors")
    write_standin(MODELS["openclip-vit-l14-openai"], path)
    first = open(path, "rb").read()
    write_standin(MODELS["openclip-vit-l14-openai"], path)
    assert open(path, "rb").read() == first
    tensors = load_file(path)
    assert tensors["visual.positional_embedding"].shape == (16 * 16 + 1, D) and "visual.conv1.bias" not in tensors
    assert {"token_embedding.weight", "text_projection", "logit_scale"} <= set(tensors)


def test_standins_never_download_nor_enter_the_users_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNMENT_JAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(storage, "_openers", lambda path: pytest.fail(f"tried to download {path}"))
    model = standin_model("siglip-b16-224", dtype="bfloat16")
    assert model.module.dtype_mm == "bfloat16" and not os.path.exists(tmp_path / "cache")
    assert model.info["checkpoint"] == MODELS["siglip-b16-224"].checkpoint  # the `:img` sub-tree was read
    with pytest.raises(InputError, match="model.standin: 'B/16' is not a registry entry"):
        standin_model("B/16")
