import numpy as np
import pytest

from alignment_jax.data.splits import object_kfold_masks
from alignment_jax.data.synthetic import make_world
from alignment_jax.probing.sweep import Configurations, TrainSettings, stack_folds, train_configurations, train_sweep


@pytest.fixture(scope="module")
def small():
    world = make_world(n_objects=60, n_concepts=4, n_dims=12, n_train=6000, n_test=0, seed=2)
    x = (world.features - world.features.mean()) / world.features.std()
    train, val = object_kfold_masks(world.train, 60, 3, seed=0)
    return x, world.train, train, val


@pytest.mark.parametrize("batch_size", [0, 512])
def test_vmapped_sweep_equals_configurations_run_one_by_one(small, batch_size):
    x, triplets, train, val = small
    folds = stack_folds(x, triplets, train, val, multiple=batch_size or 1)
    lambdas = np.array([1e-1, 1e-2, 1e-4], np.float32)
    lrs = np.array([0.05, 0.02, 0.05], np.float32)
    settings = TrainSettings(batch_size=batch_size, epochs=25, min_epochs=3, patience=3, bias=True)
    together = train_sweep(folds, lambdas, lrs, settings, seed=5, progress=False)
    assert len(np.unique(together.epochs)) > 1  # configurations stopped at different epochs
    for f in range(3):
        for h in range(3):
            alone = train_sweep(
                folds.fold(f),
                lambdas[h : h + 1],
                lrs[h : h + 1],
                settings,
                seed=5,
                fold_ids=np.array([f]),
                hyper_ids=np.array([h]),
                progress=False,
            )
            assert alone.epochs[0, 0] == together.epochs[f, h]
            assert alone.best_epoch[0, 0] == together.best_epoch[f, h]
            np.testing.assert_allclose(alone.val_cross_entropy[0, 0], together.val_cross_entropy[f, h], rtol=1e-5)
            np.testing.assert_allclose(alone.params["weights"][0, 0], together.params["weights"][f, h], atol=1e-5)


def test_early_stopping_freezes_and_divergence_is_isolated(small):
    x, triplets, train, val = small
    folds = stack_folds(x, triplets, train, val)
    lambdas = np.array([1e-3, 1e-3, 10.0], np.float32)
    lrs = np.array([0.02, 1e30, 0.02], np.float32)  # the second configuration blows up
    settings = TrainSettings(epochs=200, min_epochs=5, patience=5, clip_norm=0.0)
    out = train_sweep(folds, lambdas, lrs, settings, progress=False)
    assert out.failed[:, 1].all() and not out.failed[:, [0, 2]].any()
    assert np.isfinite(out.val_cross_entropy[:, 0]).all()
    assert (out.val_accuracy[:, 0] > 0.4).all()  # chance is 1/3; validation folds are small here
    # lambda = 10 shrinks W to nothing: no improvement after the first epochs, so it stops at min_epochs-ish
    assert (out.epochs[:, 2] < out.epochs[:, 0]).all()
    assert (out.epochs[:, 2] <= settings.min_epochs + settings.patience).all()
    assert (out.best_epoch <= out.epochs).all()


def test_folds_hold_only_the_objects_they_use(small):
    x, triplets, train, val = small
    folds = stack_folds(x, triplets, train, val, multiple=64)
    for f in range(3):
        for features, local, weights, mask in (
            (folds.train_features[f, 0], folds.train_triplets[f], folds.train_weights[f], train[f]),
            (folds.val_features[f, 0], folds.val_triplets[f], folds.val_weights[f], val[f]),
        ):
            kept = weights > 0
            assert kept.sum() == mask.sum()
            given = triplets[mask]  # held in (i, j, k) order
            given = given[np.lexsort((given[:, 2], given[:, 1], given[:, 0]))]
            np.testing.assert_array_equal(features[local[kept]], x[given])
            assert len(np.unique(triplets[mask])) <= features.shape[0] < x.shape[0]
    assert folds.train_triplets.shape[1] % 64 == 0


def test_views_train_as_if_each_were_swept_alone(small):
    """Layers are views of the fold data: a view's configurations inside a sweep of several views give the
    numbers of a sweep of that view alone (same seeds), for every fold and setting."""
    x, triplets, train, val = small
    rng = np.random.default_rng(1)
    views = np.stack([x, x @ rng.normal(size=(12, 12)).astype(np.float32) / 4, np.tanh(x)])
    folds = stack_folds(views, triplets, train, val)
    lambdas, lrs = np.array([1e-1, 1e-3], np.float32), np.array([0.05, 0.05], np.float32)
    settings = TrainSettings(epochs=30, min_epochs=3, patience=3)
    configs = Configurations.grid(lambdas, lrs, settings.epochs, n_views=3)
    together = train_configurations(folds, configs, settings, seed=3, progress=False)
    assert len(np.unique(together.epochs)) > 1
    for v in range(3):
        alone = train_sweep(stack_folds(views[v], triplets, train, val), lambdas, lrs, settings, seed=3, progress=False)
        part = together.columns(slice(2 * v, 2 * v + 2))
        np.testing.assert_array_equal(alone.epochs, part.epochs)
        np.testing.assert_array_equal(alone.best_epoch, part.best_epoch)
        np.testing.assert_allclose(alone.val_cross_entropy, part.val_cross_entropy, rtol=1e-5)
        np.testing.assert_allclose(alone.val_accuracy, part.val_accuracy, atol=1e-6)
        np.testing.assert_allclose(alone.params["weights"], part.params["weights"], atol=1e-5)


def test_epoch_budget_per_configuration(small):
    """max_epochs is per configuration (the refit trains each layer for its own number of epochs); without
    validation nothing else stops a configuration."""
    x, triplets, train, _ = small
    everything = stack_folds(x, triplets, train[:1], np.zeros_like(train[:1]))
    configs = Configurations({"lam": [1e-3] * 3, "lr": [0.05] * 3}, [0, 0, 0], [2, 7, 4], [0, 0, 0])
    out = train_configurations(everything, configs, TrainSettings(epochs=50, min_epochs=1, patience=0), progress=False)
    assert out.epochs.tolist() == [[2, 7, 4]] and out.best_epoch.tolist() == [[2, 7, 4]]
    # equal seed ids start from equal weights: the shorter runs are the longer one's early epochs
    longest = train_configurations(everything, configs.take(np.array([1])), TrainSettings(epochs=50), progress=False)
    np.testing.assert_allclose(out.params["weights"][0, 1], longest.params["weights"][0, 0], atol=1e-5)
