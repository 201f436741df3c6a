import re

import ml_collections
import numpy as np
import pytest

from alignment_jax.config.base import base_config
from alignment_jax.errors import InputError
from alignment_jax.evaluation.zero_shot import odd_one_out
from alignment_jax.probing.cross_validation import ProbeSettings, probe_scores, run_probe, run_probe_layers
from alignment_jax.probing.transform import Transform


def settings(**overrides) -> ProbeSettings:
    probe = base_config().probe
    probe.update(overrides)
    return ProbeSettings.from_config(probe).for_width(24)


@pytest.fixture(scope="module")
def probed(world):
    return run_probe(world.features, world.train, world.test, settings(lambdas=(1e-1, 1e-3)), seed=0, progress=False)


def test_probe_closes_most_of_the_gap_to_the_generating_model(world, probed):
    zero_shot = odd_one_out(world.features, world.test, "cosine", bootstrap=0).accuracy
    generator = odd_one_out(world.embedding, world.test, "dot", bootstrap=0).accuracy
    probe = probed.summary["test_accuracy"]
    assert generator - zero_shot > 0.2  # the nuisance dimensions hide the planted concepts
    assert probe - zero_shot > 0.75 * (generator - zero_shot)
    assert probed.summary["best_lambda"] == pytest.approx(1e-3)  # lambda = 0.1 shrinks W too much
    assert probed.summary["cv_accuracy"] > zero_shot + 0.2


def test_summary_schema(probed):
    summary = probed.summary
    for key in ("best_lambda", "cv_accuracy", "cv_cross_entropy", "test_accuracy", "test_cross_entropy", "seconds"):
        assert isinstance(summary[key], float)
    assert len(summary["sweep"]) == 2 * 3
    assert {r["fold"] for r in summary["sweep"]} == {0, 1, 2}
    assert all(r["status"] == "ok" and r["epochs"] >= r["best_epoch"] >= 1 for r in summary["sweep"])


def test_transform_files_reproduce_predictions(world, probed, tmp_path):
    probed.transform.save_npz(tmp_path / "transform.npz")
    probed.transform.save_orbax(tmp_path / "checkpoint")
    expected = probe_scores(probed.transform, world.features, world.test)
    for loaded in (Transform.load_npz(tmp_path / "transform.npz"), Transform.load_orbax(tmp_path / "checkpoint")):
        np.testing.assert_array_equal(loaded.apply(world.features), probed.transform.apply(world.features))
        assert probe_scores(loaded, world.features, world.test) == expected
    with np.load(tmp_path / "transform.npz") as data:
        assert set(data.files) == {"weights", "bias", "mean", "std"}
        manual = (world.features - data["mean"]) / data["std"] @ data["weights"] + data["bias"]
    np.testing.assert_allclose(manual, probed.transform.apply(world.features), rtol=1e-5, atol=1e-5)


def test_paper_protocol_settings():
    paper = settings(protocol="paper")
    assert (paper.train.batch_size, paper.lrs, paper.train.epochs) == (256, (1e-3,), 100)
    assert (paper.train.patience, paper.train.min_epochs, paper.train.clip_norm) == (10, 10, 1.0)
    assert paper.train.init_scale == 1e-3 and paper.standardize == "global" and paper.folds == 3
    fast = settings()
    assert fast.train.batch_size == 0 and fast.lrs == (1 / 24,)
    assert settings(lambdas=(0.1, 0.01)).lambdas == (0.1, 0.01)
    assert len(settings(lrs=(1e-2, 1e-3)).lrs) == 2


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("protocol", "slow", "probe.protocol='slow'"),
        ("regularizer", "l1", "probe.regularizer='l1'"),
        ("optimizer", "lbfgs", "probe.optimizer='lbfgs'"),
        ("lambdas", ("a", "b"), "expected numbers"),
        ("lambdas", (), "probe.lambdas is empty"),
        ("select_by", "luck", "probe.select_by"),
        ("split", "pairs", "probe.split='pairs'"),
    ],
)
def test_bad_settings(field, value, message):
    with pytest.raises(InputError, match=message):
        settings(**{field: value})


def test_paper_protocol_runs_minibatches(world):
    paper = settings(protocol="paper", lambdas=(1e-3,), epochs=2, min_epochs=1, batch_size=256, lr=1e-2)
    result = run_probe(world.features, world.train[:3000], world.test[:500], paper, progress=False)
    assert result.summary["protocol"] == "paper"
    assert result.summary["cv_accuracy"] > 0.4


def test_triplet_split_cross_validates_over_triplets(world):
    chosen = settings(split="triplets", lambdas=(1e-3,), folds=2)
    result = run_probe(world.features, world.train, None, chosen, progress=False)
    by_objects = run_probe(world.features, world.train, None, settings(lambdas=(1e-3,), folds=2), progress=False)
    # triplet folds share objects between the sides: validation sets are larger and easier than object folds
    assert result.summary["cv_accuracy"] > by_objects.summary["cv_accuracy"]


