"""Paired comparisons end to end: within a run (results.json `comparisons`, DIR/decisions.npz, the intervals in
results.json and report.md) and across the models of a sweep (DIR/comparisons.csv and DIR/comparisons.png)."""

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from alignment_jax import sweep
from alignment_jax.config import files as config_files
from alignment_jax.data.synthetic import random_triplets
from alignment_jax.evaluation.decisions import load_decisions, save_decisions, triplets_sha256
from alignment_jax.report import comparisons

REPO = Path(__file__).resolve().parent.parent
SMALL = {  # a small world and one probe setting: seconds per model
    "shared.world.n_objects": "60",
    "shared.world.n_train": "3000",
    "shared.world.n_test": "1500",
    "shared.probe.lambdas": "(0.01,)",
    "shared.probe.folds": "2",
}


@pytest.fixture(scope="module")
def three_models(tmp_path_factory):
    """a and b: the same world (same test triplets), cosine and dot similarity; c: a's world scored on other
    test triplets (same shapes as a, so nothing is compiled again)."""
    root = tmp_path_factory.mktemp("comparisons")
    other_test = random_triplets(60, 1500, np.random.default_rng(7))
    np.save(root / "other_test.npy", other_test)
    config = config_files.load_config(str(REPO / "configs" / "sweep.py"))
    for key, value in SMALL.items():
        config_files.set_from_text(config, key, value, source="test")
    demo = f"{REPO / 'configs' / 'demo.py'}:features=True stages=world,zero_shot,probe,report"
    config.models = f"a={demo},b={demo} similarity=dot,c={demo} things.test={root / 'other_test.npy'}"
    runs = sweep.run_sweep(config, str(root / "run"))
    assert [r.status for r in runs] == ["ran", "ran", "ran"], [r.error for r in runs]
    return root / "run"


def read_rows(workdir: Path) -> list[dict[str, str]]:
    with open(workdir / "comparisons.csv", newline="") as f:
        return list(csv.DictReader(f))


def results(workdir: Path, name: str) -> dict:
    return json.loads((workdir / name / "results.json").read_text())


