"""Stand-ins for the registry's checkpoints: tiny random weights in each entry's own file format.

A stand-in has its entry's architecture options (pooling, class token, MAP head, GELU, pre-norm,
projection, head size), patch size and position-embedding grid for its resolution, at a `mu`-like size
(STANDIN_DIMS), written by this module in the layout of the real file:

  AugReg (vit_jax)  .npz, flat keys without a prefix, pre-linen numbering (`MultiHeadDotProductAttention_1`,
                    `LayerNorm_2`, `MlpBlock_3`), `Transformer/posembed_input/pos_embedding` (1, g*g+1, D)
                    with the class token's row first, `cls`, `head` (21,843 or 1,000 classes), float32.
  timm              `model.safetensors`: `patch_embed.proj`, `cls_token`, `pos_embed` (1, g*g+1, D), blocks
                    `blocks.{i}` with the fused `attn.qkv` (3D, D), `norm`, `head`; torch (out, in) layouts.
  SigLIP            big_vision two-tower .npz: `params/img/...` (MAP head `MAPHead_0` with its `probe`, no
                    class token, `pos_embedding` (1, g*g, D), no head), `params/txt/...`, `params/t`, `params/b`;
                    SigLIP blocks one per layer (`encoderblock_{i}`), SigLIP 2 blocks scanned (`encoderblock`,
                    a leading depth axis), as the converters of both releases read them.
  OpenCLIP          `open_clip_model.safetensors` of the whole CLIP model: `visual.conv1` (no bias),
                    `visual.class_embedding`, `visual.positional_embedding` (g*g+1, D), `visual.ln_pre`,
                    `visual.transformer.resblocks.{i}` (fused `in_proj`), `visual.ln_post`, `visual.proj`, and
                    the text tower's keys beside them.
  demo              a big_vision .npz under `params/`, one tower.
  BiT               the released `.npz`: `resnet/root_block/standardized_conv2d/kernel`, `resnet/block{b}/unit{u:02d}/
                    {a,b,c}/...`, `a/proj/...`, `resnet/group_norm`, `resnet/head/conv2d` (models/bit.py), at
                    bit.STANDIN's size (32 channels at the root, one unit per stage) instead of STANDIN_DIMS.
  AligNet           a TensorFlow SavedModel with AligNet's `serving_default` signature, packed as a `.tar.gz` of
                    one folder like the release (models/saved_model.py's `write_saved_model`; needs TensorFlow).
  DINOv2 (timm)     `model.safetensors` as timm's `vit_*_patch14[_reg4]_dinov2`: timm's ViT keys plus `ls1.gamma`,
                    `ls2.gamma` per block, `pos_embed` for 518 px (37 x 37 grid; with a class slot, or without one
                    and `reg_token` (1, 4, D) for the register models), no head; the giant's packed SwiGLU `fc1`
                    (2 mlp_dim, D). `dinov2_hf_arrays` re-lays them out as Hugging Face's `Dinov2Model`.

`standin_model(name)` writes the file under the real file's name (with its `:img` sub-tree) and loads it
with `load_model(name, file)`: the entry's architecture options, reader, conversion, strict matching, image
size, preprocessing and default layer run exactly as for the real checkpoint; only the dimensions are
STANDIN_DIMS. `runlocal=True` (alignment_jax/config/args.py) extracts with it.
"""

import dataclasses
import os
import tempfile
from typing import Any

import numpy as np

from alignment_jax import atomic
from alignment_jax.errors import InputError
from alignment_jax.models import bit, checkpoints, saved_model
from alignment_jax.models.registry import MODELS, LoadedModel, ModelSpec, load_model
from alignment_jax.models.vit import decode_variant

STANDIN_DIMS = {"width": 32, "depth": 2, "mlp_dim": 128, "num_heads": 2}  # mu's sizes with two blocks
FORMATS = (
    "augreg_npz",
    "timm_safetensors",
    "siglip_npz",
    "siglip2_npz",
    "openclip_safetensors",
    "big_vision_npz",
    "timm_dinov2_safetensors",
    "bit_npz",
    "saved_model_tar_gz",
)
_TEXT = {"vocab": 64, "context": 8}  # the text towers beside the image tower (never loaded)

Shapes = dict[str, tuple[tuple[int, ...], float, float]]  # key -> (shape, std, mean) of its random values


