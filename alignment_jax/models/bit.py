"""BiT ResNet-v2 (Big Transfer, arXiv:1912.11370) in Flax linen, parameter names as big_vision's `models/bit.py`.

Pre-activation bottleneck units with weight-standardised convolutions and group normalisation (32 groups):
`conv_root` (7x7, stride 2, padding 3) -> zero-pad 1 + 3x3 max-pool stride 2 -> stages `block1`..`block4` of
units `unit1`.. (`gn1` -> ReLU -> [`conv_proj` on the first unit] -> `conv1` 1x1 -> `gn2` -> ReLU -> `conv2` 3x3
(the stage's stride) -> `gn3` -> ReLU -> `conv3` 1x1, plus the residual) -> `norm-pre-head` + ReLU -> global mean
-> `head`. Inputs in [-1, 1], as BiT's own pipeline.

Named outputs: `stem` (B, h, w, C) after the root convolution, `stage1`..`stage4` (B, C) each stage's output
mean-pooled over space, `pre_logits` (B, C) after the final norm and ReLU, mean-pooled, `logits` (B, classes)
with a head.

The released files (`BiT-{S,M}-R{50,101,152}x{1,2,3,4}.npz`, from BiT's repository) have their own names, read
by `read_bit_npz`: `resnet/root_block/standardized_conv2d/kernel`, `resnet/block{b}/unit{u:02d}/{a,b,c}/
{standardized_conv2d/kernel, group_norm/{gamma,beta}}`, `.../a/proj/standardized_conv2d/kernel`,
`resnet/group_norm/{gamma,beta}`, `resnet/head/conv2d/{kernel,bias}` (kernels HWIO, as ours).
"""

import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from alignment_jax.errors import InputError

# "r50x1" -> (units per stage, root width); BiT's depths 50, 101, 152 and width multipliers 1..4
UNITS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
STANDIN = {"width": 32, "units": (1, 1, 1, 1)}  # a stand-in's size: 32 channels at the root, one unit per stage
GROUPS = 32
Params = dict


def decode_variant(variant: str) -> dict[str, Any]:
    """ "r50x1" -> {"units": (3, 4, 6, 3), "width": 64}."""
    m = re.fullmatch(r"r(\d+)x(\d+)", variant)
    if not m or int(m.group(1)) not in UNITS:
        raise InputError(f"BiT variant {variant!r}: use r{{50,101,152}}x{{1,2,3,4}}, e.g. 'r50x1'")
    return {"units": UNITS[int(m.group(1))], "width": 64 * int(m.group(2))}


def standardize(kernel: jax.Array, eps: float = 1e-8) -> jax.Array:
    """Weight standardisation: each output channel's kernel (over H, W, C_in) to mean 0, variance 1."""
    kernel = kernel - jnp.mean(kernel, axis=(0, 1, 2), keepdims=True)
    return kernel / jnp.sqrt(jnp.mean(jnp.square(kernel), axis=(0, 1, 2), keepdims=True) + eps)


class StdConv(nn.Module):
    """A bias-free convolution whose kernel (kh, kw, C_in, C_out) is standardised before use."""

    features: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: int = 0
    dtype_mm: str = "float32"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (*self.kernel_size, x.shape[-1], self.features)
        kernel = standardize(self.param("kernel", nn.initializers.lecun_normal(), shape, jnp.float32))
        pad = [(self.padding, self.padding)] * 2
        return jax.lax.conv_general_dilated(
            x.astype(self.dtype_mm), kernel.astype(self.dtype_mm), self.strides, pad,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )  # fmt: skip


def _gn(name: str) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=GROUPS, epsilon=1e-6, use_fast_variance=False, name=name)


