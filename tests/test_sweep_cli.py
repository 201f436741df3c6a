"""The sweep command: several demo models, resuming, failure isolation, summary.csv."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from alignment_jax import atomic, sweep
from alignment_jax.config import files as config_files

REPO = Path(__file__).resolve().parent.parent
DEMO = f"{REPO / 'configs' / 'demo.py'}:features=True"
SMALL = {  # CLI overrides of configs/sweep.py for a small world and a short probe sweep
    "shared.world.n_objects": "120",
    "shared.world.n_train": "12000",
    "shared.world.n_test": "3000",
    "shared.probe.lambdas": "(0.01,0.001)",
    "shared.probe.folds": "2",
}


def sweep_config(models: list[str]):
    """configs/sweep.py with SMALL applied, as the CLI would build it."""
    config = config_files.load_config(str(REPO / "configs" / "sweep.py"))
    for key, value in SMALL.items():
        config_files.set_from_text(config, key, value, source="test")
    config.models = ",".join(models)
    return config


def read_summary(workdir: Path) -> dict[str, dict[str, str]]:
    with open(workdir / "summary.csv", newline="") as f:
        return {row["name"]: row for row in csv.DictReader(f)}


def counting_runs(monkeypatch) -> list[str]:
    """Records the workdir of every alignment_jax.probe.run call the sweep makes."""
    calls, real = [], sweep.probe.run
    monkeypatch.setattr(sweep.probe, "run", lambda config, workdir: calls.append(workdir) or real(config, workdir))
    return calls


@pytest.fixture(scope="module")
def first_sweep(tmp_path_factory):
    """Two demo models, a missing config file and a config whose get_config raises, run once."""
    root = tmp_path_factory.mktemp("sweep")
    (root / "boom.py").write_text("def get_config(arg=''):\n    raise RuntimeError('boom')\n")
    models = [
        f"a={DEMO}",
        f"b={DEMO} seed=1 similarity=dot",
        "missing=configs/no_such_config.py",
        f"boom={root}/boom.py",
    ]
    runs = sweep.run_sweep(sweep_config(models), str(root / "run"))
    return root / "run", models, runs


def test_summary_has_one_row_per_model_from_its_results(first_sweep):
    workdir, models, runs = first_sweep
    assert [(r.spec.name, r.status) for r in runs] == [
        ("a", "ran"),
        ("b", "ran"),
        ("missing", "failed"),
        ("boom", "failed"),
    ]
    rows = read_summary(workdir)
    assert list(rows) == ["a", "b", "missing", "boom"]
    for name in ("a", "b"):
        results = json.loads((workdir / name / "results.json").read_text())
        row = rows[name]
        assert row["status"] == "ran" and row["error"] == "" and row["config"] == models["ab".index(name)]
        expected = {
            "zero_shot_accuracy": results["zero_shot"]["accuracy"],
            "zero_shot_test_accuracy": results["zero_shot"]["test_accuracy"],
            "probe_cv_accuracy": results["probe"]["cv_accuracy"],
            "probe_test_accuracy": results["probe"]["test_accuracy"],
            "best_lambda": results["probe"]["best_lambda"],
            "noise_ceiling": results["zero_shot"]["noise_ceiling"]["accuracy"],
        }
        for r in results["transfer"]:
            expected[f"spearman_{r['dataset']}_{r['kernel']}"] = r["spearman"]
            expected[f"spearman_{r['dataset']}_{r['kernel']}_transformed"] = r["spearman_transformed"]
        assert len(expected) >= 8
        for column, value in expected.items():
            assert float(row[column]) == pytest.approx(value, rel=1e-12), (name, column)
        assert float(row["best_lambda"]) == pytest.approx(0.01) or float(row["best_lambda"]) == pytest.approx(0.001)
        assert float(row["probe_test_accuracy"]) > float(row["zero_shot_test_accuracy"]) + 0.1  # the paper's point
        assert (workdir / name / "DONE").exists()
    assert json.loads((workdir / "b" / "results.json").read_text())["zero_shot"]["similarity"] == "dot"
    assert rows["a"]["zero_shot_accuracy"] != rows["b"]["zero_shot_accuracy"]  # seed and similarity took effect
    assert (workdir / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_failure_is_reported_and_the_others_go_on(first_sweep):
    workdir, _, _ = first_sweep
    rows = read_summary(workdir)
    assert rows["missing"]["status"] == "failed"
    assert "configs/no_such_config.py: config file not found" in rows["missing"]["error"]
    assert rows["missing"]["probe_test_accuracy"] == "" and not (workdir / "missing").exists()
    assert rows["boom"]["error"].endswith(
        "boom.py: the config file failed to load (RuntimeError: boom, line 2); fix the file"
    )
    assert not (workdir / "boom").exists()  # a config that fails to load is the user's to fix: no traceback
    assert not [f for f in os.listdir(workdir) if atomic.TEMPORARY in f]


def test_rerun_skips_finished_models(first_sweep, monkeypatch):
    workdir, models, _ = first_sweep
    before = {name: os.stat(workdir / name / "results.json").st_mtime_ns for name in ("a", "b")}
    calls = counting_runs(monkeypatch)
    runs = sweep.run_sweep(sweep_config(models), str(workdir))
    assert calls == []
    assert [r.status for r in runs] == ["cached", "cached", "failed", "failed"]
    assert {name: os.stat(workdir / name / "results.json").st_mtime_ns for name in ("a", "b")} == before
    rows = read_summary(workdir)
    assert rows["a"]["status"] == "cached" and float(rows["a"]["probe_test_accuracy"]) > 0.5


def test_changed_or_unfinished_models_run_again(first_sweep, tmp_path, monkeypatch):
    workdir, models, _ = first_sweep
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy)
    (copy / "a" / "DONE").unlink()  # as if interrupted
    changed = [models[0], f"b={DEMO} seed=1"]  # b: cosine similarity now
    calls = counting_runs(monkeypatch)
    runs = sweep.run_sweep(sweep_config(changed), str(copy))
    assert [r.status for r in runs] == ["ran", "ran"]
    assert calls == [str(copy / "a"), str(copy / "b")]
    assert json.loads((copy / "b" / "results.json").read_text())["zero_shot"]["similarity"] == "cosine"
    assert list(read_summary(copy)) == ["a", "b"]


def cli(*args: str) -> subprocess.CompletedProcess:
    flags = [f"--config.{key}={value}" for key, value in SMALL.items()]
    command = [sys.executable, "-m", "alignment_jax.sweep", "--config=configs/sweep.py", *flags, *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO)


def test_cli_exit_status_and_table(first_sweep, tmp_path):
    workdir, models, _ = first_sweep
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy)
    done = cli(f"--workdir={copy}", f"--config.models={models[0]},{models[2]}")
    assert done.returncode == 1, done.stderr
    assert "a: finished before with the same config; skipped" in done.stdout  # the CLI builds the same config
    assert "Sweep summary" in done.stdout and "missing failed: configs/no_such_config.py" in done.stdout
    assert "error: missing: configs/no_such_config.py: config file not found" in done.stderr
    assert "error: 1 of 2 models failed: missing" in done.stderr
    bad = cli(f"--workdir={tmp_path / 'bad'}", "--config.models=demo")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: models: 'demo' is not a model spec; write [NAME=]PATH.py[:ARG][ KEY=VALUE ...]"
    ]


def test_a_model_that_fails_before_running_shows_no_stale_numbers(tmp_path, monkeypatch):
    """A results.json left by an earlier config is not this spec's: a bad override shows an empty row."""
    workdir = tmp_path / "run"
    (workdir / "a").mkdir(parents=True)
    (workdir / "a" / "results.json").write_text(json.dumps({"zero_shot": {"accuracy": 0.5}}))
    calls = counting_runs(monkeypatch)
    (run,) = sweep.run_sweep(sweep_config([f"a={DEMO} seed=x"]), str(workdir))
    assert calls == [] and run.status == "failed" and "seed='x'" in run.error
    row = read_summary(workdir)["a"]
    assert row["status"] == "failed" and row["zero_shot_accuracy"] == ""


def test_models_with_layers_get_their_best_layer_and_depth_curves(tmp_path):
    local = f"{REPO / 'configs' / 'vit_b16.py'}:runlocal=True"
    config = sweep_config([f"deep={local} model.layers=block01", f"flat={DEMO}"])
    config.shared.world.update(n_objects=60, n_train=3000, n_test=600)
    runs = sweep.run_sweep(config, str(tmp_path))
    assert [r.status for r in runs] == ["ran", "ran"]
    summary = read_summary(tmp_path)
    entries = {e["layer"]: e for e in runs[0].results["layers"]}
    assert list(entries) == ["block01", "pre_logits"] and summary["deep"]["best_layer"] in entries  # B/16 stand-in
    best = entries[runs[0].results["best_layer"]]
    assert float(summary["deep"]["best_layer_test_accuracy"]) == best["probe"]["test_accuracy"]
    assert summary["flat"]["best_layer"] == "" and "layers" not in runs[1].results
    assert (tmp_path / "depth.png").stat().st_size > 0
