"""The intervals and comparisons in the report's tables and figures, from hand-written results sections."""

from PIL import Image

from alignment_jax.report import markdown as report
from alignment_jax.report import plots

RESULTS = {
    "zero_shot": {
        "accuracy": 0.41, "ci95": [0.40, 0.42], "n_triplets": 1000, "similarity": "cosine", "test_accuracy": 0.45,
        "test_ci95": [0.43, 0.47],
        "noise_ceiling": {"accuracy": 0.673, "ci95": [0.66, 0.686], "source": "nc.npy", "n_sets": 1000,
                          "n_responses": 25000},
    },
    "probe": {
        "best_lambda": 0.001, "cv_accuracy": 0.52, "cv_accuracy_std": 0.011, "cv_accuracy_min": 0.51,
        "cv_accuracy_max": 0.532, "test_accuracy": 0.55, "test_accuracy_ci95": [0.53, 0.57],
        "test_zero_shot_transformed": 0.54, "test_zero_shot_transformed_ci95": [0.52, 0.56], "sweep": [],
    },
    "comparisons": [
        {"a": "probe", "b": "zero_shot", "n_triplets": 4000, "accuracy_a": 0.55, "accuracy_b": 0.45,
         "difference": 0.1, "ci95": [0.08, 0.12], "p_value": 3e-20, "a_only": 900, "b_only": 500},
        {"a": "probe", "b": "zero_shot_transformed", "n_triplets": 4000, "accuracy_a": 0.55, "accuracy_b": 0.54,
         "difference": 0.01, "ci95": [-0.004, 0.024], "p_value": 0.21, "a_only": 120, "b_only": 80},
    ],
    "transfer_triplets": [{"dataset": "odd", "n_triplets": 40, "accuracy": 0.5, "ci95": [0.35, 0.65],
                           "accuracy_transformed": 0.6, "ci95_transformed": [0.45, 0.75]}],
    "concepts": [
        {"concept": "Metal", "n_triplets": 10, "accuracy": 0.7, "accuracy_transformed": 0.8,
         "accuracy_ci95": [0.4, 1.0], "accuracy_transformed_ci95": [0.5, 1.0]},
        {"concept": "Royal", "n_triplets": 0, "accuracy": None, "accuracy_transformed": None, "accuracy_ci95": None,
         "accuracy_transformed_ci95": None},
    ],
}  # fmt: skip


def test_tables_show_every_interval():
    tables = {t.title: t for t in report.tables(RESULTS)}
    accuracy = tables["Odd-one-out accuracy (THINGS)"]
    assert accuracy.rows == [
        ("zero-shot (all)", "0.410", "[0.400, 0.420]"),
        ("zero-shot (test)", "0.450", "[0.430, 0.470]"),
        ("probe (CV)", "0.520", "folds [0.510, 0.532], sd 0.011"),
        ("probe (test)", "0.550", "[0.530, 0.570]"),
        ("transformed zero-shot (test)", "0.540", "[0.520, 0.560]"),
    ]
    assert "Noise ceiling: 0.673 [0.660, 0.686] (1000 repeated sets, 25000 responses, from nc.npy)." in accuracy.note
    compared = tables["Paired comparisons (test triplets)"]
    assert compared.rows == [
        ("probe - zero-shot", "+0.100", "[+0.080, +0.120]", "3.0e-20", "900 / 500"),
        ("probe - transformed zero-shot", "+0.010", "[-0.004, +0.024]", "0.210", "120 / 80"),
    ]
    assert "4,000 test triplets" in compared.note and "McNemar" in compared.note
    assert tables["Transfer: odd-one-out on other triplet datasets"].rows == [
        ("odd", "40", "0.500 [0.350, 0.650]", "0.600 [0.450, 0.750]")
    ]
    assert tables["Per-concept accuracy"].rows == [
        ("Metal", "10", "0.700 [0.400, 1.000]", "0.800 [0.500, 1.000]"),
        ("Royal", "0", "-", "-"),
    ]
    assert "test_zero_shot_transformed" not in [row[0] for row in tables["Probe"].rows]  # it is in the first table


def test_the_reason_for_no_noise_ceiling_is_in_the_note():
    note = "no noise ceiling: 1 set(s) of three objects asked twice or more in the train triplets, fewer than 30"
    zero_shot = dict(RESULTS["zero_shot"], noise_ceiling={"accuracy": None, "ci95": [None, None], "note": note})
    (accuracy,) = report.tables({"zero_shot": zero_shot})
    assert "Noise ceiling:" not in accuracy.note
    assert "No noise ceiling: 1 set(s) of three objects asked twice or more in the train triplets" in accuracy.note
    assert report.noise_ceiling({"zero_shot": zero_shot}) is None
    assert report.noise_ceiling({"zero_shot": {"noise_ceiling": 0.7}}) == 0.7  # results.json of older runs


def test_figures_with_intervals_and_noise_ceiling_bands(tmp_path):
    written = report.write_report(RESULTS, str(tmp_path))
    assert set(written["plots"]) == {"accuracy", "concepts"}
    models = [
        ("a", [("zero-shot", 0.45, (0.43, 0.47)), ("probe", 0.55, (0.53, 0.57))]),
        ("b", [("zero-shot", 0.40, None)]),
        ("c", []),
    ]
    for name, ceilings in (("shared", [(0.67, (0.66, 0.68))] * 3), ("own", [(0.67, (0.66, 0.68)), None, (0.7, None)])):
        plots.plot_model_intervals(str(tmp_path / f"{name}.png"), models, ceilings)
        with Image.open(tmp_path / f"{name}.png") as image:
            assert image.size[0] > 200 and image.size[1] > 200
