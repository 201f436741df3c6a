"""Figures and the Markdown report, from full and partial results."""

import json
import os

import pytest
from PIL import Image

from alignment_jax import atomic
from alignment_jax.config.base import base_config
from alignment_jax.report import markdown as report
from alignment_jax.report import plots
from alignment_jax.run_context import RunContext
from alignment_jax.stages import report as report_stage

FULL = {
    "zero_shot": {"accuracy": 0.41, "ci95": [0.4, 0.42], "n_triplets": 1000, "similarity": "cosine",
                  "noise_ceiling": 0.67},
    "probe": {"best_lambda": 0.001, "cv_accuracy": 0.52, "test_accuracy": 0.55, "cv_cross_entropy": 0.98, "sweep": []},
    "transfer": [
        {"dataset": "cichy", "kernel": "cosine", "spearman": 0.3, "pearson": 0.31, "spearman_transformed": 0.5,
         "pearson_transformed": 0.52, "n_stimuli": 118},
        {"dataset": "king_set1", "kernel": "pearson", "spearman": 0.2, "pearson": 0.25, "spearman_transformed": None,
         "pearson_transformed": None, "n_stimuli": 72, "spearman_ci95": [0.1, 0.3]},
    ],
    "transfer_triplets": [{"dataset": "odd", "n_triplets": 40, "accuracy": 0.5, "accuracy_transformed": 0.6}],
    "concepts": [
        {"concept": "Metal", "n_triplets": 10, "accuracy": 0.7, "accuracy_transformed": 0.8},
        {"concept": "Food", "n_triplets": 12, "accuracy": 0.9, "accuracy_transformed": 0.95},
        {"concept": "Royal", "n_triplets": 0, "accuracy": None, "accuracy_transformed": None},
        {"concept": "Plant-related", "n_triplets": 5, "accuracy": 0.4, "accuracy_transformed": 0.6},
    ],
}  # fmt: skip


def _png_size(path):
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        return image.size


def test_each_plot_writes_a_png(tmp_path):
    plots.plot_accuracy(str(tmp_path / "a.png"), [("zero-shot", 0.4, (0.38, 0.42)), ("probe", 0.5, None)], 0.67)
    plots.plot_accuracy(str(tmp_path / "b.png"), [("zero-shot", 0.4, None)])  # no noise ceiling
    plots.plot_concepts(str(tmp_path / "sub" / "c.png"), FULL["concepts"])
    plots.plot_rsa(str(tmp_path / "d.png"), FULL["transfer"])
    for name in ("a.png", "b.png", "sub/c.png", "d.png"):
        width, height = _png_size(tmp_path / name)
        assert width > 100 and height > 100
    assert not [f for f in os.listdir(tmp_path) if atomic.TEMPORARY in f]  # atomic: no leftovers


def test_concept_plot_sorted_by_accuracy(tmp_path, monkeypatch):
    drawn = {}
    real_add_subplot = plots.Figure.add_subplot

    def spy_add_subplot(fig, *args, **kwargs):
        ax = real_add_subplot(fig, *args, **kwargs)
        original = ax.barh

        def barh(y, width, *a, **k):
            drawn.setdefault(k.get("label"), list(width))
            return original(y, width, *a, **k)

        ax.barh = barh
        return ax

    monkeypatch.setattr(plots.Figure, "add_subplot", spy_add_subplot)
    plots.plot_concepts(str(tmp_path / "c.png"), FULL["concepts"])
    assert drawn["zero-shot"] == [0.4, 0.7, 0.9]  # sorted; the empty concept left out
    assert drawn["transformed"] == [0.6, 0.8, 0.95]


def test_report_with_every_section(tmp_path):
    written = report.write_report(FULL, str(tmp_path))
    assert set(written["plots"]) == {"accuracy", "rsa", "concepts"}
    for relative in written["plots"].values():
        assert _png_size(tmp_path / relative)
    text = (tmp_path / "report.md").read_text()
    for relative in written["plots"].values():
        assert f"]({relative})" in text
    assert "Noise ceiling: 0.670" in text and "Chance: 0.333" in text
    assert "| cichy | cosine | 0.300 | 0.500 | 0.310 | 0.520 |" in text
    assert "| king_set1 | pearson | 0.200 [0.100, 0.300] | - |" in text
    assert "| odd | 40 | 0.500 | 0.600 |" in text
    concept_lines = [line for line in text.splitlines() if line.startswith(("| Metal", "| Food", "| Plant", "| Royal"))]
    assert [line.split(" | ")[0] for line in concept_lines] == ["| Food", "| Metal", "| Plant-related", "| Royal"]
    assert "| probe (test) | 0.550 | - |" in text and "| zero-shot | 0.410 | [0.400, 0.420] |" in text


