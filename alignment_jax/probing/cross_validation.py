"""The probe end to end: standardize, sweep lambda (x lr) x object folds, select, refit, test.

Selection follows the paper: the lambda (and learning rate) with the lowest mean validation
cross-entropy over folds (or the highest mean accuracy). The refit trains on every training triplet with
the selected setting for the mean best epoch of its folds (no validation set is left for early stopping).
"""

import dataclasses
import functools
import time
from collections.abc import Callable

import jax
import ml_collections
import numpy as np

from alignment_jax.data.splits import object_kfold_masks, triplet_kfold_masks
from alignment_jax.errors import InputError
from alignment_jax.probing import objective
from alignment_jax.probing.optimizers import OPTIMIZERS
from alignment_jax.probing.standardize import standardization
from alignment_jax.probing.sweep import Configurations, SweepOutcome, TrainSettings, stack_folds, train_configurations
from alignment_jax.probing.transform import Transform

PROTOCOLS = ("fast", "paper")
# A configuration diverged when its best validation cross-entropy is above twice chance's: guessing uniformly
# scores log 3 = 1.099 on every triplet, a probe that learned nothing stays near it, and any setting that
# trains stays below it (early stopping keeps the best epoch), so twice that is far into divergence.
DIVERGED_CROSS_ENTROPY = 2 * float(np.log(3.0))
SPLITS = ("objects", "triplets")
SELECT_BY = ("cross_entropy", "accuracy")


