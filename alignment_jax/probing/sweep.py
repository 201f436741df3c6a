"""Training every configuration of a probe sweep (layer x lambda x lr x fold) in ONE compiled program.

The configuration axis. A sweep trains K configurations on each of F folds (F x K in all). The K axis is
flat: configuration k is a row of per-configuration arrays (`Configurations`): its hyperparameters
(`hyper`: lambda, lr; gLocal's alpha and tau are two more entries), the view of the data it trains on
(`view`: a layer of the network), its epoch budget and the id that seeds its initial weights. The F axis
is the data axis: a fold is a padded, weighted triplet list over the objects it uses (with object
cross-validation the training side of a fold only touches 2/3 of the objects and the validation side 1/3,
so its similarity matrices cost 4/9 and 1/9 of the n x n one), and every configuration on that fold reads
the fold's triplets without a copy. Per-layer features are per-configuration data like the folds: the
fold data holds V views (layers of one width, each standardized on its own) of the fold's objects,
(F, V, n_rows, p), and configuration k gathers view[k]'s rows (n_rows x p: small next to the fold's
millions of triplets, which are why the fold is an axis of its own and not an index). Adding a
hyperparameter is adding an entry to `hyper` and reading it in the loss; adding a layer is adding a view.

One epoch of one configuration is written once and vmapped over K (per-configuration arrays), then over F
(per-fold data). Early stopping is per configuration: a `done` mask freezes finished configurations while
the others go on; a configuration whose loss turns NaN/inf is marked failed and frozen at its best
parameters. The K axis is cut into equal chunks that fit the device's memory (probing/memory.py: an
estimate per configuration from n, p, the triplets, the formulation and the optimizer state); the chunks
run one after another through the same compiled program, each to its own convergence, and every chunk is
sharded over this process's devices. A configuration's numbers do not depend on the chunk it lands in,
on the other configurations, or on the view index it has: its initial weights depend on (seed, fold id,
seed id) and its minibatch order on (seed, fold id, epoch) only.
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
from tqdm.auto import tqdm

from alignment_jax.probing import memory, objective
from alignment_jax.probing.optimizers import direction


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

    train_features: (F, V, n_train, p): V views (layers) of the objects that the fold's training triplets
    use; train_triplets: (F, T_train, 3) int32 indices into those rows; train_weights: (F, T_train) float32.
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

    @property
    def n_views(self) -> int:
        return self.train_features.shape[1]

    def fold(self, f: int) -> "FoldData":
        return FoldData(*(a[f : f + 1] for a in dataclasses.astuple(self)))

    def view(self, v: int) -> "FoldData":
        """The fold data of view v alone."""
        return dataclasses.replace(
            self, train_features=self.train_features[:, v : v + 1], val_features=self.val_features[:, v : v + 1]
        )


def stack_folds(
    x: np.ndarray, triplets: np.ndarray, train_masks: np.ndarray, val_masks: np.ndarray, multiple: int = 1
) -> FoldData:
    """x: (n, p), or (V, n, p) for V views of the same objects; triplets: (T, 3); masks: (F, T) bool ->
    FoldData, the train length padded to a multiple of `multiple`."""
    views = x[None] if x.ndim == 2 else x
    train = _pad_stack(views, [triplets[m] for m in train_masks], multiple)
    val = _pad_stack(views, [triplets[m] for m in val_masks], 1)
    return FoldData(*train, *val)


def _pad_stack(views: np.ndarray, parts: list[np.ndarray], multiple: int) -> tuple[np.ndarray, ...]:
    """Per part: the feature rows (of every view) of the objects it uses and its triplets re-indexed into them."""
    objects = [np.unique(part) for part in parts]
    n_rows = max(1, max(len(o) for o in objects))
    length = max(len(p) for p in parts)
    length = -(-length // multiple) * multiple if length else 0
    features = np.zeros((len(parts), views.shape[0], n_rows, views.shape[2]), np.float32)
    triplets = np.zeros((len(parts), length, 3), np.int32)
    weights = np.zeros((len(parts), length), np.float32)
    for f, (part, used) in enumerate(zip(parts, objects, strict=True)):
        features[f, :, : len(used)] = views[:, used]
        triplets[f, : len(part)] = np.searchsorted(used, part)
        weights[f, : len(part)] = 1.0
    return features, triplets, weights


@dataclasses.dataclass(frozen=True)
class Configurations:
    """The flat configuration axis: K configurations, each trained on every fold.

    hyper: {name: (K,) float32}, the hyperparameters the epoch reads ("lam": the penalty weight lambda,
      "lr": the learning rate);
    view: (K,) int32, the view of the fold data (a layer) it trains on;
    max_epochs: (K,) int32, its epoch budget (the refit trains each layer for its own number of epochs);
    seed_id: (K,) int32, names it in its initial key (with the fold id): configurations with equal seed ids
      start from equal weights, whatever their view or position.
    """

    hyper: dict[str, np.ndarray]
    view: np.ndarray
    max_epochs: np.ndarray
    seed_id: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "hyper", {k: np.asarray(v, np.float32) for k, v in self.hyper.items()})
        for name in ("view", "max_epochs", "seed_id"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), np.int32))
        sizes = {len(v) for v in (*self.hyper.values(), self.view, self.max_epochs, self.seed_id)}
        if len(sizes) != 1:
            raise ValueError(f"configuration arrays of different lengths {sorted(sizes)}")

    def __len__(self) -> int:
        return len(self.view)

    def take(self, index: np.ndarray) -> "Configurations":
        return Configurations(
            {k: v[index] for k, v in self.hyper.items()}, self.view[index], self.max_epochs[index], self.seed_id[index]
        )

    def arrays(self) -> dict[str, np.ndarray]:
        """What the compiled epoch reads per configuration: the hyperparameters, view and max_epochs."""
        return {**self.hyper, "view": self.view, "max_epochs": self.max_epochs}

    @classmethod
    def grid(cls, lambdas: np.ndarray, lrs: np.ndarray, epochs: int, n_views: int = 1) -> "Configurations":
        """Every view crossed with the H hyperparameter settings (lambdas[h], lrs[h]), view-major (k = v H + h);
        seed id h, so each view's setting h starts from the same weights as in a sweep of that view alone."""
        lambdas, lrs = np.asarray(lambdas, np.float32), np.asarray(lrs, np.float32)
        n_hyper = len(lambdas)
        return cls(
            {"lam": np.tile(lambdas, n_views), "lr": np.tile(lrs, n_views)},
            np.repeat(np.arange(n_views), n_hyper),
            np.full(n_views * n_hyper, epochs),
            np.tile(np.arange(n_hyper), n_views),
        )


