"""The levels stage through the command line (`cli.main`, in this process): alone on Levels inputs only, with a
given transform, with the transform the probe learns in the same run, with the model extracting the images, and
one line + exit 2 for each bad input before anything slow runs."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from test_bad_inputs import assert_one_line, run_cli

from alignment_jax.data.levels import load_levels
from alignment_jax.data.render import render
from alignment_jax.data.synthetic import make_levels, make_world
from alignment_jax.evaluation.levels import METRICS, MODEL_METRICS, levels_metrics
from alignment_jax.probing.transform import Transform

pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")  # config_flags, on every --config
REPO = Path(__file__).resolve().parent.parent
FEATURES_CONFIG = str(REPO / "configs" / "features.py")


def run_demo(capsys, flags: list[str], workdir: Path) -> str:
    """Runs the command line from the repository root (the demo config's paths are relative to it) into
    `workdir`; returns its stdout after checking that it succeeded."""
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        status, out, err = run_cli(capsys, *flags, f"--workdir={workdir}")
    finally:
        os.chdir(cwd)
    assert status == 0, err
    return out


LEVELS = ("within_class", "class_border", "between_class", "all")


def write_release(folder: Path, trials: list) -> None:
    (folder / "trials").mkdir(parents=True, exist_ok=True)
    for part in range(2):
        rows = trials[part::2]
        (folder / "trials" / f"part_{part}.json").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A Levels release (the demo world's generator) with its features in sorted file-name order, and images."""
    root = tmp_path_factory.mktemp("levels")
    world = make_world(n_objects=30, n_concepts=6, n_dims=12, n_train=10, n_test=0, n_repeated_sets=0, seed=1)
    levels = make_levels(world, n_per_level=40, seed=2)
    write_release(root / "release", levels.trials)
    order = np.argsort(levels.names)
    np.save(root / "features.npy", levels.features[order])
    from PIL import Image

    images = root / "release" / "images"
    images.mkdir()
    for name, pixels in zip(levels.names, render(levels.embedding, 32, 0), strict=True):
        Image.fromarray(pixels).save(images / name)
    return root, levels


def args(root: Path, *extra: str) -> list[str]:
    return [
        f"--config={FEATURES_CONFIG}",
        f"--config.levels.root={root / 'release'}",
        f"--config.levels.features={root / 'features.npy'}",
        "--config.zero_shot.bootstrap=200",
        "--config.progress=off",
        *extra,
    ]


def direct_accuracy(features: np.ndarray, triplets: np.ndarray, counts: np.ndarray) -> float:
    x = features / np.linalg.norm(features, axis=1, keepdims=True)
    i, j, k = triplets.T
    z = np.stack([(x[j] * x[k]).sum(1), (x[i] * x[k]).sum(1), (x[i] * x[j]).sum(1)], axis=1)
    return float(counts[np.arange(len(z)), z.argmax(axis=1)].sum() / counts.sum())


def test_levels_alone_without_things(release, tmp_path, capsys):
    root, _ = release
    status, out, err = run_cli(capsys, *args(root, "--config.stages=levels"), f"--workdir={tmp_path / 'run'}")
    assert status == 0, err
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert "zero_shot" not in results and "probe" not in results
    section = results["levels"]
    loaded = load_levels(str(root / "release"), images=None)
    features = np.load(root / "features.npy")
    for name in LEVELS:
        assert list(section[name]) == list(METRICS)  # no transform: exactly these keys
    assert section["all"]["accuracy"] == pytest.approx(
        direct_accuracy(features, loaded.triplets, loaded.counts), rel=1e-6
    )
    assert section["all"]["n_triplets"] == loaded.n_triplets == sum(section[n]["n_triplets"] for n in LEVELS[:3])
    assert section["dropped_trials"] == loaded.dropped_trials and section["dropped_trials"]["slow"] > 0
    assert "levels all: accuracy" in out
    # auto mode: Levels inputs alone run the levels stage and the report
    status, out, err = run_cli(capsys, *args(root), f"--workdir={tmp_path / 'auto'}")
    assert status == 0, err
    report = (tmp_path / "auto" / "report.md").read_text()
    assert "Levels: accuracy per abstraction level" in report and "plots/levels_entropy.png" in report
    assert (tmp_path / "auto" / "plots" / "levels.png").is_file()


def test_a_given_transform_is_evaluated_on_levels(release, tmp_path, capsys):
    root, _ = release
    features = np.load(root / "features.npy")
    p = features.shape[1]
    rng = np.random.default_rng(0)
    path = tmp_path / "transform.npz"
    np.savez(path, weights=rng.normal(size=(p, p)), bias=rng.normal(size=p), mean=np.float32(0.1), std=np.float32(2))
    extra = (f"--config.transform={path}", "--config.stages=levels", "--config.zero_shot.bootstrap=0")
    status, _, err = run_cli(capsys, *args(root, *extra), f"--workdir={tmp_path / 'run'}")
    assert status == 0, err
    section = json.loads((tmp_path / "run" / "results.json").read_text())["levels"]
    loaded = load_levels(str(root / "release"), images=None)
    expected = levels_metrics(Transform.load_npz(path).apply(features), loaded, "cosine", bootstrap=0)
    for name in LEVELS:
        for key in MODEL_METRICS:
            value = section[name][f"{key}_transformed"]
            assert value == pytest.approx(expected[name][key], rel=1e-6, abs=1e-9), (name, key)
    assert section["all"]["accuracy_transformed"] != section["all"]["accuracy"]


def test_the_same_runs_probe_transform_is_evaluated(tmp_path, capsys):
    """The demo world (planted features) with its Levels set: the probe runs before levels, which evaluates
    the transform.npz the probe has just written."""
    small = [
        "--config=configs/demo.py:features=True",
        "--config.world.n_objects=60",
        "--config.world.n_train=3000",
        "--config.world.n_test=500",
        "--config.world.n_repeated_sets=20",
        "--config.world.n_levels=30",
        "--config.probe.lambdas=0.01",
        "--config.probe.folds=2",
        "--config.probe.epochs=40",
        "--config.stages=world,probe,levels,report",
        "--config.progress=off",
        "--config.zero_shot.bootstrap=0",
    ]
    run_demo(capsys, small, tmp_path / "run")
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    levels_root = tmp_path / "run" / "world" / "levels"
    loaded = load_levels(str(levels_root), images=None)
    transform = Transform.load_npz(tmp_path / "run" / "transform.npz")
    features = np.load(levels_root / "features.npy")
    assert len(features) == len(loaded.images)
    expected = levels_metrics(transform.apply(features), loaded, "cosine", bootstrap=0)
    assert results["levels"]["all"]["accuracy_transformed"] == pytest.approx(expected["all"]["accuracy"], rel=1e-6)
    assert results["levels"]["transform"] == str(tmp_path / "run" / "transform.npz")
    report = (tmp_path / "run" / "report.md").read_text()  # the demo's report shows the tables and figures
    assert "## Levels: accuracy per abstraction level" in report and "## Levels: uncertainty" in report
    assert {"levels", "levels_entropy"} <= set(results["report"]["plots"])
    assert all((tmp_path / "run" / "plots" / f"{name}.png").is_file() for name in ("levels", "levels_entropy"))


def test_the_model_extracts_the_levels_images(release, tmp_path, capsys):
    root, _ = release
    extra = ("--config.levels.features=", "--config.model.name=demo-vit", "--config.stages=levels")
    status, out, err = run_cli(capsys, *args(root, *extra), f"--workdir={tmp_path / 'run'}")
    assert status == 0, err
    stores = [p for p in (tmp_path / "run" / "features").iterdir() if p.name.startswith("levels")]
    assert len(stores) == 1
    stored = np.load(stores[0] / "features.npy")
    assert len(stored) == json.loads((tmp_path / "run" / "results.json").read_text())["levels"]["n_images"]
    ids = (stores[0] / "object_ids.txt").read_text().split()
    assert [os.path.basename(i) for i in ids] == sorted(os.path.basename(i) for i in ids)


def rows_of(release_root: Path) -> list[str]:
    return (release_root / "trials" / "part_0.json").read_text().splitlines()


@pytest.mark.parametrize(
    "case, names",
    [
        ("rows", ("levels.features=", "rows but the kept Levels triplets show")),
        ("no_trials", ("no trial files",)),
        ("not_json", ("part_0.json line 3: not JSON",)),
        ("no_rt", ("part_0.json line 2", "without rt")),
        ("missing_image", ("levels.images=", "missing, e.g.")),
        ("no_features", ("levels: no features", "levels.features=FILE")),
        ("all_slow", ("no triplet left", "levels.max_rt_ms=1")),
        ("max_below_min", ("levels.max_responses=2",)),
    ],
)
def test_bad_levels_inputs_get_one_line_before_slow_work(release, tmp_path, capsys, case, names):
    root, _ = release
    copy = tmp_path / "copy"
    write_release(copy, [json.loads(line) for line in (root / "release" / "trials" / "part_0.json").open()])
    extra = [f"--config.levels.root={copy}", "--config.stages=levels"]
    lines = rows_of(copy)
    if case == "rows":
        np.save(tmp_path / "short.npy", np.load(root / "features.npy")[:-1])
        extra += [f"--config.levels.root={root / 'release'}", f"--config.levels.features={tmp_path / 'short.npy'}"]
    elif case == "no_trials":
        (tmp_path / "empty").mkdir()
        extra.append(f"--config.levels.root={tmp_path / 'empty'}")
    elif case == "not_json":
        lines[2] = lines[2][:-3]
    elif case == "no_rt":
        row = json.loads(lines[1])
        row["exp_trial_type"], _ = "exp_trial", row.pop("rt")
        lines[1] = json.dumps(row)
    elif case == "missing_image":
        (copy / "images").mkdir()
        extra += ["--config.levels.features=", "--config.model.name=demo-vit"]
    elif case == "no_features":
        extra.append("--config.levels.features=")
    elif case == "all_slow":
        extra.append("--config.levels.max_rt_ms=1")
    elif case == "max_below_min":
        extra.append("--config.levels.max_responses=2")
    (copy / "trials" / "part_0.json").write_text("\n".join(lines) + "\n")
    status, _, err = run_cli(capsys, *args(root, *extra), f"--workdir={tmp_path / 'run'}")
    assert_one_line(status, err, *names)
    assert not (tmp_path / "run" / "results.json").exists()
    assert not (tmp_path / "run" / "features").exists()  # nothing extracted


def test_every_layer_of_model_layers_is_evaluated_on_levels(tmp_path, capsys):
    """configs/demo.py (rendered images, the demo ViT, model.layers=all): one extraction pass gives every layer's
    Levels features; results.json `layers` holds each layer's metrics, transformed with its own transform."""
    small = [
        "--config=configs/demo.py",
        "--config.world.n_objects=40",
        "--config.world.n_train=1500",
        "--config.world.n_test=300",
        "--config.world.n_repeated_sets=10",
        "--config.world.n_levels=20",
        "--config.probe.lambdas=0.01",
        "--config.probe.folds=2",
        "--config.probe.epochs=30",
        "--config.stages=world,extract,probe,levels",
        "--config.progress=off",
        "--config.zero_shot.bootstrap=0",
    ]
    out = run_demo(capsys, small, tmp_path / "run")
    run = tmp_path / "run"
    results = json.loads((run / "results.json").read_text())
    loaded = load_levels(str(run / "world" / "levels"), images=None)
    entries = {entry["layer"]: entry for entry in results["layers"]}
    assert len(entries) == 5 and "levels per layer" in out
    main = next(layer for layer, entry in entries.items() if entry["features"] == results["extract"]["features"])
    for layer, entry in entries.items():
        store = run / "features" / ("levels" if layer == main else f"levels.{layer}")  # model.layer's: `levels`
        features = np.load(store / "features.npy")
        transform = Transform.load_npz(run / "transforms" / layer / "transform.npz")
        assert entry["levels"]["all"]["accuracy"] == pytest.approx(
            direct_accuracy(features, loaded.triplets, loaded.counts), rel=1e-6
        )
        assert entry["levels"]["all"]["accuracy_transformed"] == pytest.approx(
            direct_accuracy(transform.apply(features), loaded.triplets, loaded.counts), rel=1e-6
        )
    assert entries[main]["levels"]["all"] == results["levels"]["all"]  # the section describes model.layer


def test_runlocal_swaps_levels_data_for_the_worlds_set():
    from alignment_jax.config.args import run_locally
    from alignment_jax.config.base import base_config

    config = base_config()
    config.levels.root, config.levels.features = "/data/levels", "/data/levels.npy"
    local = run_locally(config)
    assert local.world.n_levels == 100 and not local.levels.root and not local.levels.features
    assert run_locally(base_config()).world.n_levels == 0  # no Levels data named: no Levels set
