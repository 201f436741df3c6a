"""Public models by name, and `load_model`: a name or a variant string -> module, params, preprocessing.

`load_model("siglip-so400m14-224")` reads the registry's public checkpoint (cached on first use);
`load_model("B/16", "path/to/file.npz")` loads any big_vision / vit_jax / OpenCLIP / timm / orbax file
into a B/16, taking the head, pooling and image size from the file unless given;
`load_model("mu/8", image_size=32)` (no checkpoint) draws random weights from `seed`: the tiny
variants are for tests and demos. `checkpoint="random"` gives random weights for a registry name too.
Families that are no ViT load through the same call: BiT ResNets (`"bit-m-r50x1"`, or `"r50x1"` with any BiT
`.npz`; models/bit.py) and TensorFlow SavedModels (`"alignet-siglip-b-alignet"`, or `"saved_model"` with a
folder or `.tar.gz`; models/saved_model.py); docs/models.md describes every family.
"""

import dataclasses
import hashlib
import os
import re
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from alignment_jax.errors import InputError
from alignment_jax.models import bit, checkpoints, saved_model, storage
from alignment_jax.models.dinov2 import ARCH as DINOV2_ARCH
from alignment_jax.models.layers import Outputs
from alignment_jax.models.openclip import OPENCLIP_ARCH
from alignment_jax.models.preprocess import IMAGENET_MEAN, IMAGENET_STD, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, Preprocess
from alignment_jax.models.vit import VARIANTS, VisionTransformer, decode_variant, make_vit

