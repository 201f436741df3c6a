"""The top-level Python API: every function gives the right numbers on good input (the same as the modules the
command line uses) and, for each class of bad input, raises InputError with the command line's one-line message
instead of returning a number."""

import numpy as np
import pytest

import alignment_jax as aj
from alignment_jax.evaluation import rsa as rsa_math
from alignment_jax.evaluation.noise_ceiling import noise_ceiling as module_noise_ceiling


@pytest.fixture(scope="module")
def small():
    return aj.make_world(0, n_objects=60, n_concepts=4, n_dims=12, n_train=3000, n_test=600, n_transfer=20)


def test_every_name_resolves_and_nothing_else():
    for name in aj.__all__:
        assert getattr(aj, name) is not None
    assert {"odd_one_out", "fit_probe", "Transform", "run", "get_config"} <= set(dir(aj))
    with pytest.raises(AttributeError, match="no attribute 'odd_one_ou'"):
        aj.odd_one_ou  # noqa: B018
    assert issubclass(aj.InputError, ValueError)


def test_odd_one_out_equals_a_direct_computation(small):
    result = aj.odd_one_out(small.features, small.test, bootstrap=200)
    x = small.features / np.linalg.norm(small.features, axis=1, keepdims=True)
    i, j, k = small.test.T
    s_ij, s_ik, s_jk = (x[i] * x[j]).sum(1), (x[i] * x[k]).sum(1), (x[j] * x[k]).sum(1)
    expected = np.mean((s_ij > s_ik) & (s_ij > s_jk))
    assert result.accuracy == pytest.approx(expected, abs=1e-9)
    assert result.ci95[0] < result.accuracy < result.ci95[1]
    with pytest.raises(dataclasses_frozen()):
        result.accuracy = 1.0


def dataclasses_frozen():
    import dataclasses

    return dataclasses.FrozenInstanceError


BAD_FEATURES = {
    "nan": (lambda f: np.where(np.arange(f.size).reshape(f.shape) == 7, np.nan, f), "NaN or inf in features (row 0"),
    "inf": (lambda f: np.where(np.arange(f.size).reshape(f.shape) == 30, np.inf, f), "NaN or inf in features (row 2"),
    "1-d": (lambda f: f[:, 0], "features must have shape (n_objects, p), got ("),
    "empty": (lambda f: f[:, :0], "no columns"),
    "text": (lambda f: f.astype(str), "features must be numeric"),
}
BAD_TRIPLETS = {
    "out of range": (lambda t: np.vstack([t, [[0, 1, 60]]]), "index 60 out of range for 60 objects"),
    "negative": (lambda t: np.vstack([t, [[0, -1, 2]]]), "index -1 out of range for 60 objects"),
    "non-integer": (lambda t: np.vstack([t, [[0, 1.5, 2]]]).astype(float), "non-integer object index"),
    "repeated in a row": (lambda t: np.vstack([t, [[4, 4, 2]]]), "triplet repeats an object"),
    "wrong shape": (lambda t: t[:, :2], "triplets must have shape (T, 3)"),
    "empty": (lambda t: t[:0], "no triplets"),
    "nan": (lambda t: np.vstack([t, [[0, np.nan, 2]]]), "non-finite value in row"),
}


@pytest.mark.parametrize("case", sorted(BAD_FEATURES))
def test_bad_features_are_refused_by_every_function(case, small):
    make, message = BAD_FEATURES[case]
    bad = make(small.features)
    calls = {
        "odd_one_out": lambda: aj.odd_one_out(bad, small.test),
        "rsa": lambda: aj.rsa(make(small.transfer_features), ramp(20)),
        "fit_probe": lambda: aj.fit_probe(bad, small.train, lambdas=(0.01,), folds=2),
    }
    for name, call in calls.items():
        with pytest.raises(aj.InputError, match=_literal(message)):
            call()
        assert name


