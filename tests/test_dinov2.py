"""DINOv2: both file layouts (timm, Hugging Face) read into the Flax ViT, position embeddings resampled as timm,
registers and SwiGLU, checked against an independent torch re-derivation where torch imports, and against
timm / transformers themselves where those import (docs/models.md says how to run them)."""

import dataclasses
import importlib.util
import os

import jax
import numpy as np
import pytest
from safetensors.numpy import save_file

from alignment_jax.extract.pipeline import class_tokens
from alignment_jax.models import checkpoints
from alignment_jax.models.registry import MODELS, load_model
from alignment_jax.models.standins import (
    STANDIN_DIMS,
    dinov2_hf_arrays,
    dinov2_original_arrays,
    standin_arrays,
    standin_model,
)

HAS_TORCH = importlib.util.find_spec("torch") is not None
D, DEPTH, M, H = (STANDIN_DIMS[k] for k in ("width", "depth", "mlp_dim", "num_heads"))
IMAGES = np.random.default_rng(1).integers(0, 256, (2, 50, 70, 3), dtype=np.uint8)
NAMES = [n for n in MODELS if n.startswith("dinov2-")]


def _timm_or_reason() -> str:
    """'' where timm (and the torchvision it needs) import, else why not."""
    try:
        import timm  # noqa: F401
    except Exception as e:  # torchvision failing to load raises other errors than ImportError
        return f"timm does not import here ({type(e).__name__}: {e}); run on a machine with torch + timm"
    return ""


def write(tmp_path, name: str, layout: str = "timm") -> str:
    arrays = standin_arrays(MODELS[name])
    path = str(tmp_path / f"{name}-{layout}.safetensors")
    layouts = {"timm": arrays, "hf": dinov2_hf_arrays(arrays), "original": dinov2_original_arrays(arrays)}
    save_file(layouts[layout], path)
    return path


def features(name: str, path: str, size: int = 224) -> dict:
    model = load_model(name, path, image_size=size, **STANDIN_DIMS)
    return model, {k: np.asarray(v) for k, v in model.apply(model.preprocess(IMAGES))[1].items()}


def test_registry_entries():
    assert sorted(NAMES) == sorted(f"dinov2-{s}14{r}" for s in "sblg" for r in ("", "-reg4"))
    g = MODELS["dinov2-g14-reg4"]
    assert g.config["num_heads"] == 24 and g.config["mlp"] == "swiglu" and g.config["num_registers"] == 4
    assert g.checkpoint.endswith("vit_giant_patch14_reg4_dinov2.lvd142m/resolve/main/model.safetensors")
    pp = MODELS["dinov2-b14"].preprocess
    assert (pp.size, pp.crop, pp.crop_fraction, pp.method) == (224, True, 0.875, "bicubic")
    assert MODELS["dinov2-b14"].default_layer == "pre_logits" and MODELS["dinov2-b14"].checkpoint_size == 518


@pytest.mark.parametrize("name", ["dinov2-s14", "dinov2-b14-reg4", "dinov2-g14", "dinov2-g14-reg4"])
def test_every_layout_gives_the_same_model_and_tokens(tmp_path, name):
    """The timm file and the same weights in Hugging Face's and Meta's original layouts load to the same
    parameters; the 37 x 37 grid of the 518 px release becomes 16 x 16 at 224 px; registers follow the class token."""
    spec = MODELS[name]
    timm_model, timm_out = features(name, write(tmp_path, name, "timm"))
    for layout in ("hf", "original"):
        other, other_out = features(name, write(tmp_path, name, layout))
        assert other.info["source"] == "timm"  # the registry's source; the reader detected the layout
        for a, b in zip(jax.tree.leaves(timm_model.params), jax.tree.leaves(other.params), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6, err_msg=layout)
        np.testing.assert_allclose(timm_out["pre_logits"], other_out["pre_logits"], rtol=1e-5, atol=1e-5)
    registers = spec.config["num_registers"]
    assert timm_out["encoded"].shape == (2, 1 + registers + 16 * 16, D)
    assert timm_model.params["pos_embedding"].shape == (1, 16 * 16, D)
    np.testing.assert_array_equal(timm_out["pre_logits"], timm_out["encoded"][:, 0])  # CLS after the final norm
    assert class_tokens(timm_model.module, "block01") == 1 + registers
    assert class_tokens(timm_model.module, "with_posemb") == 0
    if registers:
        reg = standin_arrays(spec)["reg_token"]
        np.testing.assert_array_equal(timm_model.params["registers"], reg)
    if spec.config.get("mlp") == "swiglu":
        assert timm_model.params["Transformer"]["encoderblock_0"]["MlpBlock_0"]["Dense_0"]["kernel"].shape == (D, 2 * M)


