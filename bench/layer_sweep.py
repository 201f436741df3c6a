"""Every layer of a network in one probe sweep versus the single-layer sweep, at THINGS scale; prints JSON.

n = 1854 objects, p = 768, 4.7M triplets from a planted world, 12 layers x 5 lambdas x 3 object folds, fast
protocol, every configuration trained to convergence (per-configuration early stopping). The layers are
views of the planted features with less noise the deeper they are, so (as a real network's layers) they
reach their best validation loss after different numbers of epochs. Baseline in the same run: the
single-layer sweep of bench/probe_sweep.py (5 lambdas x 3 folds) on the deepest layer.

Throughput: triplet-epochs per second, each configuration's epochs times its fold's training triplets,
summed over the configurations, over the sweep's wall time (compilation included, as in probe_sweep.py).
Per configuration the work is the same in both sweeps, so `throughput_ratio` (multi-layer over
single-layer) is the per-configuration speed of the multi-layer sweep relative to the single-layer one.
Peak memory: the process's peak resident memory (the CPU) or the device's peak bytes in use (GPUs),
read after each sweep (the single-layer one runs first). Smaller runs: --triplets, --layers, --dims ...;
--memory_gb caps the sweep's memory per device (0 = measured) to show the chunking; --plan_only prints the
pool the memory plan picks and XLA's own bytes for one epoch of it, without training (seconds, any scale).
"""

import argparse
import dataclasses
import functools
import json
import platform
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
from common import add_world_flags, things_world

from alignment_jax import host_memory
from alignment_jax.config.base import base_config
from alignment_jax.data.splits import object_kfold_masks
from alignment_jax.probing import memory, sweep
from alignment_jax.probing.cross_validation import ProbeSettings
from alignment_jax.probing.sweep import Configurations, stack_folds, train_configurations, train_sweep


def peak_memory_gb() -> dict[str, float]:
    """Peak resident memory of this process, and the first device's peak bytes in use where jax reports it."""
    peak = {"host_peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 2)}
    stats = jax.devices()[0].memory_stats()
    if stats and "peak_bytes_in_use" in stats:
        peak["device_peak_gb"] = round(stats["peak_bytes_in_use"] / 1e9, 2)
    return peak


def layer_views(features: np.ndarray, n_layers: int, seed: int = 0) -> np.ndarray:
    """(L, n, p) standardized views: layer l adds Gaussian noise of std (L - 1 - l) / L times the
    features' own (the last layer is the clean features)."""
    rng = np.random.default_rng(seed)
    scale = features.std()
    views = np.empty((n_layers, *features.shape), np.float32)
    for layer in range(n_layers):
        noisy = features + rng.normal(0, scale * (n_layers - 1 - layer) / n_layers, features.shape)
        views[layer] = (noisy - noisy.mean()) / noisy.std()
    return views


def triplet_epochs(epochs: np.ndarray, fold_sizes: np.ndarray) -> float:
    """epochs: (F, K) -> sum of epochs x training triplets of the fold."""
    return float((epochs * fold_sizes[:, None]).sum())


def plan_only(views, triplets, train, val, settings, lambdas, budget) -> dict:
    """The multi-layer sweep's pool (slots per fold) and, for one epoch of it, the estimate of
    probing/memory.py next to the bytes XLA assigns to the compiled program (arguments, outputs, temporaries)."""
    folds = stack_folds(views, triplets, train, val)
    n_configs = len(views) * len(lambdas)
    per_config = memory.config_bytes(folds, folds.train_triplets.shape[1], settings.train.optimizer)
    devices = jax.local_devices()
    budget = budget or memory.available_bytes(devices)
    plan = memory.plan_chunks(n_configs, folds.n_folds, per_config, memory.data_bytes(folds), budget, len(devices))
    cached = memory.cache_slots(per_config, folds.n_folds, devices) * len(devices)
    slots = min(plan.size, cached) if cached else plan.size
    f, p = folds.n_folds, folds.train_features.shape[-1]
    ids = jnp.zeros((f, slots), jnp.int32)
    fresh = functools.partial(sweep._initial_state, p=p, settings=settings.train)
    state = jax.eval_shape(fresh, jnp.int32(0), jnp.arange(f), ids, ids < 0)
    arrays = Configurations.grid([1e-3], [1e-3], 1).arrays()
    arrays = {k: jax.ShapeDtypeStruct((f, slots), v.dtype) for k, v in arrays.items()}
    data = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in dataclasses.astuple(folds)]
    lowered = sweep._sweep_epoch.lower(
        state, *data, arrays, jnp.arange(f), jnp.int32(0), settings=settings.train, n_batches=1
    )
    stats = lowered.compile().memory_analysis()
    assigned = stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
    return {
        "configurations": f * n_configs,
        "memory_budget_gb_per_device": round(budget / 1e9, 2),
        "memory_estimate_gb_per_configuration_and_fold": round(per_config / 1e9, 3),
        "slots_per_fold": slots,
        "estimate_gb_of_one_epoch_of_the_pool": round((memory.data_bytes(folds) + f * slots * per_config) / 1e9, 2),
        "xla_gb_of_one_epoch_of_the_pool": round((assigned - stats.alias_size_in_bytes) / 1e9, 2),
        "device": str(devices[0]),
    }