@pytest.mark.parametrize("case", sorted(BAD_TRIPLETS))
def test_bad_triplets_are_refused_by_every_function(case, small):
    make, message = BAD_TRIPLETS[case]
    bad = make(small.test)
    calls = [
        lambda: aj.odd_one_out(small.features, bad),
        lambda: aj.noise_ceiling(bad, 60),
        lambda: aj.fit_probe(small.features, bad, lambdas=(0.01,), folds=2),
        lambda: aj.fit_probe(small.features, small.train, bad, lambdas=(0.01,), folds=2),
    ]
    for call in calls:
        with pytest.raises(aj.InputError, match=_literal(message)) as caught:
            call()
        assert "\n" not in str(caught.value)


def ramp(n: int) -> np.ndarray:
    """A valid (n, n) human similarity matrix (not constant above the diagonal)."""
    return np.arange(n, dtype=float)[:, None] * np.arange(n)


def _literal(text: str) -> str:
    import re

    return re.escape(text)


def test_settings_are_checked_with_the_command_lines_messages(small):
    cases = [
        (lambda: aj.odd_one_out(small.features, small.test, "manhattan"), "similarity='manhattan' is not one of"),
        (lambda: aj.odd_one_out(small.features, small.test, bootstrap=-1), "bootstrap=-1: must be an integer >= 0"),
        (lambda: aj.noise_ceiling(small.repeats, 2), "n_objects=2: must be an integer >= 3"),
        (lambda: aj.fit_probe(small.features, small.train, lambdas=-0.1), "probe.lambdas=-0.1: must be a number >= 0"),
        (lambda: aj.fit_probe(small.features, small.train, folds=1), "probe.folds=1: must be an integer >= 2"),
        (lambda: aj.fit_probe(small.features, small.train, protocol="slow"), "probe.protocol='slow' is not one of"),
        (
            lambda: aj.fit_probe(small.features, small.train, lamdas=0.1),
            "unknown setting 'lamdas'; did you mean lambdas?",
        ),
        (lambda: aj.fit_probe(small.features, small.train, objective="glocal"), "needs local=(N, p)"),
        (lambda: aj.rsa(small.transfer_features, np.ones((20, 20))), "constant above the diagonal"),
        (lambda: aj.rsa(small.transfer_features, ramp(19)), "19 stimuli but the features have 20 rows"),
        (lambda: aj.rsa(small.transfer_features, np.eye(20), kernel="rbf"), "kernel='rbf' is not one of"),
        (lambda: aj.make_world(n_objects=2), "n_objects=2: must be an integer >= 3"),
        (lambda: aj.make_world(n_dims=3, n_concepts=4), "n_dims=3: must be an integer >= 4"),
        (lambda: aj.make_world(n_object=50), "make_world: unknown size 'n_object'; use one of n_objects,"),
        (lambda: aj.load_things("/no/such/folder"), "/no/such/folder: THINGS root folder not found"),
        (lambda: aj.load_things(), "give root=ROOT"),
        (lambda: aj.load_model("no-such-model"), "neither a registry name"),
        (lambda: aj.load_model("demo-vit", dtype="float8"), "dtype='float8' is not one of"),
        (lambda: aj.get_config("no_such_config"), "neither a config file nor a config name"),
        (lambda: aj.get_config("demo", **{"probe.lambda": (0.1,)}), "did you mean probe.lambdas?"),
        (lambda: aj.get_config("demo", seed="one"), "seed='one': expected type int"),
        (lambda: aj.get_config("demo:glocl=True"), "did you mean glocal?"),
    ]
    for call, message in cases:
        with pytest.raises(aj.InputError, match=_literal(message)) as caught:
            call()
        assert "\n" not in str(caught.value)


def test_noise_ceiling_and_rsa_equal_the_modules(small):
    ceiling = aj.noise_ceiling(small.repeats, 60, bootstrap=0)
    assert ceiling.accuracy == module_noise_ceiling(small.repeats, 60).accuracy
    human = small.transfer_embedding @ small.transfer_embedding.T
    result = aj.rsa(small.transfer_features, human, bootstrap=20)
    direct = rsa_math.correlate_rsms(rsa_math.model_rsm(small.transfer_features, "cosine"), human)
    assert result.spearman == pytest.approx(direct["spearman"], rel=1e-9)
    assert result.pearson == pytest.approx(direct["pearson"], rel=1e-9)
    assert result.spearman_ci95[0] <= result.spearman_ci95[1]
    flipped = aj.rsa(small.transfer_features, -human, kind="dissimilarity")
    assert flipped.spearman == pytest.approx(result.spearman)


