import numpy as np
import pytest

from alignment_jax.data.splits import object_folds, object_kfold_masks, random_split_mask, triplet_kfold_masks
from alignment_jax.data.synthetic import random_triplets
from alignment_jax.errors import InputError
from alignment_jax.evaluation.noise_ceiling import noise_ceiling


@pytest.mark.parametrize("k", [2, 3, 5])
def test_object_folds_are_disjoint_and_nothing_leaks(k):
    n = 50
    triplets = random_triplets(n, 20_000, np.random.default_rng(1))
    fold_of_object = object_folds(n, k, seed=3)
    sizes = np.bincount(fold_of_object, minlength=k)
    assert sizes.max() - sizes.min() <= 1
    train, val = object_kfold_masks(triplets, n, k, seed=3)
    assert train.shape == val.shape == (k, len(triplets))
    for f in range(k):
        train_objects = np.unique(triplets[train[f]])
        val_objects = np.unique(triplets[val[f]])
        assert not np.intersect1d(train_objects, val_objects).size
        assert set(val_objects) <= set(np.flatnonzero(fold_of_object == f))
        # every triplet with all three objects outside the fold is kept for training, the rest are dropped
        outside = (fold_of_object[triplets] != f).all(axis=1)
        inside = (fold_of_object[triplets] == f).all(axis=1)
        np.testing.assert_array_equal(train[f], outside)
        np.testing.assert_array_equal(val[f], inside)
    assert (val.sum(axis=0) <= 1).all()


def test_many_folds():
    folds = object_folds(1000, 500, seed=0)  # more folds than an int8 holds
    np.testing.assert_array_equal(np.bincount(folds), np.full(500, 2))


def test_folds_depend_on_seed_and_are_reproducible():
    assert not np.array_equal(object_folds(30, 3, 0), object_folds(30, 3, 1))
    np.testing.assert_array_equal(object_folds(30, 3, 7), object_folds(30, 3, 7))
    with pytest.raises(InputError, match="folds=1"):
        object_folds(30, 1)


def test_triplet_kfold_covers_every_triplet_once():
    train, val = triplet_kfold_masks(1001, 3, seed=4)
    assert val.shape == (3, 1001)
    np.testing.assert_array_equal(val.sum(axis=0), np.ones(1001))
    np.testing.assert_array_equal(train, ~val)
    assert sorted(val.sum(axis=1)) == [333, 334, 334]
    assert not np.array_equal(val, triplet_kfold_masks(1001, 3, seed=5)[1])
    with pytest.raises(InputError, match="probe.folds=1"):
        triplet_kfold_masks(10, 1)


def test_random_split():
    val = random_split_mask(1000, 0.1, seed=0)
    assert val.sum() == 100
    assert not np.array_equal(val, random_split_mask(1000, 0.1, seed=1))
    with pytest.raises(InputError):
        random_split_mask(10, 1.5)


def test_noise_ceiling_by_hand():
    triplets = np.array([[0, 1, 2], [1, 0, 2], [2, 0, 1], [3, 4, 5], [4, 5, 3], [5, 3, 4], [6, 7, 8]])
    ceiling = noise_ceiling(triplets, 9)
    # set {0,1,2}: odd ones 2, 2, 1 -> majority agrees 2 of 3; set {3,4,5}: 5, 3, 4 -> 1 of 3
    assert ceiling.accuracy == pytest.approx(3 / 6)
    assert (ceiling.n_repeated_sets, ceiling.n_responses) == (2, 6)
    assert np.isnan(noise_ceiling(triplets[-1:], 9).accuracy)
