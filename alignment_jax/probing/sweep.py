"""Training every configuration of a probe sweep (layer x lambda x alpha x tau x lr x fold) in ONE program.

The configuration axis. A sweep trains K configurations on each of F folds (F x K in all). The K axis is
flat: configuration k is a row of per-configuration arrays (`Configurations`): its hyperparameters
(`hyper`: lambda, lr; with gLocal's objective also alpha and tau), the view of the data it trains on
(`view`: a layer of the network), its epoch budget and the id that seeds its initial weights. The F axis
is the data axis: a fold is a padded, weighted triplet list over the objects it uses (with object
cross-validation the training side of a fold only touches 2/3 of the objects and the validation side 1/3,
so its similarity matrices cost 4/9 and 1/9 of the n x n one), and every configuration on that fold reads
the fold's triplets without a copy. Per-layer features are per-configuration data like the folds: the
fold data holds V views (layers of one width, each standardized on its own) of the fold's objects,
(F, V, n_rows, p), and configuration k gathers view[k]'s rows (n_rows x p: small next to the fold's
millions of triplets, which are why the fold is an axis of its own and not an index). Adding a
hyperparameter is adding an entry to `hyper` and reading it in the loss; adding a layer is adding a view.

gLocal's objective (probing/local.py, docs/glocal.md) adds the local images (`glocal.LocalData`, shared by
every fold, one view per layer): each training step pairs the configuration's triplet step (full batch or
minibatch) with the next batch of its own stream of local images (glocal.py), whose teacher similarities are
computed once per batch for the configurations of a fold that read it; the validation loss that early
stopping watches is gLocal's: triplet cross-entropy + local term on the validation images, unweighted
(alpha = 0 is the global probe: triplet cross-entropy alone). Without local images (the global objective)
the program holds no local arrays and does no local work.

One epoch of a fold is written once: a scan over its steps, each step vmapped over the fold's slots, then
validation and bookkeeping vmapped over the slots; that is vmapped over the folds (per-fold data). The
configurations train in a pool of F x S slots, S as many as fit the device's memory (probing/memory.py: an
estimate per configuration from n, p, the triplets, the formulation and the optimizer state) and, on the
CPU, its last-level cache (a pool that fits runs faster per configuration); the pool is sharded over all
devices of all processes (placement.py); a slot holds its configuration's arrays. Early stopping is per configuration:
a configuration stops when its validation loss has not improved for `patience` epochs (or its loss turns
NaN/inf: it is marked failed, frozen at its best parameters), and its slot takes the next configuration of
that fold, if any is left. Once none is left, the pool shrinks to its active slots where the epochs saved
pay for compiling the smaller program (a slow layer's stragglers do not keep every finished configuration
computing). A configuration's numbers do not depend on its slot, on when it starts or on the other
configurations: its initial weights depend on (seed, fold id, seed id) and its minibatch order on (seed,
fold id, its own epoch) only, its local batches on (seed, fold id, its own step).
"""

import collections
import contextlib
import dataclasses
import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from alignment_jax.probing import glocal, local, memory, objective, placement
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
    local_batch_size: int = 1024  # gLocal's B: local images per step (with local data)
    # "" = triplet cross-entropy (human choices); kl | jsd: AligNet's soft targets (FoldData's targets), with
    # the prediction's temperature tau per configuration (hyper "tau")
    divergence: str = ""


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

    def fold(self, f: int) -> "FoldData":
        return FoldData(*(a[f : f + 1] for a in dataclasses.astuple(self)))


class SoftTargets(NamedTuple):
    """Soft targets of each fold's triplets (AligNet's; TrainSettings.divergence): train (F, T_train, 3) and val
    (F, T_val, 3) float32 distributions over the pairs [(0, 1), (0, 2), (1, 2)] of the triplets of the same
    positions in FoldData (padding: uniform)."""

    train: np.ndarray
    val: np.ndarray

    def fold(self, f: int) -> "SoftTargets":
        return SoftTargets(self.train[f : f + 1], self.val[f : f + 1])


