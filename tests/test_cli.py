"""The probe command end to end, on files the tests write in the THINGS layout."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from alignment_jax import atomic, probe, stages
from alignment_jax.config.base import base_config
from alignment_jax.errors import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "alignment_jax.probe", "--config=configs/features.py", *args],
        capture_output=True,
        text=True,
        cwd=cwd or os.path.dirname(os.path.dirname(__file__)),
    )


def test_end_to_end(things_dir, tmp_path):
    workdir = tmp_path / "run"
    done = cli(
        f"--workdir={workdir}",
        f"--config.features={things_dir / 'features.npy'}",
        f"--config.things.root={things_dir}",
        "--config.similarity=dot",
        "--config.probe.lambdas=0.001",
        "--config.probe.folds=2",
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((workdir / "results.json").read_text())
    zero_shot, probed = results["zero_shot"], results["probe"]
    assert zero_shot["similarity"] == "dot"
    assert zero_shot["ci95"][0] <= zero_shot["accuracy"] <= zero_shot["ci95"][1]
    assert zero_shot["n_triplets"] == 20_000 + 300 * 3 + 4_000
    assert 0.5 < zero_shot["noise_ceiling"]["accuracy"] <= 1.0
    assert probed["test_accuracy"] > zero_shot["test_accuracy"] + 0.1
    assert len(probed["sweep"]) == 2 and probed["best_lambda"] == pytest.approx(1e-3)
    assert os.path.exists(workdir / "transform.npz") and os.path.isdir(workdir / "transform_checkpoint")
    assert "zero-shot (dot)" in done.stdout and "probe (fast" in done.stdout
    assert not [f for f in os.listdir(workdir) if atomic.TEMPORARY in f]


def bad_input_cases(tmp, things_dir):
    """(description, extra flags, expected message) for each kind of bad input."""
    features = np.load(things_dir / "features.npy")
    np.save(tmp / "nan.npy", np.where(np.arange(features.size).reshape(features.shape) == 7, np.nan, features))
    np.save(tmp / "short.npy", features[:50])
    np.save(tmp / "flat.npy", features[:, 0])
    np.save(tmp / "range.npy", np.array([[0, 1, 2], [3, 4, 500]]))
    np.save(tmp / "repeat.npy", np.array([[0, 1, 2], [3, 3, 4]]))
    np.save(tmp / "shape.npy", np.zeros((4, 2), int))
    good = f"--config.features={things_dir / 'features.npy'}"
    root = f"--config.things.root={things_dir}"
    return [
        ("missing features", [f"--config.features={tmp / 'none.npy'}", root], "none.npy: feature file not found"),
        ("missing root", [good, f"--config.things.root={tmp / 'nothere'}"], "THINGS root folder not found"),
        ("NaN features", [f"--config.features={tmp / 'nan.npy'}", root], "NaN or inf in features (row 0, column 7)"),
        (
            "rows != objects",
            [f"--config.features={tmp / 'short.npy'}", root],
            "short.npy: 50 feature rows but the THINGS object list has 120 objects",
        ),
        ("1-D features", [f"--config.features={tmp / 'flat.npy'}", root], "shape (n_objects, p)"),
        (
            "index range",
            [good, f"--config.things.train={tmp / 'range.npy'}"],
            "features.npy: 120 feature rows but the triplets (",
        ),
        ("repeated object", [good, f"--config.things.train={tmp / 'repeat.npy'}"], "repeats an object (row 1"),
        ("wrong shape", [good, f"--config.things.train={tmp / 'shape.npy'}"], "shape (T, 3)"),
        ("bad similarity", [good, root, "--config.similarity=manhattan"], "similarity='manhattan'"),
        ("bad stage", [good, root, "--config.stages=zero_shot,dance"], "unknown stage(s) ['dance']"),
    ]


def test_every_bad_input_is_one_line_and_exit_2(things_dir, tmp_path):
    for description, flags, message in bad_input_cases(tmp_path, things_dir):
        config = base_config()
        config.stages = "zero_shot"
        for flag in flags:
            key, value = flag[len("--config.") :].split("=", 1)
            section, _, field = key.rpartition(".")
            (config[section] if section else config)[field] = value
        with pytest.raises(InputError) as error:
            probe.run(config, str(tmp_path / "run"))
        assert message in str(error.value), description
    done = cli(
        f"--workdir={tmp_path / 'cli'}",
        f"--config.features={tmp_path / 'nan.npy'}",
        f"--config.things.root={things_dir}",
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nan.npy'}: NaN or inf in features (row 0, column 7); 1 values in all"
    ]


def test_nothing_to_run(tmp_path):
    config = base_config()
    with pytest.raises(InputError, match="nothing to run: download THINGS from OSF.*--config.things.root=ROOT"):
        probe.run(config, str(tmp_path))


def test_real_config_without_data_says_what_to_download(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "alignment_jax.probe", "--config=configs/vit_g.py", f"--workdir={tmp_path}"],
        capture_output=True,
        text=True,
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: model siglip2-gopt16-256 is configured but there are no THINGS data")
    assert "Traceback" not in done.stderr and "runlocal=True" in done.stderr


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--config=configs/missing.py"], "--config=configs/missing.py: config file not found"),
        (["--config=configs/features.py", "--config.probe.nope=1"], "--config.probe.nope: unknown config field"),
        (["--config=configs/demo.py:typo=1"], "config argument 'typo' is not one of features"),
        (["--config=configs/demo.py", "--config.probe.folds=x"], "--config.probe.folds=x: expected type int"),
        (["--config=configs/demo.py", "--config.probe.regularizer=l1"], "probe.regularizer='l1' is not one of"),
        (["--config=configs/demo.py:glocl=True"], "--config=configs/demo.py:glocl=True: config argument 'glocl' is "
         "not one of features, glocal, alignet; did you mean glocal?"),
        (["--config=configs/demo.py", "--config.probe.lambda=0.1"], "--config.probe.lambda: unknown config field; "
         "did you mean probe.lambdas?"),
        (["--config=configs/demo.py", "--config.prob.folds=2"], "did you mean probe.folds?"),
        (["--config=configs/demo.py", "--config.things.one_based=3"], "--config.things.one_based=3: expected true or"),
        (["--config=configs/demo.py", "--config.probe.lambdas=0.1,-0.1"], "probe.lambdas=-0.1: must be a number >= 0"),
        (["--config=configs/demo.py", "--config.probe.lr=0"], "probe.lr=0: must be a number > 0 (or -1)"),
        # inputs that the chosen config replaces with its own data: named, not silently unused
        (["--config=configs/demo.py", "--config.images.source=folder", "--config.images.root=/tmp"],
         "images.source='folder' is not used: the demo world"),
        (["--config=configs/demo.py:features=True", "--config.things.root=/tmp"],
         "things.root='/tmp' is not used: the demo world"),
        (["--config=configs/vit_b16.py:runlocal=True", "--config.images.root=/tmp/images"],
         "images.root='/tmp/images' is not used: the demo world"),
        (["--config=configs/vit_b16.py:runlocal=True", "--config.model.checkpoint=/tmp/x.npz"],
         "model.checkpoint='/tmp/x.npz' is not used: model.standin=True"),
    ],
)  # fmt: skip
def test_bad_config_flags_are_one_line(flags, message, tmp_path):
    workdir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "alignment_jax.probe", *flags, f"--workdir={workdir}"],
        capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)),
    )  # fmt: skip
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not os.path.exists(workdir)  # nothing ran before the check, no empty workdir left behind


@pytest.mark.parametrize(
    "variables, message",
    [
        ({}, "--distributed: jax.distributed.initialize() failed (coordinator_address should be defined.)"),
        ({"JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES=two: not a whole number"),
    ],
)
def test_distributed_outside_a_cluster_without_its_variables_is_one_line(variables, message, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COORDINATOR", "SLURM_", "OMPI_"))}
    done = subprocess.run(
        [sys.executable, "-m", "alignment_jax.probe", "--config=configs/demo.py", f"--workdir={tmp_path / 'run'}",
         "--distributed"], capture_output=True, text=True, cwd=ROOT, env={**env, "JAX_PLATFORMS": "cpu", **variables},
    )  # fmt: skip
    assert done.returncode == 2 and done.stderr.startswith(f"error: {message}"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_run_failing_before_its_first_stage_leaves_no_workdir(tmp_path):
    workdir = tmp_path / "run"
    flags = ["--config=configs/features.py", "--config.things.root=/no/such/things", "--config.features=/no/x.npy"]
    done = subprocess.run(
        [sys.executable, "-m", "alignment_jax.probe", *flags, f"--workdir={workdir}"],
        capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)),
    )  # fmt: skip
    assert done.returncode == 2 and "/no/such/things: THINGS root folder not found" in done.stderr, done.stderr
    assert not os.path.exists(workdir)
    workdir.mkdir()  # a folder the user made is kept
    done = subprocess.run(
        [sys.executable, "-m", "alignment_jax.probe", *flags, f"--workdir={workdir}"],
        capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)),
    )  # fmt: skip
    assert done.returncode == 2 and workdir.is_dir()


def test_diverged_configurations_are_reported_and_left_out(things_dir, tmp_path):
    config = base_config()
    config.features, config.things.root, config.stages = str(things_dir / "features.npy"), str(things_dir), "probe"
    config.probe.update(lambdas=(1e-3,), lrs=(0.05, 1e30), clip_norm=0.0, folds=2)
    ctx = probe.run(config, str(tmp_path))
    section = ctx.results["probe"]
    assert [r["status"] for r in section["sweep"]] == ["ok", "ok", "diverged", "diverged"]
    assert section["best_lr"] == pytest.approx(0.05)
    assert any("2 configuration(s) diverged" in line for line in ctx.summary)


def test_a_stage_left_out_although_its_inputs_are_set_is_announced(things_dir, tmp_path):
    config = base_config()
    config.features, config.things.root = str(things_dir / "features.npy"), str(things_dir)
    config.concepts.embedding = str(tmp_path / "vice.txt")  # set (never read: the stage does not run)
    config.zero_shot.bootstrap = 0
    config.stages = "zero_shot"
    ctx = probe.run(config, str(tmp_path / "run"))
    skipped = [line for line in ctx.summary if "skipped" in line]
    assert skipped == [
        "stage probe skipped: its inputs are set but config.stages='zero_shot' leaves it out "
        "(add it: --config.stages=zero_shot,probe)",
        "stage concepts skipped: its inputs are set but config.stages='zero_shot' leaves it out "
        "(add it: --config.stages=zero_shot,concepts)",
    ]
    assert set(ctx.results) - {"data", "provenance"} == {"zero_shot"}
    config.stages = ""  # every stage whose inputs are set runs: nothing to announce
    assert probe.skipped_stages(config, probe.requested_stages(config)) == []


def test_the_features_config_runs_every_stage_whose_inputs_are_set():
    spec = importlib.util.spec_from_file_location("features", os.path.join(ROOT, "configs", "features.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.features, config.things.root, config.transfer.datasets = "f.npy", "/things", "peterson:/data/peterson"
    assert probe.requested_stages(config) is None
    assert [s for s in stages.ORDER if stages.load(s).has_inputs(config)] == [
        "zero_shot", "probe", "transfer", "report",
    ]  # fmt: skip