def test_fit_probe_learns_and_its_transform_round_trips(small, tmp_path):
    fit = aj.fit_probe(small.features, small.train, small.test, lambdas=(1e-2, 1e-3), folds=2, seed=0)
    zero_shot = aj.odd_one_out(small.features, small.test, bootstrap=0).accuracy
    assert fit.summary["test_accuracy"] > zero_shot + 0.1
    assert {row["lambda"] for row in fit.sweep} == {1e-2, 1e-3} and len(fit.sweep) == 4
    assert fit.summary["best_lambda"] in (1e-2, 1e-3)
    after = aj.odd_one_out(fit.transform.apply(small.features), small.test, bootstrap=0)
    assert after.accuracy > zero_shot
    for name in ("t.npz", "t_orbax"):
        fit.transform.save(tmp_path / name)
        back = aj.Transform.load(tmp_path / name)
        np.testing.assert_array_equal(back.apply(small.features), fit.transform.apply(small.features))
    with pytest.raises(aj.InputError, match="NaN or inf in features"):
        fit.transform.apply(np.full_like(small.features, np.nan))
    with pytest.raises(aj.InputError, match=r"expects features of shape \(n, 12\)"):
        fit.transform.apply(small.features[:, :5])


def test_fit_probe_is_the_probe_stage_sweep(small):
    """The same numbers as run_probe with settings from the config (what the probe stage runs)."""
    from alignment_jax.config.base import base_config
    from alignment_jax.probing.cross_validation import ProbeSettings, run_probe

    config = base_config()
    config.probe.lambdas, config.probe.folds = (1e-2,), 2
    direct = run_probe(small.features, small.train, None, ProbeSettings.from_config(config.probe), 3, False)
    fit = aj.fit_probe(small.features, small.train, lambdas=0.01, folds=2, seed=3)
    assert fit.summary["cv_accuracy"] == direct.summary["cv_accuracy"]
    np.testing.assert_array_equal(fit.transform.weights, direct.transform.weights)


def test_extract_features_from_pixels_and_files(tmp_path):
    from PIL import Image

    model = aj.load_model("demo-vit")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (3, model.image_size, model.image_size, 3), dtype=np.uint8)
    paths = []
    for i, image in enumerate(pixels):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image).save(paths[-1])
    from_pixels = aj.extract_features(model, pixels, layers="all", batch_size=2)
    from_files = aj.extract_features(model, paths, layers="all")
    assert list(from_pixels) == ["block00", "block01", "block02", "block03", model.default_layer]
    for layer, x in from_pixels.items():
        assert x.shape == (3, from_pixels[layer].shape[1]) and np.isfinite(x).all()
        np.testing.assert_allclose(from_files[layer], x, rtol=1e-5, atol=1e-5)
    alone = aj.extract_features(model, pixels[:1])[model.default_layer]
    np.testing.assert_allclose(alone, from_pixels[model.default_layer][:1], rtol=1e-5, atol=1e-5)
    for images, message in [
        (pixels.astype(np.float32), "expected uint8 pixels"),
        (pixels[..., :2], "shape (n, H, W, 3)"),
        (pixels[:0], "shape (n, H, W, 3)"),
        ([str(tmp_path / "missing.png")], "missing.png: image file not found"),
        (str(tmp_path), "give a list of image files"),
    ]:
        with pytest.raises(aj.InputError, match=_literal(message)):
            aj.extract_features(model, images)
    with pytest.raises(aj.InputError, match="is not an output of this 4-block model"):
        aj.extract_features(model, pixels, layers="nonsense")
    with pytest.raises(aj.InputError, match="load one with load_model"):
        aj.extract_features("demo-vit", pixels)