def stack_folds(
    x: np.ndarray,
    triplets: np.ndarray,
    train_masks: np.ndarray,
    val_masks: np.ndarray,
    multiple: int = 1,
) -> FoldData:
    """x: (n, p), or (V, n, p) for V views of the same objects; triplets: (T, 3); masks: (F, T) bool ->
    FoldData, the train length padded to a multiple of `multiple`. Each fold's triplets are in sorted order
    (_fold_rows): the similarity gathers and scatter-adds of a step then walk the matrix in order (on a CPU
    1.7x faster than in a random order); minibatches are drawn by a random permutation all the same."""
    views = x[None] if x.ndim == 2 else x
    train = _pad_stack(views, [triplets[_fold_rows(triplets, m)] for m in train_masks], multiple)
    val = _pad_stack(views, [triplets[_fold_rows(triplets, m)] for m in val_masks], 1)
    return FoldData(*train, *val)


def _fold_rows(triplets: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The rows of `triplets` in `mask`, in lexicographic (i, j, k) order (stable)."""
    rows = np.flatnonzero(mask)
    part = triplets[rows]
    return rows[np.lexsort((part[:, 2], part[:, 1], part[:, 0]))]


def stack_targets(
    targets: np.ndarray, triplets: np.ndarray, train_masks: np.ndarray, val_masks: np.ndarray, multiple: int = 1
) -> SoftTargets:
    """targets: (T, 3) soft targets of `triplets`, laid out as stack_folds stacks them with the same masks and
    multiple."""
    targets = np.asarray(targets, np.float32)
    length = max(int(m.sum()) for m in train_masks) if len(train_masks) else 0
    length = -(-length // multiple) * multiple if length else 0
    val_length = max(int(m.sum()) for m in val_masks) if len(val_masks) else 0
    return SoftTargets(
        _pad_targets(targets, triplets, train_masks, length), _pad_targets(targets, triplets, val_masks, val_length)
    )


def _pad_targets(targets: np.ndarray, triplets: np.ndarray, masks: np.ndarray, length: int) -> np.ndarray:
    """(T, 3) targets -> (F, length, 3): each fold's in its triplets' order, padded with a uniform distribution."""
    out = np.full((len(masks), length, 3), 1 / 3, np.float32)
    for f, mask in enumerate(masks):
        out[f, : int(mask.sum())] = targets[_fold_rows(triplets, mask)]
    return out


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
      "lr": the learning rate; with local data "alpha": the local term's weight, "tau": its temperature);
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
    best_loss: jax.Array  # the validation loss early stopping watches (triplet cross-entropy [+ local term])
    best_cross_entropy: jax.Array
    best_accuracy: jax.Array
    best_local: jax.Array  # the local term on the validation images (NaN without local data)
    best_epoch: jax.Array
    wait: jax.Array
    epochs: jax.Array
    done: jax.Array
    failed: jax.Array


@dataclasses.dataclass(frozen=True)
class SweepOutcome:
    """Results per configuration, arrays with leading axes (F, K): the parameters at the best validation loss
    (the last ones without validation; empty when not kept), its triplet cross-entropy and accuracy, its
    local term on the validation images (NaN without local data), the epoch it came from (1-based), the
    epochs trained, and whether the loss turned non-finite."""

    params: dict[str, np.ndarray]
    val_cross_entropy: np.ndarray
    val_accuracy: np.ndarray
    val_local: np.ndarray
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
    """W ~ N(0, init_scale^2), bias 0 (the paper), or gLocal's get_initialization: W = init_scale * I,
    bias = init_scale * ones."""
    if settings.init == "normal":
        weights, bias = settings.init_scale * jax.random.normal(key, (p, p), jnp.float32), 0.0
    elif settings.init == "identity":
        weights, bias = settings.init_scale * jnp.eye(p, dtype=jnp.float32), settings.init_scale
    else:
        raise ValueError(f"unknown init {settings.init!r}; one of normal, identity")
    params = {"weights": weights}
    if settings.bias:
        params["bias"] = jnp.full((p,), bias, jnp.float32)
    return params


@functools.partial(jax.jit, static_argnames=("p", "settings"))
def _initial_state(seed, fold_ids, seed_ids, idle, *, p: int, settings: TrainSettings) -> SweepState:
    """A fresh state for every slot: fold_ids (F,), seed_ids (F, S) name each slot's configuration (its
    initial weights come from fold_in(fold_in(key(seed), fold id), seed id)); idle (F, S) bool slots hold
    no configuration (done)."""
    per_fold = jax.vmap(lambda f: jax.random.fold_in(jax.random.key(seed), f))(fold_ids.astype(jnp.uint32))
    keys = jax.vmap(jax.vmap(jax.random.fold_in, in_axes=(None, 0)))(per_fold, seed_ids.astype(jnp.uint32))
    params = jax.vmap(jax.vmap(lambda key: init_params(key, p, settings)))(keys)
    tx = direction(settings.optimizer, settings.clip_norm, settings.weight_decay)
    zeros = jnp.zeros(idle.shape, jnp.int32)
    return SweepState(
        params=params,
        opt_state=jax.vmap(jax.vmap(tx.init))(params),
        best_params=params,
        best_loss=jnp.full(idle.shape, jnp.inf),
        best_cross_entropy=jnp.full(idle.shape, jnp.inf),
        best_accuracy=jnp.full(idle.shape, jnp.nan),
        best_local=jnp.full(idle.shape, jnp.nan),
        best_epoch=zeros,
        wait=zeros,
        epochs=zeros,
        done=idle,
        failed=jnp.zeros(idle.shape, bool),
    )


@functools.partial(jax.jit, donate_argnums=0)
def _refill(state: SweepState, fresh_state: SweepState, fresh: jax.Array) -> SweepState:
    """The slots of `fresh` (F, S) take their fresh state (new configurations start); the others go on."""
    pick = lambda a, b: jnp.where(fresh.reshape(fresh.shape + (1,) * (b.ndim - 2)), a, b)
    return jax.tree.map(pick, fresh_state, state)


@jax.jit
def _gather_slots(state: SweepState, order: jax.Array, idle: jax.Array) -> SweepState:
    """state with slot s of fold f taken from slot order[f, s] (F, S'); `idle` (F, S') slots are done."""
    take = lambda a: jnp.take_along_axis(a, order.reshape(order.shape + (1,) * (a.ndim - 2)), axis=1)
    state = jax.tree.map(take, state)
    return state._replace(done=state.done | idle)


def _select(flag: jax.Array, new, old):
    return jax.tree.map(lambda a, b: jnp.where(flag, a, b), new, old)


def _all_finite(tree) -> jax.Array:
    """Whether every entry of every leaf is finite (elementwise: no norm that could overflow)."""
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def _view(features: jax.Array, view: jax.Array) -> jax.Array:
    """features: (V, n, p) -> (n, p) of the configuration's view (no gather when there is one view)."""
    return features[0] if features.shape[0] == 1 else features[view]


