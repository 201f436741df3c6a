"""Epochs and seconds to the early-stopped optimum of one fold's full-batch probe, per optimizer; prints JSON.

Issue 25's first measurement: does a quasi-Newton method or another step-size rule reach the validation optimum
in fewer (or cheaper) epochs than the fast protocol's full-batch Adam at lr 1/p? Each lambda of the default
grid trains alone on fold 0 of a planted world (object folds), one step per epoch, the validation loss after
each, stopped by the sweep's rule (min_epochs, patience, min_delta). Methods: adam (today's: clipped Adam,
lr scale/p), lbfgs (optax.lbfgs with its zoom line search, whose evaluations are counted), and adam_then_lbfgs
(k Adam epochs, to leave the flat region around W = 0, then L-BFGS).
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from common import add_world_flags, things_world

from alignment_jax.data.splits import object_kfold_masks
from alignment_jax.probing import objective
from alignment_jax.probing.sweep import TrainSettings, init_params, stack_folds


def stopping_epochs(losses: list[float], settings: TrainSettings) -> tuple[int, int]:
    """(epoch the sweep's early stopping stops at, 0 if it goes on; epoch of the best validation loss), 1-based."""
    best, wait, best_epoch = np.inf, 0, 0
    for epoch, value in enumerate(losses, 1):
        if value < best - settings.min_delta:
            best, wait, best_epoch = value, 0, epoch
        else:
            wait += 1
        if epoch >= settings.min_epochs and wait >= settings.patience:
            return epoch, best_epoch
    return 0, best_epoch


def make_step(method: str, loss_fn, p: int, adam_epochs: int, adam_scale: float):
    """(init, step): step(w, state) -> (w, state, line-search evaluations this epoch)."""
    adam = optax.chain(optax.clip_by_global_norm(1.0), optax.scale_by_adam(), optax.scale(-adam_scale / p))
    lbfgs = optax.lbfgs()

    def adam_step(w, state):
        updates, state = adam.update(jax.grad(loss_fn)(w), state, w)
        return w + updates, state, jnp.int32(1)

    def lbfgs_step(w, state):
        value, grad = optax.value_and_grad_from_state(loss_fn)(w, state=state)
        updates, state = lbfgs.update(grad, state, w, value=value, grad=grad, value_fn=loss_fn)
        return w + updates, state, optax.tree_utils.tree_get(state, "num_linesearch_steps")

    if method == "adam":
        return adam.init, adam_step
    if method == "lbfgs":
        return lbfgs.init, lbfgs_step

    def switched(w, state):
        adam_state, lbfgs_state, epoch = state

        def by_adam(_):
            w_new, adam_new, evals = adam_step(w, adam_state)
            return w_new, (adam_new, lbfgs.init(w_new), epoch + 1), evals

        def by_lbfgs(_):
            w_new, lbfgs_new, evals = lbfgs_step(w, lbfgs_state)
            return w_new, (adam_state, lbfgs_new, epoch + 1), evals

        return jax.lax.cond(epoch < adam_epochs, by_adam, by_lbfgs, None)

    return lambda w: (adam.init(w), lbfgs.init(w), jnp.int32(0)), switched


def main() -> None:
    parser = argparse.ArgumentParser()
    add_world_flags(parser, dims=128, triplets=300_000)
    parser.add_argument("--methods", default="adam,lbfgs,adam_then_lbfgs")
    parser.add_argument("--adam_epochs", type=int, default=6, help="adam_then_lbfgs: Adam epochs first")
    parser.add_argument("--adam_scale", type=float, default=1.0, help="adam: lr = scale / p")
    parser.add_argument("--max_epochs", type=int, default=120)
    args = parser.parse_args()

    world = things_world(args)
    x = ((world.features - world.features.mean()) / world.features.std()).astype(np.float32)
    train, val = object_kfold_masks(world.train, args.n_objects, 3, seed=0)
    fold = stack_folds(x, world.train, train, val).fold(0)
    train_x, train_t, train_w = (jnp.asarray(a[0]) for a in (fold.train_features[:, 0], fold.train_triplets,
                                                              fold.train_weights))  # fmt: skip
    val_x, val_t, val_w = (jnp.asarray(a[0]) for a in (fold.val_features[:, 0], fold.val_triplets, fold.val_weights))
    settings = TrainSettings(batch_size=0, epochs=args.max_epochs)
    evaluate = jax.jit(
        lambda w: objective.evaluate({"weights": w}, val_x, val_t, val_w, temperature=1.0, formulation="matrix")
    )
    w0 = init_params(jax.random.key(0), args.dims, settings)["weights"]
    rows = []
    for method in args.methods.split(","):
        for lam in (1e-1, 1e-2, 1e-3, 1e-4, 1e-5):
            loss_fn = lambda w, lam=lam: objective.loss(
                {"weights": w}, train_x, train_t, train_w, lam, regularizer="frobenius", temperature=1.0,
                formulation="matrix",
            )  # fmt: skip
            init, step = make_step(method, loss_fn, args.dims, args.adam_epochs, args.adam_scale)
            step = jax.jit(step)
            jax.block_until_ready(step(w0, init(w0)))  # compile
            w, state, losses, accuracies, evals = w0, init(w0), [], [], 0
            start = time.perf_counter()
            while len(losses) < args.max_epochs:
                w, state, used = step(w, state)
                cross_entropy, accuracy = evaluate(w)
                losses.append(float(cross_entropy))
                accuracies.append(float(accuracy))
                evals += int(used)
                if not np.isfinite(losses[-1]) or stopping_epochs(losses, settings)[0]:
                    break
            seconds = time.perf_counter() - start
            stop, best = len(losses), stopping_epochs(losses, settings)[1]
            rows.append(
                {
                    "method": method,
                    "lambda": lam,
                    "stop_epoch": stop,
                    "best_epoch": best,
                    "val_cross_entropy": round(losses[best - 1], 4),
                    "val_accuracy": round(accuracies[best - 1], 4),
                    "evaluations_per_epoch": round(evals / len(losses), 2),
                    "seconds_per_epoch": round(seconds / len(losses), 4),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        chosen = min(mine, key=lambda r: r["val_cross_entropy"])
        summary[method] = {
            "chosen_lambda": chosen["lambda"],
            "chosen_val_cross_entropy": chosen["val_cross_entropy"],
            "chosen_val_accuracy": chosen["val_accuracy"],
            "epochs_all_lambdas": sum(r["stop_epoch"] for r in mine),
            "seconds_all_lambdas": round(sum(r["stop_epoch"] * r["seconds_per_epoch"] for r in mine), 2),
        }
    print(json.dumps({"benchmark": "probe_optimizers", "n_objects": args.n_objects, "dims": args.dims,
                      "n_triplets": args.triplets, "fold": 0, "summary": summary}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