Params = dict
_ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets")
_AUGREG = "gs://vit_models/augreg/"
_BIT = "gs://bit_models/"
_SIGLIP = "gs://big_vision/siglip/"
_SIGLIP2 = "gs://big_vision/siglip2/"
_HF = "https://huggingface.co/{}/resolve/main/{}"
_BV_PREPROCESS = Preprocess(224)  # squash-resize, values in [-1, 1]
_CLIP_PREPROCESS = Preprocess(224, crop=True, method="bicubic", mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD)
# DINOv2's evaluation: bicubic resize of the shorter side to 256 (224 / 0.875), centre crop, ImageNet mean/std
_DINOV2_PREPROCESS = Preprocess(
    224, crop=True, crop_fraction=0.875, method="bicubic", mean=IMAGENET_MEAN, std=IMAGENET_STD
)
_DIMENSIONS = ("width", "depth", "mlp_dim", "num_heads", "patch_size")
# model.dtype -> (matmul input dtype, matmul precision for float32 inputs; models/vit.py explains them)
DTYPES = {
    "float32": ("float32", "float32"),  # full float32 on every device: the CPU's numbers on a GPU or TPU
    "tensorfloat32": ("float32", "tensorfloat32"),  # TF32 tensor cores (NVIDIA), 3-pass bfloat16 (TPU)
    "bfloat16": ("bfloat16", "bfloat16"),  # bfloat16 inputs, float32 accumulation
}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A public model: variant, where its weights are, how to feed it, which output to use by default.

    config: every VisionTransformer option that differs from the defaults (a file is checked, not trusted).
    """

    name: str
    variant: str
    checkpoint: str
    image_size: int
    source: str  # vit_jax | big_vision | openclip | timm | bit | saved_model
    config: dict = dataclasses.field(default_factory=dict)
    preprocess: Preprocess = _BV_PREPROCESS
    default_layer: str = "pre_logits"
    description: str = ""
    checkpoint_size: int = 0  # the image side the weights were released for, when not image_size (DINOv2: 518)


_I21K = {"pool_type": "tok", "num_classes": 21843}
_I1K = {"pool_type": "tok", "num_classes": 1000}


def _augreg(variant: str, stem: str, finetune_lr: str) -> list[ModelSpec]:
    finetune = f"imagenet2012-steps_20k-lr_{finetune_lr}-res_224"
    short = variant.replace("/", "").lower()
    return [
        ModelSpec(f"augreg-{short}-i21k", variant, f"{_AUGREG}{stem}.npz", 224, "vit_jax", _I21K,
                  description=f"AugReg ViT-{variant}, ImageNet-21k (arXiv:2106.10270)"),
        ModelSpec(f"augreg-{short}-i21k-ft-i1k", variant, f"{_AUGREG}{stem}--{finetune}.npz", 224, "vit_jax", _I1K,
                  description=f"AugReg ViT-{variant}, ImageNet-21k then ImageNet-1k at 224"),
    ]  # fmt: skip


def _timm(variant: str, timm_name: str) -> list[ModelSpec]:
    short = variant.replace("/", "").lower()
    return [
        ModelSpec(f"timm-augreg-{short}-{tag}", variant, _HF.format(f"timm/{timm_name}.{suffix}", "model.safetensors"),
                  224, "timm", config, description=f"the AugReg ViT-{variant} ({tag}) weights as published by timm")
        for tag, suffix, config in (("i21k", "augreg_in21k", _I21K), ("i21k-ft-i1k", "augreg_in21k_ft_in1k", _I1K))
    ]  # fmt: skip


def _siglip(name: str, variant: str, url: str, size: int) -> ModelSpec:
    """SigLIP image towers have a MAP head and no projection (big_vision: `out_dim = (None, text_dim)`)."""
    return ModelSpec(name, variant, url + ":img", size, "big_vision", {"pool_type": "map"},
                     description="SigLIP image tower (MAP-head output = image embedding)")  # fmt: skip


def _openclip(name: str, variant: str, repo: str, embed: int, quick_gelu: bool = False, **pp: Any) -> ModelSpec:
    config = {**OPENCLIP_ARCH, "num_classes": embed, **({"gelu": "quick"} if quick_gelu else {})}
    return ModelSpec(
        name, variant, _HF.format(repo, "open_clip_model.safetensors"), 224, "openclip", config,
        dataclasses.replace(_CLIP_PREPROCESS, **pp), "logits",
        f"OpenCLIP image tower from hf.co/{repo} (logits = projected image embedding)",
    )  # fmt: skip


_DINOV2_SIZES = {  # variant, options beyond it (giant: 24 heads of 64, SwiGLU with 4096 hidden units)
    "s": ("S/14", {}),
    "b": ("B/14", {}),
    "l": ("L/14", {}),
    "g": ("g-opt/14", {"num_heads": 24, "mlp_dim": 4096, "mlp": "swiglu"}),
}


def _dinov2(size: str, registers: bool) -> ModelSpec:
    """DINOv2 (arXiv:2304.07193; with registers arXiv:2309.16588) as published by timm, run at 224 px; its
    default layer is the class token after the final norm, as DINOv2's linear evaluation uses it."""
    variant, options = _DINOV2_SIZES[size]
    timm_size = {"s": "small", "b": "base", "l": "large", "g": "giant"}[size]
    repo = f"timm/vit_{timm_size}_patch14{'_reg4' if registers else ''}_dinov2.lvd142m"
    config = {**DINOV2_ARCH, **options, "num_registers": 4 if registers else 0}
    tag = "-reg4" if registers else ""
    return ModelSpec(
        f"dinov2-{size}14{tag}", variant, _HF.format(repo, "model.safetensors"), 224, "timm", config,
        _DINOV2_PREPROCESS, "pre_logits", f"DINOv2 ViT-{size.upper()}/14{tag} (self-supervised) from hf.co/{repo}",
        checkpoint_size=518,
    )  # fmt: skip


def _bit(data: str, variant: str) -> ModelSpec:
    """BiT ResNet-v2 (arXiv:1912.11370): BiT-S trained on ImageNet-1k, BiT-M on ImageNet-21k."""
    classes = {"s": 1000, "m": 21843}[data]
    return ModelSpec(
        f"bit-{data}-{variant}", variant, f"{_BIT}BiT-{data.upper()}-R{variant[1:]}.npz", 224, "bit",
        {"num_classes": classes}, description=f"BiT-{data.upper()} ResNet-v2 R{variant[1:]} (pre-logits default)",
    )  # fmt: skip


