"""Decoding and resizing images in background threads, in a deterministic order."""

import collections
import concurrent.futures
import dataclasses
import functools
import io
import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageOps

from alignment_jax.errors import InputError
from alignment_jax.extract.sources import ImageSource, Ref

RESIZE_MODES = ("full", "center_crop")


@dataclasses.dataclass(frozen=True)
class Decoding:
    """How an encoded image becomes a (size, size, 3) uint8 RGB array: PIL decode, RGB, then `fit`.

    fit: PIL RGB image -> (size, size, 3) uint8; `Decoding.resize` builds the generic ones, a model's
      preprocessing can bring its own (e.g. bicubic shorter side + crop for CLIP).
    record: JSON-able description of `fit`, for the store record.
    jpeg_draft: let libjpeg decode at a reduced scale first (the smallest 1/2^k scale still >= size on
      both sides): several times faster on large JPEGs, slightly different pixels.
    """

    size: int
    fit: Callable[[Image.Image], np.ndarray]
    record: dict
    jpeg_draft: bool = False

    @classmethod
    def resize(cls, size: int, mode: str = "full", jpeg_draft: bool = False) -> "Decoding":
        """mode "full": squash the whole image to size x size (big_vision `resize(size)`); "center_crop":
        shorter side to size, then the central size x size (`resize_small|central_crop`). PIL bilinear,
        antialiased when shrinking."""
        if mode not in RESIZE_MODES:
            raise InputError(f"images.resize: {mode!r} is not one of {('model', *RESIZE_MODES)}")
        if size <= 0:
            raise InputError(f"image size must be positive, got {size}")
        record = {"size": size, "resize": mode, "resample": "pil_bilinear"}
        return cls(size, functools.partial(_fit, size=size, mode=mode), record, jpeg_draft)


def _fit(image: Image.Image, size: int, mode: str) -> np.ndarray:
    if mode == "full":
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    else:
        image = ImageOps.fit(image, (size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def decode_image(ref: Ref, name: str, decoding: Decoding) -> np.ndarray:
    """(size, size, 3) uint8 RGB from a path or encoded bytes; InputError naming `name` if unreadable."""
    try:
        with Image.open(ref if isinstance(ref, str) else io.BytesIO(ref)) as image:
            if decoding.jpeg_draft:
                image.draft("RGB", (decoding.size, decoding.size))
            array = decoding.fit(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise InputError(f"{name}: cannot decode image ({type(e).__name__}: {e}); replace or remove it") from e
    if array.shape != (decoding.size, decoding.size, 3):
        raise ValueError(f"{name}: decoded to shape {array.shape}, expected {(decoding.size, decoding.size, 3)}")
    return array


def decoded_images(
    source: ImageSource, indices: Sequence[int], decoding: Decoding, num_workers: int = 0, ahead: int = 256
) -> Iterator[np.ndarray]:
    """Yields the decoded image of each index, in order, decoding up to `ahead` images in
    `num_workers` threads (0 = one per CPU core) while the caller works on earlier ones."""
    workers = num_workers or os.cpu_count() or 1
    pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="decode")
    pending: collections.deque[concurrent.futures.Future] = collections.deque()
    try:
        for i, ref in zip(indices, source.refs(indices), strict=True):
            pending.append(pool.submit(decode_image, ref, source.names[i], decoding))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
