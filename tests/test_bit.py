"""BiT ResNet-v2: the released .npz names read into big_vision's names, checked against an independent torch
re-derivation (weight-standardised convolutions, group norm, pre-activation units) where torch imports, and
against timm's `resnetv2_*_bit` (which loads the same .npz) where timm imports (docs/models.md)."""

import dataclasses
import importlib.util

import numpy as np
import pytest

from alignment_jax.errors import InputError
from alignment_jax.extract.pipeline import class_tokens
from alignment_jax.models import bit
from alignment_jax.models.layers import relative_depths, resolve_layers
from alignment_jax.models.registry import MODELS, load_model
from alignment_jax.models.standins import file_format, standin_arrays, standin_model, write_standin

HAS_TORCH = importlib.util.find_spec("torch") is not None
UNITS, WIDTH, CLASSES, SIZE = (1, 2, 1, 1), 32, 10, 64
IMAGES = np.random.default_rng(2).integers(0, 256, (2, 48, 80, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    arrays = bit.standin_arrays(UNITS, WIDTH, CLASSES, seed=3)
    path = str(tmp_path_factory.mktemp("bit") / "BiT-M-R50x1.npz")
    np.savez(path, **arrays)
    return path, arrays


@pytest.fixture(scope="module")
def loaded(npz):
    path, _ = npz
    model = load_model("r50x1", path, image_size=SIZE)  # a bare variant: units and width from the file
    x = model.preprocess(IMAGES)
    _, out = model.apply(x)
    return model, np.asarray(x), {k: np.asarray(v) for k, v in out.items()}


def test_names_layers_and_shapes(npz, loaded):
    _, arrays = npz
    model, _, out = loaded
    assert (model.module.units, model.module.width, model.module.num_classes) == (UNITS, WIDTH, CLASSES)
    p = model.params
    np.testing.assert_array_equal(p["conv_root"]["kernel"], arrays["resnet/root_block/standardized_conv2d/kernel"])
    unit = p["block2"]["unit2"]
    np.testing.assert_array_equal(unit["gn3"]["scale"], arrays["resnet/block2/unit02/c/group_norm/gamma"])
    np.testing.assert_array_equal(unit["conv2"]["kernel"], arrays["resnet/block2/unit02/b/standardized_conv2d/kernel"])
    proj = arrays["resnet/block2/unit01/a/proj/standardized_conv2d/kernel"]
    np.testing.assert_array_equal(p["block2"]["unit1"]["conv_proj"]["kernel"], proj)
    assert "conv_proj" not in unit  # only a stage's first unit projects
    np.testing.assert_array_equal(p["norm-pre-head"]["bias"], arrays["resnet/group_norm/beta"])
    np.testing.assert_array_equal(p["head"]["kernel"], arrays["resnet/head/conv2d/kernel"][0, 0])
    widths = {"stage1": 128, "stage2": 256, "stage3": 512, "stage4": 1024, "pre_logits": 1024, "logits": CLASSES}
    assert {k: v.shape for k, v in out.items() if k != "stem"} == {k: (2, w) for k, w in widths.items()}
    assert model.default_layer == "pre_logits" and model.info["source"] == "bit"
    order = model.layer_order
    assert resolve_layers("all", order, "pre_logits") == ("stage1", "stage2", "stage3", "stage4", "pre_logits")
    assert relative_depths(["pre_logits", "stage2"], order) == {"pre_logits": 1.25, "stage2": 0.5}
    with pytest.raises(InputError, match="'block03' is not an output of this model"):
        resolve_layers("block03", order, "pre_logits")
    assert class_tokens(model.module, "stage2") == 0
    assert -1.0 <= model.preprocess(IMAGES).min() and model.preprocess(IMAGES).max() <= 1.0


def _torch_bit(arrays: dict, x: np.ndarray, units: tuple[int, ...]) -> dict[str, np.ndarray]:
    """BiT's forward in torch from the .npz arrays, written from the paper: standardised weights, GroupNorm(32),
    pre-activation bottlenecks, eps as big_vision's (1e-8 on weights, 1e-6 in the norms)."""
    import torch
    import torch.nn.functional as F

    t = {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}

    def conv(x, key, stride=1, padding=0):
        w = t[f"resnet/{key}/standardized_conv2d/kernel"].permute(3, 2, 0, 1)  # HWIO -> OIHW
        w = (w - w.mean((1, 2, 3), keepdim=True)) / torch.sqrt(w.var((1, 2, 3), unbiased=False, keepdim=True) + 1e-8)
        return F.conv2d(x, w, stride=stride, padding=padding)

    def gn_relu(x, key):
        g, b = t[f"resnet/{key}/group_norm/gamma"], t[f"resnet/{key}/group_norm/beta"]
        return F.relu(F.group_norm(x, 32, g, b, eps=1e-6))

    out = {}
    x = conv(torch.from_numpy(np.array(x)).permute(0, 3, 1, 2), "root_block", 2, 3)
    x = F.max_pool2d(F.pad(x, (1, 1, 1, 1)), 3, 2)
    for i, n in enumerate(units):
        for j in range(n):
            u = f"block{i + 1}/unit{j + 1:02d}"
            stride = 2 if i > 0 and j == 0 else 1
            pre = gn_relu(x, f"{u}/a")
            residual = conv(pre, f"{u}/a/proj", stride) if j == 0 else x
            y = gn_relu(conv(pre, f"{u}/a"), f"{u}/b")
            y = gn_relu(conv(y, f"{u}/b", stride, 1), f"{u}/c")
            x = conv(y, f"{u}/c") + residual
        out[f"stage{i + 1}"] = x.mean((2, 3)).numpy()
    g, b = t["resnet/group_norm/gamma"], t["resnet/group_norm/beta"]
    out["pre_logits"] = F.relu(F.group_norm(x, 32, g, b, eps=1e-6)).mean((2, 3)).numpy()
    return out


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (pip install torch)")
def test_matches_an_independent_torch_forward(npz, loaded):
    _, arrays = npz
    _, x, out = loaded
    ref = _torch_bit(arrays, x, UNITS)
    for name, value in ref.items():  # 1e-4 of the features' scale (float32 sums over many channels)
        np.testing.assert_allclose(out[name], value, rtol=1e-4, atol=1e-4 * np.abs(value).max(), err_msg=name)


def test_matches_timm(npz, loaded):
    """timm's ResNetV2 with the BiT options (`resnetv2_50x1_bit`: fixed stem, StdConv2d eps 1e-8) at the stand-in's
    size, loading the same .npz with its own `_load_weights`; its norms' eps set to big_vision's 1e-6."""
    try:
        from functools import partial

        import torch
        from timm.layers import GroupNormAct, StdConv2d
        from timm.models.resnetv2 import ResNetV2, _load_weights
    except Exception as e:  # torchvision failing to load raises more than ImportError
        pytest.skip(f"timm does not import here ({type(e).__name__}: {e}); run on a machine with torch + timm")
    path, _ = npz
    _, x, out = loaded
    model = ResNetV2(
        layers=list(UNITS), num_classes=0, width_factor=WIDTH / 64, stem_type="fixed",
        conv_layer=partial(StdConv2d, eps=1e-8), norm_layer=partial(GroupNormAct, num_groups=32, eps=1e-6),
    )  # fmt: skip
    _load_weights(model, path)
    model.eval()
    with torch.no_grad():
        ref = model(torch.from_numpy(np.array(x)).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(out["pre_logits"], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_registry_entries_run_on_their_standins(tmp_path):
    names = [n for n in MODELS if MODELS[n].source == "bit"]
    assert {"bit-s-r50x1", "bit-m-r50x1", "bit-s-r101x1", "bit-m-r101x1"} <= set(names)
    assert MODELS["bit-m-r101x1"].checkpoint == "gs://bit_models/BiT-M-R101x1.npz"
    assert bit.decode_variant("r101x3") == {"units": (3, 4, 23, 3), "width": 192}
    spec = MODELS["bit-s-r101x1"]
    assert file_format(spec) == "bit_npz"
    model = standin_model("bit-s-r101x1")
    assert model.info["standin"] and model.info["checkpoint"] == spec.checkpoint
    assert model.preprocess == dataclasses.replace(spec.preprocess, size=224)
    _, out = model.apply(model.preprocess(IMAGES))
    assert out["logits"].shape == (2, 1000) and np.isfinite(np.asarray(out["pre_logits"])).all()
    assert np.all(np.asarray(out["pre_logits"]).std(axis=0) >= 0) and model.image_size == 224
    path = str(tmp_path / "BiT-S-R101x1.npz")
    write_standin(spec, path)
    with np.load(path) as f:
        assert set(f.files) == set(standin_arrays(spec))
        assert "resnet/block1/unit01/a/proj/standardized_conv2d/kernel" in f.files
    with pytest.raises(InputError, match="differs from 'r101x1'"):
        load_model("bit-s-r101x1", path)  # a stand-in's one unit per stage is no R101


def test_bad_files_name_the_problem(tmp_path):
    path = str(tmp_path / "not_bit.npz")
    np.savez(path, **{"params/embedding/kernel": np.zeros((2, 2, 3, 4), np.float32)})
    with pytest.raises(InputError, match="not a BiT ResNet-v2 .npz"):
        load_model("bit-m-r50x1", path)
    with pytest.raises(InputError, match="BiT variant 'r51x1'"):
        load_model("r51x1")
    with pytest.raises(InputError, match="dont_load and sharding apply to ViTs only"):
        load_model("r50x1", dont_load=("head/.*",))


def test_normalization_replaces_the_pixel_scaling(npz):
    path, _ = npz
    model = load_model("r50x1", path, image_size=SIZE, normalization="imagenet")
    assert model.preprocess.mean == (0.485, 0.456, 0.406) and model.info["preprocess"]["mean"] == model.preprocess.mean


def test_extraction_of_every_stage_in_one_pass(npz, tmp_path):
    """model.layers=all through the pipeline: the four stages and the pre-logits, pooled features per layer."""
    from PIL import Image

    from alignment_jax.config.base import base_config
    from alignment_jax.extract.pipeline import layer_features_for_images
    from alignment_jax.stages import extract

    path, _ = npz
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(IMAGES[i % 2, :SIZE, :SIZE]).save(paths[-1])
    config = base_config()
    config.model.variant, config.model.checkpoint, config.model.image_size = "r50x1", path, SIZE
    config.images.resize, config.images.batch_size, config.images.cache, config.progress = "full", 2, "off", "off"
    extract.check(config)
    features = layer_features_for_images(config, paths, "bit", str(tmp_path / "work"), "all")
    assert list(features) == ["stage1", "stage2", "stage3", "stage4", "pre_logits"]
    assert features["stage3"].shape == (3, 512) and features["pre_logits"].shape == (3, 1024)
    np.testing.assert_allclose(features["pre_logits"][0], features["pre_logits"][2], rtol=1e-5)  # same image
    assert np.abs(features["pre_logits"][0] - features["pre_logits"][1]).max() > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in MODELS if MODELS[n].source == "bit"])
def test_every_entry_runs_on_its_standin(name):
    model = standin_model(name)
    _, out = model.apply(model.preprocess(IMAGES[:1]))
    assert out["logits"].shape == (1, MODELS[name].config["num_classes"]) and out["pre_logits"].shape == (1, 1024)
