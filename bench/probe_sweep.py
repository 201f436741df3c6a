"""A whole cross-validated probe sweep at THINGS scale versus the previous path and a per-triplet minibatch
baseline; prints JSON.

n = 1854 objects, p = 768, 4.7M triplets from a planted world, 5 lambdas x 3 object folds, fast protocol,
trained to convergence (per-configuration early stopping), with malloc keeping freed memory as the command
lines run it (alignment_jax/host_memory.py). Three baselines in the same run:
- the previous path of the same sweep: autodiff of the matrix formulation (gathers vmapped configuration by
  configuration, two n^2 p matmuls in the gradient) on folds in the given triplet order; its chosen
  configuration's CV accuracy and cross-entropy are printed beside ours (the same to 0.002 or better);
- the straightforward implementation: batches of 256 triplets, the three feature rows of each triplet gathered
  and transformed, Adam; one configuration, timed over some batches and scaled to one epoch of one fold;
- our sweep again in a child process with malloc left as it is (ALIGNMENT_JAX_KEEP_FREED_MEMORY=0).
"""

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from common import add_world_flags, things_world

from alignment_jax import host_memory
from alignment_jax.config.base import base_config
from alignment_jax.data.splits import object_kfold_masks
from alignment_jax.probing import objective, sweep
from alignment_jax.probing.cross_validation import ProbeSettings
from alignment_jax.probing.sweep import stack_folds, train_sweep


@contextlib.contextmanager
def previous_path():
    """The sweep as it was before probing/triplet_matrix.py: autodiff of the gathered log-sum-exp, folds in the
    given order."""
    kernel, rows = objective.triplet_matrix.mean_nll, sweep._fold_rows

    def autodiff(z, triplets, weights, temperature):
        s = jnp.matmul(z, z.T, precision=objective.PRECISION)
        i, j, k = triplets[:, 0], triplets[:, 1], triplets[:, 2]
        return objective.weighted_mean(objective._nll(s[i, j], s[i, k], s[j, k], temperature), weights)

    objective.triplet_matrix.mean_nll, sweep._fold_rows = autodiff, lambda triplets, mask: np.flatnonzero(mask)
    try:
        yield
    finally:
        objective.triplet_matrix.mean_nll, sweep._fold_rows = kernel, rows


def timed_sweep(x, triplets, train, val, lambdas, lrs, settings) -> tuple[object, float, float]:
    """(outcome, wall seconds, process CPU seconds) of the whole sweep, compiled afresh."""
    jax.clear_caches()  # the other path's compiled programs must not serve this one
    folds = stack_folds(x, triplets, train, val)
    wall, cpu = time.perf_counter(), time.process_time()
    outcome = train_sweep(folds, lambdas, lrs, settings.train, seed=0, progress=True)
    return outcome, time.perf_counter() - wall, time.process_time() - cpu


def chosen(outcome) -> dict:
    """The configuration with the lowest mean validation cross-entropy: its CV cross-entropy and accuracy."""
    best = int(np.argmin(outcome.val_cross_entropy.mean(axis=0)))
    return {
        "lambda_index": best,
        "cv_cross_entropy": round(float(outcome.val_cross_entropy[:, best].mean()), 5),
        "cv_accuracy": round(float(outcome.val_accuracy[:, best].mean()), 5),
    }


def baseline_seconds_per_epoch(x: np.ndarray, triplets: np.ndarray, n_batches: int = 200, batch: int = 256) -> float:
    """Seconds for one epoch over `triplets` of a per-triplet minibatch probe (one configuration)."""
    p = x.shape[1]
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))

    def loss(w, xb):  # xb: (B, 3, p) gathered rows
        z = xb @ w
        sims = jnp.stack([(z[:, 0] * z[:, 1]).sum(-1), (z[:, 0] * z[:, 2]).sum(-1), (z[:, 1] * z[:, 2]).sum(-1)], 1)
        return jnp.mean(jax.nn.logsumexp(sims, 1) - sims[:, 0]) + 1e-3 * jnp.linalg.norm(w)

    @jax.jit
    def step(w, state, xb):
        grads = jax.grad(loss)(w, xb)
        updates, state = optimizer.update(grads, state, w)
        return optax.apply_updates(w, updates), state

    w = jnp.asarray(np.random.default_rng(0).normal(size=(p, p)) * 1e-3, jnp.float32)
    state = optimizer.init(w)
    batches = [x[triplets[i * batch : (i + 1) * batch]] for i in range(n_batches + 1)]
    w, state = step(w, state, batches[0])  # compile
    jax.block_until_ready(w)
    start = time.perf_counter()
    for xb in batches[1:]:
        w, state = step(w, state, xb)
    jax.block_until_ready(w)
    return (time.perf_counter() - start) / n_batches * (len(triplets) / batch)


