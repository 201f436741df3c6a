"""The model registry, load_model and preprocessing; nothing here downloads."""

import hashlib
import json
import os
import time

import jax
import numpy as np
import pytest

from alignment_jax.errors import InputError
from alignment_jax.models import checkpoints, storage
from alignment_jax.models.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    Preprocess,
    preprocess_images,
)
from alignment_jax.models.registry import MODELS, list_models, load_model
from alignment_jax.models.vit import decode_variant

REQUIRED = {
    **{f"augreg-{v}-i21k{ft}": v for v in ("ti16", "s16", "b16", "b32", "l16") for ft in ("", "-ft-i1k")},
    "siglip-b16-224": "b16",
    "siglip-l16-256": "l16",
    "siglip-so400m14-224": "so400m14",
    "siglip2-gopt16-256": "g-opt16",
    "openclip-vit-b16-openai": "b16",
    "openclip-vit-b16-laion2b": "b16",
    "openclip-vit-l14-openai": "l14",
    "openclip-vit-l14-laion2b": "l14",
    "openclip-vit-g14-laion2b-s12b": "g14",
    "openclip-vit-g14-laion2b-s34b": "g14",
    "openclip-vit-bigg14-laion2b-s39b": "G14",
    **{f"timm-augreg-{v}-i21k{ft}": v for v in ("ti16", "s16", "b16", "b32", "l16") for ft in ("", "-ft-i1k")},
}


def test_registry_has_the_public_models_with_consistent_entries():
    assert REQUIRED.keys() <= set(list_models())
    for name, short in REQUIRED.items():
        spec = MODELS[name]
        assert spec.variant.replace("/", "").lower() == short.lower(), name
    for spec in MODELS.values():
        if spec.name == "demo-vit":  # ships with the package (tests/test_demo.py)
            assert os.path.isfile(spec.checkpoint)
            continue
        if spec.source in ("bit", "saved_model"):  # no ViT variant: tests/test_bit.py, tests/test_saved_model.py
            continue
        assert spec.image_size >= 7 * decode_variant(spec.variant)["patch_size"][0], spec.name
        assert spec.checkpoint.startswith(("gs://", "https://")), spec.name
        assert spec.default_layer in ("pre_logits", "logits")
        if spec.source == "openclip":
            assert spec.checkpoint.endswith(".safetensors") and spec.default_layer == "logits"
            assert spec.preprocess.crop and spec.preprocess.method == "bicubic"
        if spec.name.startswith("siglip"):
            assert spec.checkpoint.endswith(".npz:img") and spec.config["pool_type"] == "map"
    assert MODELS["openclip-vit-b16-openai"].config["gelu"] == "quick"
    g14 = MODELS["openclip-vit-g14-laion2b-s34b"].config
    assert g14["gelu"] == "exact" and g14["num_classes"] == 1024 and g14["pre_norm"]  # LAION towers: exact GELU
    assert MODELS["openclip-vit-g14-laion2b-s34b"].preprocess.mean == OPENAI_CLIP_MEAN
    assert MODELS["augreg-b32-i21k"].checkpoint.endswith(
        "B_32-i21k-300ep-lr_0.001-aug_medium1-wd_0.03-do_0.0-sd_0.0.npz"
    )


def test_tiny_random_model_is_fast_deterministic_and_json_described():
    start = time.perf_counter()
    model = load_model("mu/8", image_size=32, pool_type="gap", num_classes=3, seed=7)
    images = np.random.default_rng(0).integers(0, 256, (4, 40, 40, 3), dtype=np.uint8)
    logits, out = jax.jit(model.apply)(model.preprocess(images))
    jax.block_until_ready(out)
    elapsed = time.perf_counter() - start
    assert elapsed < 10, elapsed  # about half a second on an idle 2-core CPU
    assert logits.shape == (4, 3) and out["block00"].shape == (4, 16, 32) and out[model.default_layer].shape == (4, 32)
    same = load_model("mu/8", image_size=32, pool_type="gap", num_classes=3, seed=7)
    other = load_model("mu/8", image_size=32, pool_type="gap", num_classes=3, seed=8)
    assert np.array_equal(same.params["head"]["kernel"], model.params["head"]["kernel"])
    assert not np.array_equal(other.params["head"]["kernel"], model.params["head"]["kernel"])
    info = json.loads(json.dumps(model.info))
    assert info["name"] == "mu/8" and info["seed"] == 7 and info["sha256"] is None and info["source"] == "random"
    assert info["config"]["pool_type"] == "gap" and info["preprocess"]["size"] == 32


def test_checkpoint_info_has_its_sha256(tmp_path):
    model = load_model("mu/8", image_size=16, pool_type="tok")
    path = str(tmp_path / "m.npz")
    checkpoints.save_big_vision_npz(path, model.params)
    loaded = load_model("mu/8", path)
    assert loaded.info["sha256"] == hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert loaded.info["checkpoint"] == path and loaded.info["source"] == "npz" and loaded.info["seed"] is None