_ALIGNET = "gs://alignet/models/"
_ALIGNET_MODELS = {  # our name -> AligNet's model folder (github.com/google-deepmind/alignet, "AligNet models")
    "siglip": "SigLIP-B",
    "siglip2": "SigLIP2-B",
    "dinov1": "DINOv1-B",
    "dinov2": "DINOv2-B",
    "cappa": "CapPa-B",
    "vit": "ViT-B",
    "clip": "CLIP-Vit-B",
    "scratch": "Scratch-B",
}
_ALIGNET_KINDS = {"base": "base_model", "alignet": "alignet", "untransformed": "untransformed"}


def _alignet(model: str, kind: str) -> ModelSpec:
    """AligNet's released SavedModels (arXiv:2409.06509): a base model before AligNet post-training, after it
    (`alignet`), or after UnAligNet (`untransformed`); 224 px (14 x 14 tokens of 16 px), values in [-1, 1]."""
    stem = f"{_ALIGNET_MODELS[model]}-{_ALIGNET_KINDS[kind]}"
    return ModelSpec(
        f"alignet-{model}-b-{kind}", "", f"{_ALIGNET}{stem}.tar.gz", 224, "saved_model",
        description=f"AligNet release {stem} (TensorFlow SavedModel; pre_logits default)",
    )  # fmt: skip


