"""OpenCLIP and timm ViT weights (PyTorch state dicts) converted to our big_vision-named parameter tree.

No PyTorch needed for `.safetensors` (read with safetensors' numpy API); `.bin`/`.pt`/`.pth` need torch.
Every conversion is a reshape/transpose of a whole tensor (views, no per-element work):
- torch Linear weight (out, in) -> Dense kernel (in, out); attention q/k/v kernels (D, heads, head_dim),
  out kernel (heads, head_dim, D); the fused `in_proj_weight` / `qkv.weight` (3D, D) splits into q, k, v.
- Conv2d weight (D, 3, p, p) -> Conv kernel (p, p, 3, D).
OpenCLIP towers need the architecture flags in `OPENCLIP_ARCH` (ln_pre, class token before the N+1
position embeddings, bias-free patch conv and projection, LayerNorm eps 1e-5, exact GELU; OpenAI's
own weights use QuickGELU: gelu="quick"). timm's ViTs are big_vision ViTs: their class-token position
row is folded into `cls` like a legacy vit_jax file. Keys we do not know are kept under their torch
name, so strict matching reports them as unexpected.
"""

import os
import re
from collections.abc import Callable

import numpy as np

from alignment_jax.errors import InputError

OPENCLIP_ARCH = dict(
    pre_norm=True,
    posemb_with_cls=True,
    patch_bias=False,
    ln_eps=1e-5,
    head_bias=False,
    pool_type="tok",
    gelu="exact",
)

Params = dict


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """Tensors of a `.safetensors` (numpy) or `.bin`/`.pt`/`.pth` (torch) file; only `visual.*` if present."""
    if path.endswith(".safetensors"):
        return _read_safetensors(path)
    return _read_torch(path)


def detect_layout(state_dict: dict[str, np.ndarray], source: str) -> str:
    """The key layout: "openclip" (conv1, transformer.resblocks) or "timm" (patch_embed, blocks)."""
    if "conv1.weight" in state_dict:
        return "openclip"
    if "patch_embed.proj.weight" in state_dict:
        return "timm"
    some = ", ".join(sorted(state_dict)[:5])
    raise InputError(
        f"{source}: neither an OpenCLIP image tower (visual.conv1.weight) nor a timm ViT "
        f"(patch_embed.proj.weight); first keys: {some}"
    )


def convert_state_dict(state_dict: dict[str, np.ndarray], num_heads: int, source: str) -> tuple[Params, dict]:
    """(nested params in big_vision names, architecture flags the weights imply)."""
    layout = detect_layout(state_dict, source)
    patch = state_dict["conv1.weight" if layout == "openclip" else "patch_embed.proj.weight"]
    check_width(
        patch, num_heads, source, "the variant that matches the file (width 768: B, 1024: L, 1280: H, 1408: g, 1664: G)"
    )
    params = apply_rules(state_dict, _OPENCLIP_RULES if layout == "openclip" else _TIMM_RULES, num_heads)
    return params, (dict(OPENCLIP_ARCH) if layout == "openclip" else {})


def check_width(patch_kernel: np.ndarray, num_heads: int, source: str, pick: str) -> None:
    """InputError when the checkpoint's width (the patch embedding's outputs) does not split into num_heads."""
    width = np.shape(patch_kernel)[0]
    if width % num_heads:
        raise InputError(
            f"{source}: the checkpoint's width {width} does not split into the variant's {num_heads} heads; pick {pick}"
        )


def apply_rules(
    state_dict: dict[str, np.ndarray], rules: list[tuple[re.Pattern, str, Callable]], num_heads: int
) -> Params:
    """A torch state dict -> nested params in big_vision names, by the first rule whose pattern matches each key
    (its transform may split one tensor into several, e.g. a fused qkv); keys no rule matches are kept as
    `torch:<key>` so that the strict matching names them."""
    params: Params = {}
    for key, value in state_dict.items():
        for pattern, target, transform in rules:
            m = pattern.fullmatch(key)
            if m:
                converted = transform(np.asarray(value), num_heads)
                path = target.format(*m.groups())
                for sub, arr in (converted if isinstance(converted, dict) else {"": converted}).items():
                    _put(params, f"{path}/{sub}" if sub else path, arr)
                break
        else:
            params[f"torch:{key}"] = value
    return params


