"""The probe stage on AligNet's triplets (alignet.train/test + features of the sorted image set), no THINGS."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from alignment_jax import probe
from alignment_jax.config.base import base_config
from alignment_jax.data.alignet import odd_one_out_last
from alignment_jax.errors import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def alignet_files(tmp_path_factory):
    """alignet_train.npz / alignet_valid.npz over 40 images of a planted teacher, features.npy in sorted name order."""
    folder = tmp_path_factory.mktemp("alignet")
    rng = np.random.default_rng(0)
    n, dims = 40, 8
    names = np.array([f"n{c:08d}_{i}.JPEG" for i, c in enumerate(rng.integers(0, 5, n))])
    features = rng.normal(size=(n, dims)).astype(np.float32)
    teacher = features @ rng.normal(size=(dims, dims)) / 3
    for name, count in (("alignet_train.npz", 1500), ("alignet_valid.npz", 300)):
        rows = np.array([rng.choice(n, 3, replace=False) for _ in range(count)])
        sims = np.stack([(teacher[rows[:, a]] * teacher[rows[:, b]]).sum(1) for a, b in ((0, 1), (0, 2), (1, 2))], 1)
        rows, sims = odd_one_out_last(rows, sims)
        np.savez(folder / name, filenames=names[rows], similarities=sims.astype(np.float32), indices=rows * 7)
    order = np.argsort(names)
    np.save(folder / "features.npy", features[order])  # one row per distinct name, sorted
    return folder


def config_for(folder, objective="kl"):
    config = base_config()
    config.stages = "probe"
    config.progress = "off"
    config.alignet.train = str(folder / "alignet_train.npz")
    config.alignet.test = str(folder / "alignet_valid.npz")
    config.alignet.features = str(folder / "features.npy")
    config.probe.objective = objective
    config.probe.lambdas = (1e-3,)
    config.probe.taus = (0.5, 2.0)
    config.probe.epochs = 40
    config.probe.split = "triplets"
    return config


def test_probe_trains_on_alignet_without_things(alignet_files, tmp_path):
    probe.run(config_for(alignet_files), str(tmp_path / "run"))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    section = results["probe"]
    assert section["objective"] == "kl" and section["best_tau"] in (0.5, 2.0)
    assert section["alignet"]["n_images"] == 40 and section["alignet"]["n_train"] == 1500
    assert 0 <= section["test_divergence"] < np.log(3)  # better than the uniform prediction's upper bound
    assert section["test_accuracy"] > 0.5  # chance is 1/3
    assert (tmp_path / "run" / "transform.npz").exists()
    assert "things" not in json.dumps(results.get("provenance", {})).lower().replace("things.", "")


def test_the_image_set_must_match_the_features(alignet_files, tmp_path):
    config = config_for(alignet_files)
    np.save(tmp_path / "short.npy", np.zeros((39, 8), np.float32))
    config.alignet.features = str(tmp_path / "short.npy")
    with pytest.raises(InputError, match="39 feature rows but alignet.train and alignet.test name 40 distinct images"):
        probe.run(config, str(tmp_path / "run"))


def test_soft_objective_needs_alignet(tmp_path):
    config = base_config()
    config.probe.objective = "jsd"
    config.stages = "probe"
    with pytest.raises(InputError, match="probe.objective=jsd trains on soft targets: set alignet.train"):
        probe.run(config, str(tmp_path / "run"))


def test_a_bad_file_is_one_line_and_exit_2(alignet_files, tmp_path):
    np.savez(tmp_path / "bad.npz", filenames=np.array([["a", "b", "c"]]), similarities=np.array([[1.0, np.nan, 0.0]]))
    done = subprocess.run(
        [
            sys.executable, "-m", "alignment_jax.probe", "--config=configs/features.py",
            f"--workdir={tmp_path / 'run'}", "--config.stages=probe", f"--config.alignet.train={tmp_path / 'bad.npz'}",
            f"--config.alignet.features={alignet_files / 'features.npy'}", "--config.probe.objective=kl",
        ],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "bad.npz: similarities has NaN or inf in row 0" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("step", ["teacher", "student"])
def test_the_alignet_config_is_valid(step):
    from alignment_jax.config.files import load_config

    config = load_config(os.path.join(ROOT, "configs", "alignet.py"), f"step={step}")
    if step == "teacher":  # the keys the docstring says to set
        config.teacher.images = "/data/imagenet/train"
    else:
        config.alignet.train, config.alignet.images = "/data/alignet/alignet_train.npz", "/data/imagenet/train"
    probe.check_settings(config, config.stages.split(","))
    assert (config.teacher.n_triplets == 10_000_000) == (step == "teacher")
    with pytest.raises(InputError, match="step='x' is not one of teacher, student"):
        load_config(os.path.join(ROOT, "configs", "alignet.py"), "step=x")