class SweepState(NamedTuple):
    """Per-configuration training state; every leaf has leading axes (F, K)."""

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
    """Results per configuration, arrays with leading axes (F, K): the parameters at the best validation loss
    (the last ones without validation; empty when not kept), its cross-entropy and accuracy, the epoch it
    came from (1-based), the epochs trained, and whether the loss turned non-finite."""

    params: dict[str, np.ndarray]
    val_cross_entropy: np.ndarray
    val_accuracy: np.ndarray
    best_epoch: np.ndarray
    epochs: np.ndarray
    failed: np.ndarray

    def columns(self, index: np.ndarray | slice) -> "SweepOutcome":
        """The outcome of configurations `index` (an index into the K axis)."""
        return SweepOutcome(
            {k: v[:, index] for k, v in self.params.items()},
            *(getattr(self, f.name)[:, index] for f in dataclasses.fields(self)[1:]),
        )


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


def _config_keys(seed: int, fold_ids: np.ndarray, seed_ids: np.ndarray) -> jax.Array:
    """(F, K) initial keys: fold_in(fold_in(key(seed), fold id), seed id)."""
    base = jax.random.key(seed)
    per_fold = jax.vmap(lambda f: jax.random.fold_in(base, f))(jnp.asarray(fold_ids, jnp.uint32))
    ids = jnp.asarray(seed_ids, jnp.uint32)
    return jax.vmap(lambda key: jax.vmap(lambda h: jax.random.fold_in(key, h))(ids))(per_fold)