def test_loading_at_518_keeps_the_grid_and_a_bare_variant_infers_dinov2(tmp_path):
    path = write(tmp_path, "dinov2-b14-reg4")
    arrays = standin_arrays(MODELS["dinov2-b14-reg4"])
    model = load_model("B/14", path, image_size=518, **STANDIN_DIMS)
    np.testing.assert_array_equal(model.params["pos_embedding"], arrays["pos_embed"])
    assert (model.module.layer_scale, model.module.num_registers, model.module.gelu) == (True, 4, "exact")
    assert model.image_size == 518 and model.module.pool_type == "tok"
    assert model.preprocess == dataclasses.replace(MODELS["dinov2-b14"].preprocess, size=518)  # DINOv2's own
    bare = load_model("B/14", path, **STANDIN_DIMS)  # no image size: the checkpoint's grid
    assert bare.image_size == 518


def test_antialiased_bicubic_weights_by_their_definition():
    np.testing.assert_allclose(checkpoints.antialiased_bicubic_weights(9, 9), np.eye(9), atol=1e-12)
    w = checkpoints.antialiased_bicubic_weights(37, 16)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)  # constants stay constant
    # shrinking by 37/16 widens the kernel to 4 * 37/16 input cells: more than a plain cubic's 4 taps
    assert (np.abs(w[8]) > 0).sum() > 4
    # symmetric: row i mirrors row n-1-i
    np.testing.assert_allclose(w, w[::-1, ::-1], atol=1e-12)
    grid = np.random.default_rng(0).standard_normal((1, 37 * 37, 3)).astype(np.float32)
    out = checkpoints.resample_posemb(grid, 16 * 16, class_slot=False, method="bicubic")
    assert out.shape == (1, 256, 3)
    bilinear = checkpoints.resample_posemb(grid, 16 * 16, class_slot=False)
    assert np.abs(out - bilinear).max() > 1e-3  # the method matters


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (pip install torch)")
@pytest.mark.parametrize("sizes", [(37, 16), (37, 32), (37, 37), (16, 37), (7, 3)])
def test_bicubic_resampling_matches_torch_interpolate(sizes):
    import torch

    n_in, n_out = sizes
    grid = np.random.default_rng(n_in + n_out).standard_normal((1, 1 + n_in * n_in, 8)).astype(np.float32)
    ours = checkpoints.resample_posemb(grid, 1 + n_out * n_out, class_slot=True, method="bicubic")
    t = torch.from_numpy(grid[0, 1:].reshape(n_in, n_in, 8)).permute(2, 0, 1)[None]
    ref = torch.nn.functional.interpolate(t, size=(n_out, n_out), mode="bicubic", antialias=True, align_corners=False)
    ref = ref[0].permute(1, 2, 0).reshape(1, n_out * n_out, 8).numpy()
    np.testing.assert_array_equal(ours[:, :1], grid[:, :1])
    np.testing.assert_allclose(ours[:, 1:], ref, rtol=1e-5, atol=1e-5)


