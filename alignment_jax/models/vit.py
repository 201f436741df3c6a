"""A Vision Transformer in Flax linen whose parameter tree IS the big_vision checkpoint format.

Names follow big_vision's `models/vit.py`: `embedding` (patch conv), `pos_embedding`, `cls`,
`Transformer/encoderblock_{i}/{LayerNorm_0, MultiHeadDotProductAttention_0, LayerNorm_1, MlpBlock_0}`,
`Transformer/encoder_norm`, `MAPHead_0`, `pre_logits`, `head`; with `scan=True` the blocks are one
`Transformer/encoderblock` sub-tree with a leading depth axis. Numerics match big_vision by default
(tanh GELU, LayerNorm eps 1e-6, position embedding added before the class token is prepended).

DINOv2 options (`models/dinov2.py` names the weights): `layer_scale` (a learned per-channel `gamma` on each
residual branch, `LayerScale_0/1` in a block), `num_registers` (learned `registers` tokens after the class
token, without position embedding, left out of the mean of the patch tokens), `mlp="swiglu"` (SwiGLU MLP:
`Dense_0` (D, 2 mlp_dim) split into a SiLU gate and a value, `Dense_1` (mlp_dim, D)).

Flags for CLIP-style image towers (OpenCLIP, timm; see `models/openclip.py`), all off by default:
`pre_norm` (a `ln_pre` LayerNorm before the blocks), `posemb_with_cls` (class token prepended first,
position embedding with N+1 rows), `patch_bias=False`, `ln_eps=1e-5`, `gelu="exact"|"quick"`,
`head_bias=False` (the `proj` matrix as a bias-free `head`).

Matmul precision: every matmul and convolution of the forward pass runs under
`jax.default_matmul_precision(matmul_precision)`: "float32" (default) is full float32 on every device
(XLA precision HIGHEST), "tensorfloat32" is TF32 on NVIDIA tensor cores (HIGH; 3-pass bfloat16 on TPU),
"bfloat16" the device's fastest (DEFAULT: TF32 on recent NVIDIA GPUs, one bfloat16 pass on TPU). Without
it, JAX's default would silently make float32 TF32 on an H100. CPUs compute float32 at every setting.
"""

import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from alignment_jax.errors import InputError

# width, depth, mlp_dim, num_heads; big_vision's table (Table 2 of arXiv:2106.04560 plus later additions).
VARIANTS: dict[str, tuple[int, int, int, int]] = {
    "mu": (32, 1, 128, 2), "Ti": (192, 12, 768, 3), "S": (384, 12, 1536, 6), "M": (512, 12, 2048, 8),
    "B": (768, 12, 3072, 12), "L": (1024, 24, 4096, 16), "So400m": (1152, 27, 4304, 16), "H": (1280, 32, 5120, 16),
    "g": (1408, 40, 6144, 16), "g-opt": (1536, 40, 6144, 16), "G": (1664, 48, 8192, 16),
    "G-opt": (1536, 48, 8192, 16), "e": (1792, 56, 15360, 16),
}  # fmt: skip
POOL_TYPES = ("tok", "gap", "map", "0", "none")
MATMUL_PRECISIONS = ("float32", "tensorfloat32", "bfloat16")  # jax.default_matmul_precision's names
GELUS = ("tanh", "exact", "quick")
MLPS = ("gelu", "swiglu")


def decode_variant(variant: str) -> dict[str, Any]:
    """Variant string -> options: "B/16" -> {width, depth, mlp_dim, num_heads, patch_size}; "B" has no patch."""
    name, _, patch = variant.partition("/")
    if name not in VARIANTS:
        raise InputError(f"model variant {variant!r}: unknown size {name!r}; use one of {', '.join(VARIANTS)}")
    width, depth, mlp_dim, num_heads = VARIANTS[name]
    config: dict[str, Any] = dict(width=width, depth=depth, mlp_dim=mlp_dim, num_heads=num_heads)
    if patch:
        if not re.fullmatch(r"[1-9][0-9]*", patch):
            raise InputError(f"model variant {variant!r}: patch size {patch!r} is not a positive integer; e.g. 'B/16'")
        config["patch_size"] = (int(patch), int(patch))
    return config


