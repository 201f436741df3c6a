"""OpenCLIP and timm ViT weights (PyTorch state dicts) converted to our big_vision-named parameter tree.

No PyTorch needed for `.safetensors` (read with safetensors' numpy API); `.bin`/`.pt`/`.pth` need torch.
Every conversion is a reshape/transpose of a whole tensor (views, no per-element work; `models/torch_rules.py`).
OpenCLIP towers need the architecture flags in `OPENCLIP_ARCH` (ln_pre, class token before the N+1
position embeddings, bias-free patch conv and projection, LayerNorm eps 1e-5, exact GELU; OpenAI's
own weights use QuickGELU: gelu="quick"). timm's ViTs are big_vision ViTs: their class-token position
row is folded into `cls` like a legacy vit_jax file. Keys we do not know are kept under their torch
name, so strict matching reports them as unexpected.
"""

import os

import numpy as np

from alignment_jax.errors import InputError
from alignment_jax.models.torch_rules import Params, apply_rules, check_width, dense, rules, same, vit_rules

OPENCLIP_ARCH = dict(
    pre_norm=True,
    posemb_with_cls=True,
    patch_bias=False,
    ln_eps=1e-5,
    head_bias=False,
    pool_type="tok",
    gelu="exact",
)


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


_OPENCLIP_RULES = vit_rules(
    patch="conv1", cls="class_embedding", pos="positional_embedding", pre_norm="ln_pre", final_norm="ln_post",
    block=r"transformer\.resblocks\.(\d+)\.", norm1="ln_1", norm2="ln_2", qkv=r"attn\.in_proj_",
    out=r"attn\.out_proj", fc1=r"mlp\.c_fc", fc2=r"mlp\.c_proj",
) + rules([("proj", "head/kernel", same)])  # fmt: skip
_TIMM_RULES = vit_rules(
    patch=r"patch_embed\.proj", cls="cls_token", pos="pos_embed", pre_norm="norm_pre", final_norm="norm",
    block=r"blocks\.(\d+)\.", norm1="norm1", norm2="norm2", qkv=r"attn\.qkv\.", out=r"attn\.proj",
    fc1=r"mlp\.fc1", fc2=r"mlp\.fc2",
) + dense("head", "head")  # fmt: skip


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
