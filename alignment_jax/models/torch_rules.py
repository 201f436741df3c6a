r"""Rename rules from PyTorch ViT state dicts (OpenCLIP, timm, DINOv2) to our big_vision-named parameter tree.

A rule is (a compiled regex over the torch key, our '/'-joined path with `{0}`, `{1}` for the regex's groups, a
transform `(tensor, num_heads) -> array or {sub-path: array}`). `apply_rules` converts a state dict by the first
rule that matches each key; `vit_rules` builds the table of a pre-norm ViT from the names its file gives the parts.
Every transform is a reshape/transpose of a whole tensor:
- torch Linear weight (out, in) -> Dense kernel (in, out); attention q/k/v kernels (D, heads, head_dim),
  out kernel (heads, head_dim, D); the fused `in_proj_weight` / `qkv.weight` (3D, D) splits into q, k, v.
- Conv2d weight (D, 3, p, p) -> Conv kernel (p, p, 3, D).
"""

import re
from collections.abc import Callable

import numpy as np

from alignment_jax.errors import InputError

Params = dict
Rule = tuple[re.Pattern, str, Callable]

BLOCK = "Transformer/encoderblock_{0}/"  # our prefix of block {0}, the block index being the regex's group 1
MHA = BLOCK + "MultiHeadDotProductAttention_0"


def apply_rules(state_dict: dict[str, np.ndarray], rules: list[Rule], num_heads: int) -> Params:
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


def check_width(patch_kernel: np.ndarray, num_heads: int, source: str, pick: str) -> None:
    """InputError when the checkpoint's width (the patch embedding's outputs) does not split into num_heads."""
    width = np.shape(patch_kernel)[0]
    if width % num_heads:
        raise InputError(
            f"{source}: the checkpoint's width {width} does not split into the variant's {num_heads} heads; pick {pick}"
        )


def _put(tree: Params, path: str, value: np.ndarray) -> None:
    *parents, leaf = path.split("/")
    for p in parents:
        tree = tree.setdefault(p, {})
    tree[leaf] = value


def same(w: np.ndarray, _: int) -> np.ndarray:
    return w


def linear(w: np.ndarray, _: int) -> np.ndarray:
    """(out, in) -> (in, out)."""
    return w.T


def conv(w: np.ndarray, _: int) -> np.ndarray:
    """(D, C, ph, pw) -> (ph, pw, C, D)."""
    return w.transpose(2, 3, 1, 0)


def qkv_kernel(w: np.ndarray, heads: int) -> dict[str, np.ndarray]:
    """Fused (3D, D) -> query/key/value kernels (D, heads, head_dim)."""
    d = w.shape[1]
    w = w.reshape(3, heads, d // heads, d).transpose(0, 3, 1, 2)
    return {"query/kernel": w[0], "key/kernel": w[1], "value/kernel": w[2]}


def qkv_bias(b: np.ndarray, heads: int) -> dict[str, np.ndarray]:
    """Fused (3D,) -> query/key/value biases (heads, head_dim)."""
    b = b.reshape(3, heads, -1)
    return {"query/bias": b[0], "key/bias": b[1], "value/bias": b[2]}


def heads_kernel(w: np.ndarray, heads: int) -> np.ndarray:
    """A separate q/k/v Linear weight (D_out, D_in) -> (D_in, heads, head_dim)."""
    return w.T.reshape(w.shape[1], heads, -1)


def heads_bias(b: np.ndarray, heads: int) -> np.ndarray:
    """(D,) -> (heads, head_dim)."""
    return b.reshape(heads, -1)


def out_kernel(w: np.ndarray, heads: int) -> np.ndarray:
    """(D_out, D_in) -> (heads, head_dim, D_out)."""
    return w.T.reshape(heads, -1, w.shape[0])


def cls_token(v: np.ndarray, _: int) -> np.ndarray:
    """Any (..., D) holding one token -> (1, 1, D)."""
    return v.reshape(1, 1, -1)


def tokens(v: np.ndarray, _: int) -> np.ndarray:
    """Position embeddings or register tokens (..., N, D) -> (1, N, D)."""
    return v.reshape(1, -1, v.shape[-1])


def rules(table: list[tuple[str, str, Callable]]) -> list[Rule]:
    """(pattern, target, transform) rows -> rules."""
    return [(re.compile(p), t, f) for p, t, f in table]


def dense(source: str, target: str, kernel: Callable = linear) -> list[Rule]:
    """A Linear (or, with `kernel=conv`, a Conv2d): `<source>.weight` -> `<target>/kernel`, `.bias` -> `/bias`."""
    return rules([(source + r"\.weight", target + "/kernel", kernel), (source + r"\.bias", target + "/bias", same)])


def norm(source: str, target: str) -> list[Rule]:
    """A LayerNorm: `<source>.weight` -> `<target>/scale`, `<source>.bias` -> `<target>/bias`."""
    return rules([(source + r"\.weight", target + "/scale", same), (source + r"\.bias", target + "/bias", same)])


def vit_rules(
    *,
    patch: str,
    cls: str,
    pos: str,
    final_norm: str,
    block: str,
    norm1: str,
    norm2: str,
    out: str,
    fc1: str,
    fc2: str,
    pre_norm: str = "",
    qkv: str = "",
) -> list[Rule]:
    r"""The rules of a pre-norm ViT without its head, each argument the regex of a part's name in the file (for a
    Linear, Conv2d or LayerNorm, the name before `.weight`/`.bias`): the `patch` conv, the `cls` token, the `pos`
    embedding, the `final_norm`, the optional `pre_norm`; and per block, `block` the prefix with the block index as
    group 1 (e.g. r"blocks\.(\d+)\."), `norm1`, `norm2`, `out` (attention output), `fc1`, `fc2` (MLP), and `qkv`
    the fused attention input, the prefix of `weight`/`bias` (e.g. r"attn\.qkv\."); "" where q, k, v are
    separate: the caller's rules then."""
    table = [
        *dense(patch, "embedding", conv),
        *rules([(cls, "cls", cls_token), (pos, "pos_embedding", tokens)]),
        *norm(final_norm, "Transformer/encoder_norm"),
        *norm(block + norm1, BLOCK + "LayerNorm_0"),
        *norm(block + norm2, BLOCK + "LayerNorm_1"),
        *dense(block + out, MHA + "/out", out_kernel),
        *dense(block + fc1, BLOCK + "MlpBlock_0/Dense_0"),
        *dense(block + fc2, BLOCK + "MlpBlock_0/Dense_1"),
    ]
    if pre_norm:
        table += norm(pre_norm, "ln_pre")
    if qkv:
        table += rules([(block + qkv + "weight", MHA, qkv_kernel), (block + qkv + "bias", MHA, qkv_bias)])
    return table
