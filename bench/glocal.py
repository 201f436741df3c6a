"""gLocal's training, one configuration, written the way its reference code works; prints JSON.

THINGS scale by default: n = 1854 objects, p = 768, 4.7M triplets of a planted world (90% train, 10%
validation as THINGS' train_90 / test_10), 50k local images (90% train, 10% validation, as ImageNet
train / val). The baseline follows LukasMut/gLocal's main_glocal_probing_final.py + GlocalFeatureProbe
(docs/glocal.md): batches of 256 triplets zipped with batches of 1,024 local images (the shorter loader
cycles, so an epoch is max(#triplet batches, #local batches) steps), per step Z = X W for all objects,
the teacher and student similarities of the local batch, loss (1 - alpha) triplet NLL + alpha local +
lambda ||W - mean(diag W) I||^2, gradient-norm clipping 1.0, Adam with gLocal's LinearLR warm-up; each
epoch ends with a validation pass (triplet + local, zipped the same way). The step is jitted JAX
(alignment_jax.probing.local.glocal_loss), so the comparison is about the training scheme, not the
framework. Time per epoch = measured time per step x steps per epoch (a THINGS-scale epoch is ~16k steps).

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

from alignment_jax.data.synthetic import make_world
from alignment_jax.probing import local


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
    parser = argparse.ArgumentParser()
    parser.add_argument("--n_objects", type=int, default=1854)
    parser.add_argument("--dims", type=int, default=768)
    parser.add_argument("--triplets", type=int, default=4_700_000)
    parser.add_argument("--local", type=int, default=50_000)
    parser.add_argument("--concepts", type=int, default=49)
    parser.add_argument("--triplet_batch", type=int, default=256)
    parser.add_argument("--local_batch", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20, help="training steps timed (then scaled to an epoch)")
    parser.add_argument("--alpha", type=float, default=0.25)
    parser.add_argument("--tau", type=float, default=0.1)
    parser.add_argument("--lam", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max_epochs", type=int, default=100)
    args = parser.parse_args()

    world = make_world(
        n_objects=args.n_objects, n_concepts=args.concepts, n_dims=args.dims, n_train=args.triplets, n_test=0,
        n_repeated_sets=0, n_local=args.local, beta=1.0, seed=0,
    )  # fmt: skip
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
    # ---- Issue 13, part 2 goes here: OUR whole sweep on the same data (x, train/val triplets, train/val local
    # features), 3 lambdas x 2 alphas x 2 taus x 3 folds, to convergence, as ONE compiled vmapped program; add to
    # `report`: "sweep_seconds_to_convergence", "sweep_configurations", "sweep_triplet_epochs_per_second" and
    # "ratio_one_baseline_epoch_vs_whole_sweep" = baseline_seconds_per_epoch_one_config / sweep seconds
    # (the target: > 1). ----
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