class ResidualUnit(nn.Module):
    """Pre-activation bottleneck unit: (B, H, W, C) -> (B, H/s, W/s, 4 mid)."""

    mid: int
    strides: tuple[int, int] = (1, 1)
    dtype_mm: str = "float32"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out = 4 * self.mid
        residual = x
        x = nn.relu(_gn("gn1")(x))
        if x.shape[-1] != out or self.strides != (1, 1):
            residual = StdConv(out, (1, 1), self.strides, dtype_mm=self.dtype_mm, name="conv_proj")(x)
        x = StdConv(self.mid, (1, 1), dtype_mm=self.dtype_mm, name="conv1")(x)
        x = nn.relu(_gn("gn2")(x))
        x = StdConv(self.mid, (3, 3), self.strides, padding=1, dtype_mm=self.dtype_mm, name="conv2")(x)
        x = nn.relu(_gn("gn3")(x))
        x = StdConv(out, (1, 1), dtype_mm=self.dtype_mm, name="conv3")(x)
        return x + residual


class ResNetStage(nn.Module):
    """`n_units` residual units; the first has the stage's stride and the projection."""

    n_units: int
    mid: int
    strides: tuple[int, int] = (1, 1)
    dtype_mm: str = "float32"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for j in range(self.n_units):
            x = ResidualUnit(self.mid, self.strides if j == 0 else (1, 1), self.dtype_mm, name=f"unit{j + 1}")(x)
        return x


class ResNetV2(nn.Module):
    """BiT ResNet-v2: images (B, H, W, 3) in [-1, 1] -> (logits or None, named outputs; see the module doc)."""

    units: tuple[int, ...] = (3, 4, 6, 3)
    width: int = 64
    num_classes: int = 0
    dtype_mm: str = "float32"
    matmul_precision: str = "float32"

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> tuple[jax.Array | None, dict[str, jax.Array]]:
        del train
        if images.ndim != 4 or images.shape[-1] != 3:
            raise InputError(f"images: expected shape (batch, height, width, 3), got {tuple(images.shape)}")
        if self.width % GROUPS:
            raise InputError(f"BiT width {self.width}: must be a multiple of {GROUPS} (the group norm's groups)")
        with jax.default_matmul_precision(self.matmul_precision):
            out: dict[str, jax.Array] = {}
            x = out["stem"] = StdConv(self.width, (7, 7), (2, 2), padding=3, dtype_mm=self.dtype_mm, name="conv_root")(
                images
            )
            x = jnp.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
            x = nn.max_pool(x, (3, 3), strides=(2, 2))
            for i, n_units in enumerate(self.units):
                strides = (1, 1) if i == 0 else (2, 2)
                x = ResNetStage(n_units, self.width * 2**i, strides, self.dtype_mm, name=f"block{i + 1}")(x)
                out[f"stage{i + 1}"] = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
            x = nn.relu(_gn("norm-pre-head")(x))
            x = out["pre_logits"] = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
            if self.num_classes:
                out["logits"] = nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros, name="head")(x)
            return out.get("logits"), out

    def layer_names(self) -> tuple[str, ...]:
        """The named outputs in network order."""
        stages = tuple(f"stage{i + 1}" for i in range(len(self.units)))
        return ("stem", *stages, "pre_logits", *(("logits",) if self.num_classes else ()))

    def prefix_tokens(self, layer: str) -> int:
        """No class token anywhere (the outputs are pooled (B, C) features, `stem` a feature map)."""
        del layer
        return 0

    def bytes_per_image(self, image_size: int) -> float:
        """Activation bytes of one image in a forward pass (extract/memory.py's estimate): the widest tensors
        live at once are a stage-1 unit's input, its 4x-wide output and the residual, 1/4 of the side."""
        side = image_size / 4
        return 2.0 * (4.0 * 3 * side * side * 4 * self.width + 5.0 * image_size * image_size * 3)


