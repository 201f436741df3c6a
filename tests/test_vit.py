"""The Flax ViT: big_vision parameter names for every variant, numerics against a numpy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from alignment_jax.errors import InputError
from alignment_jax.models.checkpoints import flatten
from alignment_jax.models.registry import random_params
from alignment_jax.models.vit import VARIANTS, decode_variant, make_vit, pyloop_to_scan, scan_to_pyloop

BLOCK = [
    "LayerNorm_0/scale",
    "LayerNorm_0/bias",
    "LayerNorm_1/scale",
    "LayerNorm_1/bias",
    *[f"MultiHeadDotProductAttention_0/{m}/{p}" for m in ("query", "key", "value", "out") for p in ("kernel", "bias")],
    *[f"MlpBlock_0/Dense_{i}/{p}" for i in (0, 1) for p in ("kernel", "bias")],
]


def big_vision_names(depth, pool, posemb, rep_size, num_classes, scan=False):
    """The parameter names big_vision's vit.py creates for these options (written out from its module tree)."""
    names = {"embedding/kernel", "embedding/bias", "Transformer/encoder_norm/scale", "Transformer/encoder_norm/bias"}
    blocks = ["encoderblock"] if scan else [f"encoderblock_{i}" for i in range(depth)]
    names |= {f"Transformer/{b}/{n}" for b in blocks for n in BLOCK}
    if posemb == "learn":
        names.add("pos_embedding")
    if pool == "tok":
        names.add("cls")
    if pool == "map":
        names |= {"MAPHead_0/probe"} | {f"MAPHead_0/{n}" for n in BLOCK if not n.startswith("LayerNorm_1")}
    if rep_size:
        names |= {"pre_logits/kernel", "pre_logits/bias"}
    if num_classes:
        names |= {"head/kernel", "head/bias"}
    return names


