"""Evaluating a given transform (`config.transform`): its numbers against numpy, gLocal's folder layout,
and one-line errors for bad files."""

import json

import numpy as np
import pytest
from test_locality import numpy_heldout_loss, numpy_knn_overlap

from alignment_jax import probe
from alignment_jax.config.base import base_config
from alignment_jax.data.local_set import split_heldout
from alignment_jax.errors import InputError
from alignment_jax.probing.transform import Transform, given_transform_path


def cosine_accuracy(z, triplets):
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    s = lambda a, b: np.sum(u[triplets[:, a]] * u[triplets[:, b]], axis=1)
    return float(np.mean((s(0, 1) > s(0, 2)) & (s(0, 1) > s(1, 2))))


def dot_accuracy(z, triplets):
    s = lambda a, b: np.sum(z[triplets[:, a]] * z[triplets[:, b]], axis=1)
    return float(np.mean((s(0, 1) > s(0, 2)) & (s(0, 1) > s(1, 2))))


def test_a_given_transform_is_evaluated_everywhere_and_the_probe_skipped(things_dir, world, tmp_path):
    rng = np.random.default_rng(0)
    p = world.features.shape[1]
    weights, bias = rng.normal(size=(p, p)) / np.sqrt(p), rng.normal(size=p) * 0.1
    mean, std = np.float32(world.features.mean()), np.float32(world.features.std())
    folder = tmp_path / "transforms" / "clip_ViT-L" / "14" / "visual"  # gLocal's layout; the model name has a '/'
    folder.mkdir(parents=True)
    np.savez(folder / "transform.npz", weights=weights, bias=bias, mean=mean, std=std)
    local = rng.normal(size=(150, p)).astype(np.float32) @ rng.normal(size=(p, p)).astype(np.float32)
    np.save(tmp_path / "local.npy", local)
    np.save(tmp_path / "embedding.npy", world.embedding)

    config = base_config()
    config.features = str(things_dir / "features.npy")
    config.things.root = str(things_dir)
    config.transform, config.transform_model, config.transform_module = (
        str(tmp_path / "transforms"),
        "clip_ViT-L/14",
        "visual",
    )
    config.probe.local.features = str(tmp_path / "local.npy")
    config.concepts.embedding = str(tmp_path / "embedding.npy")
    config.zero_shot.bootstrap = 0
    config.report.plots = False
    ctx = probe.run(config, str(tmp_path / "run"))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["zero_shot"]["ci95_transformed"] == [None, None]  # no resamples: null, not NaN

    assert "probe" not in results and not (tmp_path / "run" / "transform.npz").exists()
    z = ((world.features - mean) / std) @ weights + bias
    everything = np.concatenate([world.train, world.repeats, world.test])
    zero_shot = results["zero_shot"]
    assert zero_shot["accuracy_transformed"] == pytest.approx(cosine_accuracy(z, everything), abs=1e-6)
    assert zero_shot["test_accuracy_transformed"] == pytest.approx(cosine_accuracy(z, world.test), abs=1e-6)
    assert zero_shot["accuracy"] == pytest.approx(cosine_accuracy(world.features, everything), abs=1e-6)

    given = results["transform"]
    assert given["source"] == str(folder / "transform.npz")
    assert given["test_accuracy"] == pytest.approx(dot_accuracy(z, world.test), abs=1e-6)
    _, held = split_heldout(len(local), config.probe.local.heldout, config.seed)
    after = ((local[held] - mean) / std) @ weights + bias
    assert given["local_n_heldout"] == len(held) == 15
    assert given["local_heldout_loss"] == pytest.approx(numpy_heldout_loss(local[held], after, 0.1), rel=1e-4)
    assert given["local_knn_overlap"] == pytest.approx(numpy_knn_overlap(local[held], after, 10), abs=1e-6)

    assert all(row["accuracy_transformed"] is not None for row in results["concepts"] if row["n_triplets"])
    assert "## Given transform" in (tmp_path / "run" / "report.md").read_text()
    assert any("given transform" in line for line in ctx.summary)


def bad(tmp_path, name, **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def test_bad_transform_files_get_one_line_errors(tmp_path):
    eye, zero = np.eye(3), np.zeros(())
    cases = {
        bad(tmp_path, "keys.npz", weights=eye, bias=np.zeros(3)): "missing key\\(s\\) \\['mean', 'std'\\]",
        bad(tmp_path, "shape.npz", weights=np.ones((3, 4)), mean=zero, std=zero + 1): "weights must be square",
        bad(tmp_path, "bias.npz", weights=eye, bias=np.zeros(4), mean=zero, std=zero + 1): "bias must have shape",
        bad(tmp_path, "nan.npz", weights=eye * np.nan, mean=zero, std=zero + 1): "NaN or inf in weights",
        bad(tmp_path, "std.npz", weights=eye, mean=zero, std=zero): "std is 0",
    }
    with open(tmp_path / "array.npz", "wb") as f:
        np.save(f, eye)
    cases[str(tmp_path / "array.npz")] = "not an .npz archive"
    (tmp_path / "text.npz").write_text("weights: 1 0 0 1\n")
    cases[str(tmp_path / "text.npz")] = "not a readable .npz transform"
    for path, message in cases.items():
        with pytest.raises(InputError, match=message) as error:
            Transform.load_npz(path)
        assert str(error.value).startswith(path) and "\n" not in str(error.value)

    good = Transform(eye, np.zeros(3), zero, zero + 1, source="t.npz")
    with pytest.raises(InputError, match="t.npz: the transform expects features of shape \\(n, 3\\)"):
        good.apply(np.ones((5, 4)))


def test_folder_layout_and_settings_errors(tmp_path, things_dir):
    (tmp_path / "transforms" / "resnet18" / "avgpool").mkdir(parents=True)
    file = tmp_path / "transforms" / "resnet18" / "avgpool" / "transform.npz"
    np.savez(file, weights=np.eye(2), mean=0.0, std=1.0)
    folder = str(tmp_path / "transforms")
    assert given_transform_path(folder, "resnet18", "avgpool") == str(file)
    assert given_transform_path(str(file)) == str(file)
    with pytest.raises(InputError, match="set transform_model and transform_module .*there: resnet18/avgpool"):
        given_transform_path(folder)
    with pytest.raises(InputError, match="no transform for model 'vgg16', module 'avgpool'"):
        given_transform_path(folder, "vgg16", "avgpool")
    with pytest.raises(InputError, match="is a file"):
        given_transform_path(str(file), "resnet18", "avgpool")
    with pytest.raises(InputError, match="no such file or folder"):
        given_transform_path(str(tmp_path / "nowhere"))

    config = base_config()
    config.features, config.things.root = str(things_dir / "features.npy"), str(things_dir)
    config.transform = str(file)
    config.stages = "zero_shot,probe"
    with pytest.raises(InputError, match="replaces the probe stage"):
        probe.check_settings(config)
    config.stages = "zero_shot"
    with pytest.raises(InputError, match=f"{file}: the transform expects features of shape \\(n, 2\\)"):
        probe.run(config, str(tmp_path / "run"))  # a transform of another model's dimension
    config.transform = ""
    config.transform_model = "resnet18"
    with pytest.raises(InputError, match="set transform too"):
        probe.check_settings(config)
