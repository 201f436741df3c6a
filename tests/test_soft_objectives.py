"""AligNet's soft-target objectives (probing/objective.py: KL and JSD to a target distribution over a triplet's
three pairs) and their tau x lambda x fold sweep (probing/sweep.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gradcheck import assert_gradient_matches_finite_differences

from alignment_jax.data.alignet import soft_targets
from alignment_jax.data.splits import object_kfold_masks
from alignment_jax.data.synthetic import make_world, random_triplets
from alignment_jax.probing import objective
from alignment_jax.probing.sweep import Configurations, TrainSettings, stack_folds, stack_targets, train_configurations


def numpy_softmax(s):
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def numpy_kl(p, q):
    """sum p log(p / q), 0 log 0 = 0: the definition, written out."""
    out = np.zeros(p.shape[:-1])
    for c in range(p.shape[-1]):
        term = np.where(p[..., c] > 0, p[..., c] * np.log(np.where(p[..., c] > 0, p[..., c], 1) / q[..., c]), 0.0)
        out += term
    return out


def numpy_jsd(p, q):
    m = (p + q) / 2
    return numpy_kl(p, m) / 2 + numpy_kl(q, m) / 2


def distributions(seed, n=50):
    rng = np.random.default_rng(seed)
    p = numpy_softmax(rng.normal(size=(n, 3)) * 2)
    p[:5, 2] = 0.0  # zeros in the target (a unanimous human response): 0 log 0 = 0
    p[:5] /= p[:5].sum(axis=1, keepdims=True)
    p[5] = [1.0, 0.0, 0.0]
    q = numpy_softmax(rng.normal(size=(n, 3)) * 2)
    return p, q


def test_kl_and_jsd_match_their_definitions():
    p, q = distributions(0)
    np.testing.assert_allclose(objective.kl_divergence(jnp.asarray(p), jnp.asarray(q)), numpy_kl(p, q), atol=1e-5)
    np.testing.assert_allclose(objective.js_divergence(jnp.asarray(p), jnp.asarray(q)), numpy_jsd(p, q), atol=1e-5)
    assert np.all(numpy_jsd(p, q) <= np.log(2) + 1e-9)
    np.testing.assert_allclose(objective.kl_divergence(jnp.asarray(p), jnp.asarray(p)), 0.0, atol=1e-6)


@pytest.mark.parametrize("divergence", objective.DIVERGENCES)
@pytest.mark.parametrize("tau", [0.1, 1.0, 3.0])
def test_divergence_of_pair_similarities_at_tau(divergence, tau):
    rng = np.random.default_rng(1)
    sims = rng.normal(size=(40, 3))
    teacher = rng.normal(size=(40, 3))
    p = soft_targets(teacher).astype(np.float64)
    np.testing.assert_allclose(p, numpy_softmax(teacher), atol=1e-6)
    q = numpy_softmax(sims / tau)
    expected = numpy_kl(p, q) if divergence == "kl" else numpy_jsd(p, q)
    got = objective.soft_divergence(jnp.asarray(sims), jnp.asarray(p), tau, divergence)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def problem(seed=0, n=15, dims=6, t=80):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(n, dims)))
    params = {
        "weights": jnp.asarray(rng.normal(size=(dims, dims)) * 0.3),
        "bias": jnp.asarray(rng.normal(size=dims) * 0.1),
    }
    triplets = jnp.asarray(random_triplets(n, t, rng), jnp.int32)
    targets = jnp.asarray(numpy_softmax(rng.normal(size=(t, 3))))
    targets = targets.at[:3, 1].set(0.0)
    targets = targets / targets.sum(axis=1, keepdims=True)
    weights = jnp.asarray((rng.random(t) < 0.8).astype(float))
    return params, x, triplets, targets, weights


@pytest.mark.parametrize("divergence", objective.DIVERGENCES)
@pytest.mark.parametrize("formulation", objective.FORMULATIONS)
def test_gradients_match_finite_differences(divergence, formulation):
    with jax.enable_x64(True):
        params, x, triplets, targets, weights = problem()
        f = lambda prm: objective.soft_loss(
            prm, x, triplets, targets, weights, 0.3, 0.7, divergence=divergence, regularizer="frobenius",
            formulation=formulation,
        )  # fmt: skip
        assert_gradient_matches_finite_differences(f, params)


def test_the_loss_is_the_weighted_mean_plus_the_penalty():
    with jax.enable_x64(True):
        params, x, triplets, targets, weights = problem(3)
        z = np.asarray(x) @ np.asarray(params["weights"]) + np.asarray(params["bias"])
        t = np.asarray(triplets)
        sims = np.stack([(z[t[:, a]] * z[t[:, b]]).sum(1) for a, b in ((0, 1), (0, 2), (1, 2))], axis=1)
        per = numpy_jsd(np.asarray(targets), numpy_softmax(sims / 0.5))
        w = np.asarray(weights)
        expected = (w * per).sum() / w.sum() + 0.2 * np.linalg.norm(np.asarray(params["weights"]))
        got = objective.soft_loss(
            params, x, triplets, targets, weights, 0.2, 0.5, divergence="jsd", regularizer="frobenius",
            formulation="objects",
        )  # fmt: skip
        assert float(got) == pytest.approx(expected, rel=1e-9)


@pytest.fixture(scope="module")
def teacher_world():
    """Triplets over 60 objects with soft targets from a planted teacher: the softmax of its pair similarities."""
    world = make_world(n_objects=60, n_concepts=4, n_dims=12, n_train=3000, n_test=0, seed=4)
    x = (world.features - world.features.mean()) / world.features.std()
    rng = np.random.default_rng(0)
    teacher = x @ rng.normal(size=(12, 12)) / 4
    t = world.train
    sims = np.stack([(teacher[t[:, a]] * teacher[t[:, b]]).sum(1) for a, b in ((0, 1), (0, 2), (1, 2))], axis=1)
    train, val = object_kfold_masks(t, 60, 3, seed=0)
    return x, t, soft_targets(sims), train, val


@pytest.mark.parametrize("divergence", objective.DIVERGENCES)
def test_tau_x_lambda_x_fold_in_one_program_equals_each_alone(teacher_world, divergence):
    x, triplets, targets, train, val = teacher_world
    folds, soft = stack_folds(x, triplets, train, val), stack_targets(targets, triplets, train, val)
    hyper = {"lam": np.array([1e-3, 1e-3, 1e-1, 1e-1]), "lr": np.full(4, 0.02), "tau": np.array([0.5, 2.0, 0.5, 2.0])}
    configs = Configurations(hyper, np.zeros(4), np.full(4, 20), np.array([0, 0, 1, 1]))
    settings = TrainSettings(epochs=20, min_epochs=3, patience=3, divergence=divergence)
    together = train_configurations(folds, configs, settings, seed=2, progress=False, soft=soft)
    assert np.isfinite(together.val_cross_entropy).all()
    assert not np.allclose(together.val_cross_entropy[:, 0], together.val_cross_entropy[:, 1])  # tau matters
    for f in (0, 2):
        for k in (1, 2):
            alone = train_configurations(
                folds.fold(f), configs.take(np.array([k])), settings, seed=2, fold_ids=np.array([f]), progress=False,
                soft=soft.fold(f),
            )  # fmt: skip
            assert alone.epochs[0, 0] == together.epochs[f, k]
            np.testing.assert_allclose(alone.val_cross_entropy[0, 0], together.val_cross_entropy[f, k], rtol=1e-5)
            np.testing.assert_allclose(alone.params["weights"][0, 0], together.params["weights"][f, k], atol=1e-5)


def test_minibatches_learn_the_teacher(teacher_world):
    x, triplets, targets, train, val = teacher_world
    folds = stack_folds(x, triplets, train, val, multiple=256)
    soft = stack_targets(targets, triplets, train, val, multiple=256)
    configs = Configurations({"lam": [1e-4], "lr": [0.01], "tau": [1.0]}, [0], [40], [0])
    settings = TrainSettings(batch_size=256, epochs=40, min_epochs=3, patience=5, divergence="kl")
    out = train_configurations(folds, configs, settings, seed=0, progress=False, soft=soft)
    # the untrained transform (W ~ 1e-3) predicts a uniform q: KL = log 3 - H(p); training goes well below it
    p = targets[val[0]]
    uniform = float(np.mean(np.log(3) + (p * np.log(p)).sum(1)))
    assert out.val_cross_entropy[0, 0] < 0.5 * uniform
    teacher_choice = (p[:, 0] > p[:, 1]) & (p[:, 0] > p[:, 2])
    assert out.val_accuracy[0, 0] > 0.8 * teacher_choice.mean()


@pytest.mark.parametrize("divergence", objective.DIVERGENCES)
def test_probe_selects_tau_and_scores_the_test_file(teacher_world, divergence):
    from alignment_jax.config.base import base_config
    from alignment_jax.probing.cross_validation import ProbeSettings, run_probe

    x, triplets, targets, _, _ = teacher_world
    probe = base_config().probe
    probe.objective, probe.taus, probe.lambdas, probe.epochs, probe.split = (
        divergence,
        (0.25, 4.0),
        (1e-3,),
        30,
        "triplets",
    )
    settings = ProbeSettings.from_config(probe).for_width(x.shape[1])
    train, test = slice(0, 2500), slice(2500, None)
    result = run_probe(
        x, triplets[train], triplets[test], settings, progress=False, targets=targets[train],
        test_targets=targets[test],
    )  # fmt: skip
    summary = result.summary
    assert summary["objective"] == divergence and summary["best_tau"] in (0.25, 4.0)
    assert {row["tau"] for row in summary["sweep"]} == {0.25, 4.0}
    assert summary["cv_divergence"] == summary["cv_cross_entropy"]
    # test_divergence: the divergence at the refit transform and best tau, written out in numpy
    z = result.transform.apply(x).astype(np.float64)
    t = triplets[test]
    sims = np.stack([(z[t[:, a]] * z[t[:, b]]).sum(1) for a, b in ((0, 1), (0, 2), (1, 2))], axis=1)
    q = numpy_softmax(sims / summary["best_tau"])
    divergence_fn = numpy_kl if divergence == "kl" else numpy_jsd
    assert summary["test_divergence"] == pytest.approx(divergence_fn(targets[test], q).mean(), rel=1e-4)
    assert summary["test_accuracy"] == pytest.approx(np.mean((sims[:, 0] > sims[:, 1]) & (sims[:, 0] > sims[:, 2])))


def test_soft_targets_must_be_distributions(teacher_world):
    from alignment_jax.config.base import base_config
    from alignment_jax.errors import InputError
    from alignment_jax.probing.cross_validation import ProbeSettings, run_probe

    x, triplets, targets, _, _ = teacher_world
    probe = base_config().probe
    probe.objective = "kl"
    settings = ProbeSettings.from_config(probe).for_width(x.shape[1])
    bad = targets.copy()
    bad[7] = [0.5, 0.6, -0.1]
    with pytest.raises(InputError, match="row 7 .* not a probability distribution"):
        run_probe(x, triplets, None, settings, progress=False, targets=bad)
    with pytest.raises(InputError, match="needs soft targets"):
        run_probe(x, triplets, None, settings, progress=False)
