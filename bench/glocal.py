"""gLocal's objective: our whole sweep beside gLocal's training scheme for one configuration; prints JSON.

THINGS scale by default: n = 1854 objects, p = 768, 4.7M triplets of a planted world (90% train, 10%
test, as THINGS' train_90 / test_10), 50k local images. Both sides get the same data.

Ours: `run_probe` with probe.objective=glocal, 3 lambdas x 2 alphas x 2 taus x 3 object folds (36
configurations, fast protocol: full-batch triplet steps, each paired with a batch of 1,024 local images;
10% of the local images validate), every configuration to convergence (per-configuration early stopping on
gLocal's validation loss) as ONE compiled vmapped program, then selection, the refit on all training
triplets and the test: the whole run, compilation included.

Baseline: gLocal's scheme, one configuration, following LukasMut/gLocal's main_glocal_probing_final.py +
GlocalFeatureProbe (docs/glocal.md): batches of 256 triplets zipped with batches of 1,024 local images (the
shorter loader cycles, so an epoch is max(#triplet batches, #local batches) steps), per step Z = X W for all
objects, the teacher and student similarities of the local batch, loss (1 - alpha) triplet NLL + alpha local
+ lambda ||W - mean(diag W) I||^2, gradient-norm clipping 1.0, Adam with gLocal's LinearLR warm-up; each
epoch ends with a validation pass (triplet + local, zipped the same way). The step is jitted JAX
(alignment_jax.probing.local.glocal_loss), so the comparison is about the training scheme, not the
framework. Its time per epoch = measured time per step x steps per epoch (a THINGS-scale epoch is ~16k
steps); gLocal trains up to 100 such epochs per configuration.

`ratio_one_baseline_epoch_vs_whole_sweep` = one baseline epoch of one configuration / our whole run (the
issue's target: > 1). Triplet-epochs per second: each configuration's epochs times its fold's training
triplets (the refit's: all of them), summed, over the wall time.

Run small: python bench/glocal.py --n_objects 200 --dims 64 --triplets 100000 --local 5000
"""

import argparse
import functools
import json
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from common import add_world_flags, things_world

from alignment_jax import host_memory
from alignment_jax.config.base import base_config
from alignment_jax.data.splits import object_kfold_masks
from alignment_jax.probing import local
from alignment_jax.probing.cross_validation import ProbeSettings, run_probe


def linear_lr(lr: float, epoch: int, max_epochs: int) -> float:
    """torch.optim.lr_scheduler.LinearLR(total_iters=max_epochs) defaults, stepped per epoch: the learning
    rate rises from lr / 3 to lr over max_epochs epochs."""
    return lr * (1 / 3 + (2 / 3) * min(epoch, max_epochs) / max_epochs)


def make_step(alpha: float, tau: float, lam: float):
    """One jitted training step of one configuration and one jitted validation step (gLocal's shapes)."""
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.scale_by_adam())
    loss = functools.partial(
        local.glocal_loss, lam=lam, alpha=alpha, tau=tau, regularizer="identity", temperature=1.0,
        formulation="objects",  # gLocal: things_embedding = features @ W for every object, then the batch's rows
    )  # fmt: skip

    @jax.jit
    def train_step(params, opt_state, x, triplets, local_x, lr):
        teacher = local.cosine_similarities(local_x)  # gLocal recomputes the teacher in every forward pass
        grads = jax.grad(loss)(params, x, triplets, jnp.ones(triplets.shape[0]), local_x, teacher)
        updates, opt_state = tx.update(grads, opt_state, params)
        return jax.tree.map(lambda p, u: p - lr * u, params, updates), opt_state

    @jax.jit
    def val_step(params, x, triplets, local_x):
        ce, _, loc = local.glocal_validation(
            params, x, triplets, jnp.ones(triplets.shape[0]), local_x, local.cosine_similarities(local_x), tau,
            temperature=1.0, formulation="objects",
        )  # fmt: skip
        return ce + loc  # gLocal's val_overall_loss: unweighted

    return tx, train_step, val_step


def zipped_batches(n_triplets: int, n_local: int, triplet_batch: int, local_batch: int, rng: np.random.Generator):
    """gLocal's ZippedBatchLoader over two shuffled DataLoaders (drop_last=False): index batches, the
    shorter side cycling (reshuffled on each pass) until the longer one is exhausted."""
    split = lambda n, b: np.array_split(rng.permutation(n), np.arange(b, n, b))
    triplet_batches, local_batches = split(n_triplets, triplet_batch), split(n_local, local_batch)
    longest = max(len(triplet_batches), len(local_batches))
    while len(triplet_batches) < longest:
        triplet_batches += split(n_triplets, triplet_batch)
    while len(local_batches) < longest:
        local_batches += split(n_local, local_batch)
    return list(zip(triplet_batches[:longest], local_batches[:longest], strict=True))


def time_steps(step, batches, n_steps: int) -> float:
    """Seconds per call of `step(batch)` over n_steps full batches, after one compiling call."""
    jax.block_until_ready(step(batches[0]))
    start = time.perf_counter()
    for batch in batches[1 : n_steps + 1]:
        out = step(batch)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / max(1, min(n_steps, len(batches) - 1))