def posemb_sincos_2d(h: int, w: int, width: int, temperature: float = 10_000.0, dtype: Any = jnp.float32) -> jax.Array:
    """Fixed 2-d sin-cos position embedding (MoCo v3, as big_vision): (1, h*w, width)."""
    y, x = jnp.mgrid[:h, :w]
    omega = jnp.arange(width // 4) / (width // 4 - 1)
    omega = 1.0 / (temperature**omega)
    y = jnp.einsum("m,d->md", y.flatten(), omega)
    x = jnp.einsum("m,d->md", x.flatten(), omega)
    pe = jnp.concatenate([jnp.sin(x), jnp.cos(x), jnp.sin(y), jnp.cos(y)], axis=1)
    return jnp.asarray(pe, dtype)[None, :, :]


def gelu(x: jax.Array, kind: str) -> jax.Array:
    """tanh-approximate GELU (big_vision, vit_jax), exact erf GELU (OpenCLIP, timm) or QuickGELU (OpenAI CLIP)."""
    if kind == "tanh":
        return nn.gelu(x, approximate=True)
    if kind == "exact":
        return nn.gelu(x, approximate=False)
    return x * nn.sigmoid(1.702 * x)


class MlpBlock(nn.Module):
    """Dense(mlp_dim) -> GELU -> Dense(d): (B, L, d) -> (B, L, d). With kind="swiglu" (DINOv2 giant):
    Dense(2 mlp_dim) -> [a, b] -> SiLU(a) * b -> Dense(d), as DINOv2's SwiGLUFFN and timm's SwiGLUPacked."""

    mlp_dim: int | None = None
    dtype_mm: str = "float32"
    gelu: str = "tanh"
    kind: str = "gelu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        inits = dict(kernel_init=nn.initializers.xavier_uniform(), bias_init=nn.initializers.normal(stddev=1e-6))
        d = x.shape[-1]
        hidden = self.mlp_dim or 4 * d
        if self.kind == "swiglu":
            gate, value = jnp.split(nn.Dense(2 * hidden, dtype=self.dtype_mm, **inits)(x), 2, axis=-1)
            x = nn.silu(gate) * value
        else:
            x = gelu(nn.Dense(hidden, dtype=self.dtype_mm, **inits)(x), self.gelu)
        return nn.Dense(d, dtype=self.dtype_mm, **inits)(x)


class LayerScale(nn.Module):
    """x * gamma, one learned factor per channel (CaiT; DINOv2's `ls1`/`ls2`): (B, L, d) -> (B, L, d)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        gamma = self.param("gamma", nn.initializers.constant(1e-5), (x.shape[-1],), jnp.float32)
        return x * gamma.astype(x.dtype)


class BlockSettings(nn.Module):
    """The settings of a transformer block, shared by the block and the encoder that stacks them."""

    mlp_dim: int | None = None
    num_heads: int = 12
    dtype_mm: str = "float32"
    ln_eps: float = 1e-6
    gelu: str = "tanh"
    layer_scale: bool = False
    mlp: str = "gelu"


class Encoder1DBlock(BlockSettings):
    """Pre-norm transformer block: x + MHSA(LN(x)), then x + MLP(LN(x)); with layer_scale each branch is
    scaled by its LayerScale first. Returns (x, x) for `nn.scan`."""

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        y = nn.LayerNorm(epsilon=self.ln_eps, use_fast_variance=False)(x)
        y = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads, kernel_init=nn.initializers.xavier_uniform(), dtype=self.dtype_mm
        )(y, y)
        x = x + (LayerScale(name="LayerScale_0")(y) if self.layer_scale else y)
        y = nn.LayerNorm(epsilon=self.ln_eps, use_fast_variance=False)(x)
        y = MlpBlock(mlp_dim=self.mlp_dim, dtype_mm=self.dtype_mm, gelu=self.gelu, kind=self.mlp)(y)
        x = x + (LayerScale(name="LayerScale_1")(y) if self.layer_scale else y)
        return x, x


class Encoder(BlockSettings):
    """`depth` blocks then the final LayerNorm. Returns (encoded (B, L, D), {"block00": (B, L, D), ...})."""

    depth: int = 12
    scan: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        kw = dict(mlp_dim=self.mlp_dim, num_heads=self.num_heads, dtype_mm=self.dtype_mm, ln_eps=self.ln_eps)
        kw.update(gelu=self.gelu, layer_scale=self.layer_scale, mlp=self.mlp)
        out = {}
        if self.scan:
            blocks = nn.scan(
                Encoder1DBlock, variable_axes={"params": 0}, split_rngs={"params": True}, length=self.depth
            )
            x, stacked = blocks(name="encoderblock", **kw)(x)
            for i in range(self.depth):
                out[f"block{i:02d}"] = stacked[i]
        else:
            for i in range(self.depth):
                x, out[f"block{i:02d}"] = Encoder1DBlock(name=f"encoderblock_{i}", **kw)(x)
        out["pre_ln"] = x
        return nn.LayerNorm(epsilon=self.ln_eps, use_fast_variance=False, name="encoder_norm")(x), out


class MAPHead(nn.Module):
    """Multihead attention pooling: one learned probe attends over the tokens. (B, L, D) -> (B, D)."""

    mlp_dim: int | None = None
    num_heads: int = 12
    ln_eps: float = 1e-6
    gelu: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n, _, d = x.shape
        probe = self.param("probe", nn.initializers.xavier_uniform(), (1, 1, d), jnp.float32)
        probe = jnp.tile(probe.astype(x.dtype), [n, 1, 1])
        x = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, kernel_init=nn.initializers.xavier_uniform())(
            probe, x
        )
        y = nn.LayerNorm(epsilon=self.ln_eps, use_fast_variance=False)(x)
        x = x + MlpBlock(mlp_dim=self.mlp_dim, gelu=self.gelu)(y)
        return x[:, 0]


class VisionTransformer(nn.Module):
    """ViT image encoder: images (B, H, W, 3) -> (logits or None, named outputs).

    Named outputs: `stem` (B, h, w, D), `with_posemb` (B, N[+1], D), `block00`..`block{depth-1}` and
    `pre_ln` (B, L, D), `encoded` (B, L, D) after the final norm, `head_input` (B, D) pooled (absent
    for pool_type "none"), `pre_logits` (B, rep_size or D), `logits` (B, num_classes) when there is a
    head. L = N (+1 with a class token, + num_registers). For two-tower models (SigLIP, CLIP) `logits` is the image
    embedding. As in big_vision, pixels beyond the last whole patch are ignored (So400m/14 at 384 px
    sees 27 x 27 patches). Inference only: `train` is accepted for big_vision's signature and changes
    nothing.
    """

    num_classes: int = 0
    patch_size: tuple[int, int] = (16, 16)
    width: int = 768
    depth: int = 12
    mlp_dim: int | None = None
    num_heads: int = 12
    posemb: str = "learn"  # learn | sincos2d
    rep_size: int | bool = False
    pool_type: str = "gap"  # tok | gap | map | 0 | none
    head_zeroinit: bool = True
    scan: bool = False
    dtype_mm: str = "float32"  # float32 | bfloat16 matmul inputs
    matmul_precision: str = "float32"  # float32 | tensorfloat32 | bfloat16: how float32 matmuls are computed
    pre_norm: bool = False
    posemb_with_cls: bool = False
    patch_bias: bool = True
    ln_eps: float = 1e-6
    gelu: str = "tanh"  # tanh | exact | quick
    head_bias: bool = True
    layer_scale: bool = False  # DINOv2: LayerScale on both residual branches of every block
    num_registers: int = 0  # DINOv2 with registers: 4 learned tokens after the class token
    mlp: str = "gelu"  # gelu | swiglu (DINOv2 giant)

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> tuple[jax.Array | None, dict[str, jax.Array]]:
        del train
        self._check(images)
        with jax.default_matmul_precision(self.matmul_precision):  # read when each matmul is traced
            return self._forward(images)

    def _forward(self, images: jax.Array) -> tuple[jax.Array | None, dict[str, jax.Array]]:
        out: dict[str, jax.Array] = {}
        x = jnp.asarray(images, self.dtype_mm)
        x = out["stem"] = nn.Conv(
            self.width,
            tuple(self.patch_size),
            strides=tuple(self.patch_size),
            padding="VALID",
            use_bias=self.patch_bias,
            name="embedding",
            dtype=self.dtype_mm,
        )(x)
        n, h, w, c = x.shape
        x = jnp.reshape(x, [n, h * w, c])
        n_pos = h * w + int(self.posemb_with_cls)
        if self.posemb == "learn":
            init = nn.initializers.normal(stddev=1 / np.sqrt(c))
            posemb = self.param("pos_embedding", init, (1, n_pos, c), jnp.float32).astype(x.dtype)
        else:
            posemb = posemb_sincos_2d(h, w, c, dtype=x.dtype)
        has_cls = self.pool_type == "tok"
        if has_cls:
            cls = self.param("cls", nn.initializers.zeros, (1, 1, c), jnp.float32).astype(x.dtype)
            cls = jnp.tile(cls, [n, 1, 1])
        if self.posemb_with_cls:  # OpenCLIP / timm order: prepend the class token, then add N+1 embeddings
            x = out["with_posemb"] = jnp.concatenate([cls, x], axis=1) + posemb
        else:  # big_vision order: add N embeddings, then prepend the class token
            x = out["with_posemb"] = x + posemb
            if has_cls:
                x = jnp.concatenate([cls, x], axis=1)
        if self.num_registers:  # after the class token, without position embedding (DINOv2, timm)
            registers = self.param("registers", nn.initializers.normal(1e-6), (1, self.num_registers, c), jnp.float32)
            lead = int(has_cls)
            x = jnp.concatenate([x[:, :lead], jnp.tile(registers.astype(x.dtype), [n, 1, 1]), x[:, lead:]], axis=1)
        if self.pre_norm:
            x = nn.LayerNorm(epsilon=self.ln_eps, use_fast_variance=False, name="ln_pre")(x)

        x, blocks = Encoder(
            depth=self.depth,
            mlp_dim=self.mlp_dim,
            num_heads=self.num_heads,
            scan=self.scan,
            dtype_mm=self.dtype_mm,
            ln_eps=self.ln_eps,
            gelu=self.gelu,
            layer_scale=self.layer_scale,
            mlp=self.mlp,
            name="Transformer",
        )(x)
        out.update(blocks)
        out["encoded"] = x

        if self.pool_type == "map":
            x = MAPHead(num_heads=self.num_heads, mlp_dim=self.mlp_dim, ln_eps=self.ln_eps, gelu=self.gelu)(x)
        elif self.pool_type == "gap":
            x = jnp.mean(x[:, self.num_registers :], axis=1)
        elif self.pool_type in ("0", "tok"):
            x = x[:, 0]
        if self.pool_type != "none":
            out["head_input"] = x

        if self.rep_size:
            rep_size = self.width if self.rep_size is True else self.rep_size
            x = nn.tanh(nn.Dense(rep_size, name="pre_logits")(x))
        out["pre_logits"] = x

        if self.num_classes:
            kw = {"kernel_init": nn.initializers.zeros} if self.head_zeroinit else {}
            x = out["logits"] = nn.Dense(self.num_classes, use_bias=self.head_bias, name="head", **kw)(x)
        return out.get("logits"), out

    def _check(self, images: jax.Array) -> None:
        if self.pool_type not in POOL_TYPES:
            raise InputError(f"model.pool_type {self.pool_type!r}: unknown; use one of {', '.join(POOL_TYPES)}")
        if self.matmul_precision not in MATMUL_PRECISIONS:
            raise InputError(
                f"model.matmul_precision {self.matmul_precision!r}: use one of {', '.join(MATMUL_PRECISIONS)}"
            )
        if self.gelu not in GELUS:
            raise InputError(f"model.gelu {self.gelu!r}: unknown; use one of {', '.join(GELUS)}")
        if self.mlp not in MLPS:
            raise InputError(f"model.mlp {self.mlp!r}: unknown; use one of {', '.join(MLPS)}")
        if self.num_registers < 0 or (self.num_registers and self.pool_type != "tok"):
            raise InputError(f"model.num_registers {self.num_registers}: must be 0, or registers with pool_type='tok'")
        if self.posemb not in ("learn", "sincos2d"):
            raise InputError(f"model.posemb {self.posemb!r}: unknown; use 'learn' or 'sincos2d'")
        if self.posemb == "sincos2d" and self.posemb_with_cls:
            raise InputError("model: posemb 'sincos2d' has no class-token row; set posemb_with_cls=False")
        if self.width % self.num_heads:
            raise InputError(f"model: width {self.width} is not divisible by num_heads {self.num_heads}")
        if self.posemb == "sincos2d" and self.width % 4:
            raise InputError(f"model: posemb 'sincos2d' needs a width divisible by 4, got {self.width}")
        if self.posemb_with_cls and self.pool_type != "tok":
            raise InputError("model: posemb_with_cls needs a class token; set pool_type='tok'")
        if images.ndim != 4 or images.shape[-1] != 3:
            raise InputError(f"images: expected shape (batch, height, width, 3), got {tuple(images.shape)}")
        if images.shape[1] < self.patch_size[0] or images.shape[2] < self.patch_size[1]:
            raise InputError(f"images: {images.shape[1]}x{images.shape[2]} is smaller than one patch {self.patch_size}")


def make_vit(variant: str, **kw: Any) -> VisionTransformer:
    """VisionTransformer for a variant string ("B/16", "So400m/14", "mu/8"); keyword arguments override."""
    fields = set(VisionTransformer.__dataclass_fields__) - {"parent", "name"}
    unknown = sorted(set(kw) - fields)
    if unknown:
        raise InputError(f"model options {unknown}: unknown; known options are {sorted(fields)}")
    return VisionTransformer(**{**decode_variant(variant), **kw})


def pyloop_to_scan(params: dict) -> dict:
    """Stacks `Transformer/encoderblock_{i}` into one `Transformer/encoderblock` with a leading depth axis."""
    params = dict(params)
    t = dict(params["Transformer"])
    depth = len([k for k in t if re.fullmatch(r"encoderblock_\d+", k)])
    blocks = [t.pop(f"encoderblock_{i}") for i in range(depth)]
    t["encoderblock"] = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *blocks)
    params["Transformer"] = t
    return params


def scan_to_pyloop(params: dict) -> dict:
    """Splits a scanned `Transformer/encoderblock` (leading depth axis) into `encoderblock_{i}`."""
    params = dict(params)
    t = dict(params["Transformer"])
    stacked = t.pop("encoderblock")
    depth = jax.tree.leaves(stacked)[0].shape[0]
    for i in range(depth):
        t[f"encoderblock_{i}"] = jax.tree.map(lambda x, i=i: x[i], stacked)
    params["Transformer"] = t
    return params
