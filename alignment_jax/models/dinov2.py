"""DINOv2 weights (timm's and Hugging Face transformers' `.safetensors` layouts) -> our big_vision-named tree.

DINOv2 is a big_vision-style ViT (models/vit.py) with three options: `layer_scale` (LayerScale on both
residual branches), `num_registers` (4 register tokens for the `-reg4` models) and, for the giant model,
`mlp="swiglu"`. Both layouts are read without torch:

- timm (`vit_{small,base,large,giant}_patch14[_reg4]_dinov2`): `patch_embed.proj`, `cls_token`, `pos_embed`
  (1, 1 + 37*37, D) with a class slot, or (1, 37*37, D) and the class row already folded into `cls_token`
  for the register models (timm's `no_embed_class`), `reg_token` (1, 4, D), blocks `blocks.{i}` with fused
  `attn.qkv`, `ls1.gamma`, `ls2.gamma`, `mlp.fc1`/`mlp.fc2` (giant: `fc1` packs the SiLU gate and the value,
  (2 * 4096, D)), final `norm`.
- Hugging Face `Dinov2Model` / `Dinov2WithRegistersModel` (an optional `dinov2.` prefix):
  `embeddings.{cls_token, mask_token, position_embeddings, register_tokens}`,
  `embeddings.patch_embeddings.projection`, `encoder.layer.{i}.{norm1, norm2}`, separate
  `attention.attention.{query, key, value}`, `attention.output.dense`, `layer_scale{1,2}.lambda1`,
  `mlp.fc1`/`mlp.fc2` or (giant) `mlp.weights_in`/`mlp.weights_out`, final `layernorm`.

- Meta's original files (`dinov2_vit{s,b,l,g}14[_reg4]_pretrain.pth`, read with torch, or the same names in a
  `.safetensors`): timm's names except `register_tokens`, a `mask_token`, the class slot kept in `pos_embed`
  also with registers, and the giant's `mlp.w12`/`mlp.w3`.

`mask_token` (used only in training) is dropped. The released weights are for 518 px (a 37 x 37 grid);
`checkpoints.fit_to_model` resamples the grid to the model's size as timm's loader does (bicubic with
antialiasing, `checkpoints.resample_posemb(method="bicubic")`). LayerNorm eps 1e-6 and exact GELU, as both.
"""

import numpy as np

from alignment_jax.errors import InputError
from alignment_jax.models.openclip import _TIMM_RULES
from alignment_jax.models.torch_rules import (
    BLOCK,
    MHA,
    Params,
    apply_rules,
    check_width,
    dense,
    heads_bias,
    heads_kernel,
    rules,
    same,
    tokens,
    vit_rules,
)

LAYOUTS = ("timm_dinov2", "hf_dinov2")  # Meta's original names read as timm's (a superset of rules)
ARCH = {"layer_scale": True, "gelu": "exact", "ln_eps": 1e-6, "pool_type": "tok"}


def detect_layout(state_dict: dict[str, np.ndarray]) -> str:
    """ "timm_dinov2", "hf_dinov2", or "" for a file that is neither."""
    keys = {_strip(k) for k in state_dict}
    if "embeddings.patch_embeddings.projection.weight" in keys:
        return "hf_dinov2"
    if "patch_embed.proj.weight" in keys and "blocks.0.ls1.gamma" in keys:
        return "timm_dinov2"
    return ""


def convert_state_dict(state_dict: dict[str, np.ndarray], num_heads: int, source: str) -> tuple[Params, dict, str]:
    """(nested params in big_vision names, architecture options the weights imply, layout)."""
    layout = detect_layout(state_dict)
    if not layout:
        raise InputError(f"{source}: not a DINOv2 checkpoint in timm's or Hugging Face's layout")
    dropped = ("embeddings.mask_token", "mask_token")
    state_dict = {_strip(k): v for k, v in state_dict.items() if _strip(k) not in dropped}
    patch = state_dict[
        "embeddings.patch_embeddings.projection.weight" if layout == "hf_dinov2" else "patch_embed.proj.weight"
    ]
    check_width(
        patch,
        num_heads,
        source,
        "the DINOv2 entry that matches the file (width 384: s14, 768: b14, 1024: l14, 1536: g14)",
    )
    params = apply_rules(state_dict, _HF_RULES if layout == "hf_dinov2" else _TIMM_DINOV2_RULES, num_heads)
    return params, dict(ARCH), layout


def _strip(key: str) -> str:
    return key[len("dinov2.") :] if key.startswith("dinov2.") else key


_LAYER = r"encoder\.layer\.(\d+)\."
_LAYER_SCALES = (BLOCK + "LayerScale_0/gamma", BLOCK + "LayerScale_1/gamma")
_HF_RULES = vit_rules(
    patch=r"embeddings\.patch_embeddings\.projection", cls=r"embeddings\.cls_token",
    pos=r"embeddings\.position_embeddings", final_norm="layernorm", block=_LAYER, norm1="norm1", norm2="norm2",
    out=r"attention\.output\.dense", fc1=r"mlp\.(?:fc1|weights_in)", fc2=r"mlp\.(?:fc2|weights_out)",
) + rules([
    (r"embeddings\.register_tokens", "registers", tokens),
    (_LAYER + r"attention\.attention\.(query|key|value)\.weight", MHA + "/{1}/kernel", heads_kernel),
    (_LAYER + r"attention\.attention\.(query|key|value)\.bias", MHA + "/{1}/bias", heads_bias),
    (_LAYER + r"layer_scale1\.lambda1", _LAYER_SCALES[0], same),
    (_LAYER + r"layer_scale2\.lambda1", _LAYER_SCALES[1], same),
])  # fmt: skip
_TIMM_DINOV2_RULES = [
    *rules([
        (r"reg_token|register_tokens", "registers", tokens),
        (r"blocks\.(\d+)\.ls1\.gamma", _LAYER_SCALES[0], same),
        (r"blocks\.(\d+)\.ls2\.gamma", _LAYER_SCALES[1], same),
    ]),
    *dense(r"blocks\.(\d+)\.mlp\.w12", BLOCK + "MlpBlock_0/Dense_0"),
    *dense(r"blocks\.(\d+)\.mlp\.w3", BLOCK + "MlpBlock_0/Dense_1"),
    *_TIMM_RULES,
]  # fmt: skip
