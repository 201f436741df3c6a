"""The bundled demo and every real config in its runlocal form, end to end on the synthetic world."""

import glob
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from alignment_jax import probe
from alignment_jax.data.features import load_features
from alignment_jax.data.local_set import split_heldout
from alignment_jax.evaluation.locality import transform_locality
from alignment_jax.models import demo as demo_model
from alignment_jax.models.registry import MODELS, load_model
from alignment_jax.models.standins import STANDIN_DIMS
from alignment_jax.probing.transform import Transform

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def get_config(name: str, arg: str = ""):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def test_shipped_demo_model_sees_the_concepts():
    model = load_model("demo-vit")
    assert model.info["sha256"] and model.image_size == demo_model.IMAGE_SIZE
    images, targets = demo_model.training_data(256, seed=99)  # objects it was not trained on
    logits, _ = model.module.apply({"params": model.params}, model.preprocess.normalize(images))
    correlation = [np.corrcoef(np.asarray(logits)[:, c], targets[:, c])[0, 1] for c in range(demo_model.N_CONCEPTS)]
    assert min(correlation) > 0.8, correlation


def test_demo_model_training_reduces_the_loss():
    _, untrained = demo_model.train(steps=0, n_images=256)
    _, trained = demo_model.train(steps=150, n_images=256, batch_size=32)
    assert trained < 0.5 * untrained


def demo(workdir, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "alignment_jax.probe", "--config=configs/demo.py", f"--workdir={workdir}", *flags],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip


def test_demo_command_makes_the_papers_point(tmp_path):
    done = demo(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) >= {"world", "extract", "zero_shot", "probe", "transfer", "concepts", "report"}
    assert results["probe"]["test_accuracy"] > results["zero_shot"]["test_accuracy"] + 0.2
    for row in results["transfer"]:
        assert row["spearman_transformed"] > row["spearman"] + 0.3
    concept_accuracy = [row["accuracy"] for row in results["concepts"]]
    assert max(concept_accuracy) - min(concept_accuracy) > 0.03
    report = (tmp_path / "report.md").read_text()
    assert report.count(".png") >= 3 and all(os.path.exists(tmp_path / p) for p in results["report"]["plots"].values())
    assert "probe (test)" in done.stdout
    assert results["extract"]["computed"] == 300
    # not a terminal: a few plain progress lines, no carriage-return bar updates
    assert "\r" not in done.stdout + done.stderr and "probe sweep" in done.stderr
    assert len(done.stderr.splitlines()) <= 12, done.stderr
    # every block of the demo ViT: a depth curve that rises from the first block to the last
    layers = {entry["layer"]: entry for entry in results["layers"]}
    assert list(layers) == ["block00", "block01", "block02", "block03", "head_input"]
    probed = [entry["probe"]["test_accuracy"] for entry in layers.values()]
    assert probed[-1] > probed[0] + 0.05 and results["best_layer"] in layers
    assert all(entry["zero_shot"]["test_accuracy"] < 0.45 for entry in layers.values())
    assert "plots/depth.png" in report and "Accuracy through the depth of the network" in done.stdout
    again = demo(
        tmp_path, "--config.stages=world,extract", "--config.progress=off"
    )  # the second run reuses the extracted features
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((tmp_path / "results.json").read_text())["extract"]["computed"] == 0
    assert "extract: reused 300 x 64 features" in again.stdout
    assert "probe sweep" not in again.stderr and "\r" not in again.stdout + again.stderr