def main() -> None:
    host_memory.keep_freed_memory()  # as the command lines run
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_world_flags(parser)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--lambdas", type=int, default=5, help="the first this many of the default lambdas")
    parser.add_argument("--memory_gb", type=float, default=0.0, help="sweep memory per device; 0 = measured")
    parser.add_argument("--plan_only", action="store_true", help="print the pool and XLA's bytes for it; no training")
    args = parser.parse_args()

    world = things_world(args)
    config = base_config()
    settings = ProbeSettings.from_config(config.probe).for_width(args.dims)
    views = layer_views(world.features, args.layers)
    train, val = object_kfold_masks(world.train, args.n_objects, settings.folds, seed=0)
    fold_sizes = train.sum(axis=1)
    lambdas = np.asarray(settings.lambdas[: args.lambdas], np.float32)
    lrs = np.full_like(lambdas, settings.lrs[0])
    budget = args.memory_gb * 1e9
    after_data = peak_memory_gb()

    if args.plan_only:
        print(json.dumps(plan_only(views, world.train, train, val, settings, lambdas, budget), indent=2))
        return
    single_folds = stack_folds(views[-1], world.train, train, val)
    start = time.perf_counter()
    single = train_sweep(single_folds, lambdas, lrs, settings.train, seed=0, progress=True, budget_bytes=budget)
    single_seconds = time.perf_counter() - start
    after_single = peak_memory_gb()
    del single_folds

    folds = stack_folds(views, world.train, train, val)
    configs = Configurations.grid(lambdas, lrs, settings.train.epochs, args.layers)
    batch = folds.train_triplets.shape[1]
    per_config = memory.config_bytes(folds, batch, settings.train.optimizer, settings.train.bias)
    devices = jax.local_devices()
    budget_used = budget or memory.available_bytes(devices)
    plan = memory.plan_chunks(
        len(configs), folds.n_folds, per_config, memory.data_bytes(folds), budget_used, len(devices)
    )
    cached = memory.cache_slots(per_config, folds.n_folds, devices) * len(devices)
    slots = min(plan.size, cached) if cached else plan.size  # as train_configurations chooses
    start = time.perf_counter()
    multi = train_configurations(
        folds,
        configs,
        settings.train,
        seed=0,
        progress=True,
        desc="layer sweep",
        budget_bytes=budget,
        keep_params=False,
    )
    multi_seconds = time.perf_counter() - start
    after_multi = peak_memory_gb()

    single_rate = triplet_epochs(single.epochs, fold_sizes) / single_seconds
    multi_rate = triplet_epochs(multi.epochs, fold_sizes) / multi_seconds
    n_hyper = len(lambdas)
    per_layer = [multi.columns(slice(v * n_hyper, (v + 1) * n_hyper)) for v in range(args.layers)]
    deepest = per_layer[-1]
    print(
        json.dumps(
            {
                "benchmark": "layer_sweep",
                "n_objects": args.n_objects,
                "dims": args.dims,
                "n_triplets": int(len(world.train)),
                "train_triplets_per_fold": fold_sizes.tolist(),
                "layers": args.layers,
                "lambdas": lambdas.tolist(),
                "folds": settings.folds,
                "protocol": settings.protocol,
                "single_layer_configurations": int(single.epochs.size),
                "single_layer_seconds": round(single_seconds, 1),
                "single_layer_triplet_epochs_per_second": round(single_rate),
                "multi_layer_configurations": int(multi.epochs.size),
                "multi_layer_seconds": round(multi_seconds, 1),
                "multi_layer_triplet_epochs_per_second": round(multi_rate),
                "throughput_ratio": round(multi_rate / single_rate, 3),
                "mean_epochs_per_layer": [round(float(o.epochs.mean()), 1) for o in per_layer],
                "max_epochs_per_layer": [int(o.epochs.max()) for o in per_layer],
                "best_cv_accuracy_per_layer": [round(float(o.val_accuracy.mean(axis=0).max()), 4) for o in per_layer],
                "deepest_layer_equals_single_layer_sweep": bool(
                    np.array_equal(deepest.epochs, single.epochs)
                    and np.allclose(deepest.val_cross_entropy, single.val_cross_entropy, rtol=1e-4)
                ),
                "memory_estimate_gb_per_configuration_and_fold": round(per_config / 1e9, 3),
                "memory_budget_gb_per_device": round(budget_used / 1e9, 2),
                "slots_per_fold": slots,
                "rounds_at_least": -(-len(configs) // slots),
                "peak_memory_after_data": after_data,
                "peak_memory_after_single_layer_sweep": after_single,
                "peak_memory_after_multi_layer_sweep": after_multi,
                "device": str(jax.devices()[0]),
                "machine": f"{platform.machine()}, {jax.device_count()} device(s)",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