@functools.partial(jax.jit, static_argnames=("p", "settings"))
def _init_all(keys: jax.Array, p: int, settings: TrainSettings) -> objective.Params:
    """keys: (F, K) -> initial parameters with leading axes (F, K)."""
    return jax.vmap(jax.vmap(lambda key: init_params(key, p, settings)))(keys)


def _epoch_key(seed: int, fold_id: int, epoch: int) -> jax.Array:
    """Shuffling depends on (seed, fold, epoch) only, so a configuration run alone sees the same batches."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed + 1), fold_id), epoch)


def _select(flag: jax.Array, new, old):
    return jax.tree.map(lambda a, b: jnp.where(flag, a, b), new, old)


def _view(features: jax.Array, view: jax.Array) -> jax.Array:
    """features: (V, n, p) -> (n, p) of the configuration's view (no gather when there is one view)."""
    return features[0] if features.shape[0] == 1 else features[view]


def _config_epoch(
    state: SweepState, train_x, train_t, train_w, val_x, val_t, val_w, config, key, *, settings, n_batches
):
    """One epoch of one configuration (unbatched state); frozen when state.done. config: its arrays()."""
    train_x, val_x = _view(train_x, config["view"]), _view(val_x, config["view"])
    lam, lr = config["lam"], config["lr"]
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
    stop = epochs >= config["max_epochs"]
    if has_val:  # without validation (the refit) only the epoch budget stops a configuration
        stop = stop | ((epochs >= settings.min_epochs) & (wait >= settings.patience))
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
def _sweep_epoch(state, train_x, train_t, train_w, val_x, val_t, val_w, configs, keys, *, settings, n_batches):
    """One epoch of every configuration: vmapped over K (the fold's data shared), then over F (per-fold data)."""
    epoch = functools.partial(_config_epoch, settings=settings, n_batches=n_batches)
    over_k = jax.vmap(epoch, in_axes=(0, None, None, None, None, None, None, 0, None))
    over_f = jax.vmap(over_k, in_axes=(0, 0, 0, 0, 0, 0, 0, None, 0))
    return over_f(state, train_x, train_t, train_w, val_x, val_t, val_w, configs, keys)