def test_demo_glocal_shows_both_objectives_side_by_side(tmp_path):
    """configs/demo.py:glocal=True: gLocal's transform and the global probe (alpha 0, the same sweep) on the
    demo's rendered images: the global probe wins slightly on the test triplets, gLocal keeps clearly more of
    the held-out local images' nearest neighbours; the report puts them side by side."""
    done = subprocess.run(
        [sys.executable, "-m", "alignment_jax.probe", "--config=configs/demo.py:glocal=True", f"--workdir={tmp_path}"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    glocal, beside = results["probe"], results["probe"]["global_probe"]
    assert glocal["objective"] == "glocal" and beside["objective"] == "global"
    assert glocal["best_alpha"] > 0 and glocal["best_tau"] in (0.1, 1.0)
    assert {r["alpha"] for r in glocal["sweep"]} == {0.0, 0.1, 0.25}
    assert 0 < beside["test_accuracy"] - glocal["test_accuracy"] < 0.05  # global: slightly better on triplets
    assert glocal["local_knn_overlap"] > beside["local_knn_overlap"] + 0.08  # gLocal: neighbourhoods kept
    assert glocal["local_heldout_loss"] < beside["local_heldout_loss"]
    assert glocal["test_accuracy"] > results["zero_shot"]["test_accuracy"] + 0.2  # both still align
    report = (tmp_path / "report.md").read_text()
    assert "gLocal beside the global probe" in report and "gLocal beside the global probe" in done.stdout
    assert "global probe (alpha 0)" in done.stdout


RUNLOCAL = [  # every config file with runlocal, and the arguments that pick another registry entry
    ("vit_b16", ""),
    ("vit_l16", ""),
    ("vit_g", ""),
    ("vit_g", "model=openclip"),
    ("siglip_so400m", ""),
    ("siglip_so400m", "res=384"),
    ("features", ""),
    ("family", ""),  # DINOv2-B/14; BiT and AligNet through the pipeline: tests/test_bit.py, tests/test_saved_model.py
    ("levels", ""),
    ("alignet", ""),
]


def test_every_config_file_is_run_locally_here():
    files = {f[:-3] for f in os.listdir(os.path.join(ROOT, "configs")) if f.endswith(".py")}
    # demo.py is local already (test_demo_command_makes_the_papers_point); sweep.py runs configs (test_sweep_cli.py),
    # families.py runs configs/family.py (tests/test_families_config.py)
    assert files - {"demo", "sweep", "families"} == {name for name, _ in RUNLOCAL}


@pytest.mark.parametrize("name, arg", RUNLOCAL)
def test_real_configs_run_locally_on_their_own_path(name, arg, tmp_path):
    """runlocal keeps the model's own path: its registry entry's stand-in (file format, reader, image size,
    preprocessing, dtype, default layer) extracts the demo world's images, then every stage runs."""
    real = get_config(name, arg)
    assert not real.world.enabled
    config = get_config(name, ",".join(filter(None, ["runlocal=True", arg])))
    config.world.update(n_objects=80, n_train=4000, n_test=1000, n_repeated_sets=50, n_transfer=20, n_local=120)
    config.probe.lambdas = (1e-3,)
    config.probe.folds = 2
    config.progress = "off"
    config.report.plots = False
    ctx = probe.run(config, str(tmp_path))
    assert {"zero_shot", "probe"} <= set(ctx.results)
    if not real.model.name:  # configs/features.py: the demo world's planted features
        assert "extract" not in ctx.results and ctx.results["probe"]["test_accuracy"] > 0.5
        return
    spec = MODELS[real.model.name]
    assert config.model.standin and config.model.name == real.model.name and config.model.dtype == real.model.dtype
    record = json.loads(open(os.path.join(ctx.results["extract"]["store"], "record.json")).read())
    key = record["key"]
    assert key["model"]["standin"] and key["model"]["name"] == spec.name and key["model"]["source"] == spec.source
    assert key["layer"] == spec.default_layer and key["model"]["image_size"] == spec.image_size
    assert key["model"]["dtype"] == real.model.dtype and key["model"]["preprocess"]["crop"] == spec.preprocess.crop
    width = spec.config["num_classes"] if spec.default_layer == "logits" else STANDIN_DIMS["width"]
    assert ctx.results["extract"]["p"] == width and ctx.results["extract"]["n"] == 80
    assert {"transfer", "concepts"} <= set(ctx.results)
    # the world's local images, extracted with the run's model, and the global probe's locality on them
    _, held = split_heldout(120, config.probe.local.heldout, config.seed)
    local = load_features(glob.glob(str(tmp_path / "features" / "folder-*" / "features.npy"))[0])
    want = transform_locality(Transform.load_npz(tmp_path / "transform.npz"), local[held], config.probe.taus[0])
    assert {k: ctx.results["probe"][k] for k in want} == pytest.approx(want)


def test_vit_b16_runlocal_with_every_layer(tmp_path):
    """configs/vit_b16.py:runlocal=True with model.layers=all (and transfer and concepts per layer): the
    results.json and transform layout; the model.layer sections are that layer's entry."""
    config = get_config("vit_b16", "runlocal=True")  # the AugReg B/16 entry's stand-in: 2 blocks of width 32
    config.world.update(n_objects=80, n_train=4000, n_test=1000, n_repeated_sets=50, n_transfer=20)
    config.probe.update(lambdas=(1e-2, 1e-3), folds=2)
    config.progress = "off"
    config.model.layers = "all"
    config.transfer.layers = config.concepts.layers = "all"
    ctx = probe.run(config, str(tmp_path))
    results = json.loads((tmp_path / "results.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    names = [f"block{i:02d}" for i in range(STANDIN_DIMS["depth"])] + ["pre_logits"]
    assert [e["layer"] for e in results["layers"]] == names and ctx.layer == "pre_logits"
    for entry in results["layers"]:
        assert entry["p"] == STANDIN_DIMS["width"] and set(entry["zero_shot"]) == {
            "accuracy",
            "ci95",
            "test_accuracy",
            "test_ci95",
        }
        probe_keys = {"cv_accuracy", "cv_cross_entropy", "test_accuracy", "best_lambda", "sweep", "transform"}
        assert probe_keys <= set(entry["probe"]) and len(entry["probe"]["sweep"]) == 2 * 2
        assert entry["probe"]["transform"] == f"transforms/{entry['layer']}/transform.npz"
        assert (tmp_path / entry["probe"]["transform"]).exists()
        assert [r["kernel"] for r in entry["transfer"]] == ["cosine", "pearson"] and len(entry["concepts"]) == 10
    best = min(results["layers"], key=lambda e: e["probe"]["cv_cross_entropy"])
    assert results["best_layer"] == best["layer"]
    main = results["layers"][-1]
    assert results["zero_shot"]["accuracy"] == main["zero_shot"]["accuracy"]
    assert results["probe"]["test_accuracy"] == main["probe"]["test_accuracy"]
    assert results["transfer"] == main["transfer"]
    with np.load(tmp_path / "transform.npz") as top, np.load(tmp_path / main["probe"]["transform"]) as layer:
        np.testing.assert_array_equal(top["weights"], layer["weights"])
    assert (tmp_path / "plots" / "depth.png").exists() and "depth.png" in (tmp_path / "report.md").read_text()
    assert any(line.startswith("Accuracy through the depth of the network") for line in ctx.summary)