def file_format(spec: ModelSpec) -> str:
    """Which of FORMATS the entry's checkpoint file is in."""
    if spec.source == "vit_jax":
        return "augreg_npz"
    if spec.source == "bit":
        return "bit_npz"
    if spec.source == "saved_model":
        return "saved_model_tar_gz"
    if spec.source == "timm" and spec.config.get("layer_scale"):
        return "timm_dinov2_safetensors"
    if spec.source in ("timm", "openclip"):
        return f"{spec.source}_safetensors"
    if spec.checkpoint.endswith(":img"):
        return "siglip2_npz" if "/siglip2/" in spec.checkpoint else "siglip_npz"
    return "big_vision_npz"


def standin_arrays(spec: ModelSpec, seed: int = 0) -> dict[str, np.ndarray]:
    """The stand-in's file contents, {key: float32 array}, in the layout of `file_format(spec)`."""
    if file_format(spec) == "bit_npz":
        return bit.standin_arrays(bit.STANDIN["units"], bit.STANDIN["width"], spec.config.get("num_classes", 0), seed)
    d, depth, m, h = (STANDIN_DIMS[k] for k in ("width", "depth", "mlp_dim", "num_heads"))
    patch = decode_variant(spec.variant)["patch_size"][0]
    grid = (spec.checkpoint_size or spec.image_size) // patch
    classes = spec.config.get("num_classes", 0)
    fmt = file_format(spec)
    if fmt == "timm_dinov2_safetensors":
        registers, swiglu = spec.config.get("num_registers", 0), spec.config.get("mlp") == "swiglu"
        shapes = _timm_dinov2(d, depth, m, patch, grid, registers, swiglu)
    elif fmt == "augreg_npz":
        shapes = _augreg(d, depth, m, h, patch, grid, classes)
    elif fmt == "timm_safetensors":
        shapes = _timm(d, depth, m, patch, grid, classes)
    elif fmt == "openclip_safetensors":
        shapes = _openclip(d, depth, m, patch, grid, classes)
    else:
        scan = fmt == "siglip2_npz"
        pool = spec.config.get("pool_type", "gap")
        image = _big_vision_tower(d, depth, m, h, patch, grid, classes, pool, scan)
        if fmt == "big_vision_npz":
            shapes = _prefixed("params/", image)
        else:
            shapes = _prefixed("params/img/", image) | _prefixed("params/txt/", _big_vision_text(d, m, h, scan))
            shapes |= {"params/t": ((1,), 0.1, 2.3), "params/b": ((1,), 0.1, -10.0)}
    rng = np.random.default_rng(seed)
    draw = lambda shape, std, mean: np.asarray(mean + std * rng.standard_normal(shape), np.float32)
    return {key: draw(*how) for key, how in shapes.items()}


def write_standin(spec: ModelSpec, path: str, seed: int = 0) -> None:
    """Writes the stand-in of `spec` to `path` (.npz or .safetensors, as the real file); same bytes every time."""
    if file_format(spec) == "saved_model_tar_gz":
        saved_model.write_saved_model(path, spec.image_size, STANDIN_DIMS["width"], STANDIN_DIMS["depth"], seed)
        return
    arrays = standin_arrays(spec, seed)
    if file_format(spec).endswith("safetensors"):
        from safetensors.numpy import save_file

        with atomic.atomic_path(path, suffix=".safetensors") as tmp:
            save_file(arrays, tmp)
    else:
        atomic.save_npz(path, **arrays)


def standin_model(name: str, seed: int = 0, **load_kwargs: Any) -> LoadedModel:
    """Registry entry `name` with its stand-in's weights, loaded through `load_model`'s real path.

    The file, named as the real one (with the entry's `:img` sub-tree), is written to a temporary folder and
    given to `load_model(name, file)`: nothing is downloaded and the model cache never holds a stand-in.
    load_kwargs: load_model's (dtype, image_size, normalization, ...). `info` names the entry's real
    checkpoint with `standin: True` and the stand-in file's sha256 (stable: the same bytes every time).
    """
    spec = MODELS.get(name)
    if spec is None:
        raise InputError(f"model.standin: {name!r} is not a registry entry; stand-ins exist for {', '.join(MODELS)}")
    file, subtree = checkpoints.split_subtree(spec.checkpoint)
    with tempfile.TemporaryDirectory(prefix="alignment_jax_standin_") as folder:
        path = os.path.join(folder, os.path.basename(file) or "saved_model.tar.gz")
        write_standin(spec, path, seed)
        checkpoint = path + (f":{subtree}" if subtree else "")
        dims = {"bit": bit.STANDIN, "saved_model": {}}.get(spec.source, STANDIN_DIMS)
        model = load_model(name, checkpoint, seed=seed, **dims, **load_kwargs)
    info = {**model.info, "checkpoint": spec.checkpoint, "standin": True, "standin_seed": seed}
    return dataclasses.replace(model, info=info)


