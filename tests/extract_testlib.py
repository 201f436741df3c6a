"""Shared by the extraction tests and their subprocess worker: a tiny token model and tiny images."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

SIZE = 16  # images are SIZE x SIZE after decoding


class TinyTokens(nn.Module):
    """(B, 16, 16, 3) float -> {"tokens": (B, 1 + 16, 8) with a class token first, "pooled": (B, 5)}."""

    @nn.compact
    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        x = nn.Conv(8, (4, 4), strides=(4, 4))(x)
        b, h, w, c = x.shape
        tokens = x.reshape(b, h * w, c)
        cls = self.param("cls", nn.initializers.normal(1.0), (1, 1, c))
        tokens = jnp.concatenate([jnp.tile(cls, (b, 1, 1)), tokens], axis=1)
        tokens = jnp.tanh(nn.Dense(8)(tokens))
        return {"tokens": tokens, "pooled": nn.Dense(5)(tokens.mean(axis=1))}


def tiny_model():
    """(apply_fn(params, images) -> outputs, params); the same params in every process."""
    module = TinyTokens()
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), jnp.zeros((1, SIZE, SIZE, 3)))["params"]
    rng = np.random.default_rng(0)  # numpy, not module.init: no eager jax ops to compile in each subprocess
    params = jax.tree.map(lambda s: rng.normal(0, 0.3, s.shape).astype(np.float32), shapes)
    return (lambda p, x: module.apply({"params": p}, x)), params


def preprocess(images: jax.Array) -> jax.Array:
    return images.astype(jnp.float32) / 127.5 - 1.0


def write_images(folder: str, n: int, seed: int = 0, size: tuple[int, int] = (24, 20)) -> list[str]:
    """n random JPEGs (different content each) named img_000.jpg...; returns their paths."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = os.path.join(folder, f"img_{i:03d}.jpg")
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=95)
        paths.append(path)
    return paths


def extract_folder(
    images_dir: str | None,
    store_dir: str,
    batch_size: int,
    shard_size: int = 10,
    mesh=None,
    source=None,
    image_cache: str = "",
):
    """The tiny model's mean-pooled tokens (n, 8) for every image of `images_dir`, through `extract`
    (with the decoded-image caches folder `image_cache`, if given)."""
    from alignment_jax.extract.decode import Decoding
    from alignment_jax.extract.extractor import Extractor
    from alignment_jax.extract.pipeline import extract
    from alignment_jax.extract.sources import folder_source

    apply_fn, params = tiny_model()
    source = source or folder_source(images_dir)
    extractor = Extractor(
        apply_fn,
        params,
        "tokens",
        image_shape=(SIZE, SIZE, 3),
        preprocess=preprocess,
        batch_size=batch_size,
        pooling="mean",
        mesh=mesh,
    )
    decoding = Decoding.resize(SIZE)
    key = {"model": "tiny", "layer": "tokens", "images": source.description}
    return extract(
        source, extractor, decoding, store_dir, key, shard_size=shard_size, num_workers=2, progress=False,
        image_cache=image_cache,
    )  # fmt: skip


def reference_features(images_dir: str) -> np.ndarray:
    """The same features without sharding, jit or the pipeline: (n, 8)."""
    from alignment_jax.extract.decode import Decoding, decode_image
    from alignment_jax.extract.sources import folder_source

    source = folder_source(images_dir)
    images = np.stack([decode_image(p, p, Decoding.resize(SIZE)) for p in source.names])
    apply_fn, params = tiny_model()
    tokens = np.asarray(apply_fn(params, preprocess(jnp.asarray(images)))["tokens"])
    return tokens[:, 1:].mean(axis=1)


def import_tfds():
    """tensorflow_datasets, or a skip where the tfds extra is not installed (a failure when the environment
    sets ALIGNMENT_JAX_REQUIRE_TFDS=1, as .ci/run does after installing the extra)."""
    if os.environ.get("ALIGNMENT_JAX_REQUIRE_TFDS") == "1":
        import tensorflow_datasets

        return tensorflow_datasets
    return pytest.importorskip("tensorflow_datasets", reason="tensorflow-datasets not installed (the tfds extra)")