class Groups(NamedTuple):
    """Which slots of a fold share their local batches: slots at the same stream position of the same view.

    slot_group: (S,) int32, each slot's group (idle slots: any); leaders: (G,) int32, a slot of each group
    (spare groups repeat one). Every active slot advances one epoch per call, so the groups only change when
    configurations start or stop."""

    slot_group: jax.Array
    leaders: jax.Array


def _config_step(params, opt_state, x, triplets, weights, targets, config, local_batch, *, tx, settings, formulation):
    """One optimizer step of one configuration: (params, opt_state, whether the gradient was finite).
    x: (V, n, p) the fold's training views; triplets (B, 3), weights (B,); local_batch: (student rows,
    teacher similarities, valid) of its local batch, or None (the global objective); targets: (B, 3) soft
    targets with settings.divergence, else None. The step takes the gradient alone: a loss that turns NaN or
    inf makes it non-finite, and the loss value (a log per triplet and configuration) is not computed."""
    x = _view(x, config["view"])
    if settings.divergence:  # soft targets (B, 3), the prediction at the configuration's tau
        loss_fn = lambda prm: objective.soft_loss(
            prm, x, triplets, targets, weights, config["lam"], config["tau"], divergence=settings.divergence,
            regularizer=settings.regularizer, formulation=formulation,
        )  # fmt: skip
    elif local_batch is None:
        loss_fn = lambda prm: objective.loss(
            prm, x, triplets, weights, config["lam"], regularizer=settings.regularizer,
            temperature=settings.temperature, formulation=formulation,
        )  # fmt: skip
    else:
        rows, teacher, valid = local_batch
        loss_fn = lambda prm: local.glocal_loss(
            prm, x, triplets, weights, rows, teacher, config["lam"], config["alpha"], config["tau"],
            regularizer=settings.regularizer, temperature=settings.temperature, formulation=formulation,
            local_valid=valid,
        )  # fmt: skip
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = jax.tree.map(lambda p, u: p - config["lr"] * u, params, updates)
    return params, opt_state, _all_finite(grads)