# --- the layouts; (shape, std, mean): LayerNorm scales ~ 1, kernels ~ N(0, 1/fan_in), the rest ~ N(0, 0.1^2) ---


def _ln(d: int) -> tuple:
    return (d,), 0.1, 1.0


def _kernel(shape: tuple[int, ...], fan_in: int) -> tuple:
    return shape, fan_in**-0.5, 0.0


def _small(*shape: int) -> tuple:
    return shape, 0.1, 0.0


def _prefixed(prefix: str, shapes: Shapes) -> Shapes:
    return {prefix + k: v for k, v in shapes.items()}


def _stacked(depth: int, shapes: Shapes) -> Shapes:
    """A scanned block: every parameter with a leading depth axis."""
    return {k: ((depth, *shape), std, mean) for k, (shape, std, mean) in shapes.items()}


def _attention(d: int, h: int) -> Shapes:
    """big_vision / flax multi-head attention: q, k, v kernels (D, heads, D/heads), out (heads, D/heads, D)."""
    shapes = {f"{n}/kernel": _kernel((d, h, d // h), d) for n in ("query", "key", "value")}
    shapes |= {f"{n}/bias": _small(h, d // h) for n in ("query", "key", "value")}
    return shapes | {"out/kernel": _kernel((h, d // h, d), d), "out/bias": _small(d)}


def _mlp(d: int, m: int) -> Shapes:
    return {
        "Dense_0/kernel": _kernel((d, m), d),
        "Dense_0/bias": _small(m),
        "Dense_1/kernel": _kernel((m, d), m),
        "Dense_1/bias": _small(d),
    }


def _block(d: int, m: int, h: int, names: tuple[str, str, str, str]) -> Shapes:
    """One encoder block; names: (first LayerNorm, attention, second LayerNorm, MLP)."""
    ln0, mha, ln1, mlp = names
    shapes = {f"{ln0}/scale": _ln(d), f"{ln0}/bias": _small(d), f"{ln1}/scale": _ln(d), f"{ln1}/bias": _small(d)}
    return shapes | _prefixed(mha + "/", _attention(d, h)) | _prefixed(mlp + "/", _mlp(d, m))


_LINEN = ("LayerNorm_0", "MultiHeadDotProductAttention_0", "LayerNorm_1", "MlpBlock_0")
_PRE_LINEN = ("LayerNorm_0", "MultiHeadDotProductAttention_1", "LayerNorm_2", "MlpBlock_3")  # vit_jax / AugReg


def _blocks(prefix: str, depth: int, block: Shapes, scan: bool) -> Shapes:
    if scan:
        return _prefixed(f"{prefix}encoderblock/", _stacked(depth, block))
    return {k: v for i in range(depth) for k, v in _prefixed(f"{prefix}encoderblock_{i}/", block).items()}


def _norm(prefix: str, d: int) -> Shapes:
    return {f"{prefix}/scale": _ln(d), f"{prefix}/bias": _small(d)}


def _augreg(d: int, depth: int, m: int, h: int, patch: int, grid: int, classes: int) -> Shapes:
    shapes = {
        "cls": _small(1, 1, d),
        "embedding/kernel": _kernel((patch, patch, 3, d), patch * patch * 3),
        "embedding/bias": _small(d),
        "Transformer/posembed_input/pos_embedding": _small(1, grid * grid + 1, d),
    }
    shapes |= _blocks("Transformer/", depth, _block(d, m, h, _PRE_LINEN), scan=False)
    shapes |= _norm("Transformer/encoder_norm", d)
    return shapes | ({"head/kernel": _kernel((d, classes), d), "head/bias": _small(classes)} if classes else {})


def _big_vision_tower(
    d: int, depth: int, m: int, h: int, patch: int, grid: int, classes: int, pool: str, scan: bool
) -> Shapes:
    shapes = {
        "embedding/kernel": _kernel((patch, patch, 3, d), patch * patch * 3),
        "embedding/bias": _small(d),
        "pos_embedding": _small(1, grid * grid, d),
    }
    shapes |= _blocks("Transformer/", depth, _block(d, m, h, _LINEN), scan)
    shapes |= _norm("Transformer/encoder_norm", d)
    if pool == "tok":
        shapes["cls"] = _small(1, 1, d)
    if pool == "map":
        head = {"probe": _small(1, 1, d)} | _norm("LayerNorm_0", d)
        head |= _prefixed("MultiHeadDotProductAttention_0/", _attention(d, h)) | _prefixed("MlpBlock_0/", _mlp(d, m))
        shapes |= _prefixed("MAPHead_0/", head)
    if classes:
        shapes |= {"head/kernel": _kernel((d, classes), d), "head/bias": _small(classes)}
    return shapes


def _big_vision_text(d: int, m: int, h: int, scan: bool) -> Shapes:
    """big_vision's text transformer (two_towers `txt`): token and position embeddings, blocks, norm, head."""
    shapes = {"Embed_0/embedding": _small(_TEXT["vocab"], d), "pos_embedding": _small(1, _TEXT["context"], d)}
    shapes |= _blocks("Encoder_0/", 1, _block(d, m, h, _LINEN), scan)
    shapes |= _norm("Encoder_0/encoder_norm", d)
    return shapes | {"head/kernel": _kernel((d, d), d), "head/bias": _small(d)}


def _torch_block(prefix: str, d: int, m: int, names: dict[str, str]) -> Shapes:
    """A torch ViT block: LayerNorms (weight, bias), fused qkv (3D, D), out (D, D), MLP; Linear weights (out, in)."""
    shapes = {}
    for ln in ("ln1", "ln2"):
        shapes |= {f"{prefix}{names[ln]}.weight": _ln(d), f"{prefix}{names[ln]}.bias": _small(d)}
    shapes[f"{prefix}{names['qkv']}weight"] = _kernel((3 * d, d), d)
    shapes[f"{prefix}{names['qkv']}bias"] = _small(3 * d)
    shapes |= {f"{prefix}{names['out']}.weight": _kernel((d, d), d), f"{prefix}{names['out']}.bias": _small(d)}
    shapes |= {f"{prefix}{names['fc1']}.weight": _kernel((m, d), d), f"{prefix}{names['fc1']}.bias": _small(m)}
    return shapes | {f"{prefix}{names['fc2']}.weight": _kernel((d, m), m), f"{prefix}{names['fc2']}.bias": _small(d)}


_TIMM_BLOCK = dict(ln1="norm1", ln2="norm2", qkv="attn.qkv.", out="attn.proj", fc1="mlp.fc1", fc2="mlp.fc2")
_OPENCLIP_BLOCK = dict(
    ln1="ln_1", ln2="ln_2", qkv="attn.in_proj_", out="attn.out_proj", fc1="mlp.c_fc", fc2="mlp.c_proj"
)


def _timm(d: int, depth: int, m: int, patch: int, grid: int, classes: int) -> Shapes:
    shapes = {
        "cls_token": _small(1, 1, d),
        "pos_embed": _small(1, grid * grid + 1, d),
        "patch_embed.proj.weight": _kernel((d, 3, patch, patch), 3 * patch * patch),
        "patch_embed.proj.bias": _small(d),
    }
    for i in range(depth):
        shapes |= _torch_block(f"blocks.{i}.", d, m, _TIMM_BLOCK)
    shapes |= {"norm.weight": _ln(d), "norm.bias": _small(d)}
    return shapes | ({"head.weight": _kernel((classes, d), d), "head.bias": _small(classes)} if classes else {})


def _timm_dinov2(d: int, depth: int, m: int, patch: int, grid: int, registers: int, swiglu: bool) -> Shapes:
    """timm's DINOv2: a class slot in `pos_embed` unless there are registers (timm's `no_embed_class`)."""
    shapes = _timm(d, depth, m, patch, grid, 0)
    if registers:
        shapes["pos_embed"] = _small(1, grid * grid, d)
        shapes["reg_token"] = _small(1, registers, d)
    for i in range(depth):
        shapes |= {f"blocks.{i}.ls1.gamma": _small(d), f"blocks.{i}.ls2.gamma": _small(d)}
        if swiglu:  # fc1 packs the gate and the value
            shapes[f"blocks.{i}.mlp.fc1.weight"] = _kernel((2 * m, d), d)
            shapes[f"blocks.{i}.mlp.fc1.bias"] = _small(2 * m)
    return shapes


def dinov2_hf_arrays(timm_arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same DINOv2 weights in Hugging Face's `Dinov2Model` layout (`Dinov2WithRegistersModel` with
    registers): separate q/k/v, `layer_scale{1,2}.lambda1`, position embeddings with the class slot (a zero row
    where timm folded it into `cls_token`), a `mask_token`, `weights_in`/`weights_out` for SwiGLU."""
    out: dict[str, np.ndarray] = {}
    d = timm_arrays["cls_token"].shape[-1]
    pos = timm_arrays["pos_embed"]
    if "reg_token" in timm_arrays:
        pos = np.concatenate([np.zeros_like(pos[:, :1]), pos], axis=1)
        out["embeddings.register_tokens"] = timm_arrays["reg_token"]
    out |= {"embeddings.cls_token": timm_arrays["cls_token"], "embeddings.position_embeddings": pos}
    out["embeddings.mask_token"] = np.zeros((1, d), np.float32)
    out["embeddings.patch_embeddings.projection.weight"] = timm_arrays["patch_embed.proj.weight"]
    out["embeddings.patch_embeddings.projection.bias"] = timm_arrays["patch_embed.proj.bias"]
    out |= {"layernorm.weight": timm_arrays["norm.weight"], "layernorm.bias": timm_arrays["norm.bias"]}
    depth = len({k.split(".")[1] for k in timm_arrays if k.startswith("blocks.")})
    for i in range(depth):
        t, h = f"blocks.{i}.", f"encoder.layer.{i}."
        swiglu = timm_arrays[t + "mlp.fc1.weight"].shape[0] == 2 * timm_arrays[t + "mlp.fc2.weight"].shape[1]
        fc1, fc2 = ("weights_in", "weights_out") if swiglu else ("fc1", "fc2")
        for part in ("weight", "bias"):
            qkv = timm_arrays[t + f"attn.qkv.{part}"]
            for j, name in enumerate(("query", "key", "value")):
                out[h + f"attention.attention.{name}.{part}"] = np.ascontiguousarray(qkv[j * d : (j + 1) * d])
            out[h + f"attention.output.dense.{part}"] = timm_arrays[t + f"attn.proj.{part}"]
            out[h + f"norm1.{part}"] = timm_arrays[t + f"norm1.{part}"]
            out[h + f"norm2.{part}"] = timm_arrays[t + f"norm2.{part}"]
            out[h + f"mlp.{fc1}.{part}"] = timm_arrays[t + f"mlp.fc1.{part}"]
            out[h + f"mlp.{fc2}.{part}"] = timm_arrays[t + f"mlp.fc2.{part}"]
        out[h + "layer_scale1.lambda1"] = timm_arrays[t + "ls1.gamma"]
        out[h + "layer_scale2.lambda1"] = timm_arrays[t + "ls2.gamma"]
    return out


def dinov2_original_arrays(timm_arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same DINOv2 weights under Meta's original names: `register_tokens`, a `mask_token`, the class slot in
    `pos_embed` (a zero row where timm folded it into `cls_token`), the giant's `mlp.w12` / `mlp.w3`."""
    out = {k: v for k, v in timm_arrays.items() if k not in ("reg_token", "pos_embed")}
    pos = timm_arrays["pos_embed"]
    if "reg_token" in timm_arrays:
        out["register_tokens"] = timm_arrays["reg_token"]
        pos = np.concatenate([np.zeros_like(pos[:, :1]), pos], axis=1)
    out["pos_embed"] = pos
    out["mask_token"] = np.zeros((1, pos.shape[-1]), np.float32)
    for key in [k for k in out if ".mlp.fc" in k]:
        block = key.split(".mlp.")[0]
        if timm_arrays[f"{block}.mlp.fc1.weight"].shape[0] == 2 * timm_arrays[f"{block}.mlp.fc2.weight"].shape[1]:
            out[key.replace("mlp.fc1", "mlp.w12").replace("mlp.fc2", "mlp.w3")] = out.pop(key)  # the giant's SwiGLU
    return out


def _openclip(d: int, depth: int, m: int, patch: int, grid: int, embed: int) -> Shapes:
    shapes = {
        "visual.class_embedding": _small(d),
        "visual.positional_embedding": _small(grid * grid + 1, d),
        "visual.proj": _kernel((d, embed), d),
        "visual.conv1.weight": _kernel((d, 3, patch, patch), 3 * patch * patch),
        "visual.ln_pre.weight": _ln(d),
        "visual.ln_pre.bias": _small(d),
        "visual.ln_post.weight": _ln(d),
        "visual.ln_post.bias": _small(d),
    }
    for i in range(depth):
        shapes |= _torch_block(f"visual.transformer.resblocks.{i}.", d, m, _OPENCLIP_BLOCK)
    text = {  # the text tower: same key names without `visual.`, which the reader must leave alone
        "token_embedding.weight": _small(_TEXT["vocab"], d),
        "positional_embedding": _small(_TEXT["context"], d),
        "ln_final.weight": _ln(d),
        "ln_final.bias": _small(d),
        "text_projection": _kernel((d, embed), d),
        "logit_scale": ((), 0.0, 4.6052),
    }
    return shapes | _torch_block("transformer.resblocks.0.", d, m, _OPENCLIP_BLOCK) | text