def test_too_few_triplets_for_folds():
    features = np.random.default_rng(0).normal(size=(9, 4)).astype(np.float32)
    triplets = np.array([[0, 4, 8], [1, 5, 7]])
    with pytest.raises(InputError, match="too few triplets"):
        run_probe(features, triplets, None, settings(), progress=False)


def test_config_is_a_config():
    assert isinstance(base_config().probe, ml_collections.ConfigDict)


def test_fast_protocol_reaches_the_paper_protocol(world):
    scores = {}
    for protocol in ("fast", "paper"):
        chosen = settings(protocol=protocol, lambdas=(1e-2,), folds=2)
        scores[protocol] = run_probe(world.features, world.train, None, chosen, progress=False).summary["cv_accuracy"]
    assert scores["fast"] >= scores["paper"] - 0.005, scores


def test_divergence_everywhere_is_a_clear_error(world):
    exploding = settings(lambdas=(1e-3,), lrs=(1e30,), clip_norm=0.0, folds=2, epochs=3, min_epochs=1)
    with pytest.raises(InputError, match="diverged.*lower the learning rate"):
        run_probe(world.features, world.train, None, exploding, progress=False)


def test_a_layer_inside_a_multi_layer_probe_equals_its_probe_alone(world):
    """Layers x lambdas x folds in one sweep per width (two layers of width 24 share one program, a layer of
    width 16 gets its own): each layer's selection, refit and test numbers are those of a run of it alone."""
    rng = np.random.default_rng(3)
    layers = {
        "block00": world.features @ rng.normal(size=(24, 24)).astype(np.float32),
        "block01": world.features,
        "narrow": world.features @ rng.normal(size=(24, 16)).astype(np.float32),
    }
    probe = base_config().probe
    probe.update(lambdas=(1e-1, 1e-3), folds=2)
    for_width = lambda p: ProbeSettings.from_config(probe).for_width(p)
    together = run_probe_layers(layers, world.train, world.test, for_width, seed=1, progress=False)
    assert list(together) == list(layers)
    for name, features in layers.items():
        alone = run_probe(features, world.train, world.test, for_width(features.shape[1]), seed=1, progress=False)
        got, want = together[name].summary, alone.summary
        assert (got["best_lambda"], got["refit_epochs"]) == (want["best_lambda"], want["refit_epochs"]), name
        for key in ("cv_accuracy", "cv_cross_entropy", "test_accuracy", "test_cross_entropy"):
            assert abs(got[key] - want[key]) < 1e-4, (name, key, got[key], want[key])
        assert [r["epochs"] for r in got["sweep"]] == [r["epochs"] for r in want["sweep"]]
        np.testing.assert_allclose(together[name].transform.weights, alone.transform.weights, atol=1e-4)
        np.testing.assert_allclose(together[name].transform.mean, alone.transform.mean)


def test_settings_have_defaults_are_checked_where_built_and_resolve_when_used():
    from alignment_jax.probing.glocal import GlocalSettings

    default = ProbeSettings()
    assert default == ProbeSettings.from_config(base_config().probe)  # from_config only maps the config's fields
    assert default.lrs == () and default.for_width(64).lrs == (1 / 64,)  # the fast protocol's lr, at use
    assert ProbeSettings(protocol="paper").for_width(64).lrs == (1e-3,)
    assert ProbeSettings(lr=0.5).for_width(64).lrs == (0.5,) and ProbeSettings(lrs=(0.1, 0.2)).for_width(8).lrs == (
        0.1,
        0.2,
    )
    fast, paper = default.train, ProbeSettings(protocol="paper").train
    assert (fast.batch_size, fast.epochs, fast.regularizer, fast.init) == (0, 500, "frobenius", "normal")
    assert (paper.batch_size, paper.epochs) == (256, 100)
    glocal = ProbeSettings(glocal=GlocalSettings(objective="glocal")).train
    assert (glocal.regularizer, glocal.init) == ("identity", "identity")
    for kwargs, message in [
        (dict(folds=1), "probe.folds=1: must be an integer >= 2"),
        (dict(lambdas=(0.1, -0.1)), "probe.lambdas=-0.1: must be a number >= 0"),
        (dict(lr=0.0), "probe.lr=0: must be a number > 0 (or -1)"),
        (dict(batch_size=-5), "probe.batch_size=-5"),
        (dict(split="random"), "probe.split='random' is not one of objects, triplets"),
        (dict(regularizer="l1"), "probe.regularizer='l1' is not one of"),
        (dict(memory_gb=-1.0), "probe.memory_gb=-1: must be a number >= 0"),
        (dict(glocal=GlocalSettings(objective="glocal"), select_by="accuracy"), "gLocal selects by its validation"),
    ]:
        with pytest.raises(InputError, match=re.escape(message)):
            ProbeSettings(**kwargs)
    with pytest.raises(InputError, match=re.escape("probe.local.batch_size=1: needs at least 2 images")):
        GlocalSettings(batch_size=1)
