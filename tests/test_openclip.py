"""OpenCLIP / timm state dicts into the Flax ViT: layouts written here, checked against torch-semantics numpy."""

import importlib.util
import time

import jax
import numpy as np
import pytest
from safetensors.numpy import save_file
from scipy.special import erf

from alignment_jax.errors import InputError
from alignment_jax.models import openclip
from alignment_jax.models.checkpoints import infer_config
from alignment_jax.models.registry import load_model

WIDTH, HEADS, DEPTH, PATCH, MLP, EMBED, SIZE = 32, 2, 2, 8, 128, 16, 32
HAS_TORCH = importlib.util.find_spec("torch") is not None


def openclip_state_dict(seed=0, width=WIDTH, depth=DEPTH, patch=PATCH, mlp=MLP, embed=EMBED, grid=SIZE // PATCH):
    """Random weights under OpenCLIP's names and torch layouts (a full CLIP model: visual.* plus text keys)."""
    rng = np.random.default_rng(seed)

    def r(*shape, scale=0.1, center=0.0):
        return (center + scale * rng.standard_normal(shape)).astype(np.float32)

    sd = {
        "visual.conv1.weight": r(width, 3, patch, patch, scale=0.05),
        "visual.class_embedding": r(width),
        "visual.positional_embedding": r(grid * grid + 1, width),
        "visual.ln_pre.weight": r(width, center=1.0),
        "visual.ln_pre.bias": r(width),
        "visual.ln_post.weight": r(width, center=1.0),
        "visual.ln_post.bias": r(width),
        "visual.proj": r(width, embed, scale=width**-0.5),
        "transformer.resblocks.0.attn.in_proj_weight": r(3 * width, width),  # text tower: ignored
        "logit_scale": r(1),
    }
    for i in range(depth):
        b = f"visual.transformer.resblocks.{i}."
        sd.update(
            {
                b + "ln_1.weight": r(width, center=1.0),
                b + "ln_1.bias": r(width),
                b + "attn.in_proj_weight": r(3 * width, width, scale=width**-0.5),
                b + "attn.in_proj_bias": r(3 * width),
                b + "attn.out_proj.weight": r(width, width, scale=width**-0.5),
                b + "attn.out_proj.bias": r(width),
                b + "ln_2.weight": r(width, center=1.0),
                b + "ln_2.bias": r(width),
                b + "mlp.c_fc.weight": r(mlp, width, scale=width**-0.5),
                b + "mlp.c_fc.bias": r(mlp),
                b + "mlp.c_proj.weight": r(width, mlp, scale=mlp**-0.5),
                b + "mlp.c_proj.bias": r(width),
            }
        )
    return sd


def timm_state_dict(seed=0, classes=10):
    """Random weights under timm's ViT names (class token, pos_embed with a class row, qkv fused)."""
    clip = openclip_state_dict(seed)
    rng = np.random.default_rng(seed + 1)
    sd = {
        "patch_embed.proj.weight": clip["visual.conv1.weight"],
        "patch_embed.proj.bias": (0.1 * rng.standard_normal(WIDTH)).astype(np.float32),
        "cls_token": clip["visual.class_embedding"].reshape(1, 1, WIDTH),
        "pos_embed": clip["visual.positional_embedding"][None],
        "norm.weight": clip["visual.ln_post.weight"],
        "norm.bias": clip["visual.ln_post.bias"],
        "head.weight": (0.1 * rng.standard_normal((classes, WIDTH))).astype(np.float32),
        "head.bias": (0.1 * rng.standard_normal(classes)).astype(np.float32),
    }
    names = {"ln_1": "norm1", "ln_2": "norm2", "attn.in_proj_": "attn.qkv.", "attn.out_proj": "attn.proj"}
    names |= {"mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
    for key, value in clip.items():
        if key.startswith("visual.transformer.resblocks."):
            key = key.replace("visual.transformer.resblocks.", "blocks.")
            for old, new in names.items():
                key = key.replace(old, new)
            sd[key] = value
    return sd


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * w + b


def act(x, kind):
    return 0.5 * x * (1 + erf(x / np.sqrt(2))) if kind == "exact" else x / (1 + np.exp(-1.702 * x))


def linear(x, w, b=None):
    """torch.nn.functional.linear: x @ W^T + b, W (out, in)."""
    return x @ w.T + (0 if b is None else b)


def torch_semantics_forward(sd, images_nchw, *, layout, gelu, eps, heads=HEADS):
    """The forward pass as OpenCLIP's VisionTransformer / timm's VisionTransformer compute it, float64."""
    p = {k.removeprefix("visual."): np.asarray(v, np.float64) for k, v in sd.items()}
    names = dict(
        conv="conv1.weight", blocks="transformer.resblocks.", ln1="ln_1", ln2="ln_2", qkv="attn.in_proj_",
        out="attn.out_proj", fc1="mlp.c_fc", fc2="mlp.c_proj", final="ln_post",
    ) if layout == "openclip" else dict(
        conv="patch_embed.proj.weight", blocks="blocks.", ln1="norm1", ln2="norm2", qkv="attn.qkv.",
        out="attn.proj", fc1="mlp.fc1", fc2="mlp.fc2", final="norm",
    )  # fmt: skip
    w = p[names["conv"]]
    b, _, hh, ww = images_nchw.shape
    ps = w.shape[-1]
    patches = images_nchw.reshape(b, 3, hh // ps, ps, ww // ps, ps)
    x = np.einsum("bchpwq,dcpq->bhwd", patches, w).reshape(b, -1, w.shape[0])
    if layout == "openclip":
        cls, pos = p["class_embedding"].reshape(1, 1, -1), p["positional_embedding"][None]
    else:
        x = x + p["patch_embed.proj.bias"]
        cls, pos = p["cls_token"], p["pos_embed"]
    x = np.concatenate([np.broadcast_to(cls, (b, 1, x.shape[-1])), x], axis=1) + pos
    if "ln_pre.weight" in p:
        x = layer_norm(x, p["ln_pre.weight"], p["ln_pre.bias"], eps)
    i = 0
    while f"{names['blocks']}{i}.{names['ln1']}.weight" in p:
        q = lambda n, i=i: p[f"{names['blocks']}{i}.{n}"]
        y = layer_norm(x, q(names["ln1"] + ".weight"), q(names["ln1"] + ".bias"), eps)
        qkv = linear(y, q(names["qkv"] + "weight"), q(names["qkv"] + "bias"))
        qh, kh, vh = (t.reshape(b, t.shape[1], heads, -1) for t in np.split(qkv, 3, axis=-1))
        att = np.einsum("bqhk,bshk->bhqs", qh, kh) / np.sqrt(qh.shape[-1])
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = np.einsum("bhqs,bshk->bqhk", att, vh).reshape(b, -1, x.shape[-1])
        x = x + linear(o, q(names["out"] + ".weight"), q(names["out"] + ".bias"))
        y = layer_norm(x, q(names["ln2"] + ".weight"), q(names["ln2"] + ".bias"), eps)
        h = act(linear(y, q(names["fc1"] + ".weight"), q(names["fc1"] + ".bias")), gelu)
        x = x + linear(h, q(names["fc2"] + ".weight"), q(names["fc2"] + ".bias"))
        i += 1
    x = layer_norm(x, p[names["final"] + ".weight"], p[names["final"] + ".bias"], eps)[:, 0]
    return x @ p["proj"] if layout == "openclip" else linear(x, p["head.weight"], p["head.bias"])


def run(model, images_nchw):
    with jax.default_matmul_precision("highest"):
        return jax.jit(model.apply)(images_nchw.transpose(0, 2, 3, 1).astype(np.float32))[1]


IMAGES = np.random.default_rng(5).uniform(-2, 2, (2, 3, SIZE, SIZE))


@pytest.mark.parametrize("gelu", ["exact", "quick"])
def test_openclip_state_dict_converts_and_matches_torch_semantics(tmp_path, gelu):
    sd = openclip_state_dict()
    path = str(tmp_path / "open_clip_model.safetensors")
    save_file(sd, path)
    model = load_model("mu/8", path, depth=DEPTH, gelu=gelu)
    m = model.module
    assert (m.pre_norm, m.posemb_with_cls, m.patch_bias, m.ln_eps, m.head_bias) == (True, True, False, 1e-5, False)
    assert (m.pool_type, m.num_classes, model.image_size, model.default_layer) == ("tok", EMBED, SIZE, "logits")
    assert model.preprocess.mean is not None and model.preprocess.method == "bicubic" and model.preprocess.crop
    assert model.info["source"] == "openclip"
    ref = torch_semantics_forward(sd, IMAGES, layout="openclip", gelu=gelu, eps=1e-5)
    np.testing.assert_allclose(run(model, IMAGES)["logits"], ref, atol=1e-4, rtol=1e-4)
    scanned = load_model("mu/8", path, depth=DEPTH, gelu=gelu, scan=True)
    np.testing.assert_allclose(run(scanned, IMAGES)["logits"], ref, atol=1e-4, rtol=1e-4)


def test_timm_state_dict_converts_to_a_big_vision_vit(tmp_path):
    sd = timm_state_dict()
    path = str(tmp_path / "model.safetensors")
    save_file(sd, path)
    model = load_model("mu/8", path, depth=DEPTH, gelu="exact")
    m = model.module
    assert (m.pre_norm, m.posemb_with_cls, m.pool_type, m.num_classes) == (False, False, "tok", 10)
    assert model.params["pos_embedding"].shape == (1, 16, WIDTH)  # class row folded into cls
    ref = torch_semantics_forward(sd, IMAGES, layout="timm", gelu="exact", eps=1e-6)
    np.testing.assert_allclose(run(model, IMAGES)["logits"], ref, atol=1e-4, rtol=1e-4)


def test_a_timm_clip_tower_gets_clip_numerics(tmp_path):
    """timm's CLIP ViTs (`norm_pre`, LayerNorm eps 1e-5, exact GELU) against the numpy reference."""
    sd = timm_state_dict()
    sd["norm_pre.weight"], sd["norm_pre.bias"] = sd["norm.weight"][::-1].copy(), sd["norm.bias"][::-1].copy()
    path = str(tmp_path / "model.safetensors")
    save_file(sd, path)
    model = load_model("mu/8", path, depth=DEPTH)
    assert (model.module.pre_norm, model.module.ln_eps, model.module.gelu) == (True, 1e-5, "exact")
    ref = torch_semantics_forward({**sd, "ln_pre.weight": sd["norm_pre.weight"], "ln_pre.bias": sd["norm_pre.bias"]},
                                  IMAGES, layout="timm", gelu="exact", eps=1e-5)  # fmt: skip
    np.testing.assert_allclose(run(model, IMAGES)["logits"], ref, atol=1e-4, rtol=1e-4)


def test_unknown_torch_keys_and_bad_files_are_reported(tmp_path):
    sd = openclip_state_dict()
    sd["visual.transformer.resblocks.0.ls_1.gamma"] = np.ones(WIDTH, np.float32)
    path = str(tmp_path / "layer_scale.safetensors")
    save_file(sd, path)
    with pytest.raises(InputError, match=r"1 unexpected \['torch:transformer.resblocks.0.ls_1.gamma'\]"):
        load_model("mu/8", path, depth=DEPTH)
    with pytest.raises(InputError, match="not variant 'mu/8'.*depth 2 \\(asked 1\\)"):
        load_model("mu/8", path)
    data = open(path, "rb").read()
    cut = str(tmp_path / "cut.safetensors")
    with open(cut, "wb") as f:
        f.write(data[: len(data) - 100])
    with pytest.raises(InputError, match="cut.safetensors: not a readable .safetensors file.*truncated"):
        load_model("mu/8", cut, depth=DEPTH)
    save_file({"something.else": np.zeros(3, np.float32)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(InputError, match="neither an OpenCLIP image tower"):
        load_model("mu/8", str(tmp_path / "other.safetensors"))


@pytest.mark.skipif(HAS_TORCH, reason="torch is installed, so .bin files are readable")
def test_torch_files_without_torch_say_how_to_proceed(tmp_path):
    path = tmp_path / "open_clip_pytorch_model.bin"
    path.write_bytes(b"not read")
    with pytest.raises(InputError, match="needs torch.*safetensors"):
        load_model("mu/8", str(path))


def test_conversion_of_vit_g_sizes_takes_seconds():
    """ViT-g/14 (1.0B image-tower parameters, fp16): conversion only reshapes and transposes whole tensors."""
    width, depth, mlp, heads, embed = 1408, 40, 6144, 16, 1024
    big = {
        "conv1.weight": (width, 3, 14, 14),
        "class_embedding": (width,),
        "positional_embedding": (257, width),
        "ln_pre.weight": (width,),
        "ln_pre.bias": (width,),
        "ln_post.weight": (width,),
        "ln_post.bias": (width,),
        "proj": (width, embed),
    }
    block = {
        "ln_1.weight": (width,),
        "ln_1.bias": (width,),
        "attn.in_proj_weight": (3 * width, width),
        "attn.in_proj_bias": (3 * width,),
        "attn.out_proj.weight": (width, width),
        "attn.out_proj.bias": (width,),
        "ln_2.weight": (width,),
        "ln_2.bias": (width,),
        "mlp.c_fc.weight": (mlp, width),
        "mlp.c_fc.bias": (mlp,),
        "mlp.c_proj.weight": (width, mlp),
        "mlp.c_proj.bias": (width,),
    }
    sd = {k: np.zeros(s, np.float16) for k, s in big.items()}
    sd |= {f"transformer.resblocks.{i}.{k}": np.zeros(s, np.float16) for i in range(depth) for k, s in block.items()}
    assert sum(v.size for v in sd.values()) > 1.0e9
    start = time.perf_counter()
    params, arch = openclip.convert_state_dict(sd, heads, "ViT-g-14")
    config = infer_config(params, "ViT-g-14")
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, f"conversion took {elapsed:.1f} s"
    assert (config["width"], config["depth"], config["mlp_dim"], config["num_heads"]) == (width, depth, mlp, heads)
    assert config["num_classes"] == embed and arch["pre_norm"]
    mha = params["Transformer"]["encoderblock_39"]["MultiHeadDotProductAttention_0"]
    assert mha["query"]["kernel"].shape == (width, heads, 88) and mha["out"]["kernel"].shape == (heads, 88, width)


needs_open_clip = pytest.mark.skipif(
    not (HAS_TORCH and importlib.util.find_spec("open_clip")),
    reason="open_clip and torch are not installed: comparison with the PyTorch model skipped (numpy reference used)",
)
needs_timm = pytest.mark.skipif(
    not (HAS_TORCH and importlib.util.find_spec("timm")),
    reason="timm and torch are not installed: comparison with the PyTorch model skipped (numpy reference used)",
)


def torch_weights_to_numpy(module, seed):
    import torch

    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


@needs_open_clip
@pytest.mark.parametrize("gelu", ["exact", "quick"])
def test_matches_open_clip_on_random_weights(tmp_path, gelu):
    import torch
    from open_clip.transformer import QuickGELU, VisionTransformer

    act_layer = QuickGELU if gelu == "quick" else torch.nn.GELU
    tower = VisionTransformer(SIZE, PATCH, WIDTH, DEPTH, HEADS, MLP / WIDTH, output_dim=EMBED, act_layer=act_layer)
    sd = torch_weights_to_numpy(tower.eval(), 0)
    path = str(tmp_path / "tower.safetensors")
    save_file(sd, path)
    with torch.no_grad():
        want = tower(torch.from_numpy(IMAGES.astype(np.float32))).numpy()
    got = run(load_model("mu/8", path, depth=DEPTH, gelu=gelu), IMAGES)["logits"]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


@needs_timm
def test_matches_timm_on_random_weights_and_reads_our_export(tmp_path):
    import timm
    import torch
    from timm.models.vision_transformer import _load_weights

    from alignment_jax.models.checkpoints import save_big_vision_npz

    kw = dict(img_size=SIZE, patch_size=PATCH, embed_dim=WIDTH, depth=DEPTH, num_heads=HEADS, num_classes=10)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, **kw).eval()
    sd = torch_weights_to_numpy(vit, 1)
    path = str(tmp_path / "model.safetensors")
    save_file(sd, path)
    x = torch.from_numpy(IMAGES.astype(np.float32))
    with torch.no_grad():
        want = vit(x).numpy()
    ours = load_model("mu/8", path, depth=DEPTH, gelu="exact")
    np.testing.assert_allclose(run(ours, IMAGES)["logits"], want, atol=1e-4, rtol=1e-4)
    exported = str(tmp_path / "export.npz")
    save_big_vision_npz(exported, ours.params)
    twin = timm.create_model("vit_tiny_patch16_224", pretrained=False, no_embed_class=True, **kw).eval()
    _load_weights(twin, exported)
    with torch.no_grad():
        np.testing.assert_allclose(twin(x).numpy(), want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("variant, layout", [("Ti/8", "openclip"), ("B/8", "openclip"), ("S/8", "timm")])
def test_a_wrong_variant_for_a_torch_file_is_a_clear_error(tmp_path, variant, layout):
    """Fused q/k/v weights are split by the variant's head count: a width it does not divide is reported."""
    sd = openclip_state_dict() if layout == "openclip" else timm_state_dict()
    path = str(tmp_path / "model.safetensors")
    save_file(sd, path)
    with pytest.raises(InputError, match=f"model.safetensors: the checkpoint's width {WIDTH} does not split"):
        load_model(variant, path)


def test_an_exported_openclip_tower_reloads_with_its_numerics(tmp_path):
    """Our big_vision-named export of an OpenCLIP tower keeps eps 1e-5, exact GELU and CLIP preprocessing."""
    from alignment_jax.models.checkpoints import save_big_vision_npz, save_orbax

    path = str(tmp_path / "open_clip_model.safetensors")
    save_file(openclip_state_dict(), path)
    model = load_model("mu/8", path, depth=DEPTH)
    want = run(model, IMAGES)["logits"]
    save_big_vision_npz(str(tmp_path / "export.npz"), model.params)
    save_orbax(str(tmp_path / "orbax"), model.params)
    for exported in (str(tmp_path / "export.npz"), str(tmp_path / "orbax")):
        again = load_model("mu/8", exported, depth=DEPTH)
        assert (again.module.ln_eps, again.module.gelu, again.default_layer) == (1e-5, "exact", "logits"), exported
        assert again.preprocess == model.preprocess
        np.testing.assert_allclose(run(again, IMAGES)["logits"], want, atol=1e-5, err_msg=exported)