def test_a_registry_entry_loads_from_the_cache_without_network(tmp_path, monkeypatch):
    spec = MODELS["augreg-ti16-i21k"]
    file = spec.checkpoint
    ti = load_model("Ti/16", "random", image_size=224, pool_type="tok", num_classes=21843)
    cache = str(tmp_path / "cache")
    checkpoints.save_big_vision_npz(storage.cached_name(file, cache), ti.params)
    monkeypatch.setattr(storage, "_openers", lambda path: pytest.fail(f"tried to download {path}"))
    model = load_model("augreg-ti16-i21k", cache_dir=cache, image_size=32)
    assert model.info["checkpoint"] == file and model.info["source"] == "vit_jax" and model.image_size == 32
    assert model.params["pos_embedding"].shape == (1, 4, 192)  # 14x14 grid resampled to 2x2
    assert model.module.num_classes == 21843 and model.default_layer == "pre_logits"
    np.testing.assert_array_equal(model.params["cls"], ti.params["cls"])
    random = load_model("augreg-ti16-i21k", "random", image_size=32)
    assert random.info["checkpoint"] == "" and random.module.pool_type == "tok"


def test_bad_requests_raise_input_errors():
    with pytest.raises(InputError, match="neither a registry name"):
        load_model("resnet50")
    with pytest.raises(InputError, match="model.dtype"):
        load_model("mu/8", dtype="float16")
    with pytest.raises(InputError, match="only meaningful with a checkpoint"):
        load_model("mu/8", dont_load=["head/.*"])
    with pytest.raises(InputError, match="unknown; known options"):
        load_model("mu/8", poolling="gap")


def test_preprocess_squash_crop_and_normalization():
    black_white = np.zeros((1, 40, 80, 3), np.uint8)
    black_white[:, :, 20:60] = 255  # white middle half of the columns
    squash = preprocess_images(black_white, 20)
    assert squash.shape == (1, 20, 20, 3) and squash.dtype == np.float32
    assert np.isclose(float(squash.min()), -1.0) and np.isclose(float(squash.max()), 1.0)
    crop = preprocess_images(black_white, 20, crop=True)
    np.testing.assert_allclose(crop[:, :, 2:18], 1.0, atol=1e-5)  # the central square is the white part
    assert float(squash.mean()) < float(crop.mean())
    grey = np.full((2, 8, 8, 3), 128, np.uint8)
    clip = Preprocess(8, mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD)(grey)
    np.testing.assert_allclose(clip[0, 0, 0], (128 / 255 - np.array(OPENAI_CLIP_MEAN)) / OPENAI_CLIP_STD, rtol=1e-6)
    np.testing.assert_allclose(Preprocess(8, value_range=(0, 1)).normalize(grey), 128 / 255, rtol=1e-6)


def test_pil_route_agrees_with_the_batch_route():
    y, x = np.mgrid[:60, :90]
    image = np.stack([x * 2.5, y * 4, (x + y) * 1.5], -1).clip(0, 255).astype(np.uint8)
    for spec in (Preprocess(30), Preprocess(30, crop=True, crop_fraction=0.9, method="bicubic")):
        fitted = spec.fit_image(image)
        assert fitted.shape == (30, 30, 3) and fitted.dtype == np.uint8
        np.testing.assert_allclose(spec.normalize(fitted[None]), spec(image[None]), atol=0.05)


def test_preprocess_rejects_bad_input():
    with pytest.raises(InputError, match="uint8"):
        preprocess_images(np.zeros((1, 8, 8, 3), np.float32), 8)
    with pytest.raises(InputError, match="expected shape"):
        preprocess_images(np.zeros((8, 8, 3), np.uint8), 8)
    with pytest.raises(InputError, match="method"):
        Preprocess(8, method="lanczos")
    with pytest.raises(InputError, match="crop_fraction"):
        Preprocess(8, crop=True, crop_fraction=1.5)


def test_crop_resize_sizes_follow_torchvision():
    """OpenCLIP / timm resize with torchvision's Resize(short): the longer side is truncated, not rounded,
    and timm's crop_pct gives short = floor(size / crop_pct). A 500 x 375 photo -> 298 x 224, then crop."""
    from PIL import Image

    image = np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8)
    for spec, (w, h) in (
        (Preprocess(224, crop=True, method="bicubic"), (298, 224)),
        (Preprocess(224, crop=True, crop_fraction=0.9, method="bicubic"), (330, 248)),
    ):
        resized = Image.fromarray(image).resize((w, h), Image.BICUBIC)
        left, top = round((w - 224) / 2), round((h - 224) / 2)
        want = np.asarray(resized.crop((left, top, left + 224, top + 224)))
        np.testing.assert_array_equal(spec.fit_image(image), want)
        np.testing.assert_array_equal(
            spec.fit_image(image.transpose(1, 0, 2)),
            np.asarray(
                Image.fromarray(image.transpose(1, 0, 2))
                .resize((h, w), Image.BICUBIC)
                .crop((top, left, top + 224, left + 224))
            ),
        )


def test_normalization_option():
    imagenet = load_model("mu/8", image_size=16, normalization="imagenet").preprocess
    white = np.full((1, 16, 16, 3), 255, np.uint8)
    np.testing.assert_allclose(
        np.asarray(imagenet.normalize(white))[0, 0, 0], (1 - np.array(IMAGENET_MEAN)) / IMAGENET_STD, rtol=1e-5
    )
    assert load_model("mu/8", image_size=16).preprocess.normalize(white).max() == 1.0  # [-1, 1] by default
    with pytest.raises(InputError, match="model.normalization 'zscore'"):
        load_model("mu/8", image_size=16, normalization="zscore")
