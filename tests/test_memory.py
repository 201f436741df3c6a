"""The sweep's memory estimate against XLA's own buffer assignment, the chunk plan, and chunked == unchunked."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignment_jax.data.splits import object_kfold_masks
from alignment_jax.data.synthetic import make_world
from alignment_jax.probing import memory, sweep


@pytest.fixture(scope="module")
def small():
    world = make_world(n_objects=90, n_concepts=4, n_dims=16, n_train=8000, n_test=0, seed=4)
    x = ((world.features - world.features.mean()) / world.features.std()).astype(np.float32)
    train, val = object_kfold_masks(world.train, 90, 3, seed=0)
    return x, world.train, train, val


def compiled_bytes(
    folds: sweep.FoldData, n_slots: int, settings: sweep.TrainSettings, n_batches: int, data=None
) -> int:
    """Bytes XLA assigns to one epoch of F x n_slots configurations (arguments, outputs, temporaries); with
    local data (gLocal) every slot in a group of its own, the most local batches a pool computes."""
    f, p = folds.n_folds, folds.train_features.shape[-1]
    slots = np.zeros((f, n_slots), np.int32)
    fresh = functools.partial(sweep._initial_state, p=p, settings=settings)
    state = jax.eval_shape(fresh, jnp.int32(0), jnp.arange(f), jnp.asarray(slots), jnp.asarray(slots < 0))
    names = ("lam", "lr", "view", "max_epochs") + (() if data is None else ("alpha", "tau"))
    dtype = lambda k: np.int32 if k in ("view", "max_epochs") else np.float32
    configs = {k: jax.ShapeDtypeStruct((f, n_slots), dtype(k)) for k in names}
    arrays = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in dataclasses.astuple(folds)]
    groups = None
    if data is not None:
        every = jnp.tile(jnp.arange(n_slots, dtype=jnp.int32), (f, 1))
        groups = sweep.Groups(every, every)
    lowered = sweep._sweep_epoch.lower(
        state, *arrays, data, configs, groups, jnp.arange(f), jnp.int32(0), settings=settings, n_batches=n_batches
    )
    stats = lowered.compile().memory_analysis()
    used = stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
    return used - stats.alias_size_in_bytes  # the donated state is updated in place


@pytest.mark.parametrize("batch_size", [0, 128])  # full batch: the matrix formulation; 128: per-triplet rows
def test_estimate_covers_what_xla_assigns(small, batch_size):
    x, triplets, train, val = small
    folds = sweep.stack_folds(np.stack([x, 2 * x]), triplets, train, val, multiple=batch_size or 1)
    settings = sweep.TrainSettings(batch_size=batch_size)
    t_train = folds.train_triplets.shape[1]
    batch = batch_size or t_train
    one, five = (compiled_bytes(folds, k, settings, t_train // batch) for k in (1, 5))
    per_config = (five - one) / (4 * folds.n_folds)  # what each further configuration on each fold costs
    estimate = memory.config_bytes(folds, batch, settings.optimizer, settings.bias)
    assert per_config <= estimate <= 2 * per_config, (per_config, estimate)
    fixed = one - folds.n_folds * per_config
    assert memory.data_bytes(folds) + folds.n_folds * estimate >= fixed


def test_plan_chunks():
    assert memory.plan_chunks(60, 3, per_config=1e6, shared=1e6, budget=1e9) == memory.ChunkPlan(60, 1)
    # 40 configurations per chunk fit: 60 -> two equal chunks of 30
    assert memory.plan_chunks(60, 3, per_config=1e6, shared=1e6, budget=121e6) == memory.ChunkPlan(30, 2)
    # the budget is per device: 8 devices hold 8 x 40; chunks are a multiple of the device count
    assert memory.plan_chunks(60, 3, per_config=1e6, shared=1e6, budget=121e6, n_devices=8) == memory.ChunkPlan(64, 1)
    # at least one configuration per device, even if none fits
    assert memory.plan_chunks(5, 3, per_config=1e9, shared=0, budget=1e6, n_devices=2) == memory.ChunkPlan(2, 3)
    assert memory.available_bytes() > 0


def test_chunked_sweep_equals_unchunked(small, monkeypatch):
    x, triplets, train, val = small
    folds = sweep.stack_folds(np.stack([x, np.tanh(x)]), triplets, train, val)
    configs = sweep.Configurations.grid([3.0, 1e-1, 1e-4], [0.05, 0.05, 0.02], epochs=30, n_views=2)
    settings = sweep.TrainSettings(epochs=30, min_epochs=3, patience=3)
    per_config = memory.config_bytes(folds, folds.train_triplets.shape[1])
    budget = memory.data_bytes(folds) + 2.5 * folds.n_folds * per_config  # two configurations per chunk
    assert memory.plan_chunks(6, 3, per_config, memory.data_bytes(folds), budget).n_chunks == 3
    whole = sweep.train_configurations(folds, configs, settings, seed=2, progress=False, budget_bytes=1e12)
    chunked = sweep.train_configurations(folds, configs, settings, seed=2, progress=False, budget_bytes=budget)
    assert len(np.unique(whole.epochs)) > 1
    np.testing.assert_array_equal(whole.epochs, chunked.epochs)
    np.testing.assert_array_equal(whole.best_epoch, chunked.best_epoch)
    np.testing.assert_allclose(whole.val_cross_entropy, chunked.val_cross_entropy, rtol=1e-5)
    np.testing.assert_allclose(whole.val_accuracy, chunked.val_accuracy, atol=1e-6)
    np.testing.assert_allclose(whole.params["weights"], chunked.params["weights"], atol=1e-4)  # float32 rounding
    # the pool shrinks to its active slots when that pays; forced here at every chance: the same numbers again
    monkeypatch.setattr(sweep._Clock, "pays", lambda self, slots, target, remaining: True)
    sizes, compact = [], sweep._Pool.compact
    monkeypatch.setattr(sweep._Pool, "compact", lambda pool, target: sizes.append(target) or compact(pool, target))
    shrunk = sweep.train_configurations(folds, configs, settings, seed=2, progress=False, budget_bytes=1e12)
    assert sizes == [3, 1]  # 6 slots per fold -> 3 -> 1
    np.testing.assert_array_equal(whole.epochs, shrunk.epochs)
    np.testing.assert_allclose(whole.val_cross_entropy, shrunk.val_cross_entropy, rtol=1e-5)
    np.testing.assert_allclose(whole.params["weights"], shrunk.params["weights"], atol=1e-4)