def _fold_epoch(
    state, train_x, train_t, train_w, val_x, val_t, val_w, configs, groups, fold_id, soft, *, data, seed, settings,
    n_batches
):  # fmt: skip
    """One epoch of the S slots of one fold (state leaves and configs (S, ...)); frozen where state.done.
    data: glocal.LocalData or None; groups: Groups (with data).

    Each configuration's minibatch order depends on (seed, fold id, its own epoch) only and its local batches
    on (seed, fold id, its own step), so it sees the same batches whichever slot it trains in and whenever it
    starts; each group's local batch (and its teacher similarities) is computed once per step. soft: the fold's
    SoftTargets (train (T, 3), val (T_val, 3)) with settings.divergence, else None."""
    train_p, val_p = (None, None) if soft is None else soft
    n_triplets = train_t.shape[0]
    batch = n_triplets // n_batches
    tx = direction(settings.optimizer, settings.clip_norm, settings.weight_decay)
    step_fn = functools.partial(
        _config_step, tx=tx, settings=settings,
        formulation=objective.choose_formulation(train_x.shape[1], batch, train_x.shape[2]),
    )  # fmt: skip
    if n_batches > 1:

        def order(epochs):
            key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed + 1), fold_id), epochs)
            return jax.random.permutation(key, n_triplets).reshape(n_batches, batch)

        orders = jax.vmap(order)(state.epochs)  # (S, n_batches, batch)
    if data is not None:
        local_rows = glocal.effective_batch(settings.local_batch_size, data.train.shape[1])
        group_views, group_steps = configs["view"][groups.leaders], state.epochs[groups.leaders] * n_batches
        local_batches = jax.vmap(
            lambda view, position: glocal.train_batch(data, view, position, fold_id, seed, local_rows)
        )

    def step(carry, j):
        params, opt_state, finite = carry
        minibatch = n_batches > 1
        t = jnp.take(train_t, orders[:, j], axis=0) if minibatch else train_t
        w = jnp.take(train_w, orders[:, j], axis=0) if minibatch else train_w
        soft = None if train_p is None else (jnp.take(train_p, orders[:, j], axis=0) if minibatch else train_p)
        if data is None:
            one = lambda prm, opt, t_, w_, p_, config, _: step_fn(prm, opt, train_x, t_, w_, p_, config, None)
            shared = None
        else:
            shared = local_batches(group_views, group_steps + j)  # once per group, not per configuration
            one = lambda prm, opt, t_, w_, p_, config, group: step_fn(
                prm, opt, train_x, t_, w_, p_, config, jax.tree.map(lambda a: glocal._pick(a, group), shared)
            )
        slot_groups = None if data is None else groups.slot_group
        batched = 0 if minibatch else None
        params, opt_state, ok = jax.vmap(one, in_axes=(0, 0, batched, batched, batched, 0, 0))(
            params, opt_state, t, w, soft, configs, slot_groups
        )
        return (params, opt_state, finite & ok), None

    carry = (state.params, state.opt_state, jnp.ones(state.done.shape, bool))
    if n_batches == 1:  # full batch: one step, no loop around it
        (params, opt_state, finite), _ = step(carry, 0)
    else:
        (params, opt_state, finite), _ = jax.lax.scan(step, carry, jnp.arange(n_batches))

    has_val = val_t.shape[0] > 0
    if has_val:
        formulation = objective.choose_formulation(val_x.shape[1], val_t.shape[0], val_x.shape[2])
        if settings.divergence:  # the validation divergence takes the cross-entropy's place
            evaluate = lambda prm, view, tau: objective.soft_evaluate(
                prm, _view(val_x, view), val_t, val_p, val_w, tau, divergence=settings.divergence,
                formulation=formulation,
            )  # fmt: skip
            cross_entropy, accuracy = jax.vmap(evaluate)(params, configs["view"], configs["tau"])
        else:
            evaluate = lambda prm, view: objective.evaluate(
                prm, _view(val_x, view), val_t, val_w, temperature=settings.temperature, formulation=formulation
            )
            cross_entropy, accuracy = jax.vmap(evaluate)(params, configs["view"])
        if data is None:
            local_term = jnp.full(cross_entropy.shape, jnp.nan)
            val_loss = cross_entropy
        else:
            validate = functools.partial(glocal.validation_loss, data)
            local_term = jax.vmap(validate)(params, configs["view"], configs["tau"])
            val_loss = cross_entropy + jnp.where(configs["alpha"] > 0, local_term, 0.0)  # gLocal's, unweighted
    else:
        cross_entropy = accuracy = local_term = val_loss = jnp.full(state.done.shape, jnp.nan)
    update = functools.partial(_bookkeeping, settings=settings, has_val=has_val)
    return jax.vmap(update)(state, params, opt_state, finite, val_loss, cross_entropy, accuracy, local_term, configs)


