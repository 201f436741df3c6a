"""RSA: correlations against scipy, kernels, sign handling, bootstrap, and transfer of a planted transform."""

import json
import os

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance

from alignment_jax.config.base import base_config
from alignment_jax.data import rsm_datasets as rd
from alignment_jax.errors import InputError
from alignment_jax.evaluation import rsa
from alignment_jax.probing.transform import Transform
from alignment_jax.run_context import RunContext
from alignment_jax.stages import transfer


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correlations_equal_scipy(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=200), rng.normal(size=200) + 0.3 * np.arange(200) / 200
    assert rsa.pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    assert rsa.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
    tied_x, tied_y = rng.integers(0, 5, size=200), rng.integers(0, 7, size=200)  # many ties
    assert rsa.spearman(tied_x, tied_y) == pytest.approx(stats.spearmanr(tied_x, tied_y)[0], abs=1e-12)


def test_correlate_rsms_uses_upper_triangle_in_pdist_order():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(9, 4))
    condensed = distance.pdist(points)  # MATLAB/scipy pair order
    np.testing.assert_array_equal(rsa.upper_triangle(distance.squareform(condensed)), condensed)
    model = rsa.model_rsm(rng.normal(size=(9, 5)))
    human = distance.squareform(condensed)
    human[np.tril_indices(9, k=-1)] = 1e6  # the lower triangle and diagonal must not matter
    np.fill_diagonal(human, -1e6)
    got = rsa.correlate_rsms(model, human)
    assert got["spearman"] == pytest.approx(stats.spearmanr(rsa.upper_triangle(model), condensed)[0])
    assert got["pearson"] == pytest.approx(stats.pearsonr(rsa.upper_triangle(model), condensed)[0])


def test_kernels_match_scipy_and_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(7, 6)) + 2.0
    np.testing.assert_allclose(rsa.model_rsm(x, "cosine"), 1 - distance.cdist(x, x, "cosine"), atol=1e-12)
    np.testing.assert_allclose(rsa.model_rsm(x, "pearson"), np.corrcoef(x), atol=1e-12)
    assert not np.allclose(rsa.model_rsm(x, "cosine"), rsa.model_rsm(x, "pearson"))
    with pytest.raises(InputError, match="transfer.kernels"):
        rsa.model_rsm(x, "spearman")


def test_dissimilarities_are_negated_not_misread():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 3))
    dissimilarity = distance.squareform(distance.pdist(x, "cosine"))  # humans judged 1 - cos
    model = rsa.model_rsm(x, "cosine")
    right = rsa.correlate_rsms(model, rsa.as_similarity(dissimilarity, "dissimilarity"))
    wrong = rsa.correlate_rsms(model, rsa.as_similarity(dissimilarity, "similarity"))
    assert right["pearson"] == pytest.approx(1.0) and right["spearman"] == pytest.approx(1.0)
    assert wrong["pearson"] == pytest.approx(-1.0)


def test_bootstrap_matches_a_plain_loop_over_resamples():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(10, 4))
    model = rsa.model_rsm(x)
    human = model + rng.normal(scale=0.3, size=model.shape)
    n_resamples, seed = 7, 5
    got = rsa.bootstrap_ci(model, human, n_resamples, seed, chunk=3)
    draws = np.random.default_rng(seed).integers(0, 10, size=(n_resamples, 10))  # same draws, in one go
    spearmans, pearsons = [], []
    for index in draws:
        a, b = np.triu_indices(10, k=1)
        keep = index[a] != index[b]
        i, j = np.minimum(index[a], index[b]), np.maximum(index[a], index[b])  # the upper triangle
        mx, hy = model[i, j][keep], human[i, j][keep]
        spearmans.append(stats.spearmanr(mx, hy)[0])
        pearsons.append(stats.pearsonr(mx, hy)[0])
    np.testing.assert_allclose(got["spearman"], np.percentile(spearmans, [2.5, 97.5]), atol=1e-12)
    np.testing.assert_allclose(got["pearson"], np.percentile(pearsons, [2.5, 97.5]), atol=1e-12)