@pytest.mark.parametrize(
    "sections, plots_expected, absent",
    [
        ((), set(), "## "),
        (("zero_shot",), {"accuracy"}, "probe (test)"),
        (("probe",), {"accuracy"}, "zero-shot |"),
        (("transfer",), {"rsa"}, "Per-concept"),
        (("concepts",), {"concepts"}, "Odd-one-out accuracy"),
    ],
)
def test_report_with_partial_results(tmp_path, sections, plots_expected, absent):
    results = {k: FULL[k] for k in sections}
    written = report.write_report(results, str(tmp_path))
    assert set(written["plots"]) == plots_expected
    text = (tmp_path / "report.md").read_text()
    assert absent not in text
    if not sections:
        assert "No results yet" in text


def test_zero_shot_without_noise_ceiling_or_ci():
    (table,) = report.tables({"zero_shot": {"accuracy": 0.5, "ci95": [float("nan")] * 2, "similarity": "dot"}})
    assert "Noise ceiling" not in table.note and table.rows == [("zero-shot", "0.500", "-")]


def test_zero_shot_on_the_test_split_gets_its_own_row_and_bar(tmp_path):
    zero_shot = dict(FULL["zero_shot"], test_accuracy=0.45, test_ci95=[0.43, 0.47])
    results = {"zero_shot": zero_shot, "probe": FULL["probe"]}
    (accuracy, _) = report.tables(results)
    assert [row[0] for row in accuracy.rows] == ["zero-shot (all)", "zero-shot (test)", "probe (CV)", "probe (test)"]
    assert accuracy.rows[1] == ("zero-shot (test)", "0.450", "[0.430, 0.470]")
    report.write_report(results, str(tmp_path))
    assert _png_size(tmp_path / "plots" / "accuracy.png")


def test_text_table_is_aligned():
    table = report.Table("T", ("name", "value"), [("a", "1.000"), ("longer", "22.5")])
    lines = report.text_table(table)
    assert lines[0] == "T"
    assert len({len(line) for line in lines[1:]}) == 1  # every row as wide as the header
    assert lines[3].startswith("a     ") and lines[3].endswith("1.000")


def test_report_stage_logs_tables_and_respects_plots_flag(tmp_path, capsys):
    config = base_config()
    workdir = tmp_path / "run"
    workdir.mkdir()
    stale = dict(FULL, report={"markdown": "old.md"})
    (workdir / "results.json").write_text(json.dumps({k: stale[k] for k in ("zero_shot", "concepts", "report")}))
    ctx = RunContext(config, str(workdir))
    assert report_stage.has_inputs(config)
    written = report_stage.run(ctx)
    assert written == {
        "markdown": "report.md",
        "plots": {"accuracy": os.path.join("plots", "accuracy.png"), "concepts": os.path.join("plots", "concepts.png")},
    }
    logged = "\n".join(ctx.summary)
    assert "Per-concept accuracy" in logged and "Food" in logged and "Odd-one-out accuracy" in logged
    assert "Transfer" not in logged and "old.md" not in (workdir / "report.md").read_text()
    config.report.plots = False
    for f in (workdir / "plots").iterdir():
        f.unlink()
    assert report_stage.run(ctx)["plots"] == {}
    assert not list((workdir / "plots").iterdir()) and "![" not in (workdir / "report.md").read_text()


def test_fmt_numbers():
    assert report._fmt(0.25) == "0.250" and report._fmt(1e-5) == "1.0e-05"
    assert report._fmt(None) == "-" and report._fmt(float("nan")) == "nan" and report._fmt(3) == "3"


def test_every_figure_has_its_title(tmp_path, monkeypatch):
    """Each figure carries a title; on the demo world's results it says the data are synthetic, as the report does."""
    titles = []
    real_text = plots.Figure.text

    def spy_text(fig, x, y, text, *args, **kwargs):
        if kwargs.get("fontweight") == "bold":
            titles.append(text)
        return real_text(fig, x, y, text, *args, **kwargs)

    monkeypatch.setattr(plots.Figure, "text", spy_text)
    report.write_report(FULL, str(tmp_path / "real"))
    assert sorted(titles) == [
        "Odd-one-out accuracy",
        "Odd-one-out accuracy per concept",
        "RSA with human similarity judgments",
    ]
    assert "synthetic" not in (tmp_path / "real" / "report.md").read_text()
    titles.clear()
    report.write_report({**FULL, "world": {"root": "w", "n_objects": 3}}, str(tmp_path / "demo"))
    assert len(titles) == 3 and all(t.endswith("(synthetic demo data)") for t in titles)
    text = (tmp_path / "demo" / "report.md").read_text()
    assert "> These numbers come from the bundled synthetic demo world" in text.split("## ")[0]


def test_the_probe_table_uses_readable_names():
    probe = {**FULL["probe"], "objective": "glocal", "best_alpha": 0.25, "best_tau": 0.1, "cv_loss": 1.5}
    table = next(t for t in report.tables({**FULL, "probe": probe}) if t.title == "Probe")
    names = [row[0] for row in table.rows]
    assert names == [
        "objective",
        "selected lambda",
        "selected alpha (weight of the local term)",
        "selected tau (temperature)",
        "validation cross-entropy (mean over folds)",
        "validation loss, triplet + local (mean over folds)",
    ]
    assert not [name for name in names if "_" in name]