def test_get_config_and_run(tmp_path):
    config = aj.get_config("demo:features=True", seed=1, probe__folds=2, **{"world.n_objects": 60})
    assert (config.seed, config.probe.folds, config.world.n_objects) == (1, 2, 60)
    config.world.n_train, config.world.n_test, config.world.n_transfer = 3000, 500, 10
    config.probe.lambdas, config.zero_shot.bootstrap = (1e-2,), 50
    result = aj.run(config, str(tmp_path / "run"))
    assert {"zero_shot", "probe", "report"} <= set(result.results)
    assert result.report.endswith("report.md") and (tmp_path / "run" / "report.md").is_file()
    with pytest.raises(aj.InputError, match="give the folder"):
        aj.run(config, "")


def _pair_targets(embedding: np.ndarray, triplets: np.ndarray, beta: float = 3.0) -> np.ndarray:
    """Soft targets over [(0, 1), (0, 2), (1, 2)] from the planted embedding's dot products."""
    e = embedding[triplets]
    s = np.stack([(e[:, 0] * e[:, 1]).sum(1), (e[:, 0] * e[:, 2]).sum(1), (e[:, 1] * e[:, 2]).sum(1)], axis=1)
    z = np.exp(beta * (s - s.max(axis=1, keepdims=True)))
    return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)


def test_fit_probe_learns_soft_targets_as_the_probe_stage_does(small):
    from alignment_jax.config.base import base_config
    from alignment_jax.probing.cross_validation import ProbeSettings, run_probe

    train, test = small.train[:1500], small.test[:300]
    targets, test_targets = _pair_targets(small.embedding, train), _pair_targets(small.embedding, test)
    fit = aj.fit_probe(
        small.features, train, test, objective="kl", targets=targets, test_targets=test_targets,
        lambdas=(1e-3,), taus=(0.5, 1.0), folds=2, seed=0,
    )  # fmt: skip
    assert fit.summary["best_tau"] in (0.5, 1.0) and {row["tau"] for row in fit.sweep} == {0.5, 1.0}
    assert np.isfinite(fit.summary["test_divergence"]) and 0 <= fit.summary["test_accuracy"] <= 1
    config = base_config()
    config.probe.objective, config.probe.lambdas, config.probe.taus, config.probe.folds = "kl", (1e-3,), (0.5, 1.0), 2
    direct = run_probe(
        small.features,
        train,
        test,
        ProbeSettings.from_config(config.probe),
        0,
        False,
        None,
        targets,
        test_targets,
    )
    assert fit.summary["test_divergence"] == direct.summary["test_divergence"]
    for kwargs, message in [
        (dict(objective="kl"), "objective='kl' needs targets=(T, 3) distributions"),
        (dict(targets=targets), "objective='global' takes no targets"),
        (dict(objective="jsd", targets=targets[:10]), "targets must have shape (T, 3), one row per triplet"),
        (dict(objective="kl", targets=targets * 2), "is not a probability distribution"),
    ]:
        with pytest.raises(aj.InputError, match=_literal(message)):
            aj.fit_probe(small.features, train, lambdas=(1e-3,), folds=2, **kwargs)


def test_load_alignet_reads_the_release_format(tmp_path):
    names = np.array([f"n0144{i % 3}_{i}.JPEG" for i in range(6)])
    rows = np.array([[0, 1, 2], [3, 4, 5], [1, 3, 5]])
    np.savez(
        tmp_path / "train.npz", filenames=names[rows], similarities=np.array([[3, 1, 0], [2, 1, 0], [0, 1, 2.0]]),
        indices=rows + 100,
    )  # fmt: skip
    train, test = aj.load_alignet(str(tmp_path / "train.npz"))
    assert test is None and list(train.names) == sorted(names) and train.n_not_first == 1
    np.testing.assert_allclose(train.targets.sum(axis=1), 1.0, rtol=1e-6)
    assert train.targets[0].argmax() == 0
    with pytest.raises(aj.InputError, match="give the path of an AligNet .npz triplet file"):
        aj.load_alignet("")
    with pytest.raises(aj.InputError, match="missing.npz"):
        aj.load_alignet(str(tmp_path / "missing.npz"))