def main() -> None:
    host_memory.keep_freed_memory()  # as the command lines run
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_world_flags(parser)
    parser.add_argument("--local", type=int, default=50_000)
    parser.add_argument("--triplet_batch", type=int, default=256)
    parser.add_argument("--local_batch", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20, help="training steps timed (then scaled to an epoch)")
    parser.add_argument("--alpha", type=float, default=0.25)
    parser.add_argument("--tau", type=float, default=0.1)
    parser.add_argument("--lam", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max_epochs", type=int, default=100)
    parser.add_argument("--lambdas", type=float, nargs="+", default=[1e-1, 1e-2, 1e-3], help="our sweep's")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.1, 0.25], help="our sweep's")
    parser.add_argument("--taus", type=float, nargs="+", default=[0.1, 1.0], help="our sweep's")
    parser.add_argument("--baseline_only", action="store_true", help="time the baseline alone")
    args = parser.parse_args()

    world = things_world(args, n_local=args.local)
    rng = np.random.default_rng(0)
    x = jnp.asarray(
        (world.features - world.features.mean()) / world.features.std(), jnp.float32
    )  # THINGS: standardized
    n_val_triplets, n_val_local = len(world.train) // 10, args.local // 10
    val_triplets, train_triplets = world.train[:n_val_triplets], world.train[n_val_triplets:]
    val_local, train_local = world.local_features[:n_val_local], world.local_features[n_val_local:]  # raw, as gLocal

    params = {"weights": 1e-3 * jnp.eye(args.dims, dtype=jnp.float32)}  # gLocal: sigma * I, no bias by default
    tx, train_step, val_step = make_step(args.alpha, args.tau, args.lam)
    opt_state = tx.init(params)
    lr = jnp.float32(linear_lr(args.lr, 0, args.max_epochs))
    state = [params, opt_state]

    def train(batch):
        t, b = batch
        state[:] = train_step(*state, x, jnp.asarray(train_triplets[t]), jnp.asarray(train_local[b]), lr)
        return state[0]["weights"]

    full = lambda bs: [(t, b) for t, b in bs if (len(t), len(b)) == (len(bs[0][0]), len(bs[0][1]))]  # one shape
    train_batches = zipped_batches(len(train_triplets), len(train_local), args.triplet_batch, args.local_batch, rng)
    val_batches = zipped_batches(len(val_triplets), len(val_local), args.triplet_batch, args.local_batch, rng)
    step_seconds = time_steps(train, full(train_batches), args.steps)
    val = lambda batch: val_step(state[0], x, jnp.asarray(val_triplets[batch[0]]), jnp.asarray(val_local[batch[1]]))
    val_step_seconds = time_steps(val, full(val_batches), args.steps)
    epoch_seconds = step_seconds * len(train_batches) + val_step_seconds * len(val_batches)

    report = {
        "benchmark": "glocal",
        "n_objects": args.n_objects,
        "dims": args.dims,
        "train_triplets": len(train_triplets),
        "validation_triplets": len(val_triplets),
        "train_local_images": len(train_local),
        "validation_local_images": len(val_local),
        "baseline": "gLocal's scheme, one configuration: triplet batches zipped with local batches, jitted Adam step",
        "baseline_config": {"alpha": args.alpha, "tau": args.tau, "lambda": args.lam, "lr": args.lr},
        "triplet_batch": args.triplet_batch,
        "local_batch": args.local_batch,
        "baseline_steps_per_epoch": len(train_batches),
        "baseline_validation_steps_per_epoch": len(val_batches),
        "baseline_seconds_per_step": round(step_seconds, 4),
        "baseline_validation_seconds_per_step": round(val_step_seconds, 4),
        "timed_steps": min(args.steps, len(train_batches) - 1),
        "baseline_seconds_per_epoch_one_config": round(epoch_seconds, 1),
        "baseline_triplet_epochs_per_second": round(len(train_triplets) / epoch_seconds),
        "device": str(jax.devices()[0]),
        "machine": f"{platform.machine()}, {jax.device_count()} device(s)",
    }
    if not args.baseline_only:
        report.update(our_sweep(world.features, train_triplets, val_triplets, world.local_features, args))
        report["ratio_one_baseline_epoch_vs_whole_sweep"] = round(epoch_seconds / report["sweep_seconds"], 2)
        report["throughput_ratio"] = round(
            report["sweep_triplet_epochs_per_second"] / report["baseline_triplet_epochs_per_second"], 1
        )
    print(json.dumps(report, indent=2))


def our_sweep(features, train_triplets, test_triplets, local_features, args) -> dict:
    """Our gLocal run on the baseline's data: the sweep to convergence, selection, refit and test, timed."""
    probe = base_config().probe
    probe.update(objective="glocal", lambdas=tuple(args.lambdas), alphas=tuple(args.alphas), taus=tuple(args.taus))
    probe.local.batch_size = args.local_batch
    settings = ProbeSettings.from_config(probe).for_width(args.dims)
    start = time.perf_counter()
    result = run_probe(
        features, train_triplets, test_triplets, settings, seed=0, progress="lines", local=local_features
    )
    seconds = time.perf_counter() - start
    summary = result.summary
    train, _ = object_kfold_masks(train_triplets, args.n_objects, settings.folds, seed=0)  # run_probe's folds
    fold_sizes = train.sum(axis=1)
    done = sum(row["epochs"] * fold_sizes[row["fold"]] for row in summary["sweep"])
    done += summary["refit_epochs"] * len(train_triplets)
    return {
        "sweep": "ours: lambda x alpha x tau x 3 object folds in one vmapped program, fast protocol, to convergence; "
        "then selection, refit and test",
        "sweep_configurations": len(summary["sweep"]),
        "sweep_epochs_per_configuration": [int(min(r["epochs"] for r in summary["sweep"])),
                                           int(max(r["epochs"] for r in summary["sweep"]))],
        "sweep_seconds": round(seconds, 1),
        "sweep_triplet_epochs_per_second": round(done / seconds),
        "selected": {k: summary[k] for k in ("best_lambda", "best_alpha", "best_tau", "refit_epochs")},
        "test_accuracy": round(summary["test_accuracy"], 4),
    }  # fmt: skip


if __name__ == "__main__":
    main()
