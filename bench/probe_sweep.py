"""A whole cross-validated probe sweep at THINGS scale versus a per-triplet minibatch baseline; prints JSON.

n = 1854 objects, p = 768, 4.7M triplets from a planted world, 5 lambdas x 3 object folds, fast protocol,
trained to convergence (per-configuration early stopping). The baseline is the straightforward
implementation: batches of 256 triplets, the three feature rows of each triplet gathered and transformed,
Adam; one configuration, timed over some batches and scaled to one epoch of one fold.
"""

import argparse
import json
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from common import add_world_flags, things_world

from alignment_jax.config.base import base_config
from alignment_jax.data.splits import object_kfold_masks
from alignment_jax.probing.cross_validation import ProbeSettings
from alignment_jax.probing.sweep import stack_folds, train_sweep


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


def main() -> None:
    parser = argparse.ArgumentParser()
    add_world_flags(parser)
    args = parser.parse_args()

    world = things_world(args)
    config = base_config()
    settings = ProbeSettings.from_config(config.probe).for_width(args.dims)
    x = ((world.features - world.features.mean()) / world.features.std()).astype(np.float32)
    train, val = object_kfold_masks(world.train, args.n_objects, settings.folds, seed=0)
    folds = stack_folds(x, world.train, train, val)
    lambdas = np.asarray(settings.lambdas, np.float32)
    lrs = np.full_like(lambdas, settings.lrs[0])

    start = time.perf_counter()
    outcome = train_sweep(folds, lambdas, lrs, settings.train, seed=0, progress=True)
    sweep_seconds = time.perf_counter() - start
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
                "epochs_per_configuration": outcome.epochs.tolist(),
                "triplet_epochs_per_second": round(triplet_epochs / sweep_seconds),
                "best_cv_accuracy": float(outcome.val_accuracy.mean(axis=0).max()),
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