def _torch_dinov2(arrays: dict, images: np.ndarray, heads: int) -> np.ndarray:
    """An independent torch forward pass of timm's DINOv2 from the timm-layout arrays (timm's `_pos_embed`,
    `Block` with LayerScale, SwiGLUPacked), written from the papers' definitions: the CLS token after the norm."""
    import torch
    import torch.nn.functional as F

    t = {k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()}
    x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2)
    x = F.conv2d(x, t["patch_embed.proj.weight"], t["patch_embed.proj.bias"], stride=14)
    b, d, gh, gw = x.shape
    x = x.flatten(2).transpose(1, 2)
    pos = t["pos_embed"]
    slot = pos.shape[1] == int(round((pos.shape[1] - 1) ** 0.5)) ** 2 + 1
    grid = pos[:, 1:] if slot else pos
    g = int(round(grid.shape[1] ** 0.5))
    grid = grid.reshape(1, g, g, d).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", antialias=True, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, gh * gw, d)
    cls = t["cls_token"].expand(b, -1, -1)
    if slot:
        x = torch.cat([cls, x], 1) + torch.cat([pos[:, :1], grid], 1)
    else:
        x = torch.cat([cls, t["reg_token"].expand(b, -1, -1), x + grid], 1)
    depth = len({k.split(".")[1] for k in arrays if k.startswith("blocks.")})
    for i in range(depth):
        p = lambda n, i=i: t[f"blocks.{i}.{n}"]  # noqa: E731
        y = F.layer_norm(x, (d,), p("norm1.weight"), p("norm1.bias"), eps=1e-6)
        q, k, v = F.linear(y, p("attn.qkv.weight"), p("attn.qkv.bias")).reshape(b, -1, 3, heads, d // heads).unbind(2)
        att = torch.softmax(torch.einsum("bqhc,bkhc->bhqk", q, k) / (d // heads) ** 0.5, -1)
        y = torch.einsum("bhqk,bkhc->bqhc", att, v).reshape(b, -1, d)
        x = x + p("ls1.gamma") * F.linear(y, p("attn.proj.weight"), p("attn.proj.bias"))
        y = F.layer_norm(x, (d,), p("norm2.weight"), p("norm2.bias"), eps=1e-6)
        y = F.linear(y, p("mlp.fc1.weight"), p("mlp.fc1.bias"))
        if p("mlp.fc1.weight").shape[0] == 2 * p("mlp.fc2.weight").shape[1]:
            gate, value = y.chunk(2, -1)
            y = F.silu(gate) * value
        else:
            y = F.gelu(y)
        x = x + p("ls2.gamma") * F.linear(y, p("mlp.fc2.weight"), p("mlp.fc2.bias"))
    x = F.layer_norm(x, (d,), t["norm.weight"], t["norm.bias"], eps=1e-6)
    return x[:, 0].numpy()


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (pip install torch)")
@pytest.mark.parametrize("name", ["dinov2-s14", "dinov2-l14-reg4", "dinov2-g14-reg4"])
def test_features_match_an_independent_torch_forward(tmp_path, name):
    arrays = standin_arrays(MODELS[name])
    model, out = features(name, write(tmp_path, name))
    ref = _torch_dinov2(arrays, np.asarray(model.preprocess(IMAGES)), H)
    np.testing.assert_allclose(out["pre_logits"], ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["dinov2-s14", "dinov2-b14-reg4", "dinov2-g14-reg4"])
def test_features_match_timm(tmp_path, name):
    """timm's own DINOv2 (same options at the stand-in's size) loads the same 518 px file through its
    checkpoint filter (which resamples the position embedding) and gives our features to 1e-4."""
    reason = _timm_or_reason()
    if reason:
        pytest.skip(reason)
    import torch
    from timm.layers import SwiGLUPacked
    from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

    spec = MODELS[name]
    registers, swiglu = spec.config["num_registers"], spec.config.get("mlp") == "swiglu"
    kw = dict(mlp_layer=SwiGLUPacked, act_layer=torch.nn.SiLU, mlp_ratio=2 * M / D) if swiglu else {}
    model = VisionTransformer(
        img_size=224, patch_size=14, embed_dim=D, depth=DEPTH, num_heads=H, init_values=1e-5, num_classes=0,
        reg_tokens=registers, no_embed_class=bool(registers), **({"mlp_ratio": M / D} | kw),
    )  # fmt: skip
    arrays = standin_arrays(spec)
    state = checkpoint_filter_fn({k: torch.from_numpy(v) for k, v in arrays.items()}, model)
    model.load_state_dict(state)
    ours, out = features(name, write(tmp_path, name))
    x = torch.from_numpy(np.asarray(ours.preprocess(IMAGES))).permute(0, 3, 1, 2)
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(out["pre_logits"], ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["dinov2-b14", "dinov2-b14-reg4", "dinov2-g14"])
def test_hf_layout_matches_transformers(tmp_path, name):
    """transformers' Dinov2Model (Dinov2WithRegistersModel) reads the Hugging Face layout file; its pooled
    output (CLS after the layernorm) is our pre_logits, at 518 px where no resampling is involved."""
    if importlib.util.find_spec("transformers") is None or not HAS_TORCH:
        pytest.skip("transformers and torch are not both installed (pip install torch transformers)")
    import torch
    import transformers

    spec = MODELS[name]
    registers, swiglu = spec.config["num_registers"], spec.config.get("mlp") == "swiglu"
    common = dict(hidden_size=D, num_hidden_layers=DEPTH, num_attention_heads=H, image_size=518, patch_size=14)
    ratio = (M * 3 // 2 if swiglu else M) // D  # SwiGLU: hidden = (int(D * ratio * 2 / 3) + 7) // 8 * 8 = M
    common |= dict(mlp_ratio=ratio, use_swiglu_ffn=swiglu, layer_norm_eps=1e-6)
    if registers:
        config = transformers.Dinov2WithRegistersConfig(num_register_tokens=registers, **common)
        cls = transformers.Dinov2WithRegistersModel
    else:
        config, cls = transformers.Dinov2Config(**common), transformers.Dinov2Model
    folder = tmp_path / "hf"  # as downloaded: config.json + model.safetensors, read by from_pretrained
    config.save_pretrained(folder)
    path = write(tmp_path, name, "hf")
    os.replace(path, folder / "model.safetensors")
    model = cls.from_pretrained(folder).eval()
    ours = load_model(name, str(folder / "model.safetensors"), image_size=518, **STANDIN_DIMS)
    x = np.asarray(ours.preprocess(IMAGES[:, :50, :50]))
    out = {k: np.asarray(v) for k, v in ours.apply(x)[1].items()}
    x = torch.from_numpy(np.array(x)).permute(0, 3, 1, 2)
    with torch.no_grad():
        ref = model(pixel_values=x).pooler_output.numpy()
    np.testing.assert_allclose(out["pre_logits"], ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_every_entry_runs_on_its_standin(name):
    """Reader, grid resampling, preprocessing (crop, ImageNet statistics) and the default layer of each entry."""
    spec = MODELS[name]
    model = standin_model(name)
    assert model.info["checkpoint"] == spec.checkpoint and model.default_layer == "pre_logits"
    x = model.preprocess(IMAGES)
    assert x.shape == (2, 224, 224, 3) and float(x.min()) < -1.0  # mean/std scaling reaches below -1
    _, out = model.apply(x)
    registers = spec.config["num_registers"]
    assert out["block01"].shape == (2, 1 + registers + 256, D)
    features = np.asarray(out["pre_logits"])
    assert features.shape == (2, D) and np.all(features.std(axis=0) > 0)


def test_standin_runs_through_the_registry_path():
    model = standin_model("dinov2-s14-reg4")
    assert model.info["standin"] and model.info["config"]["num_registers"] == 4
    assert model.preprocess == dataclasses.replace(MODELS["dinov2-s14-reg4"].preprocess, size=224)
    _, out = model.apply(model.preprocess(IMAGES))
    assert np.isfinite(np.asarray(out["pre_logits"])).all() and out["pre_logits"].shape == (2, D)
