"""Training every (fold, lambda, learning rate) configuration of a probe sweep in ONE compiled program.

Parameters of all configurations are stacked on leading axes (folds F, hyperparameters H); one epoch of
one configuration is written once and vmapped over both axes. A fold is a padded, weighted triplet list
over the objects it uses: with object cross-validation the training side of a fold only touches 2/3 of
the objects and the validation side 1/3, so its similarity matrices cost 4/9 and 1/9 of the n x n one.
Early stopping is per configuration: a `done` mask freezes finished configurations while the others go
on; a configuration whose loss turns NaN/inf is marked failed and frozen at its best parameters. On
several devices the H axis is sharded over a 1-D mesh.
"""

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from alignment_jax.probing import objective
from alignment_jax.probing.optimizers import direction
from alignment_jax.progress import progress_bar


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """How each configuration trains. batch_size 0 = full batch (one step per epoch)."""

    optimizer: str = "adam"
    batch_size: int = 0
    epochs: int = 100
    min_epochs: int = 10
    patience: int = 10
    min_delta: float = 1e-4
    clip_norm: float = 1.0
    regularizer: str = "frobenius"
    temperature: float = 1.0
    bias: bool = False
    init: str = "normal"
    init_scale: float = 1e-3
    weight_decay: float = 1e-4


@dataclasses.dataclass(frozen=True)
class FoldData:
    """Each fold's two sides, padded to common shapes; weight 0 marks padding.

    train_features: (F, n_train, p) rows of X for the objects that the fold's training triplets use;
    train_triplets: (F, T_train, 3) int32 indices into those rows; train_weights: (F, T_train) float32.
    val_*: the same for validation (T_val may be 0: no validation, no early stopping).
    """

    train_features: np.ndarray
    train_triplets: np.ndarray
    train_weights: np.ndarray
    val_features: np.ndarray
    val_triplets: np.ndarray
    val_weights: np.ndarray

    @property
    def n_folds(self) -> int:
        return self.train_triplets.shape[0]

    def fold(self, f: int) -> "FoldData":
        return FoldData(*(a[f : f + 1] for a in dataclasses.astuple(self)))


def stack_folds(
    x: np.ndarray, triplets: np.ndarray, train_masks: np.ndarray, val_masks: np.ndarray, multiple: int = 1
) -> FoldData:
    """x: (n, p); triplets: (T, 3); masks: (F, T) bool -> FoldData, train length padded to a multiple."""
    train = _pad_stack(x, [triplets[m] for m in train_masks], multiple)
    val = _pad_stack(x, [triplets[m] for m in val_masks], 1)
    return FoldData(*train, *val)


def _pad_stack(x: np.ndarray, parts: list[np.ndarray], multiple: int) -> tuple[np.ndarray, ...]:
    """Per part: the feature rows of the objects it uses and its triplets re-indexed into them."""
    objects = [np.unique(part) for part in parts]
    n_rows = max(1, max(len(o) for o in objects))
    length = max(len(p) for p in parts)
    length = -(-length // multiple) * multiple if length else 0
    features = np.zeros((len(parts), n_rows, x.shape[1]), np.float32)
    triplets = np.zeros((len(parts), length, 3), np.int32)
    weights = np.zeros((len(parts), length), np.float32)
    for f, (part, used) in enumerate(zip(parts, objects, strict=True)):
        features[f, : len(used)] = x[used]
        triplets[f, : len(part)] = np.searchsorted(used, part)
        weights[f, : len(part)] = 1.0
    return features, triplets, weights


class SweepState(NamedTuple):
    """Per-configuration training state; every leaf has leading axes (F, H)."""

    params: objective.Params
    opt_state: optax.OptState
    best_params: objective.Params
    best_loss: jax.Array
    best_accuracy: jax.Array
    best_epoch: jax.Array
    wait: jax.Array
    epochs: jax.Array
    done: jax.Array
    failed: jax.Array


@dataclasses.dataclass(frozen=True)
class SweepOutcome:
    """Results per configuration, arrays with leading axes (F, H): the parameters at the best validation loss
    (the last ones without validation), its cross-entropy and accuracy, the epoch it came from (1-based),
    the epochs trained, and whether the loss turned non-finite."""

    params: dict[str, np.ndarray]
    val_cross_entropy: np.ndarray
    val_accuracy: np.ndarray
    best_epoch: np.ndarray
    epochs: np.ndarray
    failed: np.ndarray


def init_params(key: jax.Array, p: int, settings: TrainSettings) -> objective.Params:
    """W ~ N(0, init_scale^2) (paper) or init_scale * I (gLocal); bias 0."""
    if settings.init == "normal":
        weights = settings.init_scale * jax.random.normal(key, (p, p), jnp.float32)
    elif settings.init == "identity":
        weights = settings.init_scale * jnp.eye(p, dtype=jnp.float32)
    else:
        raise ValueError(f"unknown init {settings.init!r}; one of normal, identity")
    params = {"weights": weights}
    if settings.bias:
        params["bias"] = jnp.zeros((p,), jnp.float32)
    return params


def _config_key(seed: int, fold_id: int, hyper_id: int) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), fold_id), hyper_id)