def _bookkeeping(
    state, params, opt_state, finite, val_loss, cross_entropy, accuracy, local_term, config, *, settings, has_val
):
    """One configuration's state after its epoch: best parameters and numbers, patience, done, failed."""
    epochs = state.epochs + 1
    finite = finite & _all_finite(params)
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
        best_cross_entropy=jnp.where(improved, cross_entropy, state.best_cross_entropy),
        best_accuracy=jnp.where(improved, accuracy, state.best_accuracy),
        best_local=jnp.where(improved, local_term, state.best_local),
        best_epoch=jnp.where(improved, epochs, state.best_epoch),
        wait=wait,
        epochs=epochs,
        done=stop | ~finite,
        failed=~finite,
    )
    return _select(state.done, state, new)


@functools.partial(jax.jit, static_argnames=("settings", "n_batches"), donate_argnums=0)
def _sweep_epoch(
    state, train_x, train_t, train_w, val_x, val_t, val_w, data, configs, groups, fold_ids, seed, *, settings,
    n_batches, soft=None
):  # fmt: skip
    """One epoch of every slot (F, S): `_fold_epoch` vmapped over the folds (per-fold data; the local data
    is shared). configs: per-slot arrays (F, S); groups: Groups with leading axis F, or None; fold_ids: (F,);
    soft: SoftTargets with leading axis F, or None."""
    epoch = functools.partial(_fold_epoch, data=data, seed=seed, settings=settings, n_batches=n_batches)
    return jax.vmap(epoch)(state, train_x, train_t, train_w, val_x, val_t, val_w, configs, groups, fold_ids, soft)