def system_malloc_sweep() -> dict:
    """This bench's own sweep, run alone in a child process with malloc left as it is: its JSON."""
    env = {**os.environ, host_memory.OPT_OUT: "0"}
    command = [sys.executable, __file__, *sys.argv[1:], "--sweep_only"]
    return json.loads(subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    add_world_flags(parser)
    parser.add_argument("--sweep_only", action="store_true", help="time our sweep alone; print its seconds")
    args = parser.parse_args()
    freed_memory_kept = host_memory.keep_freed_memory()

    world = things_world(args)
    config = base_config()
    settings = ProbeSettings.from_config(config.probe).for_width(args.dims)
    x = ((world.features - world.features.mean()) / world.features.std()).astype(np.float32)
    train, val = object_kfold_masks(world.train, args.n_objects, settings.folds, seed=0)
    lambdas = np.asarray(settings.lambdas, np.float32)
    lrs = np.full_like(lambdas, settings.lrs[0])

    outcome, sweep_seconds, sweep_cpu = timed_sweep(x, world.train, train, val, lambdas, lrs, settings)
    if args.sweep_only:
        print(json.dumps({"sweep_seconds": sweep_seconds, "freed_memory_kept": freed_memory_kept, **chosen(outcome)}))
        return
    system_malloc = system_malloc_sweep()
    with previous_path():
        previous, previous_seconds, previous_cpu = timed_sweep(x, world.train, train, val, lambdas, lrs, settings)
    fold_sizes = train.sum(axis=1)
    triplet_epochs = float((outcome.epochs * fold_sizes[:, None]).sum())
    baseline_epoch = baseline_seconds_per_epoch(x, world.train[train[0]])
    n_configs = outcome.epochs.size
    print(
        json.dumps(
            {
                "benchmark": "probe_sweep",
                "n_objects": args.n_objects,
                "dims": args.dims,
                "n_triplets": int(len(world.train)),
                "train_triplets_per_fold": fold_sizes.tolist(),
                "configurations": n_configs,
                "protocol": settings.protocol,
                "sweep_seconds_to_convergence": round(sweep_seconds, 1),
                "freed_memory_kept": freed_memory_kept,
                "system_malloc_sweep_seconds": round(system_malloc["sweep_seconds"], 1),
                "system_malloc_freed_memory_kept": system_malloc["freed_memory_kept"],
                "speedup_vs_system_malloc": round(system_malloc["sweep_seconds"] / sweep_seconds, 2),
                "epochs_per_configuration": outcome.epochs.tolist(),
                "triplet_epochs_per_second": round(triplet_epochs / sweep_seconds),
                "best_cv_accuracy": float(outcome.val_accuracy.mean(axis=0).max()),
                "chosen": chosen(outcome),
                "process_cpu_seconds": round(sweep_cpu, 1),
                "previous_path_sweep_seconds": round(previous_seconds, 1),
                "previous_path_process_cpu_seconds": round(previous_cpu, 1),
                "previous_path_epochs_per_configuration": previous.epochs.tolist(),
                "previous_path_chosen": chosen(previous),
                "speedup_vs_previous_path": round(previous_seconds / sweep_seconds, 2),
                "cpu_speedup_vs_previous_path": round(previous_cpu / sweep_cpu, 2),
                "baseline_per_triplet_batch256_seconds_per_epoch_one_config": round(baseline_epoch, 1),
                "baseline_triplet_epochs_per_second": round(fold_sizes[0] / baseline_epoch),
                "throughput_ratio": round((triplet_epochs / sweep_seconds) / (fold_sizes[0] / baseline_epoch), 1),
                "ratio_one_baseline_epoch_of_all_configs_vs_whole_sweep": round(
                    baseline_epoch * n_configs / sweep_seconds, 1
                ),
                "device": str(jax.devices()[0]),
                "machine": f"{platform.machine()}, {jax.device_count()} device(s)",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