def _epoch_key(seed: int, fold_id: int, epoch: int) -> jax.Array:
    """Shuffling depends on (seed, fold, epoch) only, so a configuration run alone sees the same batches."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed + 1), fold_id), epoch)


def _select(flag: jax.Array, new, old):
    return jax.tree.map(lambda a, b: jnp.where(flag, a, b), new, old)


def _config_epoch(
    state: SweepState, train_x, train_t, train_w, val_x, val_t, val_w, lam, lr, key, *, settings, n_batches
):
    """One epoch of one configuration (unbatched state); frozen when state.done."""
    batch = train_t.shape[0] // n_batches
    tx = direction(settings.optimizer, settings.clip_norm, settings.weight_decay)
    loss_fn = functools.partial(
        objective.loss,
        regularizer=settings.regularizer,
        temperature=settings.temperature,
        formulation=objective.choose_formulation(train_x.shape[0], batch, train_x.shape[1]),
    )
    if n_batches > 1:
        order = jax.random.permutation(key, train_t.shape[0]).reshape(n_batches, batch)
    else:
        order = None

    def step(carry, batch_index):
        params, opt_state, finite = carry
        t = train_t if order is None else train_t[order[batch_index]]
        w = train_w if order is None else train_w[order[batch_index]]
        value, grads = jax.value_and_grad(loss_fn)(params, train_x, t, w, lam)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
        return (params, opt_state, finite & jnp.isfinite(value)), None

    (params, opt_state, finite), _ = jax.lax.scan(
        step, (state.params, state.opt_state, jnp.array(True)), jnp.arange(n_batches)
    )
    epochs = state.epochs + 1
    has_val = val_t.shape[0] > 0
    if has_val:
        val_loss, val_acc = objective.evaluate(
            params,
            val_x,
            val_t,
            val_w,
            temperature=settings.temperature,
            formulation=objective.choose_formulation(val_x.shape[0], val_t.shape[0], val_x.shape[1]),
        )
    else:
        val_loss, val_acc = jnp.nan, jnp.nan
    finite = finite & jnp.all(jnp.array([jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(params)]))
    if has_val:
        finite = finite & jnp.isfinite(val_loss)
        improved = finite & (val_loss < state.best_loss - settings.min_delta)
    else:
        improved = finite
    wait = jnp.where(improved, 0, state.wait + 1)
    stop = (epochs >= settings.epochs) | ((epochs >= settings.min_epochs) & (wait >= settings.patience))
    new = SweepState(
        params=params,
        opt_state=opt_state,
        best_params=_select(improved, params, state.best_params),
        best_loss=jnp.where(improved, val_loss, state.best_loss),
        best_accuracy=jnp.where(improved, val_acc, state.best_accuracy),
        best_epoch=jnp.where(improved, epochs, state.best_epoch),
        wait=wait,
        epochs=epochs,
        done=stop | ~finite,
        failed=~finite,
    )
    return _select(state.done, state, new)


@functools.partial(jax.jit, static_argnames=("settings", "n_batches"), donate_argnums=0)
def _sweep_epoch(state, train_x, train_t, train_w, val_x, val_t, val_w, lams, lrs, keys, *, settings, n_batches):
    """One epoch of every configuration: vmapped over H (shared fold data), then over F (per-fold data)."""
    epoch = functools.partial(_config_epoch, settings=settings, n_batches=n_batches)
    over_h = jax.vmap(epoch, in_axes=(0, None, None, None, None, None, None, 0, 0, None))
    over_f = jax.vmap(over_h, in_axes=(0, 0, 0, 0, 0, 0, 0, None, None, 0))
    return over_f(state, train_x, train_t, train_w, val_x, val_t, val_w, lams, lrs, keys)


def train_sweep(
    folds: FoldData,
    lambdas: np.ndarray,
    lrs: np.ndarray,
    settings: TrainSettings,
    seed: int = 0,
    fold_ids: np.ndarray | None = None,
    hyper_ids: np.ndarray | None = None,
    progress: bool = True,
    desc: str = "probe sweep",
) -> SweepOutcome:
    """Trains F x H configurations at once on standardized features (in `folds`); lambdas, lrs: (H,).

    fold_ids (F,) and hyper_ids (H,) name the configurations for seeding (default 0..F-1, 0..H-1), so a
    single configuration trained alone with its ids reproduces its numbers inside a sweep.
    """
    n_folds, n_hyper = folds.n_folds, len(lambdas)
    fold_ids = np.arange(n_folds) if fold_ids is None else np.asarray(fold_ids)
    hyper_ids = np.arange(n_hyper) if hyper_ids is None else np.asarray(hyper_ids)
    mesh, n_padded = _config_mesh(n_hyper)
    pad = lambda a: np.concatenate([a, np.repeat(a[-1:], n_padded - n_hyper)])
    lambdas, lrs, hyper_ids = pad(np.asarray(lambdas, np.float32)), pad(np.asarray(lrs, np.float32)), pad(hyper_ids)
    t_train = folds.train_triplets.shape[1]
    batch = settings.batch_size if 0 < settings.batch_size < t_train else t_train
    n_batches = max(1, t_train // batch)

    p = folds.train_features.shape[2]
    tx = direction(settings.optimizer, settings.clip_norm, settings.weight_decay)
    params = jax.vmap(jax.vmap(lambda k: init_params(k, p, settings)))(
        jnp.stack([jnp.stack([_config_key(seed, int(f), int(h)) for h in hyper_ids]) for f in fold_ids])
    )
    shape = (n_folds, n_padded)
    state = SweepState(
        params=params,
        opt_state=jax.vmap(jax.vmap(tx.init))(params),
        best_params=jax.tree.map(jnp.copy, params),
        best_loss=jnp.full(shape, jnp.inf),
        best_accuracy=jnp.full(shape, jnp.nan),
        best_epoch=jnp.zeros(shape, jnp.int32),
        wait=jnp.zeros(shape, jnp.int32),
        epochs=jnp.zeros(shape, jnp.int32),
        done=jnp.zeros(shape, bool),
        failed=jnp.zeros(shape, bool),
    )
    config_sharding = NamedSharding(mesh, P(None, "configs"))
    state = jax.tree.map(lambda a: jax.device_put(a, config_sharding), state)
    hyper_sharding = NamedSharding(mesh, P("configs"))
    lams_d, lrs_d = jax.device_put(lambdas, hyper_sharding), jax.device_put(lrs, hyper_sharding)
    data = [jnp.asarray(a) for a in dataclasses.astuple(folds)]

    bar = progress_bar(settings.epochs, f"{desc} ({n_folds}x{n_hyper} configs)", progress, unit="epochs")
    for epoch in range(settings.epochs):
        keys = jnp.stack([_epoch_key(seed, int(f), epoch) for f in fold_ids])
        state = _sweep_epoch(state, *data, lams_d, lrs_d, keys, settings=settings, n_batches=n_batches)
        done = np.asarray(state.done)[:, :n_hyper]
        bar.update(1)
        postfix = {"done": f"{int(done.sum())}/{done.size}"}
        if folds.val_triplets.shape[1]:
            postfix["best_val"] = f"{float(jnp.min(state.best_loss)):.4f}"
        bar.set_postfix(postfix)
        if done.all():
            break
    bar.close()
    trim = lambda a: np.asarray(a)[:, :n_hyper]
    return SweepOutcome(
        params=jax.tree.map(trim, state.best_params),
        val_cross_entropy=trim(state.best_loss),
        val_accuracy=trim(state.best_accuracy),
        best_epoch=trim(state.best_epoch),
        epochs=trim(state.epochs),
        failed=trim(state.failed),
    )


def _config_mesh(n_hyper: int) -> tuple[jax.sharding.Mesh, int]:
    """A 1-D mesh over this process's devices for the H axis, and H padded to a multiple of their count.

    On several hosts every process runs the (cheap) sweep on its own devices: only extraction, the
    expensive step, is sharded across hosts.
    """
    devices = jax.local_devices()
    n_devices = len(devices)
    mesh = jax.make_mesh((n_devices,), ("configs",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)
    return mesh, -(-n_hyper // n_devices) * n_devices