def train_configurations(
    folds: FoldData,
    configs: Configurations,
    settings: TrainSettings,
    seed: int = 0,
    fold_ids: np.ndarray | None = None,
    progress: bool = True,
    desc: str = "probe sweep",
    budget_bytes: float = 0,
    keep_params: bool = True,
) -> SweepOutcome:
    """Trains F x K configurations on standardized features (in `folds`); returns arrays (F, K).

    fold_ids (F,) name the folds for seeding (default 0..F-1). budget_bytes: device memory the sweep may
    use per device (0 = measured, probing/memory.py); the K axis is chunked to fit it. keep_params=False
    leaves the (F, K, p, p) parameters on the device (a cross-validation sweep only needs the numbers).
    """
    n_folds, n_configs = folds.n_folds, len(configs)
    fold_ids = np.arange(n_folds) if fold_ids is None else np.asarray(fold_ids)
    t_train = folds.train_triplets.shape[1]
    batch = settings.batch_size if 0 < settings.batch_size < t_train else t_train
    n_batches = max(1, t_train // batch)
    devices = jax.local_devices()
    plan = memory.plan_chunks(
        n_configs,
        n_folds,
        memory.config_bytes(folds, batch, settings.optimizer, settings.bias),
        memory.data_bytes(folds),
        budget_bytes or memory.available_bytes(devices),
        len(devices),
    )
    mesh = jax.make_mesh((len(devices),), ("configs",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)
    replicated = NamedSharding(mesh, P())
    data = [jax.device_put(a, replicated) for a in dataclasses.astuple(folds)]

    outcomes = []
    for chunk, start in enumerate(range(0, n_configs, plan.size)):
        index = np.arange(start, min(start + plan.size, n_configs))
        padded = np.concatenate([index, np.repeat(index[-1:], plan.size - len(index))])
        part = f", chunk {chunk + 1}/{plan.n_chunks}" if plan.n_chunks > 1 else ""
        label = f"{desc} ({n_folds}x{n_configs} configs{part})"
        outcome = _train_chunk(
            data, configs.take(padded), settings, seed, fold_ids, n_batches, mesh, progress, label, keep_params
        )
        outcomes.append(outcome.columns(slice(0, len(index))))
    return SweepOutcome(
        {k: np.concatenate([o.params[k] for o in outcomes], axis=1) for k in outcomes[0].params},
        *(np.concatenate([getattr(o, f.name) for o in outcomes], axis=1) for f in dataclasses.fields(SweepOutcome)[1:]),
    )


def _train_chunk(
    data, configs: Configurations, settings, seed, fold_ids, n_batches, mesh, progress, label, keep_params
) -> SweepOutcome:
    """Trains one chunk of configurations (their count a multiple of the device count) to convergence."""
    n_folds, n_configs = len(fold_ids), len(configs)
    p = data[0].shape[-1]
    tx = direction(settings.optimizer, settings.clip_norm, settings.weight_decay)
    config_sharding = NamedSharding(mesh, P(None, "configs"))
    params = jax.device_put(_init_all(_config_keys(seed, fold_ids, configs.seed_id), p, settings), config_sharding)
    shape = (n_folds, n_configs)
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
    state = jax.tree.map(lambda a: jax.device_put(a, config_sharding), state)
    arrays = jax.device_put(configs.arrays(), NamedSharding(mesh, P("configs")))
    max_epochs = int(configs.max_epochs.max())
    has_val = data[4].shape[1] > 0

    bar = tqdm(total=max_epochs, desc=label, disable=not progress)
    for epoch in range(max_epochs):
        keys = jnp.stack([_epoch_key(seed, int(f), epoch) for f in fold_ids])
        state = _sweep_epoch(state, *data, arrays, keys, settings=settings, n_batches=n_batches)
        done = np.asarray(state.done)
        bar.update(1)
        postfix = {"done": f"{int(done.sum())}/{done.size}"}
        if has_val:
            postfix["best_val"] = f"{float(jnp.min(state.best_loss)):.4f}"
        bar.set_postfix(postfix)
        if done.all():
            break
    bar.close()
    return SweepOutcome(
        params=jax.tree.map(np.asarray, state.best_params) if keep_params else {},
        val_cross_entropy=np.asarray(state.best_loss),
        val_accuracy=np.asarray(state.best_accuracy),
        best_epoch=np.asarray(state.best_epoch),
        epochs=np.asarray(state.epochs),
        failed=np.asarray(state.failed),
    )


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
    budget_bytes: float = 0,
) -> SweepOutcome:
    """Trains F x H configurations of one view at once; lambdas, lrs: (H,). Returns arrays (F, H).

    fold_ids (F,) and hyper_ids (H,) name the configurations for seeding (default 0..F-1, 0..H-1), so a
    single configuration trained alone with its ids reproduces its numbers inside a sweep.
    """
    n_hyper = len(lambdas)
    configs = Configurations(
        {"lam": lambdas, "lr": lrs},
        np.zeros(n_hyper),
        np.full(n_hyper, settings.epochs),
        np.arange(n_hyper) if hyper_ids is None else hyper_ids,
    )
    return train_configurations(folds, configs, settings, seed, fold_ids, progress, desc, budget_bytes)