@dataclasses.dataclass(frozen=True)
class ProbeSettings:
    """Everything the probe needs besides data; `from_config` fills protocol defaults."""

    lambdas: tuple[float, ...]
    lrs: tuple[float, ...]
    folds: int
    split: str
    train: TrainSettings
    standardize: str
    select_by: str
    protocol: str
    memory_gb: float = 0.0  # device memory the sweep may use per device; 0 = measured (probing/memory.py)

    @classmethod
    def from_config(cls, probe: ml_collections.ConfigDict, n_dims: int) -> "ProbeSettings":
        """Fast protocol: full batch, Adam lr = 1/p (weights of a useful W are about 1/p, so a few dozen
        full-batch Adam steps reach them), up to 500 steps. Paper protocol: batch 256, lr 1e-3, 100 epochs."""
        if probe.protocol not in PROTOCOLS:
            raise InputError(f"probe.protocol={probe.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if probe.regularizer not in objective.REGULARIZERS:
            raise InputError(
                f"probe.regularizer={probe.regularizer!r} is not one of {', '.join(objective.REGULARIZERS)}"
            )
        if probe.optimizer not in OPTIMIZERS:
            raise InputError(f"probe.optimizer={probe.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if probe.select_by not in SELECT_BY:
            raise InputError(f"probe.select_by={probe.select_by!r} is not one of {', '.join(SELECT_BY)}")
        if probe.split not in SPLITS:
            raise InputError(f"probe.split={probe.split!r} is not one of {', '.join(SPLITS)}")
        if probe.init not in ("normal", "identity"):
            raise InputError(f"probe.init={probe.init!r} is not one of normal, identity")
        paper = probe.protocol == "paper"
        lr = probe.lr if probe.lr > 0 else (1e-3 if paper else 1.0 / n_dims)
        batch_size = probe.batch_size if probe.batch_size >= 0 else (256 if paper else 0)
        epochs = probe.epochs if probe.epochs > 0 else (100 if paper else 500)
        lambdas = _floats(probe.lambdas, "probe.lambdas")
        lrs = _floats(probe.lrs, "probe.lrs") if probe.lrs else (lr,)
        if any(v < 0 for v in lambdas) or any(v <= 0 for v in lrs):
            raise InputError("probe.lambdas must be >= 0 and probe.lrs > 0")
        train = TrainSettings(
            optimizer=probe.optimizer,
            batch_size=batch_size,
            epochs=epochs,
            min_epochs=probe.min_epochs,
            patience=probe.patience,
            min_delta=probe.min_delta,
            clip_norm=probe.clip_norm,
            regularizer=probe.regularizer,
            temperature=probe.temperature,
            bias=probe.bias,
            init=probe.init,
            init_scale=probe.init_scale,
        )
        if probe.memory_gb < 0:
            raise InputError(f"probe.memory_gb={probe.memory_gb}: must be >= 0 (0 = measure the free memory)")
        return cls(
            lambdas, lrs, probe.folds, probe.split, train, probe.standardize, probe.select_by, probe.protocol,
            probe.memory_gb,
        )  # fmt: skip


def _floats(value, field: str) -> tuple[float, ...]:
    """A tuple of floats (the command line gives `--config.probe.lambdas=0.1,0.01`)."""
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError) as e:
        raise InputError(f"{field}={value!r}: expected numbers, e.g. 1e-1,1e-2") from e
    if not out:
        raise InputError(f"{field} is empty")
    return out


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """The refit transform and the numbers of results.json's "probe" section."""

    transform: Transform
    summary: dict


def run_probe(
    features: np.ndarray,
    train_triplets: np.ndarray,
    test_triplets: np.ndarray | None,
    settings: ProbeSettings,
    seed: int = 0,
    progress: bool | str = True,
) -> ProbeResult:
    """features: (n, p); train/test triplets: (T, 3), column 2 = odd one out. progress: a mode of
    alignment_jax/progress.py for the sweep's and the refit's progress (True = auto)."""
    return run_probe_layers({"features": features}, train_triplets, test_triplets, settings, seed, progress)["features"]


def run_probe_layers(
    features: dict[str, np.ndarray],
    train_triplets: np.ndarray,
    test_triplets: np.ndarray | None,
    settings: ProbeSettings | Callable[[int], ProbeSettings],
    seed: int = 0,
    progress: bool | str = True,
) -> dict[str, ProbeResult]:
    """The probe of every layer: {layer: (n, p_layer) features} -> {layer: ProbeResult}.

    Layers of one width train together: layer x lambda x lr x fold in one compiled sweep (probing/sweep.py),
    then each layer's refit in one more. Each layer is standardized on its own and selects its own lambda
    (and lr); its numbers equal those of a run of that layer alone with the same seed. settings: one for
    every width, or a function of the width (the fast protocol's lr is 1/p). A summary's "seconds" is
    the time of the whole call.
    """
    start = time.perf_counter()
    settings_for = settings if callable(settings) else (lambda p: settings)
    n_objects = {f.shape[0] for f in features.values()}
    if len(n_objects) != 1:
        raise InputError(f"the layers' features have different numbers of rows {sorted(n_objects)}")
    widths: dict[int, list[str]] = {}
    for name, x in features.items():
        widths.setdefault(x.shape[1], []).append(name)
    first = settings_for(next(iter(widths)))
    masks = _fold_masks(train_triplets, n_objects.pop(), first, seed)
    results: dict[str, ProbeResult] = {}
    for p, names in widths.items():
        group = {name: features[name] for name in names}
        results.update(_probe_width(group, train_triplets, test_triplets, masks, settings_for(p), seed, progress))
    for result in results.values():
        result.summary["seconds"] = time.perf_counter() - start
    return {name: results[name] for name in features}


def _fold_masks(
    train_triplets: np.ndarray, n_objects: int, settings: ProbeSettings, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) masks (folds, T) of the cross-validation; every fold has triplets on both sides."""
    if settings.split == "objects":
        train_masks, val_masks = object_kfold_masks(train_triplets, n_objects, settings.folds, seed)
    else:
        train_masks, val_masks = triplet_kfold_masks(len(train_triplets), settings.folds, seed)
    if (val_masks.sum(axis=1) == 0).any() or (train_masks.sum(axis=1) == 0).any():
        raise InputError(
            f"too few triplets for {settings.folds}-fold object cross-validation: a fold has no triplet with all "
            "three objects on one side; use more triplets or fewer folds (probe.folds)"
        )
    return train_masks, val_masks


def _probe_width(
    features: dict[str, np.ndarray],
    train_triplets: np.ndarray,
    test_triplets: np.ndarray | None,
    masks: tuple[np.ndarray, np.ndarray],
    settings: ProbeSettings,
    seed: int,
    progress: bool | str,
) -> dict[str, ProbeResult]:
    """Sweep, selection, refit and test of layers of one width p: features {layer: (n, p)}."""
    names = list(features)
    n_views, p = len(names), next(iter(features.values())).shape[1]
    standardizations = [standardization(features[name], settings.standardize) for name in names]
    x = np.stack(
        [((features[name] - m) / s).astype(np.float32) for name, (m, s) in zip(names, standardizations, strict=True)]
    )
    lambdas, lrs = (np.array(v, np.float32).ravel() for v in np.meshgrid(settings.lambdas, settings.lrs, indexing="ij"))
    n_hyper, multiple = len(lambdas), settings.train.batch_size or 1
    budget = settings.memory_gb * 1e9
    what = f" ({n_views} layers of width {p})" if n_views > 1 else ""

    folds = stack_folds(x, train_triplets, *masks, multiple)
    configs = Configurations.grid(lambdas, lrs, settings.train.epochs, n_views)
    sweep = train_configurations(
        folds, configs, settings.train, seed, progress=progress, desc="probe sweep" + what, budget_bytes=budget,
        keep_params=False,
    )  # fmt: skip
    del folds
    outcomes = [sweep.columns(slice(v * n_hyper, (v + 1) * n_hyper)) for v in range(n_views)]
    best = np.array([_best_setting(o, settings.select_by, names[v], n_views) for v, o in enumerate(outcomes)])
    refit_epochs = np.array([max(1, int(round(o.best_epoch[:, best[v]].mean()))) for v, o in enumerate(outcomes)])

    everything, nothing = np.ones((1, len(train_triplets)), bool), np.zeros((1, len(train_triplets)), bool)
    all_train = stack_folds(x, train_triplets, everything, nothing, multiple)
    refit_configs = Configurations({"lam": lambdas[best], "lr": lrs[best]}, np.arange(n_views), refit_epochs, best)
    refit = train_configurations(
        all_train, refit_configs, settings.train, seed, fold_ids=np.array([settings.folds]), progress=progress,
        desc="probe refit" + what, budget_bytes=budget,
    )  # fmt: skip

    results = {}
    for v, name in enumerate(names):
        if refit.failed[0, v]:
            raise InputError(
                f"the refit{_of(name, n_views)} on all training triplets diverged (loss NaN/inf): lower probe.lr"
            )
        params = {k: a[0, v] for k, a in refit.params.items()}
        mean, std = standardizations[v]
        transform = Transform(params["weights"], params.get("bias", np.zeros(p)), mean, std)
        summary = _summary(outcomes[v], int(best[v]), lambdas, lrs, int(refit_epochs[v]), settings)
        if test_triplets is not None and len(test_triplets):
            ce, acc = probe_scores(transform, features[name], test_triplets, settings.train.temperature)
            summary.update(test_accuracy=acc, test_cross_entropy=ce)
        summary["seconds"] = 0.0  # the caller sets the time of the whole probe
        summary["sweep"] = _sweep_rows(outcomes[v], lambdas, lrs, settings.folds)
        results[name] = ProbeResult(transform, summary)
    return results


def _of(name: str, n_views: int) -> str:
    return f" of layer {name}" if n_views > 1 else ""


def _best_setting(outcome: SweepOutcome, select_by: str, name: str, n_views: int) -> int:
    """The hyperparameter setting (column of the (F, H) outcome) of the best mean over folds, among those
    that no fold saw diverge (diverged_configurations)."""
    complete = ~diverged_configurations(outcome).any(axis=0)  # (H,): no fold diverged
    if not complete.any():
        raise InputError(
            f"every probe configuration{_of(name, n_views)} diverged in some fold (validation cross-entropy NaN/inf "
            f"or above {DIVERGED_CROSS_ENTROPY:.3f} = 2 log 3, twice chance): lower the learning rate (probe.lr, or "
            "probe.lrs for a sweep of learning rates)"
        )
    if select_by == "cross_entropy":
        return int(np.argmin(np.where(complete, outcome.val_cross_entropy.mean(axis=0), np.inf)))
    return int(np.argmax(np.where(complete, outcome.val_accuracy.mean(axis=0), -np.inf)))


def _summary(
    outcome: SweepOutcome, best: int, lambdas: np.ndarray, lrs: np.ndarray, refit_epochs: int, settings: ProbeSettings
) -> dict:
    return {
        "best_lambda": float(lambdas[best]),
        "best_lr": float(lrs[best]),
        "cv_accuracy": float(outcome.val_accuracy[:, best].mean()),
        "cv_accuracy_folds": [float(v) for v in outcome.val_accuracy[:, best]],
        "cv_cross_entropy": float(outcome.val_cross_entropy[:, best].mean()),
        "protocol": settings.protocol,
        "regularizer": settings.train.regularizer,
        "refit_epochs": refit_epochs,
    }


def _sweep_rows(outcome: SweepOutcome, lambdas: np.ndarray, lrs: np.ndarray, n_folds: int) -> list[dict]:
    diverged = diverged_configurations(outcome)
    return [
        {
            "lambda": float(lambdas[h]),
            "lr": float(lrs[h]),
            "fold": f,
            "accuracy": _finite_or_none(outcome.val_accuracy[f, h]),
            "cross_entropy": _finite_or_none(outcome.val_cross_entropy[f, h]),
            "epochs": int(outcome.epochs[f, h]),
            "best_epoch": int(outcome.best_epoch[f, h]),
            "status": "diverged" if diverged[f, h] else "ok",
        }
        for h in range(len(lambdas))
        for f in range(n_folds)
    ]


def diverged_configurations(outcome: SweepOutcome) -> np.ndarray:
    """(F, H) bool: the configurations whose loss turned NaN/inf, or whose best validation cross-entropy is
    still above DIVERGED_CROSS_ENTROPY (a finite loss of 1e20 is divergence as much as NaN is)."""
    return outcome.failed | ~(outcome.val_cross_entropy <= DIVERGED_CROSS_ENTROPY)


def probe_scores(
    transform: Transform, features: np.ndarray, triplets: np.ndarray, temperature: float = 1.0
) -> tuple[float, float]:
    """(cross-entropy, accuracy) of the probe's dot-product choices on (T, 3) triplets."""
    import jax.numpy as jnp

    params = {"weights": jnp.asarray(transform.weights), "bias": jnp.asarray(transform.bias)}
    x = jnp.asarray(transform.standardize(features))
    triplets = jnp.asarray(triplets, jnp.int32)
    ce, acc = _evaluate(
        params,
        x,
        triplets,
        jnp.ones(len(triplets)),
        temperature=temperature,
        formulation=objective.choose_formulation(x.shape[0], len(triplets), x.shape[1]),
    )
    return float(ce), float(acc)


@functools.partial(jax.jit, static_argnames=("temperature", "formulation"))
def _evaluate(params, x, triplets, weights, *, temperature: float, formulation: str):
    """objective.evaluate, compiled as one program (not op by op)."""
    return objective.evaluate(params, x, triplets, weights, temperature=temperature, formulation=formulation)


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def probe_decisions(transform: Transform, features: np.ndarray, triplets: np.ndarray) -> np.ndarray:
    """(T,) bool: whether the probe's dot-product choice on each triplet is the human one; the same computation
    as probe_scores' accuracy (whose mean it is)."""
    import jax.numpy as jnp

    params = {"weights": jnp.asarray(transform.weights), "bias": jnp.asarray(transform.bias)}
    x = jnp.asarray(transform.standardize(features))
    triplets = jnp.asarray(triplets, jnp.int32)
    formulation = objective.choose_formulation(x.shape[0], len(triplets), x.shape[1])
    return np.asarray(objective.triplet_correct(objective.pair_similarities(params, x, triplets, formulation)))