def test_bootstrap_reads_only_the_upper_triangle():
    """A human matrix given as its upper triangle (zeros or NaN below) has the CI of the full symmetric one."""
    rng = np.random.default_rng(6)
    model = rsa.model_rsm(rng.normal(size=(12, 3)))
    full = model + rng.normal(scale=0.3, size=model.shape)
    full = (full + full.T) / 2
    expected = rsa.bootstrap_ci(model, full, 100, seed=1)
    for below in (0.0, np.nan):
        upper_only = full.copy()
        upper_only[np.tril_indices(12, k=-1)] = below
        model_upper = model.copy()
        model_upper[np.tril_indices(12, k=-1)] = -5.0
        for name, interval in rsa.bootstrap_ci(model_upper, upper_only, 100, seed=1).items():
            np.testing.assert_allclose(interval, expected[name], atol=1e-12)


def test_transfer_rows_have_no_nan_in_intervals(tmp_path):
    """A constant model RSM: the correlations and their intervals are None, never NaN (results.json is JSON)."""
    rng = np.random.default_rng(7)
    human = rd.RSMDataset("mine", rsa.model_rsm(rng.normal(size=(8, 3))), "similarity", (), "test")
    rows = transfer.rsa_rows_for(human, np.ones((8, 4)), None, ["cosine"], bootstrap=20)
    assert rows[0]["spearman"] is None and rows[0]["spearman_ci95"] == [None, None]
    assert rows[0]["pearson_ci95"] == [None, None]
    json.loads(json.dumps(rows[0], allow_nan=False))


def test_bootstrap_interval_covers_the_estimate_and_shrinks_with_more_stimuli():
    rng = np.random.default_rng(4)

    def width(n):
        z = rng.normal(size=(n, 3))
        model = rsa.model_rsm(z + rng.normal(scale=0.8, size=z.shape))
        lo, hi = rsa.bootstrap_ci(model, rsa.model_rsm(z), 200, seed=0)["spearman"]
        assert lo <= rsa.correlate_rsms(model, rsa.model_rsm(z))["spearman"] <= hi
        return hi - lo

    assert width(80) < width(15)


def _planted_world(rng, n, mixing, nuisance_mixing):
    """Objects with a human latent z (n, 3); features (n, 12) = z mixed into 12 dims, plus a larger
    nuisance latent (n, 6) mixed in the same way for every dataset of the world, plus a little noise."""
    z = rng.normal(size=(n, 3))
    nuisance = 3.0 * rng.normal(size=(n, 6)) @ nuisance_mixing
    return z, z @ mixing + nuisance + 0.05 * rng.normal(size=(n, 12))


def test_recovered_planted_transform_improves_rsa_on_held_out_dataset(tmp_path):
    """THINGS-like training objects give a transform (least squares onto the human latent); a new dataset
    from the same world, with human dissimilarities, must show higher RSA after it (through the stage)."""
    rng = np.random.default_rng(0)
    mixing, nuisance_mixing = rng.normal(size=(3, 12)), rng.normal(size=(6, 12))
    z_train, x_train = _planted_world(rng, 400, mixing, nuisance_mixing)
    mean, std = x_train.mean(), x_train.std()
    solution, *_ = np.linalg.lstsq((x_train - mean) / std, z_train, rcond=None)  # (12, 3)
    weights = np.zeros((12, 12))
    weights[:, :3] = solution
    workdir = tmp_path / "run"
    Transform(weights, np.zeros(12), mean, std).save_npz(workdir / "transform.npz")

    z_new, x_new = _planted_world(rng, 40, mixing, nuisance_mixing)
    data = tmp_path / "held_out"
    data.mkdir()
    np.save(data / "dissimilarity.npy", distance.squareform(distance.pdist(z_new, "cosine")))
    np.save(tmp_path / "held_out_features.npy", x_new.astype(np.float32))

    config = base_config()
    config.transfer.datasets = f"rsm:{data}"
    config.transfer.features = f"held_out:{tmp_path / 'held_out_features.npy'}"
    rows = transfer.run(RunContext(config, str(workdir)))
    assert [(r["dataset"], r["kernel"]) for r in rows] == [("held_out", "cosine"), ("held_out", "pearson")]
    for row in rows:
        assert row["spearman_transformed"] > row["spearman"] + 0.3, row
        assert row["pearson_transformed"] > row["pearson"] + 0.3, row
        assert row["spearman_transformed"] > 0.8
        assert row["n_stimuli"] == 40