_SPECS = [
    *_augreg("Ti/16", "Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0", "0.03"),
    *_augreg("S/16", "S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0", "0.03"),
    *_augreg("B/16", "B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0", "0.01"),
    *_augreg("B/32", "B_32-i21k-300ep-lr_0.001-aug_medium1-wd_0.03-do_0.0-sd_0.0", "0.03"),
    *_augreg("L/16", "L_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.1-sd_0.1", "0.01"),
    *_timm("Ti/16", "vit_tiny_patch16_224"),
    *_timm("S/16", "vit_small_patch16_224"),
    *_timm("B/16", "vit_base_patch16_224"),
    *_timm("B/32", "vit_base_patch32_224"),
    *_timm("L/16", "vit_large_patch16_224"),
    _siglip("siglip-b16-224", "B/16", _SIGLIP + "webli_en_b16_224_63724782.npz", 224),
    _siglip("siglip-l16-256", "L/16", _SIGLIP + "webli_en_l16_256_60552751.npz", 256),
    _siglip("siglip-so400m14-224", "So400m/14", _SIGLIP + "webli_en_so400m_224_57633886.npz", 224),
    _siglip("siglip-so400m14-384", "So400m/14", _SIGLIP + "webli_en_so400m_384_58765454.npz", 384),
    _siglip("siglip2-b16-224", "B/16", _SIGLIP2 + "siglip2_b16_224.npz", 224),
    _siglip("siglip2-so400m14-224", "So400m/14", _SIGLIP2 + "siglip2_so400m14_224.npz", 224),
    _siglip("siglip2-gopt16-256", "g-opt/16", _SIGLIP2 + "siglip2_g-opt16_256.npz", 256),
    _siglip("siglip2-gopt16-384", "g-opt/16", _SIGLIP2 + "siglip2_g-opt16_384.npz", 384),
    _openclip("openclip-vit-b16-openai", "B/16", "timm/vit_base_patch16_clip_224.openai", 512, quick_gelu=True),
    _openclip("openclip-vit-b16-laion2b", "B/16", "laion/CLIP-ViT-B-16-laion2B-s34B-b88K", 512),
    _openclip("openclip-vit-l14-openai", "L/14", "timm/vit_large_patch14_clip_224.openai", 768, quick_gelu=True),
    _openclip("openclip-vit-l14-laion2b", "L/14", "laion/CLIP-ViT-L-14-laion2B-s32B-b82K", 768, mean=None, std=None),
    _openclip("openclip-vit-g14-laion2b-s12b", "g/14", "laion/CLIP-ViT-g-14-laion2B-s12B-b42K", 1024),
    _openclip("openclip-vit-g14-laion2b-s34b", "g/14", "laion/CLIP-ViT-g-14-laion2B-s34B-b88K", 1024),
    _openclip("openclip-vit-bigg14-laion2b-s39b", "G/14", "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k", 1280),
    *(_dinov2(size, registers) for registers in (False, True) for size in _DINOV2_SIZES),
    *(_bit(data, variant) for data in "sm" for variant in ("r50x1", "r101x1", "r50x3", "r152x2")),
    *(_alignet(model, kind) for model in _ALIGNET_MODELS for kind in _ALIGNET_KINDS),
    ModelSpec("saved_model", "", "", 224, "saved_model",
              description="any TensorFlow SavedModel with AligNet's signature: set model.checkpoint"),
    # the bundled demo model (alignment_jax/models/demo.py trains it): 10 concept strengths + 4 x 3 colours out
    ModelSpec("demo-vit", "mu/8", os.path.join(_ASSETS, "demo_vit.npz"), 32, "big_vision",
              {"width": 64, "depth": 4, "mlp_dim": 128, "num_heads": 4, "pool_type": "gap", "num_classes": 22},
              default_layer="head_input", description="the bundled demo model, trained on rendered objects"),
]  # fmt: skip
MODELS: dict[str, ModelSpec] = {s.name: s for s in _SPECS}
NORMALIZATIONS = {
    "minus_one_one": (None, None),
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "clip": (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
}


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A ready model. `preprocess(images uint8 (B, H, W, 3)) -> float32 (B, S, S, 3)`, S = image_size;
    `module.apply({"params": params}, x)` -> (logits or None, named outputs); `info` is JSON-able.
    """

    module: VisionTransformer  # or bit.ResNetV2, saved_model.SavedModelModule: the same `apply`
    params: Params
    image_size: int
    preprocess: Preprocess
    default_layer: str
    info: dict
    outputs: Outputs | None = None  # the named outputs of a model that is no ViT (models/layers.py)

    @property
    def layer_order(self) -> int | Outputs:
        """What models/layers.py needs to order and resolve layer names: the ViT's depth or the outputs."""
        return self.outputs if self.outputs is not None else self.module.depth

    def apply(self, images: jax.Array) -> tuple[jax.Array | None, dict[str, jax.Array]]:
        """Preprocessed images (B, S, S, 3) -> (logits or None, named outputs)."""
        return self.module.apply({"params": self.params}, images)


def list_models() -> list[str]:
    """Registry names."""
    return sorted(MODELS)


def load_model(
    name_or_variant: str,
    checkpoint: str = "",
    *,
    image_size: int | None = None,
    seed: int = 0,
    dtype: str = "float32",
    dont_load: Sequence[str] = (),
    sharding: Any = None,
    cache_dir: str | None = None,
    normalization: str = "",
    **overrides: Any,
) -> LoadedModel:
    """A registry name ("augreg-b16-i21k") or a variant ("B/16", "mu/8") -> LoadedModel.

    checkpoint: a local path or any path the installed filesystem layers open (gs://, https://), with an
    optional ':sub/tree' for .npz and orbax; "" = the registry's checkpoint, or random weights from `seed`
    for a bare variant; "random" = random weights even for a registry name.
    image_size: input side in pixels (default: the registry's, else the checkpoint's grid, else 224).
    dtype: how matmuls are computed (parameters stay float32): "float32" at full float32 precision on every
    device, "tensorfloat32" (TF32 on NVIDIA GPUs), "bfloat16" (bfloat16 inputs); see DTYPES.
    dont_load: regexes of parameter names to leave at their initialization (e.g. "head/.*").
    sharding: one jax Sharding for every parameter (orbax restores straight onto it).
    normalization: "" = the model's own pixel scaling; else one of NORMALIZATIONS ("minus_one_one": [-1, 1],
    "imagenet" / "clip": (x/255 - mean) / std with those statistics), for checkpoints trained otherwise.
    overrides: VisionTransformer options (pool_type, num_classes, gelu, scan, ...).
    """
    if dtype not in DTYPES:
        raise InputError(f"model.dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    spec = MODELS.get(name_or_variant)
    if (spec.source if spec else "") == "bit" or re.fullmatch(r"r\d+x\d+", name_or_variant):
        if dont_load or sharding is not None:
            raise InputError("model: dont_load and sharding apply to ViTs only, not to BiT ResNets")
        model = _load_bit(name_or_variant, spec, checkpoint, image_size, seed, dtype, cache_dir, overrides)
        return _renormalized(model, normalization)
    if spec is not None and spec.source == "saved_model":
        if dont_load or sharding is not None or overrides or dtype != "float32":
            raise InputError(
                f"model {spec.name!r}: a SavedModel runs as it was saved; dont_load, sharding, dtype other than "
                "float32 and model options do not apply"
            )
        return _renormalized(_load_saved_model(spec, checkpoint, image_size, cache_dir), normalization)
    if spec is None and not _looks_like_variant(name_or_variant):
        known = ", ".join(MODELS)
        raise InputError(f"model {name_or_variant!r}: neither a registry name ({known}) nor a variant like 'B/16'")
    variant = spec.variant if spec else name_or_variant
    chosen = {**decode_variant(variant), **(spec.config if spec else {}), **overrides}
    path = checkpoint or (spec.checkpoint if spec else "")
    path = "" if path == "random" else path
    config, arch, raw, local, fmt = dict(chosen), {}, None, "", "random"
    if path:
        ckpt = checkpoints.read_checkpoint(path, num_heads=chosen["num_heads"], cache_dir=cache_dir, sharding=sharding)
        raw, arch, local, fmt = ckpt
        found = checkpoints.infer_config(raw, path)
        _check_variant(found, chosen, path, variant)
        config = chosen if spec else {**found, **arch, **chosen}  # registry entries are complete
    dtype_mm, precision = DTYPES[dtype]
    module = make_vit(variant, **{**config, "dtype_mm": dtype_mm, "matmul_precision": precision})
    size = image_size or (spec.image_size if spec else 0) or _grid_size(raw, module) or 224
    abstract = jax.eval_shape(module.init, jax.random.PRNGKey(seed), jnp.zeros((1, size, size, 3)))["params"]
    if raw is not None:
        resample = checkpoints.POSEMB_RESAMPLING.get(fmt, "bilinear")
        fitted = checkpoints.fit_to_model(raw, abstract, class_slot=module.posemb_with_cls, resample=resample)
        init = _flax_init(module, size, seed) if checkpoints.dont_load_names(abstract, dont_load) else None
        params = checkpoints.match_params(fitted, abstract, source=path, dont_load=dont_load, init=init)
    elif dont_load:
        raise InputError("dont_load: only meaningful with a checkpoint; without one every parameter is random")
    else:
        params = random_params(abstract, seed)
    params = jax.device_put(params, sharding) if sharding is not None else jax.tree.map(jnp.asarray, params)
    source = spec.source if spec else fmt
    preprocess = dataclasses.replace(spec.preprocess if spec else _default_preprocess(arch), size=size)
    if normalization:
        if normalization not in NORMALIZATIONS:
            raise InputError(f"model.normalization {normalization!r}: use one of {', '.join(NORMALIZATIONS)}")
        mean, std = NORMALIZATIONS[normalization]
        preprocess = dataclasses.replace(preprocess, mean=mean, std=std)
    default_layer = spec.default_layer if spec else ("logits" if arch and module.num_classes else "pre_logits")
    names = (spec.name if spec else name_or_variant, variant, source, path, _file_digest(local))
    info = _info(
        *names, None if path else seed, size, (dtype, precision), default_layer, _json_config(module), preprocess
    )
    return LoadedModel(module, params, size, preprocess, default_layer, info)


def _load_bit(
    name: str, spec: ModelSpec | None, checkpoint: str, image_size: int | None, seed: int, dtype: str,
    cache_dir: str | None, overrides: dict,
) -> LoadedModel:  # fmt: skip
    """load_model for BiT ResNet-v2 (models/bit.py): a released `.npz`, or random weights for a bare variant."""
    variant = spec.variant if spec else name
    config = {**bit.decode_variant(variant), **(spec.config if spec else {}), **overrides}
    unknown = sorted(set(config) - {"units", "width", "num_classes"})
    if unknown:
        raise InputError(f"model options {unknown}: unknown for a BiT ResNet; known are units, width, num_classes")
    path = checkpoint or (spec.checkpoint if spec else "")
    path = "" if path == "random" else path
    flat, local = None, ""
    if path:
        local = storage.fetch(path, cache_dir)
        flat = bit.read_bit_npz(local)
        found = bit.infer_config(flat, path)
        if spec is None:
            config = {**found, **overrides}
        diffs = [f"{k} {found[k]} (asked {config[k]})" for k in found if tuple(np.atleast_1d(found[k])) != tuple(
            np.atleast_1d(config[k]))]  # fmt: skip
        if diffs:
            raise InputError(f"{path}: the BiT checkpoint differs from {variant!r}: {', '.join(diffs)}")
    config["units"] = tuple(config["units"])
    dtype_mm, precision = DTYPES[dtype]
    module = bit.ResNetV2(**config, dtype_mm=dtype_mm, matmul_precision=precision)
    size = image_size or (spec.image_size if spec else 0) or 224
    abstract = jax.eval_shape(module.init, jax.random.PRNGKey(seed), jnp.zeros((1, size, size, 3)))["params"]
    if flat is not None:
        params = checkpoints.match_params(checkpoints.unflatten(flat), abstract, source=path)
    else:
        params = random_params(abstract, seed)
    params = jax.tree.map(jnp.asarray, params)
    preprocess = dataclasses.replace(spec.preprocess if spec else _BV_PREPROCESS, size=size)
    default_layer = spec.default_layer if spec else "pre_logits"
    names = module.layer_names()
    options = {"units": list(module.units), "width": module.width, "num_classes": module.num_classes}
    identity = (spec.name if spec else name, variant, "bit", path, _file_digest(local))
    info = _info(*identity, None if path else seed, size, (dtype, precision), default_layer, options, preprocess)
    outputs = Outputs(names, tuple(n for n in names if n.startswith("stage")))
    return LoadedModel(module, params, size, preprocess, default_layer, info, outputs)


def _renormalized(model: LoadedModel, normalization: str) -> LoadedModel:
    """The model with its pixel scaling replaced by NORMALIZATIONS[normalization] ("" = as it is)."""
    if not normalization:
        return model
    if normalization not in NORMALIZATIONS:
        raise InputError(f"model.normalization {normalization!r}: use one of {', '.join(NORMALIZATIONS)}")
    mean, std = NORMALIZATIONS[normalization]
    preprocess = dataclasses.replace(model.preprocess, mean=mean, std=std)
    return dataclasses.replace(model, preprocess=preprocess, info={**model.info, "preprocess": preprocess.options()})


def _load_saved_model(spec: ModelSpec, checkpoint: str, image_size: int | None, cache_dir: str | None) -> LoadedModel:
    """load_model for a TensorFlow SavedModel (models/saved_model.py): its outputs are the layers."""
    path = checkpoint or spec.checkpoint
    if not path or path == "random":
        raise InputError(
            f"model.checkpoint: the registry entry {spec.name!r} needs a SavedModel folder or its .tar.gz "
            "(model.checkpoint=...); there are no random weights for a SavedModel"
        )
    folder = saved_model.local_folder(path, cache_dir)
    size = image_size or spec.image_size
    module = saved_model.SavedModelModule(folder, size, path)
    if spec.default_layer not in module.names:
        raise InputError(f"{path}: no '{spec.default_layer}' output (outputs: {', '.join(module.names)})")
    preprocess = dataclasses.replace(spec.preprocess, size=size)
    local = storage.fetch(path, cache_dir)
    digest = storage.sha256(local) if os.path.isfile(local) else _tree_digest(folder)
    options = {"outputs": {name: list(shape) for name, shape in module.shapes.items()}}
    identity = (spec.name, "", "saved_model", path, digest)
    info = _info(*identity, None, size, ("float32", "float32"), spec.default_layer, options, preprocess)
    return LoadedModel(module, {}, size, preprocess, spec.default_layer, info, module.outputs())


def _info(
    name: str,
    variant: str,
    source: str,
    checkpoint: str,
    sha256: str | None,
    seed: int | None,
    size: int,
    dtype: tuple[str, str],
    default_layer: str,
    config: dict,
    preprocess: Preprocess,
) -> dict:
    """A loaded model's JSON-able record (LoadedModel.info; part of every feature store's key). dtype: (the
    model.dtype setting, the matmul precision it means)."""
    return {
        "name": name, "variant": variant, "source": source, "checkpoint": checkpoint, "sha256": sha256,
        "seed": seed, "image_size": size, "dtype": dtype[0], "matmul_precision": dtype[1],
        "default_layer": default_layer, "config": config, "preprocess": preprocess.options(),
    }  # fmt: skip


def _file_digest(local: str) -> str | None:
    """sha256 of a checkpoint file on this machine (None for random weights or a remote path)."""
    return storage.sha256(local) if local and not storage.is_remote(local) else None


def _tree_digest(folder: str) -> str:
    """sha256 over a folder's files (relative names and bytes, in sorted order): a SavedModel folder's identity."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            digest.update(os.path.relpath(full, folder).encode() + b"\0")
            with open(full, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def random_params(abstract: Params, seed: int) -> Params:
    """Random float32 weights for an (abstract) tree, from numpy's generator: for tests and demos.

    Kernels ~ N(0, 1/fan_in), LayerNorm scales ~ 1 + N(0, 0.1^2), everything else (biases, cls, position
    embeddings, probe) ~ N(0, 0.1^2): every parameter is non-trivial, so a mis-mapped one shows.
    Not big_vision's training initialization (that is `module.init`).
    """
    rng = np.random.default_rng(seed)
    out = {}
    for name, leaf in checkpoints.flatten(abstract).items():
        shape = leaf.shape
        fan_shape = shape[1:] if "Transformer/encoderblock/" in name else shape  # scanned: leading depth axis
        if name.endswith("scale"):
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name.endswith("kernel") and len(fan_shape) >= 2:
            qkv = re.search(r"(query|key|value)/kernel$", name)
            fan_in = fan_shape[0] if qkv else int(np.prod(fan_shape[:-1]))
            value = rng.standard_normal(shape) / np.sqrt(fan_in)
        else:
            value = 0.1 * rng.standard_normal(shape)
        out[name] = value.astype(leaf.dtype)
    return checkpoints.unflatten(out)


def _looks_like_variant(name: str) -> bool:
    return name.partition("/")[0] in VARIANTS


def _check_variant(found: dict, chosen: dict, path: str, variant: str) -> None:
    """Raises if the checkpoint's dimensions differ from the requested variant's."""
    diffs = [f"{k} {found[k]} (asked {chosen[k]})" for k in _DIMENSIONS if k in chosen and found[k] != chosen[k]]
    if diffs:
        raise InputError(
            f"{path}: checkpoint is {checkpoints.describe_config(found)}, not variant {variant!r}: "
            f"{', '.join(diffs)}; pick the variant that matches the file"
        )


def _grid_size(raw: Params | None, module: VisionTransformer) -> int:
    """Image side implied by a checkpoint's position embedding (0 if none)."""
    if raw is None or "pos_embedding" not in raw:
        return 0
    side, _ = checkpoints.grid_rows(np.shape(raw["pos_embedding"])[1])
    return side * module.patch_size[0]


def _flax_init(module: VisionTransformer, size: int, seed: int) -> Params:
    """big_vision's initialization (the "rbg" generator: it compiles twice as fast as threefry on CPU)."""
    key = jax.random.key(seed, impl="rbg")
    return jax.jit(module.init)(key, jnp.zeros((1, size, size, 3)))["params"]


def _default_preprocess(arch: dict) -> Preprocess:
    if arch.get("layer_scale"):  # a DINOv2 file
        return _DINOV2_PREPROCESS
    return _CLIP_PREPROCESS if arch else _BV_PREPROCESS


def _json_config(module: VisionTransformer) -> dict:
    fields = [f for f in VisionTransformer.__dataclass_fields__ if f not in ("parent", "name")]
    return {f: list(v) if isinstance(v := getattr(module, f), tuple) else v for f in fields}
