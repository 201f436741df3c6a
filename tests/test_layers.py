"""model.layers: naming and ordering the layers, their relative depth, and the report and sweep views of them."""

import csv

import pytest

from alignment_jax.errors import InputError
from alignment_jax.models.layers import relative_depths, resolve_layers, select_layers
from alignment_jax.report import depth, markdown, sweep_summary


def test_resolve_layers():
    assert resolve_layers("", 12, "pre_logits") == ("pre_logits",)
    every = resolve_layers("all", 12, "pre_logits")
    assert every == tuple(f"block{i:02d}" for i in range(12)) + ("pre_logits",)
    # network order whatever the order given; model.layer is always among them, once
    assert resolve_layers("pre_logits, block07,block03", 12, "encoded") == (
        "block03",
        "block07",
        "encoded",
        "pre_logits",
    )
    assert resolve_layers("block03,encoded", 12, "encoded") == ("block03", "encoded")
    assert resolve_layers("with_posemb,block00", 2, "logits") == ("with_posemb", "block00", "logits")
    with pytest.raises(InputError, match="'block12' is not an output of this 12-block model"):
        resolve_layers("block03,block12", 12, "pre_logits")
    with pytest.raises(InputError, match="'block3' is not an output"):
        resolve_layers("block3", 12, "pre_logits")
    with pytest.raises(InputError, match="an empty name"):
        resolve_layers("block03,,block04", 12, "pre_logits")


def test_relative_depths():
    assert relative_depths(("block00", "block03", "pre_logits"), 4) == {
        "block00": 0.25,
        "block03": 1.0,
        "pre_logits": 1.25,
    }
    # outputs after the last block follow it in steps of 1/depth, in network order; before the first: 0
    got = relative_depths(["logits", "with_posemb", "encoded", "block01"], 2)
    assert got == {"logits": 2.0, "with_posemb": 0.0, "encoded": 1.5, "block01": 1.0}
    assert list(got) == ["logits", "with_posemb", "encoded", "block01"]  # the caller's order is kept


def test_select_layers():
    run = ["block00", "block01", "pre_logits"]
    assert select_layers("", run, "transfer.layers") == []
    assert select_layers("all", run, "transfer.layers") == run
    assert select_layers("pre_logits,block00", run, "transfer.layers") == ["block00", "pre_logits"]
    with pytest.raises(InputError, match="transfer.layers: 'block05' is not among the run's layers"):
        select_layers("block05", run, "transfer.layers")


def results_with_layers(accuracies: list[float], best: str) -> dict:
    entries = [
        {
            "layer": f"block{i:02d}",
            "depth": (i + 1) / len(accuracies),
            "p": 8,
            "zero_shot": {"accuracy": 0.35, "ci95": [0.34, 0.36], "test_accuracy": 0.36, "test_ci95": [0.33, 0.39]},
            "probe": {"cv_accuracy": a - 0.01, "test_accuracy": a, "best_lambda": 1e-3, "cv_cross_entropy": 1 - a},
        }
        for i, a in enumerate(accuracies)
    ]
    return {"layers": entries, "best_layer": best, "zero_shot": {"accuracy": 0.35, "noise_ceiling": 0.9}}


def test_report_has_the_layer_table_and_the_depth_figure(tmp_path):
    results = results_with_layers([0.5, 0.7, 0.65], "block01")
    table = next(t for t in markdown.tables(results) if t.plot == "depth")
    assert [row[0] for row in table.rows] == ["block00", "block01 *", "block02"]
    assert table.rows[1][3] == "0.360 [0.330, 0.390]" and table.rows[1][5] == "0.700"
    written = markdown.write_report(results, str(tmp_path))
    assert written["plots"]["depth"] == "plots/depth.png" and (tmp_path / "plots" / "depth.png").stat().st_size
    assert "![Accuracy through the depth of the network](plots/depth.png)" in (tmp_path / "report.md").read_text()
    points = depth.curve(results)
    assert [p["probe"] for p in points] == [0.5, 0.7, 0.65] and points[0]["split"] == "test"
    assert not depth.plot(str(tmp_path / "none.png"), {"zero_shot": {"accuracy": 0.4}}, None)


def test_sweep_summary_has_each_models_best_layer_and_their_depth_curves(tmp_path):
    runs = [
        ("deep", results_with_layers([0.5, 0.6, 0.8, 0.75], "block02")),
        ("flat", {"probe": {"test_accuracy": 0.7}}),
    ]
    rows = [sweep_summary.row(name, "ran", results) for name, results in runs]
    sweep_summary.write_csv(str(tmp_path / "summary.csv"), rows)
    with open(tmp_path / "summary.csv") as f:
        written = {r["name"]: r for r in csv.DictReader(f)}
    assert written["deep"]["best_layer"] == "block02" and float(written["deep"]["best_layer_test_accuracy"]) == 0.8
    assert float(written["deep"]["best_layer_cv_accuracy"]) == pytest.approx(0.79)
    assert written["flat"]["best_layer"] == ""
    assert any("best layer" in line for line in sweep_summary.text_lines(rows))
    assert depth.plot_models(str(tmp_path / "depth.png"), runs) and (tmp_path / "depth.png").stat().st_size
    assert not depth.plot_models(str(tmp_path / "none.png"), runs[1:])
