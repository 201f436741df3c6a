"""The probe end to end: standardize, sweep lambda (x lr) x object folds, select, refit, test.

Selection follows the paper: the lambda (and learning rate) with the lowest mean validation
cross-entropy over folds (or the highest mean accuracy). The refit trains on every training triplet with
the selected setting for the mean best epoch of its folds (no validation set is left for early stopping).
"""

import dataclasses
import time

import ml_collections
import numpy as np

from alignment_jax.data.splits import object_kfold_masks, triplet_kfold_masks
from alignment_jax.errors import InputError
from alignment_jax.probing import objective
from alignment_jax.probing.optimizers import OPTIMIZERS
from alignment_jax.probing.standardize import standardization
from alignment_jax.probing.sweep import SweepOutcome, TrainSettings, stack_folds, train_sweep
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
        return cls(lambdas, lrs, probe.folds, probe.split, train, probe.standardize, probe.select_by, probe.protocol)


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
    start = time.perf_counter()
    n_objects, p = features.shape
    mean, std = standardization(features, settings.standardize)
    x = ((features - mean) / std).astype(np.float32)
    lambdas, lrs = (np.array(v, np.float32).ravel() for v in np.meshgrid(settings.lambdas, settings.lrs, indexing="ij"))
    multiple = settings.train.batch_size or 1

    if settings.split == "objects":
        train_masks, val_masks = object_kfold_masks(train_triplets, n_objects, settings.folds, seed)
    else:
        train_masks, val_masks = triplet_kfold_masks(len(train_triplets), settings.folds, seed)
    if (val_masks.sum(axis=1) == 0).any() or (train_masks.sum(axis=1) == 0).any():
        raise InputError(
            f"too few triplets for {settings.folds}-fold object cross-validation: a fold has no triplet with all "
            "three objects on one side; use more triplets or fewer folds (probe.folds)"
        )
    folds = stack_folds(x, train_triplets, train_masks, val_masks, multiple)
    outcome = train_sweep(folds, lambdas, lrs, settings.train, seed, progress=progress, desc="probe sweep")

    diverged = diverged_configurations(outcome)  # (F, H)
    complete = ~diverged.any(axis=0)  # (H,): no fold diverged
    if not complete.any():
        raise InputError(
            "every probe configuration diverged in some fold (validation cross-entropy NaN/inf or above "
            f"{DIVERGED_CROSS_ENTROPY:.3f} = 2 log 3, twice chance): lower the learning rate (probe.lr, or probe.lrs "
            "for a sweep of learning rates)"
        )
    if settings.select_by == "cross_entropy":
        best = int(np.argmin(np.where(complete, outcome.val_cross_entropy.mean(axis=0), np.inf)))
    else:
        best = int(np.argmax(np.where(complete, outcome.val_accuracy.mean(axis=0), -np.inf)))

    refit_epochs = max(1, int(round(outcome.best_epoch[:, best].mean())))
    refit_settings = dataclasses.replace(settings.train, epochs=refit_epochs, min_epochs=refit_epochs)
    everything, nothing = np.ones((1, len(train_triplets)), bool), np.zeros((1, len(train_triplets)), bool)
    all_train = stack_folds(x, train_triplets, everything, nothing, multiple)
    refit = train_sweep(
        all_train,
        lambdas[best : best + 1],
        lrs[best : best + 1],
        refit_settings,
        seed,
        fold_ids=np.array([settings.folds]),
        hyper_ids=np.array([best]),
        progress=progress,
        desc="probe refit",
    )
    params = {k: v[0, 0] for k, v in refit.params.items()}
    if refit.failed[0, 0]:
        raise InputError("the refit on all training triplets diverged (loss NaN/inf): lower probe.lr")
    transform = Transform(params["weights"], params.get("bias", np.zeros(p)), mean, std)

    summary = {
        "best_lambda": float(lambdas[best]),
        "best_lr": float(lrs[best]),
        "cv_accuracy": float(outcome.val_accuracy[:, best].mean()),
        "cv_accuracy_folds": [float(v) for v in outcome.val_accuracy[:, best]],
        "cv_cross_entropy": float(outcome.val_cross_entropy[:, best].mean()),
        "protocol": settings.protocol,
        "regularizer": settings.train.regularizer,
        "refit_epochs": refit_epochs,
    }
    if test_triplets is not None and len(test_triplets):
        ce, acc = probe_scores(transform, features, test_triplets, settings.train.temperature)
        summary.update(test_accuracy=acc, test_cross_entropy=ce)
    summary["seconds"] = time.perf_counter() - start
    summary["sweep"] = [
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
        for f in range(settings.folds)
    ]
    return ProbeResult(transform, summary)


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
    ce, acc = objective.evaluate(
        params,
        x,
        triplets,
        jnp.ones(len(triplets)),
        temperature=temperature,
        formulation=objective.choose_formulation(x.shape[0], len(triplets), x.shape[1]),
    )
    return float(ce), float(acc)


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
