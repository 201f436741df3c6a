"""The Levels reader (alignment_jax/data/levels.py) on release-format trial files these tests write, and its
metrics (alignment_jax/evaluation/levels.py) against direct numpy computations."""

import json
import math
import os
import re

import numpy as np
import pytest
from scipy import optimize, stats

from alignment_jax.data.levels import LEVEL_NAMES, load_levels
from alignment_jax.errors import InputError
from alignment_jax.evaluation import levels as metrics

A = [f"n01440764_{i}.JPEG" for i in range(1, 5)]  # one WordNet id
B = [f"n02102040_{i}.JPEG" for i in range(1, 4)]
C = ["n03000134_7.JPEG"]


def trial(images, selected, rt=900.0, kind="exp_trial", subject="s1", prefix="stimuli/imgs/"):
    """One row in the release's format; `selected` is an index into images or a literal string."""
    row = {
        "subject_id": subject,
        "rt": rt,
        "image1Path": prefix + images[0],
        "image2Path": prefix + images[1],
        "image3Path": prefix + images[2],
        "selected_image": prefix + images[selected] if isinstance(selected, int) else selected,
        "exp_trial_type": kind,
        "trial_index": 7,
    }
    return row


def write_lines(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for row in rows:
            f.write((row if isinstance(row, str) else json.dumps(row)) + "\n")


def write_images(folder, names):
    os.makedirs(folder, exist_ok=True)
    for name in names:
        with open(os.path.join(folder, name), "wb") as f:
            f.write(b"\xff\xd8 not decoded here")


@pytest.fixture
def release(tmp_path):
    """A release folder: two trial files (one in a subfolder), every kind of row that must be dropped."""
    within = [A[0], A[1], A[2]]  # level 1
    border = [A[3], B[0], A[0]]  # level 2 (two ids), listed unsorted
    between = [A[1], B[1], C[0]]  # level 3
    sparse = [B[0], B[1], B[2]]  # only 3 answered: dropped (too few responses)
    many = [A[2], B[2], C[0]]  # 7 kept responses: sampled down to 5
    first = [
        *(trial(within, s, rt=rt) for s, rt in ((0, 800), (0, 1200), (0, 950), (1, 2000))),
        trial(within, 2, rt=20_000),  # slow
        trial(within, "No image selected", rt=10_000),  # no selection
        *(trial(border, s) for s in (1, 1, 2, 0, 1)),
        trial(border, 1, kind="training_trial"),
        trial(border, 1, kind="catch_trial"),
        {"exp_trial_type": "break", "duration": 30},  # other fields, no image fields
        {"trial_type": "instructions"},  # no type: another type
        "",
    ]
    second = [
        *(trial(between, s) for s in (0, 0, 1, 2)),
        *(trial(sparse, s) for s in (0, 1, 2)),
        trial(sparse, 0, rt=11_000),
        *(trial(many, s) for s in (0, 0, 0, 1, 1, 2, 2)),
    ]
    write_lines(str(tmp_path / "levels" / "part1.json"), first)
    write_lines(str(tmp_path / "levels" / "sub" / "part2.json"), second)
    write_images(str(tmp_path / "levels" / "images" / "a"), [*A, C[0]])
    write_images(str(tmp_path / "levels" / "images" / "b"), B)
    return str(tmp_path / "levels")


def test_reader_keeps_counts_and_drops_each_rule(release):
    levels = load_levels(release)
    names = list(levels.images)
    assert names == sorted(names) and len(names) == len(set(names))
    assert levels.n_trials == 4 + 2 + 5 + 2 + 2 + 4 + 4 + 7
    assert levels.dropped_trials == {
        "training_trial": 1, "catch_trial": 1, "break": 1, "other_type": 1, "no_selection": 1, "slow": 2,
        "too_few_responses": 3, "over_max_responses": 2,
    }  # fmt: skip
    assert levels.dropped_triplets == {"no_selection": 0, "slow": 0, "too_few_responses": 1}
    assert levels.n_triplets == 4 and levels.n_responses == 4 + 5 + 4 + 5
    by_names = {tuple(names[i] for i in row): k for k, row in enumerate(levels.triplets)}
    assert all(list(key) == sorted(key) for key in by_names)
    within = by_names[(A[0], A[1], A[2])]
    assert levels.counts[within].tolist() == [3, 1, 0] and levels.level[within] == 1
    np.testing.assert_allclose(levels.mean_log_rt[within], np.mean(np.log([0.8, 1.2, 0.95, 2.0])))
    border = by_names[tuple(sorted([A[3], B[0], A[0]]))]  # sorted: A0, A3, B0; choices B0 x3, A0, A3
    assert levels.counts[border].tolist() == [1, 1, 3] and levels.level[border] == 2
    assert levels.level[by_names[(A[1], B[1], C[0])]] == 3
    many = by_names[(A[2], B[2], C[0])]
    assert levels.counts[many].sum() == 5 and (levels.counts[many] <= [3, 2, 2]).all()
    assert [os.path.basename(p) for p in levels.image_paths] == names
    assert set(LEVEL_NAMES.values()) == {"within_class", "class_border", "between_class"}


def test_sample_of_too_many_responses_is_seeded(release):
    one = load_levels(release, seed=3)
    again = load_levels(release, seed=3)
    np.testing.assert_array_equal(one.counts, again.counts)
    draws = {tuple(load_levels(release, seed=s).counts.ravel()) for s in range(12)}
    assert len(draws) > 1  # the sample depends on the seed
    relaxed = load_levels(release, min_responses=3, max_responses=7, max_rt_ms=30_000)
    assert relaxed.n_triplets == 5 and relaxed.dropped_trials["slow"] == 0


@pytest.mark.parametrize(
    "rows, message",
    [
        (["{not json"], "line 1: not JSON"),
        (["[1, 2]"], "not an object"),
        ([{k: v for k, v in trial(A[:3], 0).items() if k != "rt"}], "exp_trial row without rt"),
        ([{k: v for k, v in trial(A[:3], 0).items() if k != "image2Path"}], "without image2Path"),
        ([trial(A[:3], 0, kind="break")], "no exp_trial rows"),
        ([trial(A[:3], "No image selected")], "no triplet left: none of the 1 exp_trial rows selects"),
        ([trial(A[:3], 0, rt=12_000)], "rt > levels.max_rt_ms=10000"),
        ([trial(A[:3], 0)] * 3, "levels.min_responses=4"),
        ([trial(A[:3], 0, rt="fast")], "rt='fast'"),
    ],
)
def test_bad_trial_files_get_one_line(tmp_path, rows, message):
    write_lines(str(tmp_path / "t.json"), rows)
    with pytest.raises(InputError, match=message.replace("[", r"\[")):
        load_levels(str(tmp_path), images=None)


def test_missing_trial_files_and_images(tmp_path, release):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no trial files"):
        load_levels(str(tmp_path / "empty"))
    os.remove(os.path.join(release, "images", "a", A[1]))
    with pytest.raises(InputError, match=f"missing, e.g. {A[1]}"):
        load_levels(release)
    assert load_levels(release, images=None).image_paths == ()


def direct_metrics(z, counts, rt, temperature):
    """The metrics by explicit loops over triplets and responses (the definitions, not the code's)."""
    hits = total = 0
    ceiling = []
    for row_z, row_c in zip(z, counts, strict=True):
        choice = int(np.argmax(row_z))
        hits += row_c[choice]
        total += row_c.sum()
        credit = 0.0
        for j in range(3):
            for _ in range(row_c[j]):
                others = row_c.copy()
                others[j] -= 1
                best = np.flatnonzero(others == others.max())
                credit += (1.0 / len(best)) if j in best else 0.0
        ceiling.append(credit / row_c.sum())
    p = np.exp(z / temperature) / np.exp(z / temperature).sum(axis=1, keepdims=True)
    nll = -(counts * np.log(p)).sum() / counts.sum()
    model_h = -(p * np.log(p)).sum(axis=1)
    q = counts / counts.sum(axis=1, keepdims=True)
    human_h = -np.array([sum(x * math.log(x) for x in row if x > 0) for row in q])
    return {
        "accuracy": hits / total,
        "noise_ceiling": float(np.mean(ceiling)),
        "nll": nll,
        "entropy_spearman": stats.spearmanr(model_h, human_h).statistic,
        "rt_spearman": stats.spearmanr(model_h, rt).statistic,
    }


def synthetic(t=400, seed=0, beta=6.0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(t, 3))
    p = np.exp(beta * z) / np.exp(beta * z).sum(axis=1, keepdims=True)
    n = rng.integers(4, 6, size=t)
    counts = np.stack([rng.multinomial(k, row) for k, row in zip(n, p, strict=True)])
    rt = rng.normal(size=t) - 0.3 * (counts.max(axis=1) / n)
    return z, counts, rt


def test_metrics_agree_with_direct_computation():
    z, counts, rt = synthetic()
    out = metrics.subset_metrics(z, counts, rt, bootstrap=500, seed=1)
    expected = direct_metrics(z, counts, rt, out["temperature"])
    for key, value in expected.items():
        assert out[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert out["n_triplets"] == len(z) and out["n_responses"] == counts.sum()
    low, high = out["ci95"]
    assert low < out["accuracy"] < high and high - low < 0.15
    assert out["temperature"] == pytest.approx(1 / 6.0, rel=0.3)  # the generating temperature
    assert out["accuracy"] < out["noise_ceiling"] + 0.05


def test_bootstrap_interval_is_the_triplet_bootstrap():
    z, counts, _ = synthetic(t=300, seed=2)
    hits = np.take_along_axis(counts, np.argmax(z, axis=1)[:, None], axis=1)[:, 0]
    n = counts.sum(axis=1)
    ci = metrics.accuracy_ci(hits, n, 4000, seed=0)
    rng = np.random.default_rng(5)
    index = rng.integers(0, len(hits), size=(4000, len(hits)))
    direct = np.percentile(hits[index].sum(axis=1) / n[index].sum(axis=1), [2.5, 97.5])
    np.testing.assert_allclose(ci, direct, atol=0.01)
    assert np.isnan(metrics.accuracy_ci(hits, n, 0)).all()


def test_temperature_is_the_minimum():
    z, counts, _ = synthetic(t=500, seed=3, beta=2.0)
    fitted = metrics.fit_temperature(z, counts)
    best = metrics.nll(z, counts, fitted)
    for factor in (1 - 1e-3, 1 + 1e-3, 0.5, 2.0):
        assert metrics.nll(z, counts, fitted * factor) > best
    reference = optimize.minimize_scalar(
        lambda log_t: metrics.nll(z, counts, math.exp(log_t)), bounds=(-8, 8), method="bounded",
        options={"xatol": 1e-10},
    )  # fmt: skip
    assert fitted == pytest.approx(math.exp(reference.x), rel=1e-4)


def test_temperature_stops_where_the_slope_is_zero(monkeypatch):
    """A slope of exactly 0.0 (float64 rounding gives it) ends the search there, not at the bracket's middle (the
    demo's between_class temperature moved 3% on a transform 2e-7 away)."""
    z, counts, _ = synthetic(t=500, seed=3, beta=2.0)
    fitted = metrics.fit_temperature(z, counts)
    exact = metrics._slope_and_curvature

    def rounded(z, counts, beta):  # the exact slope rounded to 0.0 near the minimum
        slope, curvature = exact(z, counts, beta)
        return (0.0 if abs(slope) < 1e-9 else slope), curvature

    monkeypatch.setattr(metrics, "_slope_and_curvature", rounded)
    assert metrics.fit_temperature(z, counts) == pytest.approx(fitted, rel=1e-6)


def test_temperature_edge_cases():
    z = np.array([[0.0, 1.0, 2.0], [2.0, 0.0, 1.0], [1.0, 2.0, 0.0]])
    against = np.array([[4, 0, 0], [0, 4, 0], [0, 0, 4]])  # always the model's least likely image
    assert metrics.fit_temperature(z, against) is None
    assert metrics.nll(z, against, None) == pytest.approx(math.log(3))
    assert metrics.subset_metrics(z, against, np.zeros(3), bootstrap=0)["temperature"] is None


def test_noise_ceiling_credits_ties():
    # By hand: [2, 1, 1]: leaving out a choice of 0 leaves [1, 1, 1], a three-way tie (1/3 each); leaving out a
    # choice of 1 leaves [2, 0, 1] (a miss). [2, 2, 0]: leaving either out leaves the other choice ahead.
    assert metrics.noise_ceiling(np.array([[4, 0, 0]])) == 1.0
    assert metrics.noise_ceiling(np.array([[3, 1, 0]])) == pytest.approx(3 / 4)  # the 1 misses; each 3 hits
    assert metrics.noise_ceiling(np.array([[2, 1, 1]])) == pytest.approx((2 / 3 + 0 + 0) / 4)
    assert metrics.noise_ceiling(np.array([[2, 2, 0]])) == pytest.approx(0.0)
    assert metrics.noise_ceiling(np.array([[3, 1, 1]])) == pytest.approx(3 / 5)  # a 0 left out: [2, 1, 1], a hit
    assert metrics.noise_ceiling(np.array([[3, 2, 0]])) == pytest.approx(3 * 0.5 / 5)  # a 0 left out: [2, 2, 0]
    assert metrics.noise_ceiling(np.array([[4, 0, 0], [2, 1, 1]])) == pytest.approx((1 + 1 / 6) / 2)


def test_levels_metrics_per_level(release):
    levels = load_levels(release, images=None)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(len(levels.images), 16)).astype(np.float32)
    out = metrics.levels_metrics(features, levels, "cosine", bootstrap=100)
    assert list(out) == ["within_class", "class_border", "between_class", "all"]
    assert all(set(section) == set(metrics.METRICS) for section in out.values())
    x = features / np.linalg.norm(features, axis=1, keepdims=True)
    i, j, k = levels.triplets.T
    z = np.stack([(x[j] * x[k]).sum(1), (x[i] * x[k]).sum(1), (x[i] * x[j]).sum(1)], axis=1)
    hits = levels.counts[np.arange(len(z)), z.argmax(axis=1)]
    assert out["all"]["accuracy"] == pytest.approx(hits.sum() / levels.counts.sum(), rel=1e-6)
    assert out["all"]["n_triplets"] == 4 and out["within_class"]["n_triplets"] == 1
    assert out["within_class"]["entropy_spearman"] is None  # one triplet: no correlation
    json.dumps(out, allow_nan=False)
    curves = metrics.entropy_curves(features, levels, out)
    assert sum(curves["all"]["n_triplets"]) == 4


def test_the_top_level_api_reads_levels_and_checks_its_inputs(release):
    import alignment_jax as aj

    levels = aj.load_levels(release, images=None)
    assert levels.triplets.shape == load_levels(release, images=None).triplets.shape
    features = np.random.default_rng(1).normal(size=(len(levels.images), 8)).astype(np.float32)
    assert aj.levels_metrics(features, levels, bootstrap=0) == metrics.levels_metrics(features, levels, bootstrap=0)
    bad = features.copy()
    bad[2, 3] = np.nan
    cases = [
        (lambda: aj.levels_metrics(bad, levels), "NaN or inf in features (row 2, column 3)"),
        (lambda: aj.levels_metrics(features[:-1], levels), f"{len(levels.images) - 1} feature rows but"),
        (lambda: aj.levels_metrics(features, levels.triplets), "read it with load_levels(root)"),
        (lambda: aj.levels_metrics(features, levels, "l1"), "similarity='l1' is not one of"),
        (lambda: aj.load_levels(release, min_responses=0), "min_responses=0: must be an integer >= 1"),
        (lambda: aj.load_levels(release, min_responses=4, max_responses=3), "max_responses=3: must be an integer >= 4"),
        (lambda: aj.load_levels(release, max_rt_ms=-1), "max_rt_ms=-1: must be a number > 0"),
        (lambda: aj.load_levels(""), "give the folder of the Levels trial files"),
    ]
    for call, message in cases:
        with pytest.raises(aj.InputError, match=re.escape(message)):
            call()