def test_sweep_compares_every_pair_on_shared_test_triplets(three_models):
    rows = read_rows(three_models)
    assert [(r["method"], r["model_a"], r["model_b"]) for r in rows] == [
        (method, a, b)
        for method in ("probe", "zero_shot_transformed", "zero_shot")
        for a, b in (("a", "b"), ("a", "c"), ("b", "c"))
    ]
    a, b = (load_decisions(str(three_models / name)) for name in "ab")
    for row in rows:
        if "c" in (row["model_a"], row["model_b"]):  # other test triplets: no numbers, and why
            assert row["note"].startswith("not comparable: scored on different test triplets")
            assert row["difference"] == row["p_value"] == row["ci95_low"] == ""
            continue
        first, second = a.correct[row["method"]], b.correct[row["method"]]
        a_only, b_only = int(np.sum(first & ~second)), int(np.sum(~first & second))
        assert (int(row["a_only"]), int(row["b_only"]), int(row["n_triplets"])) == (a_only, b_only, 1500)
        assert float(row["difference"]) == pytest.approx(first.mean() - second.mean(), abs=1e-12)
        expected_p = stats.binomtest(min(a_only, b_only), a_only + b_only).pvalue if a_only + b_only else 1.0
        assert float(row["p_value"]) == pytest.approx(expected_p, rel=1e-9)
        assert float(row["ci95_low"]) <= float(row["difference"]) <= float(row["ci95_high"])
        assert row["note"] == ""
    # the probe does not use the similarity setting: a and b make the same choices
    probe = rows[0]
    assert (probe["difference"], probe["ci95_low"], probe["ci95_high"], probe["p_value"]) == (
        "0.0",
        "0.0",
        "0.0",
        "1.0",
    )
    zero_shot = rows[6]
    test_accuracy = [results(three_models, name)["zero_shot"]["test_accuracy"] for name in "ab"]
    assert float(zero_shot["accuracy_a"]) == pytest.approx(test_accuracy[0], abs=1e-12)
    assert float(zero_shot["accuracy_b"]) == pytest.approx(test_accuracy[1], abs=1e-12)
    assert (three_models / "comparisons.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_each_run_keeps_its_test_outcomes_with_the_hash_of_its_test_triplets(three_models):
    a = load_decisions(str(three_models / "a"))
    test = np.load(three_models / "a" / "world" / "triplets" / "test_10.npy")
    assert a.triplets_sha256 == triplets_sha256(test) and a.n_triplets == len(test)
    assert set(a.correct) == {"probe", "zero_shot", "zero_shot_transformed"}
    section = results(three_models, "a")
    assert np.mean(a.correct["zero_shot"]) == pytest.approx(section["zero_shot"]["test_accuracy"], abs=1e-12)
    assert np.mean(a.correct["probe"]) == pytest.approx(section["probe"]["test_accuracy"], abs=1e-6)
    assert np.mean(a.correct["zero_shot_transformed"]) == pytest.approx(
        section["probe"]["test_zero_shot_transformed"], abs=1e-12
    )
    c = load_decisions(str(three_models / "c"))
    assert c.triplets_sha256 == triplets_sha256(np.load(three_models.parent / "other_test.npy"))


def test_a_run_records_intervals_and_its_paired_comparisons(three_models):
    section = results(three_models, "a")
    probe = section["probe"]
    folds = probe["cv_accuracy_folds"]
    assert len(folds) == 2 and np.mean(folds) == pytest.approx(probe["cv_accuracy"], abs=1e-6)
    assert (probe["cv_accuracy_min"], probe["cv_accuracy_max"]) == (min(folds), max(folds))
    assert probe["cv_accuracy_std"] == pytest.approx(np.std(folds, ddof=1))
    for key in ("test_accuracy", "test_zero_shot_transformed"):
        low, high = probe[f"{key}_ci95"]
        assert low < probe[key] < high and high - low < 0.1
    ceiling = section["zero_shot"]["noise_ceiling"]
    assert ceiling["source"].endswith(os.path.join("world", "triplets", "noise_ceiling.npy"))
    assert ceiling["ci95"][0] < ceiling["accuracy"] < ceiling["ci95"][1] and ceiling["n_responses"] == 1500
    rows = {(r["a"], r["b"]): r for r in section["comparisons"]}
    assert set(rows) == {
        ("probe", "zero_shot_transformed"),
        ("probe", "zero_shot"),
        ("zero_shot_transformed", "zero_shot"),
    }
    versus = rows[("probe", "zero_shot")]
    assert versus["difference"] == pytest.approx(
        probe["test_accuracy"] - section["zero_shot"]["test_accuracy"], abs=1e-6
    )
    assert versus["ci95"][0] <= versus["difference"] <= versus["ci95"][1]
    assert versus["p_value"] == pytest.approx(
        stats.binomtest(min(versus["a_only"], versus["b_only"]), versus["a_only"] + versus["b_only"]).pvalue, rel=1e-9
    )
    report = (three_models / "a" / "report.md").read_text()
    assert "## Paired comparisons (test triplets)" in report
    assert f"| probe (test) | {probe['test_accuracy']:.3f} | [{probe['test_accuracy_ci95'][0]:.3f}, " in report
    assert f"| probe (CV) | {probe['cv_accuracy']:.3f} | folds [" in report
    assert f"Noise ceiling: {ceiling['accuracy']:.3f} [{ceiling['ci95'][0]:.3f}, " in report


def test_models_without_outcomes_are_listed_not_compared(three_models, tmp_path):
    workdir = tmp_path / "run"
    for name in "ab":
        os.makedirs(workdir / name)
    a = load_decisions(str(three_models / "a"))
    test = np.load(three_models / "a" / "world" / "triplets" / "test_10.npy")
    save_decisions(str(workdir / "a"), test, zero_shot=a.correct["zero_shot"])  # b has no decisions.npz
    lines = comparisons.write(str(workdir), [("a", {}), ("b", {})], n_resamples=0, draw=False)
    (row,) = read_rows(workdir)
    assert row["method"] == "zero_shot" and row["note"].startswith("b: no readable decisions.npz")
    assert "  no readable decisions.npz (rerun them to compare them): b" in lines