def abstract_params(module, height, width=None):
    images = jnp.zeros((1, height, width or height, 3))
    return jax.eval_shape(module.init, jax.random.PRNGKey(0), images)["params"]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_builds_with_big_vision_names_and_shapes(variant):
    width, depth, mlp, heads = VARIANTS[variant]
    module = make_vit(f"{variant}/4", pool_type="map", num_classes=3, rep_size=True, scan=True)
    shapes = {k: v.shape for k, v in flatten(abstract_params(module, 8)).items()}
    assert set(shapes) == big_vision_names(depth, "map", "learn", True, 3, scan=True)
    block = "Transformer/encoderblock/"
    assert shapes["embedding/kernel"] == (4, 4, 3, width)
    assert shapes["pos_embedding"] == (1, 4, width)
    assert shapes[block + "MultiHeadDotProductAttention_0/query/kernel"] == (depth, width, heads, width // heads)
    assert shapes[block + "MultiHeadDotProductAttention_0/out/kernel"] == (depth, heads, width // heads, width)
    assert shapes[block + "MlpBlock_0/Dense_0/kernel"] == (depth, width, mlp)
    assert shapes["MAPHead_0/MlpBlock_0/Dense_1/kernel"] == (mlp, width)
    assert shapes["head/kernel"] == (width, 3)


@pytest.mark.parametrize("variant", ["mu/8", "Ti/16", "B/16"])
@pytest.mark.parametrize(
    "pool,posemb,rep_size,num_classes",
    [("tok", "learn", False, 5), ("gap", "sincos2d", True, 0), ("map", "learn", 16, 7), ("0", "learn", 0, 0)],
)
def test_loop_layout_names(variant, pool, posemb, rep_size, num_classes):
    module = make_vit(variant, pool_type=pool, posemb=posemb, rep_size=rep_size, num_classes=num_classes)
    names = set(flatten(abstract_params(module, 2 * module.patch_size[0])))
    assert names == big_vision_names(module.depth, pool, posemb, rep_size, num_classes)


def layer_norm(x, scale, bias, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * scale + bias


def gelu_ref(x, kind):
    if kind == "tanh":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    if kind == "exact":
        return 0.5 * x * (1 + erf(x / np.sqrt(2)))
    return x / (1 + np.exp(-1.702 * x))


def attention(q_in, kv_in, p, prefix):
    """Flax-layout multi-head attention in float64: kernels (D, H, k), out kernel (H, k, D)."""
    q = np.einsum("bld,dhk->blhk", q_in, p[prefix + "query/kernel"]) + p[prefix + "query/bias"]
    k = np.einsum("bld,dhk->blhk", kv_in, p[prefix + "key/kernel"]) + p[prefix + "key/bias"]
    v = np.einsum("bld,dhk->blhk", kv_in, p[prefix + "value/kernel"]) + p[prefix + "value/bias"]
    logits = np.einsum("bqhk,bshk->bhqs", q, k) / np.sqrt(q.shape[-1])
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    o = np.einsum("bhqs,bshk->bqhk", w, v)
    return np.einsum("bqhk,hkd->bqd", o, p[prefix + "out/kernel"]) + p[prefix + "out/bias"]


def mlp(x, p, prefix, kind):
    h = gelu_ref(x @ p[prefix + "Dense_0/kernel"] + p[prefix + "Dense_0/bias"], kind)
    return h @ p[prefix + "Dense_1/kernel"] + p[prefix + "Dense_1/bias"]


def sincos_ref(h, w, d):
    """MoCo v3 / big_vision 2-d sin-cos embedding written out: [sin x, cos x, sin y, cos y] per position."""
    omega = 1.0 / 10_000 ** (np.arange(d // 4) / (d // 4 - 1))
    ys, xs = np.divmod(np.arange(h * w), w)
    x, y = xs[:, None] * omega, ys[:, None] * omega
    return np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)[None]


def reference_forward(p, images, cfg):
    """big_vision's ViT forward pass in float64 numpy, from a flat '/'-named parameter dict."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    eps, kind, ps = cfg["ln_eps"], cfg["gelu"], cfg["patch"]
    b, hh, ww, _ = images.shape
    h, w = hh // ps, ww // ps
    patches = images.reshape(b, h, ps, w, ps, 3).transpose(0, 1, 3, 2, 4, 5).reshape(b, h * w, ps * ps * 3)
    x = patches @ p["embedding/kernel"].reshape(-1, p["embedding/kernel"].shape[-1]) + p["embedding/bias"]
    x = x + (p["pos_embedding"] if cfg["posemb"] == "learn" else sincos_ref(h, w, x.shape[-1]))
    if cfg["pool"] == "tok":
        x = np.concatenate([np.broadcast_to(p["cls"], (b, 1, x.shape[-1])), x], axis=1)
    for i in range(cfg["depth"]):
        pre = f"Transformer/encoderblock_{i}/"
        y = layer_norm(x, p[pre + "LayerNorm_0/scale"], p[pre + "LayerNorm_0/bias"], eps)
        x = x + attention(y, y, p, pre + "MultiHeadDotProductAttention_0/")
        y = layer_norm(x, p[pre + "LayerNorm_1/scale"], p[pre + "LayerNorm_1/bias"], eps)
        x = x + mlp(y, p, pre + "MlpBlock_0/", kind)
    out = {"block_last": x}
    x = out["encoded"] = layer_norm(x, p["Transformer/encoder_norm/scale"], p["Transformer/encoder_norm/bias"], eps)
    if cfg["pool"] == "map":
        probe = np.broadcast_to(p["MAPHead_0/probe"], (b, 1, x.shape[-1]))
        x = attention(probe, x, p, "MAPHead_0/MultiHeadDotProductAttention_0/")
        y = layer_norm(x, p["MAPHead_0/LayerNorm_0/scale"], p["MAPHead_0/LayerNorm_0/bias"], eps)
        x = (x + mlp(y, p, "MAPHead_0/MlpBlock_0/", kind))[:, 0]
    elif cfg["pool"] == "gap":
        x = x.mean(1)
    else:
        x = x[:, 0]
    out["head_input"] = x
    if "pre_logits/kernel" in p:
        x = np.tanh(x @ p["pre_logits/kernel"] + p["pre_logits/bias"])
    out["pre_logits"] = x
    out["logits"] = x @ p["head/kernel"] + p["head/bias"]
    return out


@pytest.mark.parametrize(
    "pool,posemb,rep_size,gelu",
    [("tok", "learn", True, "tanh"), ("map", "learn", False, "tanh"), ("gap", "sincos2d", False, "exact")],
)
def test_forward_matches_numpy_reference(pool, posemb, rep_size, gelu):
    module = make_vit("mu/8", depth=2, pool_type=pool, posemb=posemb, rep_size=rep_size, num_classes=6, gelu=gelu)
    params = random_params(abstract_params(module, 16, 24), seed=1)
    images = np.random.default_rng(2).uniform(-1, 1, (3, 16, 24, 3)).astype(np.float32)
    with jax.default_matmul_precision("highest"):
        logits, out = jax.jit(module.apply)({"params": params}, images)
    cfg = dict(ln_eps=1e-6, gelu=gelu, patch=8, posemb=posemb, pool=pool, depth=2)
    ref = reference_forward(flatten(params), images.astype(np.float64), cfg)
    assert out["block01"].shape == (3, 6 + (pool == "tok"), 32)
    np.testing.assert_allclose(out["block01"], ref["block_last"], atol=1e-4, rtol=1e-4)
    for name in ("encoded", "head_input", "pre_logits", "logits"):
        np.testing.assert_allclose(out[name], ref[name], atol=1e-4, rtol=1e-4, err_msg=name)
    np.testing.assert_array_equal(logits, out["logits"])


def test_scan_and_loop_layouts_give_the_same_model():
    loop = make_vit("mu/8", depth=3, pool_type="tok", num_classes=4)
    scan = make_vit("mu/8", depth=3, pool_type="tok", num_classes=4, scan=True)
    params = random_params(abstract_params(loop, 16), seed=3)
    stacked = pyloop_to_scan(params)
    assert stacked["Transformer"]["encoderblock"]["LayerNorm_0"]["scale"].shape == (3, 32)
    back = scan_to_pyloop(stacked)
    assert jax.tree.all(jax.tree.map(np.array_equal, back, params))
    images = np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    _, a = jax.jit(loop.apply)({"params": params}, images)
    _, b = jax.jit(scan.apply)({"params": stacked}, images)
    for name in ("block00", "block02", "encoded", "logits"):
        np.testing.assert_allclose(a[name], b[name], atol=1e-5, err_msg=name)


def test_bfloat16_matmuls_stay_close_to_float32():
    f32 = make_vit("mu/8", pool_type="gap", num_classes=4)
    bf16 = make_vit("mu/8", pool_type="gap", num_classes=4, dtype_mm="bfloat16")
    params = random_params(abstract_params(f32, 16), seed=4)
    images = np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    _, a = jax.jit(f32.apply)({"params": params}, images)
    _, b = jax.jit(bf16.apply)({"params": params}, images)
    assert b["block00"].dtype == jnp.bfloat16
    err = np.abs(np.asarray(b["encoded"], np.float32) - np.asarray(a["encoded"]))
    assert 0 < err.max() < 0.1


def test_bad_variants_and_options_raise_input_errors():
    assert decode_variant("So400m/14") == dict(width=1152, depth=27, mlp_dim=4304, num_heads=16, patch_size=(14, 14))
    with pytest.raises(InputError, match="unknown size 'X'"):
        decode_variant("X/16")
    with pytest.raises(InputError, match="patch size"):
        decode_variant("B/1x")
    with pytest.raises(InputError, match="unknown; known options"):
        make_vit("mu/8", pooling="tok")
    module = make_vit("mu/8", pool_type="tok")
    with pytest.raises(InputError, match="smaller than one patch"):
        abstract_params(module, 6)
    assert abstract_params(module, 12)["pos_embedding"].shape == (1, 1, 32)  # big_vision drops partial patches
    with pytest.raises(InputError, match="pool_type"):
        abstract_params(make_vit("mu/8", pool_type="cls"), 16)
    with pytest.raises(InputError, match="posemb_with_cls"):
        abstract_params(make_vit("mu/8", pool_type="gap", posemb_with_cls=True), 16)
    with pytest.raises(InputError, match="width 32 is not divisible by num_heads 3"):
        abstract_params(make_vit("mu/8", num_heads=3), 16)
    with pytest.raises(InputError, match="sincos2d' needs a width divisible by 4, got 30"):
        abstract_params(make_vit("mu/8", width=30, posemb="sincos2d"), 16)