def test_transfer_stage_without_transform_bootstrap_and_triplets(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(15, 4)).astype(np.float32)
    rsm_dir, triplet_dir, feature_dir = tmp_path / "mine", tmp_path / "odd", tmp_path / "features"
    for d in (rsm_dir, triplet_dir, feature_dir):
        d.mkdir()
    np.save(rsm_dir / "similarity.npy", rsa.model_rsm(x))
    np.save(feature_dir / "mine.npy", x)
    triplets = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]])
    np.save(triplet_dir / "triplets.npy", triplets)
    np.save(feature_dir / "odd.npy", x)
    config = base_config()
    config.transfer.datasets = f"rsm:{rsm_dir},triplets:{triplet_dir}"
    config.transfer.features = str(feature_dir)
    config.transfer.kernels = "cosine"
    config.transfer.bootstrap = 50
    ctx = RunContext(config, str(tmp_path / "run"))
    outcome = transfer.run(ctx)  # the RSA rows, and the triplet datasets' rows as a further section
    rows = outcome.section
    assert len(rows) == 1 and rows[0]["spearman"] == pytest.approx(1.0)
    assert rows[0]["spearman_transformed"] is None and rows[0]["pearson_transformed"] is None
    lo, hi = rows[0]["spearman_ci95"]
    assert lo <= 1.0 + 1e-9 and hi == pytest.approx(1.0)
    (triplet_row,) = outcome.more["transfer_triplets"]
    sims = rsa.model_rsm(x)
    expected = np.mean([sims[i, j] > max(sims[i, k], sims[j, k]) for i, j, k in triplets])
    assert triplet_row["accuracy"] == pytest.approx(expected)
    assert triplet_row["n_triplets"] == 4 and triplet_row["accuracy_transformed"] is None


def test_transfer_feature_errors(tmp_path):
    rng = np.random.default_rng(2)
    data = tmp_path / "mine"
    data.mkdir()
    np.save(data / "similarity.npy", rsa.model_rsm(rng.normal(size=(6, 3))))
    config = base_config()
    config.transfer.datasets = f"rsm:{data}"
    ctx = RunContext(config, str(tmp_path / "run"))
    with pytest.raises(InputError, match="mine: no features"):
        transfer.run(ctx)
    config.transfer.features = f"theirs:{tmp_path / 'x.npy'}"
    with pytest.raises(InputError, match="no dataset named 'theirs'"):
        transfer.run(ctx)
    config.transfer.features = str(tmp_path / "absent_folder")
    with pytest.raises(InputError, match="folder not found"):
        transfer.run(ctx)
    np.save(tmp_path / "x.npy", rng.normal(size=(5, 3)))
    config.transfer.features = f"mine:{tmp_path / 'x.npy'}"
    with pytest.raises(InputError, match="5 feature rows but 6 objects"):
        transfer.run(ctx)
    np.save(tmp_path / "x.npy", rng.normal(size=(6, 3)))
    Transform(np.eye(4), np.zeros(4), 0.0, 1.0).save_npz(os.path.join(ctx.workdir, "transform.npz"))
    with pytest.raises(InputError, match="3 dimensions but .* maps 4"):
        transfer.run(ctx)
    config.transfer.kernels = "cosine,rbf"
    with pytest.raises(InputError, match="'rbf' is not one of"):
        transfer.run(ctx)


def test_transfer_extracts_features_with_the_configured_model(tmp_path, monkeypatch):
    """Without feature files and with config.model set, the dataset's images go to extract.pipeline."""
    import sys
    import types

    data = tmp_path / "mine"
    (data / "images").mkdir(parents=True)
    for name in ("b.jpg", "a.jpg", "c.png"):
        (data / "images" / name).write_bytes(b"")
    x = np.random.default_rng(3).normal(size=(3, 4)).astype(np.float32)
    np.save(data / "similarity.npy", rsa.model_rsm(x))
    calls = []

    def features_for_images(config, image_paths, name, workdir, runner):
        calls.append((image_paths, name, workdir, runner))
        return x

    fake = types.ModuleType("alignment_jax.extract.pipeline")
    fake.features_for_images = features_for_images
    fake.ModelRunner = lambda config: "the run's model"
    monkeypatch.setitem(sys.modules, "alignment_jax.extract.pipeline", fake)
    config = base_config()
    config.transfer.datasets = f"rsm:{data}"
    config.model.name = "some_model"
    rows = transfer.run(RunContext(config, str(tmp_path / "run")))
    assert rows[0]["spearman"] == pytest.approx(1.0)
    ((paths, name, workdir, runner),) = calls
    assert runner == "the run's model"
    assert [os.path.basename(p) for p in paths] == ["a.jpg", "b.jpg", "c.png"]
    assert name == "mine" and workdir == str(tmp_path / "run")
