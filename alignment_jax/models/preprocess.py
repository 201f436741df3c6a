"""Image preprocessing per checkpoint family: resize (optionally + central crop), then scale values.

- big_vision / vit_jax / SigLIP: squash-resize to size x size, values in [-1, 1].
- OpenCLIP / OpenAI CLIP: bicubic resize of the shorter side, central crop, OpenAI mean/std.
- timm-style: shorter side to size / crop_fraction, central crop.
Two routes: `Preprocess.__call__` / `preprocess_images` for a batch of same-size images (jax, jit-
compiled per input shape), and `Preprocess.fit_image` (PIL, any size, one image on the host) then
`Preprocess.normalize` for folders of differently sized images. Resampling kernels are close to, not
bit-identical with, the original pipelines (tf.image.resize, PIL via torchvision).
"""

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from alignment_jax.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
METHODS = ("bilinear", "bicubic")


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """How a model wants its images: uint8 (B, H, W, 3) -> float32 (B, size, size, 3).

    crop=False resizes both sides to `size`; crop=True resizes the shorter side to size / crop_fraction
    and takes the central size x size. Values go to `value_range`, or to (x/255 - mean) / std if given.
    """

    size: int
    crop: bool = False
    crop_fraction: float = 1.0
    method: str = "bilinear"
    antialias: bool = True
    value_range: tuple[float, float] = (-1.0, 1.0)
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.size < 1:
            raise InputError(f"preprocess.size {self.size}: must be a positive number of pixels")
        if self.method not in METHODS:
            raise InputError(f"preprocess.method {self.method!r}: unknown; use one of {', '.join(METHODS)}")
        if not 0 < self.crop_fraction <= 1:
            raise InputError(f"preprocess.crop_fraction {self.crop_fraction}: must be in (0, 1]")
        if (self.mean is None) != (self.std is None):
            raise InputError("preprocess: give both mean and std, or neither")

    def __call__(self, images: Any) -> jax.Array:
        """uint8 (B, H, W, 3) -> float32 (B, size, size, 3)."""
        return preprocess_images(images, **self.options())

    def normalize(self, images: Any) -> jax.Array:
        """Values only, no resizing: uint8 (B, size, size, 3) -> float32."""
        x = jnp.asarray(_check_uint8(images, "images"), jnp.float32)
        return _scale(x, self.value_range, self.mean, self.std)

    def fit_image(self, image: Any) -> np.ndarray:
        """One image of any size (uint8 (H, W, 3) array or PIL image) -> uint8 (size, size, 3), with PIL."""
        from PIL import Image

        img = image if isinstance(image, Image.Image) else Image.fromarray(_check_uint8(image, "image", ndim=3))
        img = img.convert("RGB")
        resample = Image.BICUBIC if self.method == "bicubic" else Image.BILINEAR
        if not self.crop:
            return np.asarray(img.resize((self.size, self.size), resample), np.uint8)
        (w, h), (nh, nw) = img.size, _shorter_side(img.size[1], img.size[0], self.size, self.crop_fraction)
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), resample)
        top, left = round((nh - self.size) / 2), round((nw - self.size) / 2)
        return np.asarray(img.crop((left, top, left + self.size, top + self.size)), np.uint8)

    def options(self) -> dict[str, Any]:
        """The fields as a JSON-able dict (the keyword arguments of `preprocess_images`)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def preprocess_images(
    images: Any,
    size: int,
    crop: bool = False,
    value_range: tuple[float, float] = (-1.0, 1.0),
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    method: str = "bilinear",
    antialias: bool = True,
    crop_fraction: float = 1.0,
) -> jax.Array:
    """uint8 (B, H, W, 3) -> float32 (B, size, size, 3): resize (+ central crop), then scale values."""
    spec = Preprocess(size, crop, crop_fraction, method, antialias, tuple(value_range), mean, std)
    images = _check_uint8(images, "images")
    return _preprocess(jnp.asarray(images), **spec.options())


_STATIC = ("size", "crop", "crop_fraction", "method", "antialias", "value_range", "mean", "std")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _preprocess(images, size, crop, crop_fraction, method, antialias, value_range, mean, std):
    b, h, w, _ = images.shape
    x = images.astype(jnp.float32)
    nh, nw = _shorter_side(h, w, size, crop_fraction) if crop else (size, size)
    if (nh, nw) != (h, w):
        x = jnp.clip(jax.image.resize(x, (b, nh, nw, 3), method, antialias=antialias), 0.0, 255.0)
    if crop:
        top, left = round((nh - size) / 2), round((nw - size) / 2)
        x = x[:, top : top + size, left : left + size]
    return _scale(x, value_range, mean, std)


def _shorter_side(h: int, w: int, size: int, crop_fraction: float) -> tuple[int, int]:
    """(new_h, new_w) as torchvision's `Resize(short)` (OpenCLIP; timm with short = floor(size / crop_pct)):
    the shorter side at floor(size / crop_fraction), the longer one scaled by the same ratio, truncated."""
    short = max(size, math.floor(size / crop_fraction))
    if h <= w:
        return short, max(short, int(short * w / h))
    return max(short, int(short * h / w)), short


def _scale(x: jax.Array, value_range: tuple[float, float], mean: Any, std: Any) -> jax.Array:
    x = x / 255.0
    if mean is not None:
        return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
    lo, hi = value_range
    return x * (hi - lo) + lo


def _check_uint8(images: Any, what: str, ndim: int = 4) -> Any:
    shape, dtype = tuple(np.shape(images)), getattr(images, "dtype", None)
    if len(shape) != ndim or shape[-1] != 3:
        want = "(batch, height, width, 3)" if ndim == 4 else "(height, width, 3)"
        raise InputError(f"{what}: expected shape {want}, got {shape}")
    if dtype != np.uint8:
        raise InputError(f"{what}: expected uint8 pixel values 0..255, got dtype {dtype}; decode images as uint8 RGB")
    return images