def train_configurations(
    folds: FoldData,
    configs: Configurations,
    settings: TrainSettings,
    seed: int = 0,
    fold_ids: np.ndarray | None = None,
    progress: bool | str = True,
    desc: str = "probe sweep",
    budget_bytes: float = 0,
    keep_params: bool = True,
    data: glocal.LocalData | None = None,
    soft: SoftTargets | None = None,
) -> SweepOutcome:
    """Trains F x K configurations on standardized features (in `folds`); returns arrays (F, K).

    The configurations train in a pool of F x S slots, S as many as fit `budget_bytes` of device memory
    per device (0 = measured, probing/memory.py) and on the CPU its cache, sharded over all devices of
    all processes (docs/distributed.md); a slot whose configuration stopped takes the next; when none is left the pool
    shrinks to the active slots where the saved epochs pay for compiling the smaller program. fold_ids (F,)
    name the folds for seeding (default 0..F-1). keep_params=False leaves the (F, K, p, p) parameters on the
    device (a cross-validation sweep only needs the numbers). data: gLocal's local images (the configurations
    then have "alpha" and "tau"), None for the global objective. soft: the folds' soft targets, with
    settings.divergence (the configurations then have "tau", the prediction's temperature).
    """
    if bool(settings.divergence) != (soft is not None):
        raise ValueError("soft targets go with settings.divergence (kl | jsd), and only with it")
    n_folds, n_configs = folds.n_folds, len(configs)
    fold_ids = np.arange(n_folds) if fold_ids is None else np.asarray(fold_ids)
    t_train = folds.train_triplets.shape[1]
    batch = settings.batch_size if 0 < settings.batch_size < t_train else t_train
    n_batches = max(1, t_train // batch)
    mesh = placement.configs_mesh()
    n_devices = mesh.devices.size
    per_config = memory.config_bytes(folds, batch, settings.optimizer, settings.bias, data, settings.local_batch_size)
    budget = budget_bytes or memory.available_bytes()
    shared = memory.data_bytes(folds, data) + (0 if soft is None else 4 * (soft.train.size + soft.val.size))
    plan = memory.plan_chunks(n_configs, n_folds, per_config, shared, budget, n_devices)
    cached = memory.cache_slots(per_config, n_folds) * n_devices
    slots = min(plan.size, cached) if cached else plan.size  # a pool that fits the CPU's cache runs faster
    slots = placement.smallest(slots)  # hosts with less memory decide
    arrays = placement.replicated(dataclasses.astuple(folds), mesh)
    local_data = None if data is None else placement.replicated(data, mesh)
    soft_data = None if soft is None else placement.replicated(soft, mesh)
    pool = _Pool(configs, settings, seed, fold_ids, folds.train_features.shape[-1], mesh, keep_params, data is not None)
    pool.start(slots)
    step = functools.partial(_sweep_epoch, settings=settings, n_batches=n_batches, soft=soft_data)
    at_once = f", {slots} at a time" if slots < n_configs else ""
    shown = progress if jax.process_index() == 0 else False
    bar = progress_bar(n_folds * n_configs, f"{desc} ({n_folds}x{n_configs} configs{at_once})", shown, "configs")
    clock = _Clock()
    while pool.active():
        with clock.epoch(pool.slots):
            pool.state = step(pool.state, *arrays, local_data, pool.arrays, pool.groups, pool.fold_ids, pool.seed)
            finished = pool.retire()
        bar.update(finished)
        bar.set_postfix({"slots": f"{int(pool.active())}/{pool.slots * n_folds}", "epochs": clock.epochs})
        target = pool.compact_target(n_devices)
        if target and placement.process_zero(clock.pays(pool.slots, target, pool.remaining_epochs())):
            pool.compact(target)
    bar.close()
    return pool.outcome()


class _Clock:
    """Epoch times per pool size, and the compile time that a new size costs (first epoch minus a later one)."""

    def __init__(self):
        self.seconds: dict[int, list[float]] = collections.defaultdict(list)
        self.epochs = 0

    @contextlib.contextmanager
    def epoch(self, slots: int):
        start = time.perf_counter()
        yield
        self.seconds[slots].append(time.perf_counter() - start)
        self.epochs += 1

    def pays(self, slots: int, target: int, remaining_epochs: float) -> bool:
        """Whether shrinking the pool from `slots` to `target` slots saves more time than it costs."""
        times = self.seconds[slots]
        if len(times) < 2:
            return False
        epoch = float(np.median(times[1:]))
        compile_cost = max(0.0, max(t[0] - float(np.median(t[1:])) for t in self.seconds.values() if len(t) > 1))
        return remaining_epochs * epoch * (1 - target / slots) > compile_cost


class _Pool:
    """F x S slots, each training one configuration (index into `configs`) or idle (-1), with the state on
    the devices (the slots split over `mesh`, probing/placement.py) and the finished configurations' results
    on the host (of every process: each makes the same decisions)."""

    def __init__(self, configs, settings, seed, fold_ids, p, mesh, keep_params, grouped):
        self.configs, self.settings, self.p, self.mesh, self.keep = configs, settings, p, mesh, keep_params
        self.grouped = grouped  # local data: slots at the same stream position and view share their batches
        self.group_size = 0
        self.fold_ids, self.seed = placement.replicated((np.asarray(fold_ids, np.int32), np.int32(seed)), mesh)
        n_folds, n_configs = len(fold_ids), len(configs)
        self.queues = [collections.deque(range(n_configs)) for _ in range(n_folds)]
        self.results = {
            name: np.full((n_folds, n_configs), fill, dtype)
            for name, fill, dtype in (
                ("best_cross_entropy", np.inf, np.float32),
                ("best_accuracy", np.nan, np.float32),
                ("best_local", np.nan, np.float32),
                ("best_epoch", 0, np.int32),
                ("epochs", 0, np.int32),
                ("failed", False, bool),
            )
        }
        self.params: dict[str, np.ndarray] = {}
        self.slots = 0

    def _sharded(self, tree):
        return placement.by_slot(tree, self.mesh)

    def _fresh_state(self, idle: np.ndarray) -> SweepState:
        """A fresh state for each slot's configuration (`idle` (F, S) slots: done), computed where it trains."""
        seed_ids = self.configs.seed_id[np.maximum(self.assigned, 0)]
        slot_ids = self._sharded((seed_ids, idle))
        return self._sharded(_initial_state(self.seed, self.fold_ids, *slot_ids, p=self.p, settings=self.settings))

    def _put_arrays(self) -> None:
        """The slots' configuration arrays (and, with local data, their groups) on the devices."""
        index = np.maximum(self.assigned, 0)
        self.arrays = self._sharded({k: v[index] for k, v in self.configs.arrays().items()})
        self.groups = None
        if self.grouped:
            views = np.where(self.assigned >= 0, self.configs.view[index], -1)
            epochs = placement.to_host(self.state.epochs, self.mesh)
            slot_group, leaders = slot_groups(views, epochs, self.assigned >= 0, self.group_size)
            self.groups = Groups(*placement.replicated((slot_group, leaders), self.mesh))

    def start(self, slots: int) -> None:
        self.slots = slots
        self.assigned = np.array([[q.popleft() if q else -1 for _ in range(slots)] for q in self.queues])
        # local batch groups: when every configuration starts now, each view's configurations train in step
        # (one group per view and fold); else the later ones start at other epochs (up to a group per slot).
        # Two sizes at most, so the program compiles once per pool size.
        n_views = int(self.configs.view.max()) + 1
        self.group_size = slots if any(self.queues) else min(n_views, slots)
        self.state = self._fresh_state(self.assigned < 0)
        self._put_arrays()

    def active(self) -> int:
        return int((self.assigned >= 0).sum())

    def retire(self) -> int:
        """Moves the results of the configurations that stopped to the host and gives their slots the next
        configurations of their folds; returns how many stopped."""
        finished = placement.to_host(self.state.done, self.mesh) & (self.assigned >= 0)
        if not finished.any():
            return 0
        f, s = np.nonzero(finished)
        k = self.assigned[f, s]
        numbers = placement.to_host({name: getattr(self.state, name) for name in self.results}, self.mesh)
        for name in self.results:
            self.results[name][f, k] = numbers[name][f, s]
        if self.keep:
            for name, rows in placement.slots_to_host(self.state.best_params, f, s, self.mesh).items():
                if name not in self.params:
                    self.params[name] = np.zeros(self.results["epochs"].shape + rows.shape[1:], np.float32)
                self.params[name][f, k] = rows
        self.assigned[f, s] = [self.queues[fold].popleft() if self.queues[fold] else -1 for fold in f]
        fresh = finished & (self.assigned >= 0)
        if fresh.any():
            self.state = _refill(self.state, self._fresh_state(~fresh), self._sharded(fresh))
        self._put_arrays()
        return len(k)

    def compact_target(self, n_devices: int) -> int:
        """Once no fold has a configuration left to start: the fewest slots (a multiple of the device count)
        that hold every fold's active configurations, if at most half the pool (so the pool's size, and
        with it a compilation, changes only a few times); else 0."""
        need = int((self.assigned >= 0).sum(axis=1).max())
        target = -(-need // n_devices) * n_devices
        return target if not any(self.queues) and 0 < target <= self.slots // 2 else 0

    def remaining_epochs(self) -> float:
        """A cautious guess of how long the active configurations go on: `patience` epochs (each stops
        `patience` epochs after its last improvement at the earliest), within their epoch budgets."""
        active = self.assigned >= 0
        left = self.configs.max_epochs[self.assigned[active]] - placement.to_host(self.state.epochs, self.mesh)[active]
        return float(min(self.settings.patience, np.max(left)))

    def compact(self, target: int) -> None:
        """Moves the active configurations of each fold into the first `target` slots."""
        order = np.argsort(self.assigned < 0, axis=1, kind="stable")[:, :target]  # active slots first
        self.assigned = np.take_along_axis(self.assigned, order, axis=1)
        moved = _gather_slots(self.state, *placement.replicated((order, self.assigned < 0), self.mesh))
        self.state = self._sharded(moved)
        self.slots, self.group_size = target, min(self.group_size, target)
        self._put_arrays()

    def outcome(self) -> SweepOutcome:
        r = self.results
        return SweepOutcome(
            self.params, r["best_cross_entropy"], r["best_accuracy"], r["best_local"], r["best_epoch"], r["epochs"],
            r["failed"],
        )  # fmt: skip


def slot_groups(views: np.ndarray, epochs: np.ndarray, active: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """views, epochs, active: (F, S) -> slot_group (F, S), leaders (F, size): the active slots of a fold with
    the same view and epoch read the same local batches (one group, led by its first slot); spare groups
    repeat the first leader, idle slots join group 0. `size` must hold every fold's groups."""
    n_folds, n_slots = views.shape
    slot_group = np.zeros((n_folds, n_slots), np.int32)
    leaders: list[list[int]] = []
    for f in range(n_folds):
        first: dict[tuple[int, int], int] = {}
        for s in np.flatnonzero(active[f]):
            key = (int(views[f, s]), int(epochs[f, s]))
            if key not in first:
                first[key] = s
            slot_group[f, s] = list(first).index(key)
        leaders.append(list(first.values()) or [0])
    if max(len(lead) for lead in leaders) > size:
        raise ValueError(f"{max(len(lead) for lead in leaders)} groups of slots do not fit {size}")
    return slot_group, np.array([lead + lead[:1] * (size - len(lead)) for lead in leaders], np.int32)


def train_sweep(
    folds: FoldData,
    lambdas: np.ndarray,
    lrs: np.ndarray,
    settings: TrainSettings,
    seed: int = 0,
    fold_ids: np.ndarray | None = None,
    hyper_ids: np.ndarray | None = None,
    progress: bool | str = True,
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
