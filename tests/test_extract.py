"""Extraction on one process: pooling, the sharded forward pass, the pipeline, reuse and refusal."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from extract_testlib import SIZE, extract_folder, preprocess, reference_features, tiny_model, write_images

from alignment_jax.errors import InputError
from alignment_jax.extract.decode import Decoding
from alignment_jax.extract.extractor import Extractor, fetch, pool_tokens
from alignment_jax.extract.pipeline import extract
from alignment_jax.extract.sources import folder_source


def test_pool_tokens():
    x = jnp.arange(2 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 3)
    np.testing.assert_array_equal(pool_tokens(x, "cls", 1), x[:, 0])
    np.testing.assert_allclose(pool_tokens(x, "mean", 1), x[:, 1:].mean(1))
    np.testing.assert_allclose(pool_tokens(x, "mean", 0), x.mean(1))
    np.testing.assert_array_equal(pool_tokens(x[:, 0], "cls", 1), x[:, 0])  # (B, p): nothing to pool
    with pytest.raises(InputError, match="no class token"):
        pool_tokens(x, "cls", 0)
    with pytest.raises(InputError, match="token_pooling: 'max'"):
        pool_tokens(x, "max", 1)


def _extractor(layer="tokens", batch_size=4, pooling="cls", **kw):
    apply_fn, params = tiny_model()
    shape = (SIZE, SIZE, 3)
    return Extractor(
        apply_fn, params, layer, image_shape=shape, preprocess=preprocess, batch_size=batch_size, pooling=pooling, **kw
    )


def test_extractor_matches_a_plain_forward_pass():
    images = np.random.default_rng(0).integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    apply_fn, params = tiny_model()
    outputs = apply_fn(params, preprocess(jnp.asarray(images)))
    cls = _extractor()
    assert cls.batch_size == 4 and cls.local_rows == slice(0, 4) and cls.dim == 8 and cls.tokens
    np.testing.assert_allclose(fetch(cls(images)), outputs["tokens"][:, 0], atol=1e-6)
    pooled = _extractor("pooled")
    assert pooled.dim == 5 and not pooled.tokens
    np.testing.assert_allclose(fetch(pooled(images)), outputs["pooled"], atol=1e-6)


def test_extractor_rejects_unknown_layer_and_pooling():
    with pytest.raises(
        InputError, match=r"'block99' is not an output of the model \(outputs: \['pooled', 'tokens'\]\)"
    ):
        _extractor("block99")
    with pytest.raises(InputError, match="no class token"):
        _extractor(n_prefix_tokens=0)
    with pytest.raises(InputError, match="batch_size"):
        _extractor(batch_size=0)


@pytest.mark.parametrize("batch_size, shard_size", [(4, 8), (3, 10), (32, 5)])
def test_pipeline_equals_the_reference_and_reuses_the_store(tmp_path, batch_size, shard_size):
    """13 images: batches that do not divide the count, shards that are not whole batches."""
    images = str(tmp_path / "images")
    write_images(images, 13)
    expected = reference_features(images)
    first = extract_folder(images, str(tmp_path / "store"), batch_size, shard_size)
    np.testing.assert_allclose(first.features, expected, atol=1e-5)
    assert first.computed == 13 and first.images_per_s > 0
    second = extract_folder(images, str(tmp_path / "store"), batch_size, shard_size)
    assert second.computed == 0
    np.testing.assert_array_equal(second.features, first.features)


def test_pipeline_refuses_a_store_of_another_layer(tmp_path):
    images = str(tmp_path / "images")
    write_images(images, 3)
    source = folder_source(images)
    extract_folder(images, str(tmp_path / "store"), 4)
    other = _extractor("pooled")
    key = {"model": "tiny", "layer": "pooled", "images": source.description}
    with pytest.raises(InputError, match="layer: stored 'tokens', now 'pooled'"):
        extract(source, other, Decoding.resize(SIZE), str(tmp_path / "store"), key, progress=False)


def test_undecodable_image_stops_the_run_with_its_name(tmp_path):
    images = str(tmp_path / "images")
    paths = write_images(images, 6)
    with open(paths[4], "wb") as f:
        f.write(b"\xff\xd8 truncated")
    with pytest.raises(InputError, match="img_004.jpg: cannot decode image"):
        extract_folder(images, str(tmp_path / "store"), 2, shard_size=2)
    # the shards before the bad image are kept for the next run
    assert sorted(p.name for p in (tmp_path / "store" / "shards").iterdir()) == ["00000.npy", "00001.npy"]


def test_bfloat16_matmuls_stay_close_to_float32():
    from alignment_jax.models.vit import make_vit

    images = np.random.default_rng(1).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    shapes = jax.eval_shape(make_vit("mu/8", pool_type="tok").init, jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.normal(0, 0.2, s.shape).astype(np.float32), shapes["params"])
    features = {}
    for dtype in ("float32", "bfloat16"):
        module = make_vit("mu/8", dtype_mm=dtype, pool_type="tok")
        extractor = Extractor(
            lambda p, x, m=module: m.apply({"params": p}, x)[1],
            params,
            "encoded",
            image_shape=(16, 16, 3),
            preprocess=preprocess,
            batch_size=2,
        )
        features[dtype] = fetch(extractor(images))
    assert features["bfloat16"].dtype == np.float32
    assert not np.array_equal(features["bfloat16"], features["float32"])
    np.testing.assert_allclose(features["bfloat16"], features["float32"], atol=0.1, rtol=0.05)