def _put(tree: Params, path: str, value: np.ndarray) -> None:
    *parents, leaf = path.split("/")
    for p in parents:
        tree = tree.setdefault(p, {})
    tree[leaf] = value


def _same(w: np.ndarray, _: int) -> np.ndarray:
    return w


def _linear(w: np.ndarray, _: int) -> np.ndarray:
    """(out, in) -> (in, out)."""
    return w.T


def _conv(w: np.ndarray, _: int) -> np.ndarray:
    """(D, C, ph, pw) -> (ph, pw, C, D)."""
    return w.transpose(2, 3, 1, 0)


def _qkv_kernel(w: np.ndarray, heads: int) -> dict[str, np.ndarray]:
    """Fused (3D, D) -> query/key/value kernels (D, heads, head_dim)."""
    d = w.shape[1]
    w = w.reshape(3, heads, d // heads, d).transpose(0, 3, 1, 2)
    return {"query/kernel": w[0], "key/kernel": w[1], "value/kernel": w[2]}


def _qkv_bias(b: np.ndarray, heads: int) -> dict[str, np.ndarray]:
    """Fused (3D,) -> query/key/value biases (heads, head_dim)."""
    b = b.reshape(3, heads, -1)
    return {"query/bias": b[0], "key/bias": b[1], "value/bias": b[2]}


def _out_kernel(w: np.ndarray, heads: int) -> np.ndarray:
    """(D_out, D_in) -> (heads, head_dim, D_out)."""
    return w.T.reshape(heads, -1, w.shape[0])


def _cls(v: np.ndarray, _: int) -> np.ndarray:
    return v.reshape(1, 1, -1)


def _posemb(v: np.ndarray, _: int) -> np.ndarray:
    return v.reshape(1, -1, v.shape[-1])


_BLOCK = "Transformer/encoderblock_{0}/"
_MHA = _BLOCK + "MultiHeadDotProductAttention_0"
_Rule = tuple[re.Pattern, str, Callable]


def _rules(table: list[tuple[str, str, Callable]]) -> list[_Rule]:
    return [(re.compile(p), t, f) for p, t, f in table]


def _block_rules(block: str, names: dict[str, str]) -> list[tuple[str, str, Callable]]:
    r"""The rules of one pre-norm transformer block: `block` is the regex of its prefix with the block index as
    group 1 (e.g. r"blocks\.(\d+)\."), `names` the file's names of its parts (norm1, norm2, qkv_weight,
    qkv_bias, out, fc1, fc2)."""
    return [
        (block + names["norm1"] + r"\.weight", _BLOCK + "LayerNorm_0/scale", _same),
        (block + names["norm1"] + r"\.bias", _BLOCK + "LayerNorm_0/bias", _same),
        (block + names["norm2"] + r"\.weight", _BLOCK + "LayerNorm_1/scale", _same),
        (block + names["norm2"] + r"\.bias", _BLOCK + "LayerNorm_1/bias", _same),
        (block + names["qkv_weight"], _MHA, _qkv_kernel),
        (block + names["qkv_bias"], _MHA, _qkv_bias),
        (block + names["out"] + r"\.weight", _MHA + "/out/kernel", _out_kernel),
        (block + names["out"] + r"\.bias", _MHA + "/out/bias", _same),
        (block + names["fc1"] + r"\.weight", _BLOCK + "MlpBlock_0/Dense_0/kernel", _linear),
        (block + names["fc1"] + r"\.bias", _BLOCK + "MlpBlock_0/Dense_0/bias", _same),
        (block + names["fc2"] + r"\.weight", _BLOCK + "MlpBlock_0/Dense_1/kernel", _linear),
        (block + names["fc2"] + r"\.bias", _BLOCK + "MlpBlock_0/Dense_1/bias", _same),
    ]


_OPENCLIP_RULES = _rules(
    [
        (r"conv1\.weight", "embedding/kernel", _conv),
        (r"conv1\.bias", "embedding/bias", _same),
        (r"class_embedding", "cls", _cls),
        (r"positional_embedding", "pos_embedding", _posemb),
        (r"ln_pre\.weight", "ln_pre/scale", _same),
        (r"ln_pre\.bias", "ln_pre/bias", _same),
        (r"ln_post\.weight", "Transformer/encoder_norm/scale", _same),
        (r"ln_post\.bias", "Transformer/encoder_norm/bias", _same),
        (r"proj", "head/kernel", _same),
        *_block_rules(
            r"transformer\.resblocks\.(\d+)\.",
            {
                "norm1": "ln_1",
                "norm2": "ln_2",
                "qkv_weight": r"attn\.in_proj_weight",
                "qkv_bias": r"attn\.in_proj_bias",
                "out": r"attn\.out_proj",
                "fc1": r"mlp\.c_fc",
                "fc2": r"mlp\.c_proj",
            },
        ),  # fmt: skip
    ]
)

_TIMM_RULES = _rules(
    [
        (r"patch_embed\.proj\.weight", "embedding/kernel", _conv),
        (r"patch_embed\.proj\.bias", "embedding/bias", _same),
        (r"cls_token", "cls", _cls),
        (r"pos_embed", "pos_embedding", _posemb),
        (r"norm_pre\.weight", "ln_pre/scale", _same),
        (r"norm_pre\.bias", "ln_pre/bias", _same),
        (r"norm\.weight", "Transformer/encoder_norm/scale", _same),
        (r"norm\.bias", "Transformer/encoder_norm/bias", _same),
        (r"head\.weight", "head/kernel", _linear),
        (r"head\.bias", "head/bias", _same),
        *_block_rules(
            r"blocks\.(\d+)\.",
            {
                "norm1": "norm1",
                "norm2": "norm2",
                "qkv_weight": r"attn\.qkv\.weight",
                "qkv_bias": r"attn\.qkv\.bias",
                "out": r"attn\.proj",
                "fc1": r"mlp\.fc1",
                "fc2": r"mlp\.fc2",
            },
        ),  # fmt: skip
    ]
)


def _select_visual(keys: list[str]) -> dict[str, str]:
    """Our key -> file key: the `visual.` sub-tree of a full CLIP model, a `module.` prefix dropped."""
    names = {k: k for k in keys}
    if keys and all(k.startswith("module.") for k in keys):
        names = {k[len("module.") :]: k for k in keys}
    visual = {k[len("visual.") :]: v for k, v in names.items() if k.startswith("visual.")}
    return visual or names


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError, safe_open

    if not os.path.isfile(path):
        raise InputError(f"{path}: file not found")
    try:
        with safe_open(path, framework="numpy") as f:
            names = _select_visual(list(f.keys()))
            return {ours: f.get_tensor(theirs) for ours, theirs in names.items()}
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable .safetensors file ({e}); it may be truncated: download again") from e


def _read_torch(path: str) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError as e:
        raise InputError(
            f"{path}: reading a PyTorch checkpoint needs torch (pip install torch); "
            "or use the model's .safetensors file, which needs no torch"
        ) from e
    if not os.path.isfile(path):
        raise InputError(f"{path}: file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except RuntimeError:  # OpenAI's own CLIP files are TorchScript archives
        try:
            obj = torch.jit.load(path, map_location="cpu").state_dict()
        except RuntimeError as e:
            raise InputError(f"{path}: not a readable PyTorch checkpoint ({e}); it may be truncated") from e
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a state dict (name -> tensor), got {type(obj).__name__}")
    names = _select_visual(list(obj))
    return {ours: obj[theirs].detach().float().numpy() for ours, theirs in names.items()}