def read_bit_npz(path: str) -> Params:
    """A released BiT `.npz` (names as the module doc) -> our nested tree in big_vision's names."""
    try:
        with np.load(path, allow_pickle=False) as f:
            raw = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError) as e:
        raise InputError(f"{path}: not a readable BiT .npz ({e}); it may be truncated: download it again") from e
    prefix = "resnet/"
    if not any(k.startswith(prefix + "root_block/") for k in raw):
        some = ", ".join(sorted(raw)[:4])
        raise InputError(f"{path}: no '{prefix}root_block/...' weights; not a BiT ResNet-v2 .npz (first keys: {some})")
    flat: dict[str, np.ndarray] = {}
    norms = {"a": "gn1", "b": "gn2", "c": "gn3"}
    convs = {"a": "conv1", "b": "conv2", "c": "conv3"}
    for key, value in raw.items():
        name = key[len(prefix) :] if key.startswith(prefix) else key
        unit = re.fullmatch(r"block(\d+)/unit(\d+)/(a|b|c)/(.*)", name)
        if name == "root_block/standardized_conv2d/kernel":
            flat["conv_root/kernel"] = value
        elif name in ("group_norm/gamma", "group_norm/beta"):
            flat[f"norm-pre-head/{'scale' if name.endswith('gamma') else 'bias'}"] = value.reshape(-1)
        elif name == "head/conv2d/kernel":
            flat["head/kernel"] = value.reshape(value.shape[-2], value.shape[-1])
        elif name == "head/conv2d/bias":
            flat["head/bias"] = value.reshape(-1)
        elif unit:
            block, number, part, rest = unit.groups()
            where = f"block{int(block)}/unit{int(number)}/"
            if rest == "standardized_conv2d/kernel":
                flat[where + convs[part] + "/kernel"] = value
            elif rest == "proj/standardized_conv2d/kernel" and part == "a":
                flat[where + "conv_proj/kernel"] = value
            elif rest in ("group_norm/gamma", "group_norm/beta"):
                flat[where + norms[part] + ("/scale" if rest.endswith("gamma") else "/bias")] = value.reshape(-1)
            else:
                flat[f"bit:{key}"] = value
        else:
            flat[f"bit:{key}"] = value  # unknown: strict matching reports it
    return flat


def infer_config(flat: Params, source: str) -> dict[str, Any]:
    """units, width and num_classes of a converted BiT tree (flat '/'-joined names)."""
    if "conv_root/kernel" not in flat:
        raise InputError(f"{source}: no root convolution; not a BiT ResNet-v2")
    units = []
    while any(k.startswith(f"block{len(units) + 1}/") for k in flat):
        b = len(units) + 1
        units.append(len({k.split("/")[1] for k in flat if k.startswith(f"block{b}/")}))
    classes = int(np.shape(flat["head/kernel"])[-1]) if "head/kernel" in flat else 0
    return {"units": tuple(units), "width": int(np.shape(flat["conv_root/kernel"])[-1]), "num_classes": classes}


def standin_arrays(units: tuple[int, ...], width: int, classes: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights under the released `.npz`'s names and shapes (for stand-ins and tests)."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}

    def conv(key: str, k: int, c_in: int, c_out: int) -> None:
        arrays[f"resnet/{key}/standardized_conv2d/kernel"] = rng.standard_normal((k, k, c_in, c_out)).astype(np.float32)

    def norm(key: str, c: int) -> None:
        arrays[f"resnet/{key}/group_norm/gamma"] = (1 + 0.1 * rng.standard_normal(c)).astype(np.float32)
        arrays[f"resnet/{key}/group_norm/beta"] = (0.1 * rng.standard_normal(c)).astype(np.float32)

    conv("root_block", 7, 3, width)
    c_in = width
    for i, n_units in enumerate(units):
        mid = width * 2**i
        for j in range(n_units):
            unit = f"block{i + 1}/unit{j + 1:02d}"
            norm(f"{unit}/a", c_in)
            if j == 0:
                conv(f"{unit}/a/proj", 1, c_in, 4 * mid)
            conv(f"{unit}/a", 1, c_in, mid)
            norm(f"{unit}/b", mid)
            conv(f"{unit}/b", 3, mid, mid)
            norm(f"{unit}/c", mid)
            conv(f"{unit}/c", 1, mid, 4 * mid)
            c_in = 4 * mid
    norm("", c_in)
    arrays["resnet/group_norm/gamma"] = arrays.pop("resnet//group_norm/gamma")
    arrays["resnet/group_norm/beta"] = arrays.pop("resnet//group_norm/beta")
    if classes:
        arrays["resnet/head/conv2d/kernel"] = (rng.standard_normal((1, 1, c_in, classes)) / np.sqrt(c_in)).astype(
            np.float32
        )
        arrays["resnet/head/conv2d/bias"] = (0.1 * rng.standard_normal(classes)).astype(np.float32)
    return arrays
