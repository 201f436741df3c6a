"""gLocal's objective in the probe sweep (probing/glocal.py, sweep.py, cross_validation.py): the local batch
stream, the validation term, vmapped == one by one, alpha = 0 is the global probe, gLocal's selection rule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sweep_testlib import glocal_configurations, glocal_settings

from alignment_jax.config.base import base_config
from alignment_jax.data.splits import object_kfold_masks
from alignment_jax.data.synthetic import make_world
from alignment_jax.probing import glocal, memory
from alignment_jax.probing.cross_validation import ProbeSettings, run_probe, run_probe_layers
from alignment_jax.probing.sweep import TrainSettings, stack_folds, train_configurations


@pytest.fixture(scope="module")
def small():
    world = make_world(n_objects=60, n_concepts=4, n_dims=12, n_train=6000, n_test=1000, n_local=300, seed=2)
    x = (world.features - world.features.mean()) / world.features.std()
    train, val = object_kfold_masks(world.train, 60, 3, seed=0)
    return world, x, train, val


def unit(rows):
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1)


def row_cross_entropies(raw, student, tau):
    """numpy: each row's cross-entropy of softmax(student sims / tau) against softmax(teacher sims / tau) over
    the other rows of its batch (gLocal's ContrastiveLoss before its mean)."""
    n = len(raw)
    off = ~np.eye(n, dtype=bool)
    t, s = ((unit(m) @ unit(m).T)[off].reshape(n, n - 1) / tau for m in (raw, student))
    p = np.exp(t - t.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    log_q = s - s.max(1, keepdims=True) - np.log(np.exp(s - s.max(1, keepdims=True)).sum(1, keepdims=True))
    return -(p * log_q).sum(1)


def test_local_batch_stream_covers_each_pass_once():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(2, 23, 5)).astype(np.float32)  # two views of 23 images
    shift, scale = rng.normal(size=(2, 5)), rng.uniform(1, 2, size=(2, 5))
    data = glocal.local_data(raw, None, shift, scale, 8)
    batch = jax.jit(glocal.train_batch, static_argnames="batch")
    per_pass = 3  # ceil(23 / 8): batches of 8, 8 and 7 (+ one padding row)
    seen = []
    for position in range(2 * per_pass):
        student, teacher, valid = batch(data, 1, position, 4, 7, batch=8)
        rows = np.asarray(student)[np.asarray(valid)] * scale[1] + shift[1]  # back to the raw rows
        index = [int(np.argmin(np.abs(raw[1] - r).sum(1))) for r in rows]
        np.testing.assert_allclose(raw[1][index], rows, atol=1e-5)
        assert int(valid.sum()) == (7 if position % per_pass == 2 else 8)
        np.testing.assert_allclose(
            np.asarray(teacher)[np.ix_(valid, valid)], unit(raw[1][index]) @ unit(raw[1][index]).T, atol=1e-5
        )
        seen.append(index)
    for first in (0, per_pass):  # each pass: every image once
        assert sorted(sum(seen[first : first + per_pass], [])) == list(range(23))
    assert seen[:per_pass] != seen[per_pass:]  # reshuffled per pass
    again = batch(data, 1, 4, 4, 7, batch=8)[0]
    np.testing.assert_array_equal(again, batch(data, 1, 4, 4, 7, batch=8)[0])  # by (seed, fold, position) only
    assert not np.allclose(again, batch(data, 1, 4, 5, 7, batch=8)[0])  # another fold, another order


def test_validation_term_is_the_mean_over_validation_images():
    rng = np.random.default_rng(1)
    val = rng.normal(size=(1, 21, 6)).astype(np.float32)  # batches of 10, 10 and a single image (no neighbour)
    weights = rng.normal(size=(6, 6)).astype(np.float32)
    params = {"weights": jnp.asarray(weights), "bias": jnp.asarray(rng.normal(size=6), jnp.float32)}
    shift, scale = np.float32(0.3), np.float32(1.7)
    data = glocal.local_data(val, val, shift, scale, 10)
    got = float(jax.jit(glocal.validation_loss)(data, params, 0, 0.2))
    rows = []
    for start in (0, 10):
        raw = val[0, start : start + 10]
        student = ((raw - shift) / scale) @ weights + np.asarray(params["bias"])
        rows.append(row_cross_entropies(raw, student, 0.2))
    assert got == pytest.approx(float(np.concatenate(rows).mean()), rel=1e-5)


def local_sweep(x, triplets, train, val, local, batch_size, budget=0.0):
    folds = stack_folds(x, triplets, train, val, multiple=batch_size or 1)
    data = glocal.local_data(local[None, :250], local[None, 250:], 0.0, 1.0, 64)
    configs, settings = glocal_configurations(30), glocal_settings(30, local_batch_size=64, batch_size=batch_size)
    run = lambda f, c, **kw: train_configurations(f, c, settings, seed=5, progress=False, data=data, **kw)
    return folds, configs, data, run


@pytest.mark.parametrize("batch_size", [0, 512])
def test_vmapped_sweep_equals_configurations_run_one_by_one(small, batch_size):
    """lambda x alpha x tau x fold in one program, also in a pool too small for all (configurations start at
    other epochs, so the slots read different local batches): each configuration alone, with its ids, gives
    the same numbers."""
    world, x, train, val = small
    folds, configs, data, run = local_sweep(x, world.train, train, val, world.local_features, batch_size)
    together = run(folds, configs)
    assert len(np.unique(together.epochs)) > 1 and np.isfinite(together.val_local).all()
    per_config = memory.config_bytes(folds, batch_size or folds.train_triplets.shape[1], "adam", True, data, 64)
    pooled = run(folds, configs, budget_bytes=memory.data_bytes(folds, data) + 2.5 * 3 * per_config)  # 2 slots
    for f in range(3):
        for k in range(len(configs)):
            alone = run(folds.fold(f), configs.take(np.array([k])), fold_ids=np.array([f]))
            for other, column in ((together, (f, k)), (pooled, (f, k))):
                assert alone.epochs[0, 0] == other.epochs[column] and alone.best_epoch[0, 0] == other.best_epoch[column]
                np.testing.assert_allclose(alone.val_cross_entropy[0, 0], other.val_cross_entropy[column], rtol=1e-5)
                np.testing.assert_allclose(alone.val_local[0, 0], other.val_local[column], rtol=1e-5)
                np.testing.assert_allclose(alone.params["weights"][0, 0], other.params["weights"][column], atol=1e-5)


def probe_settings(**changes) -> ProbeSettings:
    probe = base_config().probe
    probe.update(lambdas=(1e-1, 1e-3), regularizer="identity", init="identity", bias=True)
    probe.local.batch_size = 64
    probe.update(changes)
    return ProbeSettings.from_config(probe).for_width(12)


@pytest.fixture(scope="module")
def both(small):
    """The same data through the global objective and through gLocal's with alpha 0 beside alpha 0.5."""
    world, *_ = small
    common = dict(seed=1, progress=False)
    global_run = run_probe(world.features, world.train, world.test, probe_settings(), **common)
    glocal_run = run_probe(
        world.features, world.train, world.test,
        probe_settings(objective="glocal", alphas=(0.0, 0.5), taus=(0.5, 0.05)), local=world.local_features, **common,
    )  # fmt: skip
    return global_run, glocal_run


def test_alpha_zero_is_the_global_probe(both):
    """The alpha = 0 configurations of a gLocal sweep are the global probe: the same epochs, validation numbers,
    selection, refit and test numbers as a sweep of the global objective (with the same init and penalty)."""
    global_run, glocal_run = both
    alpha_zero = [r for r in glocal_run.summary["sweep"] if r["alpha"] == 0]
    assert len(alpha_zero) == len(global_run.summary["sweep"]) == 2 * 3  # one tau: alpha 0 ignores it
    for got, want in zip(alpha_zero, global_run.summary["sweep"], strict=True):
        assert (got["lambda"], got["fold"], got["epochs"], got["best_epoch"]) == (
            want["lambda"], want["fold"], want["epochs"], want["best_epoch"]
        )  # fmt: skip
        assert got["cross_entropy"] == pytest.approx(want["cross_entropy"], rel=1e-5)
        assert got["accuracy"] == pytest.approx(want["accuracy"], abs=1e-6)
    beside, want = glocal_run.summary["global_probe"], global_run.summary
    assert beside["objective"] == want["objective"] == "global"
    assert (beside["best_lambda"], beside["refit_epochs"]) == (want["best_lambda"], want["refit_epochs"])
    for key in ("cv_accuracy", "cv_cross_entropy", "test_accuracy", "test_cross_entropy"):
        assert beside[key] == pytest.approx(want[key], rel=1e-5), key
    np.testing.assert_allclose(glocal_run.global_probe.transform.weights, global_run.transform.weights, atol=1e-5)


def test_glocal_selection_is_the_lowest_triplet_plus_local_loss(both):
    """gLocal's rule, recomputed from the sweep rows: among alpha > 0, the lowest mean over folds of the
    validation triplet cross-entropy + local term (unweighted)."""
    _, glocal_run = both
    summary, rows = glocal_run.summary, glocal_run.summary["sweep"]
    assert all(r["local_loss"] is not None and r["status"] == "ok" for r in rows)
    settings = {(r["lambda"], r["alpha"], r["tau"]) for r in rows}
    assert len(settings) == 2 * (1 + 2)  # lambda x (alpha 0 at the first tau, alpha 0.5 at both taus)
    mean = lambda key, s: np.mean([r[key] for r in rows if (r["lambda"], r["alpha"], r["tau"]) == s])
    score = {s: mean("cross_entropy", s) + mean("local_loss", s) for s in settings if s[1] > 0}
    best = min(score, key=score.get)
    assert (summary["best_lambda"], summary["best_alpha"], summary["best_tau"]) == best
    assert summary["cv_loss"] == pytest.approx(score[best], rel=1e-5)
    assert summary["triplet_cross_entropy"] == pytest.approx(mean("cross_entropy", best), rel=1e-5)
    assert summary["cv_local_loss"] == pytest.approx(mean("local_loss", best), rel=1e-5)
    assert summary["objective"] == "glocal" and summary["init"] == summary["regularizer"] == "identity"
    for key in ("cv_accuracy", "cv_cross_entropy", "test_accuracy", "test_cross_entropy", "refit_epochs"):
        assert key in summary and key in summary["global_probe"]


def test_glocal_defaults_are_glocals_settings():
    """probe.objective=glocal alone gives gLocal's penalty and initialization (W = s I, bias s 1); explicit
    settings win; selection must be by cross-entropy (the local term has no accuracy)."""
    chosen = ProbeSettings.from_config(base_config().probe).for_width(8).train
    assert (chosen.regularizer, chosen.init) == ("frobenius", "normal")
    probe = base_config().probe
    probe.objective = "glocal"
    settings = ProbeSettings.from_config(probe).for_width(8)
    assert (settings.train.regularizer, settings.train.init, settings.objective) == ("identity", "identity", "glocal")
    probe.regularizer = "frobenius"
    assert ProbeSettings.from_config(probe).for_width(8).train.regularizer == "frobenius"
    from alignment_jax.probing.sweep import init_params

    params = init_params(jax.random.key(0), 4, TrainSettings(init="identity", init_scale=1e-3, bias=True))
    np.testing.assert_array_equal(params["weights"], 1e-3 * np.eye(4, dtype=np.float32))
    np.testing.assert_array_equal(params["bias"], np.full(4, 1e-3, np.float32))


def test_a_layer_inside_a_multi_layer_glocal_probe_equals_its_probe_alone(small):
    """Layers x lambda x alpha x tau x folds in one program, each layer with its own local images: each
    layer's selection and numbers equal those of its probe alone."""
    world, *_ = small
    rng = np.random.default_rng(3)
    mix = rng.normal(size=(12, 12)).astype(np.float32) / 3
    features = {"a": world.features, "b": world.features @ mix}
    local = {"a": world.local_features, "b": world.local_features @ mix}
    settings = probe_settings(objective="glocal", alphas=(0.0, 0.5), taus=(0.5,), lambdas=(1e-3,), folds=2)
    together = run_probe_layers(features, world.train, world.test, settings, seed=2, progress=False, local=local)
    for name in features:
        alone = run_probe(features[name], world.train, world.test, settings, seed=2, progress=False, local=local[name])
        got, want = together[name].summary, alone.summary
        assert [r["epochs"] for r in got["sweep"]] == [r["epochs"] for r in want["sweep"]], name
        assert (got["best_alpha"], got["refit_epochs"]) == (want["best_alpha"], want["refit_epochs"])
        for key in ("cv_loss", "test_accuracy"):
            assert got[key] == pytest.approx(want[key], rel=1e-4), (name, key)
        assert got["global_probe"]["test_accuracy"] == pytest.approx(want["global_probe"]["test_accuracy"], rel=1e-4)
