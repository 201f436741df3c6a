"""Models for a notebook: `load_model` (a registry entry or a variant, its checkpoint read by the real loaders)
and `extract_features` (one forward pass over images in memory or on disk, every requested layer at once)."""

import os
from collections.abc import Sequence

import numpy as np

from alignment_jax.api import arguments
from alignment_jax.errors import InputError
from alignment_jax.extract.extractor import fetch
from alignment_jax.extract.pipeline import extractor_of, layer_pooling
from alignment_jax.models.layers import resolve_layers
from alignment_jax.models.registry import DTYPES, LoadedModel
from alignment_jax.models.registry import load_model as _load_registry_model
from alignment_jax.models.standins import standin_model


def load_model(
    name: str, checkpoint: str = "", *, image_size: int = 0, dtype: str = "float32", standin: bool = False
) -> LoadedModel:
    """A registry name (`alignment_jax.models.registry.list_models()`, e.g. "augreg-b16-i21k") or a variant
    ("B/16") -> LoadedModel (module, params, preprocessing, default layer). checkpoint: a local file or folder
    ("" = the registry's). standin: a tiny random stand-in written in the entry's checkpoint format and read
    through the same loader (runs offline, for trying things out). dtype: one of float32, tensorfloat32,
    bfloat16. image_size: input side in pixels (0 = the model's)."""
    if not isinstance(name, str) or not name:
        raise InputError(f"load_model: name={name!r}; give a registry name or a variant like 'B/16'")
    arguments.choice(dtype, "dtype", tuple(DTYPES))
    arguments.integer(image_size, "image_size", minimum=0)
    options = dict(dtype=dtype, image_size=image_size or None)
    if standin:
        if checkpoint:
            raise InputError("load_model: checkpoint is unused with standin=True (a stand-in has its own weights)")
        return standin_model(name, **options)
    return _load_registry_model(name, checkpoint, **options)


def extract_features(
    model: LoadedModel, images, layers: str = "", *, batch_size: int = 64, pooling: str = "cls"
) -> dict[str, np.ndarray]:
    """{layer: (n, p) float32 features} of `model` for n images, from one forward pass per batch.

    images: uint8 (n, H, W, 3) RGB pixels, or a sequence of image file paths; each image is fitted to the
    model's input size by its own preprocessing (e.g. shorter side + centre crop). layers: "" = the model's
    default layer, "all" = every block and the default, or a comma list (block03,pre_logits). Token layers
    (n, T, p) are pooled: pooling="cls" (the class token) or "mean" (of the patch tokens).
    """
    if not isinstance(model, LoadedModel):
        raise InputError(f"extract_features: model is a {type(model).__name__}; load one with load_model(name)")
    arguments.integer(batch_size, "batch_size", minimum=1)
    arguments.choice(pooling, "pooling", ("cls", "mean"))
    fitted = _fitted_images(model, images)
    chosen = resolve_layers(layers, model.layer_order, model.default_layer)
    poolings = tuple(layer_pooling(model.module, layer, pooling, len(chosen) > 1) for layer in chosen)
    extractor = extractor_of(model, chosen, min(batch_size, len(fitted)), poolings)
    rows = []
    for start in range(0, len(fitted), extractor.batch_size):
        batch = fitted[start : start + extractor.batch_size]
        padded = np.zeros((extractor.batch_size, *batch.shape[1:]), np.uint8)
        padded[: len(batch)] = batch
        rows.append(fetch(extractor(padded[extractor.local_rows]))[: len(batch)])
    return {layer: np.ascontiguousarray(x) for layer, x in extractor.split(np.concatenate(rows)).items()}


def _fitted_images(model: LoadedModel, images) -> np.ndarray:
    """(n, S, S, 3) uint8 at the model's size S, from pixels or files (InputError naming what is wrong)."""
    if isinstance(images, str | os.PathLike):
        raise InputError(f"images={os.fspath(images)!r}: give a list of image files or a uint8 (n, H, W, 3) array")
    if isinstance(images, Sequence) and images and all(isinstance(p, str | os.PathLike) for p in images):
        from PIL import Image

        missing = [os.fspath(p) for p in images if not os.path.isfile(p)]
        if missing:
            raise InputError(f"{missing[0]}: image file not found ({len(missing)} of {len(images)} missing)")
        fitted = []
        for path in images:
            try:
                with Image.open(path) as image:
                    fitted.append(model.preprocess.fit_image(image.convert("RGB")))
            except OSError as e:
                raise InputError(f"{os.fspath(path)}: not a readable image ({e})") from e
        return np.stack(fitted)
    array = np.asarray(images)
    if array.ndim != 4 or array.shape[-1] != 3 or 0 in array.shape:
        raise InputError(f"images: expected uint8 RGB pixels of shape (n, H, W, 3), got shape {array.shape}")
    if array.dtype != np.uint8:
        raise InputError(f"images: expected uint8 pixels (0..255), got dtype {array.dtype}; use .astype(np.uint8)")
    if array.shape[1:3] == (model.image_size, model.image_size):
        return array
    return np.stack([model.preprocess.fit_image(image) for image in array])
