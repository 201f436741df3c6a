"""The probe end to end: standardize, sweep lambda (x alpha x tau) (x lr) x object folds, select, refit, test.

Selection follows the paper for the global objective: the lambda (and learning rate) with the lowest mean
validation cross-entropy over folds (or the highest mean accuracy). With gLocal's objective it follows
gLocal: the configuration (lambda, alpha > 0, tau, lr) with the lowest mean over folds of its validation
loss, triplet cross-entropy + local term on the validation images, unweighted (docs/glocal.md); the
configurations with alpha = 0 are the global probe, trained in the same sweep and selected by the paper's
rule among themselves, to be reported beside it. The refit trains on every training triplet (and every
local training image) with each selected setting for the mean best epoch of its folds (no validation set is
left for early stopping).
"""

import dataclasses
import functools
import time
from collections.abc import Callable

import jax
import ml_collections
import numpy as np

from alignment_jax import json_values
from alignment_jax.config import checks
from alignment_jax.data.local_set import split_heldout
from alignment_jax.data.splits import object_kfold_masks, triplet_kfold_masks
from alignment_jax.errors import InputError
from alignment_jax.probing import objective
from alignment_jax.probing.glocal import GlocalSettings, LocalData, local_data
from alignment_jax.probing.optimizers import OPTIMIZERS
from alignment_jax.probing.standardize import MODES, standardization
from alignment_jax.probing.sweep import (
    Configurations,
    SweepOutcome,
    TrainSettings,
    stack_folds,
    stack_targets,
    train_configurations,
)
from alignment_jax.probing.transform import Transform

PROTOCOLS = ("fast", "paper")
# A configuration diverged when its best validation cross-entropy is above twice chance's: guessing uniformly
# scores log 3 = 1.099 on every triplet, a probe that learned nothing stays near it, and any setting that
# trains stays below it (early stopping keeps the best epoch), so twice that is far into divergence.
DIVERGED_CROSS_ENTROPY = 2 * float(np.log(3.0))
SPLITS = ("objects", "triplets")
SELECT_BY = ("cross_entropy", "accuracy")
INITS = ("normal", "identity")


@dataclasses.dataclass(frozen=True)
class ProbeSettings:
    """Every setting of the probe, named and defaulted as the fields of config.probe
    (alignment_jax/config/base.py), and checked when built: one InputError naming `probe.<field>` and the value.

    -1 and "" mean the protocol's or the objective's default, resolved when the settings are used: the fast
    protocol trains full batch (batch_size 0) with Adam at lr = 1/p for up to 500 epochs (weights of a useful
    W are about 1/p, so a few dozen full-batch steps reach them; p is known once the features are: `for_width`);
    the paper's, batches of 256 at lr 1e-3 for up to 100 epochs. regularizer and init "" are the objective's:
    the paper's ||W||_F and W ~ N(0, init_scale^2) for the global probe, gLocal's ||W - mean(diag W) I||^2 and
    W = init_scale * I (bias init_scale) for glocal.
    """

    lambdas: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
    lrs: tuple[float, ...] = ()  # learning rates to sweep; () = (lr,)
    lr: float = -1.0
    folds: int = 3
    split: str = "objects"
    protocol: str = "fast"
    regularizer: str = ""
    optimizer: str = "adam"
    batch_size: int = -1
    epochs: int = -1
    min_epochs: int = 10
    patience: int = 10
    min_delta: float = 1e-4
    clip_norm: float = 1.0
    bias: bool = False
    init: str = ""
    init_scale: float = 1e-3
    standardize: str = "global"
    select_by: str = "cross_entropy"
    temperature: float = 1.0
    memory_gb: float = 0.0  # device memory the sweep may use per device; 0 = measured (probing/memory.py)
    glocal: GlocalSettings = GlocalSettings()  # objective, alphas, taus, local images

    def __post_init__(self):
        given = {"probe": {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}
        checks.numbers(given, "probe.lambdas", minimum=0)
        checks.number(given, "probe.lr", above=0, also=(-1,))
        if self.lrs:
            checks.numbers(given, "probe.lrs", above=0)
        checks.integer(given, "probe.folds", minimum=2)
        for field, choices in (
            ("split", SPLITS), ("protocol", PROTOCOLS), ("optimizer", OPTIMIZERS), ("standardize", MODES),
            ("select_by", SELECT_BY), ("regularizer", ("", *objective.REGULARIZERS)), ("init", ("", *INITS)),
        ):  # fmt: skip
            checks.choice(given, f"probe.{field}", choices)
        checks.integer(given, "probe.batch_size", minimum=0, also=(-1,))
        checks.integer(given, "probe.epochs", minimum=1, also=(-1,))
        checks.integer(given, "probe.min_epochs", minimum=0)
        checks.integer(given, "probe.patience", minimum=1)
        for field in ("min_delta", "clip_norm", "init_scale"):
            checks.number(given, f"probe.{field}", minimum=0)
        checks.number(given, "probe.temperature", above=0)
        checks.number(given, "probe.memory_gb", minimum=0)
        if self.objective == "glocal" and self.select_by != "cross_entropy":
            raise InputError(
                f"probe.select_by={self.select_by!r} with probe.objective=glocal: gLocal selects by its validation "
                "loss (triplet cross-entropy + local term); set probe.select_by=cross_entropy"
            )

    @property
    def objective(self) -> str:
        return self.glocal.objective

    @property
    def soft(self) -> bool:
        """Soft targets (AligNet's kl | jsd): tau is the prediction's temperature, swept per (lambda, lr)."""
        return self.objective in objective.DIVERGENCES

    @property
    def train(self) -> TrainSettings:
        """How each configuration trains, with the protocol's and the objective's defaults filled in."""
        paper, is_glocal = self.protocol == "paper", self.objective == "glocal"
        return TrainSettings(
            optimizer=self.optimizer,
            batch_size=self.batch_size if self.batch_size >= 0 else (256 if paper else 0),
            epochs=self.epochs if self.epochs > 0 else (100 if paper else 500),
            min_epochs=self.min_epochs,
            patience=self.patience,
            min_delta=self.min_delta,
            clip_norm=self.clip_norm,
            regularizer=self.regularizer or ("identity" if is_glocal else "frobenius"),
            temperature=self.temperature,
            bias=self.bias,
            init=self.init or ("identity" if is_glocal else "normal"),
            init_scale=self.init_scale,
            local_batch_size=self.glocal.batch_size,
            divergence=self.objective if self.soft else "",
        )

    def for_width(self, p: int) -> "ProbeSettings":
        """The settings for features of width p: the learning rates resolved (fast protocol: 1/p)."""
        if self.lrs:
            return self
        lr = self.lr if self.lr > 0 else (1e-3 if self.protocol == "paper" else 1.0 / p)
        return dataclasses.replace(self, lrs=(lr,))

    @classmethod
    def from_config(cls, probe: ml_collections.ConfigDict) -> "ProbeSettings":
        """The settings of config.probe: its fields mapped (sequences given as text on the command line read as
        numbers), nothing resolved."""
        numbers = {
            "lambdas": checks.float_tuple(probe.lambdas, "probe.lambdas", "1e-1,1e-2"),
            "lrs": checks.float_tuple(probe.lrs, "probe.lrs", "1e-3,1e-2") if probe.lrs else (),
        }
        fields = [f.name for f in dataclasses.fields(cls) if f.name not in ("glocal", *numbers)]
        return cls(**numbers, **{name: probe[name] for name in fields}, glocal=GlocalSettings.from_config(probe))


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """The refit transform and the numbers of results.json's "probe" section; with gLocal's objective and
    alpha = 0 among probe.alphas, `global_probe` is the global probe selected among the alpha = 0
    configurations of the same sweep (its summary is also the section's `global_probe` entry)."""

    transform: Transform
    summary: dict
    global_probe: "ProbeResult | None" = None


def run_probe(
    features: np.ndarray,
    train_triplets: np.ndarray,
    test_triplets: np.ndarray | None,
    settings: ProbeSettings,
    seed: int = 0,
    progress: bool | str = True,
    local: np.ndarray | None = None,
    targets: np.ndarray | None = None,
    test_targets: np.ndarray | None = None,
) -> ProbeResult:
    """features: (n, p); train/test triplets: (T, 3), column 2 = odd one out. progress: a mode of
    alignment_jax/progress.py for the sweep's and the refit's progress (True = auto). local: (N, p) raw
    features of the local images gLocal's objective trains on (not the held-out ones). targets, test_targets:
    (T, 3) target distributions over the pairs [(0, 1), (0, 2), (1, 2)] of each triplet for the soft
    objectives (probe.objective kl | jsd): AligNet's softmax of the teacher's similarities
    (data/alignet.soft_targets), or human response distributions."""
    layers = None if local is None else {"features": local}
    return run_probe_layers(
        {"features": features}, train_triplets, test_triplets, settings, seed, progress, layers, targets, test_targets
    )["features"]


def run_probe_layers(
    features: dict[str, np.ndarray],
    train_triplets: np.ndarray,
    test_triplets: np.ndarray | None,
    settings: ProbeSettings | Callable[[int], ProbeSettings],
    seed: int = 0,
    progress: bool | str = True,
    local: dict[str, np.ndarray] | None = None,
    targets: np.ndarray | None = None,
    test_targets: np.ndarray | None = None,
) -> dict[str, ProbeResult]:
    """The probe of every layer: {layer: (n, p_layer) features} -> {layer: ProbeResult}.

    Layers of one width train together: layer x lambda (x alpha x tau) x lr x fold in one compiled sweep
    (probing/sweep.py), then each layer's refit in one more. Each layer is standardized on its own and selects
    its own setting; its numbers equal those of a run of that layer alone with the same seed. settings: one
    for every width, or a function of the width (the fast protocol's lr is 1/p). local: {layer: (N, p_layer)}
    raw features of the same N local images in each layer (gLocal's objective). A summary's "seconds" is
    the time of the whole call.
    """
    start = time.perf_counter()
    settings_for = settings if callable(settings) else settings.for_width
    n_objects = {f.shape[0] for f in features.values()}
    if len(n_objects) != 1:
        raise InputError(f"the layers' features have different numbers of rows {sorted(n_objects)}")
    widths: dict[int, list[str]] = {}
    for name, x in features.items():
        widths.setdefault(x.shape[1], []).append(name)
    first = settings_for(next(iter(widths)))
    soft = _check_targets(first, train_triplets, targets, test_triplets, test_targets)
    masks = _fold_masks(train_triplets, n_objects.pop(), first, seed)
    results: dict[str, ProbeResult] = {}
    for p, names in widths.items():
        group = {name: features[name] for name in names}
        group_local = None if local is None else {name: local[name] for name in names}
        results.update(
            _probe_width(
                group, train_triplets, test_triplets, masks, settings_for(p), seed, progress, group_local, *soft
            )
        )
    for result in results.values():
        for summary in (result.summary, *([result.summary["global_probe"]] if result.global_probe else [])):
            summary["seconds"] = time.perf_counter() - start
    return {name: results[name] for name in features}


def _check_targets(
    settings: ProbeSettings,
    train: np.ndarray,
    targets: np.ndarray | None,
    test: np.ndarray | None,
    test_targets: np.ndarray | None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The soft targets as float32 (T, 3) distributions, checked against the objective and the triplets."""
    if not settings.soft:
        if targets is not None:
            raise InputError(
                f"soft targets given with probe.objective={settings.objective}: set probe.objective=kl or jsd"
            )
        return None, None
    if targets is None:
        raise InputError(f"probe.objective={settings.objective} needs soft targets (e.g. alignet.train)")
    checked = []
    for name, array, triplets in (("targets", targets, train), ("test targets", test_targets, test)):
        if array is None:
            checked.append(None)
            continue
        array = np.asarray(array, np.float64)
        if triplets is None or array.shape != (len(triplets), 3):
            raise InputError(f"{name} must have shape (T, 3), one row per triplet; got {array.shape}")
        sums = array.sum(axis=1)
        if not np.isfinite(array).all() or (array < 0).any() or not np.allclose(sums, 1.0, atol=1e-4):
            row = int(np.argmax(~np.isfinite(sums) | (array < 0).any(axis=1) | ~np.isclose(sums, 1.0, atol=1e-4)))
            raise InputError(f"{name}: row {row} {array[row].tolist()} is not a probability distribution")
        checked.append(array.astype(np.float32))
    return checked[0], checked[1]


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


def hyper_grid(settings: ProbeSettings) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The H hyperparameter settings of one view: ({"lam", "lr"[, "alpha", "tau"]}: (H,) arrays, seed ids (H,)).

    Lambda-major, then lr (then alpha, then tau with gLocal's objective). Settings of the same (lambda, lr)
    share a seed id (they start from the same weights), the index of that pair; alpha = 0 (the global probe)
    ignores tau in training and early stopping, so it is swept once, at the first tau. The arrays hold the
    values as given (float64: results.json reports 0.1, not float32's 0.10000000149); training reads them as
    float32 (`Configurations`)."""
    rows = []
    for i, lam in enumerate(settings.lambdas):
        for j, lr in enumerate(settings.lrs):
            pair = {"lam": lam, "lr": lr}, i * len(settings.lrs) + j
            if settings.soft:  # the prediction's temperature, one more axis of the same program
                rows.extend(({**pair[0], "tau": tau}, pair[1]) for tau in settings.glocal.taus)
                continue
            if settings.objective != "glocal":
                rows.append(pair)
                continue
            for alpha in settings.glocal.alphas:
                for tau in settings.glocal.taus[:1] if alpha == 0 else settings.glocal.taus:
                    rows.append(({**pair[0], "alpha": alpha, "tau": tau}, pair[1]))
    hyper = {name: np.array([r[name] for r, _ in rows], np.float64) for name in rows[0][0]}
    return hyper, np.array([seed_id for _, seed_id in rows], np.int32)


def _local_data(
    local: dict[str, np.ndarray], names: list[str], standardizations: list, settings: ProbeSettings, seed: int
) -> tuple[LocalData, LocalData]:
    """The sweep's local data (training and validation images of every view: the same images, split by the
    seed) and the refit's (all of them, no validation)."""
    rows = np.stack([np.asarray(local[name], np.float32) for name in names])
    train, val = split_heldout(rows.shape[1], settings.glocal.validation, seed)
    if len(train) < 2 or len(val) < 2:
        raise InputError(
            f"{rows.shape[1]} local training images: the local term needs at least 2 to train and 2 to validate on "
            f"(probe.local.validation={settings.glocal.validation}); give more local images"
        )
    if settings.glocal.standardize == "things":  # the student's rows as transform.npz is applied (glocal.py)
        shift = np.stack([np.broadcast_to(m, rows.shape[2]) for m, _ in standardizations])
        scale = np.stack([np.broadcast_to(s, rows.shape[2]) for _, s in standardizations])
    else:
        shift, scale = np.zeros(rows.shape[2], np.float32), np.ones(rows.shape[2], np.float32)
    batch = settings.glocal.batch_size
    return (
        local_data(rows[:, train], rows[:, val], shift, scale, batch),
        local_data(rows, None, shift, scale, batch),
    )


def _probe_width(
    features: dict[str, np.ndarray],
    train_triplets: np.ndarray,
    test_triplets: np.ndarray | None,
    masks: tuple[np.ndarray, np.ndarray],
    settings: ProbeSettings,
    seed: int,
    progress: bool | str,
    local: dict[str, np.ndarray] | None = None,
    targets: np.ndarray | None = None,
    test_targets: np.ndarray | None = None,
) -> dict[str, ProbeResult]:
    """Sweep, selection, refit and test of layers of one width p: features {layer: (n, p)}; local {layer:
    (N, p)} raw local images for gLocal's objective; targets (T, 3) for the soft objectives."""
    names = list(features)
    if settings.objective == "glocal" and local is None:
        raise InputError("probe.objective=glocal needs local images (probe.local.features or probe.local.images)")
    standardizations = [standardization(features[name], settings.standardize) for name in names]
    x = np.stack(
        [((features[name] - m) / s).astype(np.float32) for name, (m, s) in zip(names, standardizations, strict=True)]
    )
    width = _Width(names, x.shape[2], settings, seed, progress, targets)
    hyper, seed_ids = hyper_grid(settings)
    sweep_data, refit_data = (
        _local_data(local, names, standardizations, settings, seed) if settings.objective == "glocal" else (None, None)
    )
    outcomes = width.sweep(x, train_triplets, masks, hyper, seed_ids, sweep_data)
    chosen, refit_epochs = width.choose(outcomes, hyper)
    refit = width.refit(x, train_triplets, hyper, seed_ids, chosen, refit_epochs, refit_data)
    return width.results(features, standardizations, outcomes, hyper, chosen, refit_epochs, refit,
                         test_triplets, test_targets)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class _Width:
    """The steps of the probe of the layers `names` of one width p, in order: sweep, choose, refit, results."""

    names: list[str]
    p: int
    settings: ProbeSettings
    seed: int
    progress: bool | str
    targets: np.ndarray | None

    @property
    def what(self) -> str:
        return f" ({len(self.names)} layers of width {self.p})" if len(self.names) > 1 else ""

    def sweep(self, x, train_triplets, masks, hyper, seed_ids, data) -> list[SweepOutcome]:
        """Every layer x setting x fold in one compiled program; the outcomes of each layer."""
        n_views, n_hyper, settings = len(self.names), len(seed_ids), self.settings
        multiple = settings.train.batch_size or 1
        folds = stack_folds(x, train_triplets, *masks, multiple)
        soft = None if self.targets is None else stack_targets(self.targets, train_triplets, *masks, multiple)
        configs = Configurations(
            {k: np.tile(v, n_views) for k, v in hyper.items()},
            np.repeat(np.arange(n_views), n_hyper),
            np.full(n_views * n_hyper, settings.train.epochs),
            np.tile(seed_ids, n_views),
        )
        sweep = train_configurations(
            folds, configs, settings.train, self.seed, progress=self.progress, desc="probe sweep" + self.what,
            budget_bytes=settings.memory_gb * 1e9, keep_params=False, data=data, soft=soft,
        )  # fmt: skip
        return [sweep.columns(slice(v * n_hyper, (v + 1) * n_hyper)) for v in range(n_views)]

    def choose(self, outcomes: list[SweepOutcome], hyper: dict[str, np.ndarray]) -> tuple[list, list]:
        """Per layer the selected settings (gLocal's and the global probe beside it) and their refit epochs: the
        mean over folds of each one's best epoch."""
        settings, n_views = self.settings, len(self.names)
        is_glocal = settings.objective == "glocal"
        alpha = hyper.get("alpha", np.ones(len(next(iter(hyper.values())))))
        chosen = [
            [_best_setting(o, settings, self.names[v], n_views, alpha > 0, is_glocal)] for v, o in enumerate(outcomes)
        ]
        if is_glocal and (alpha == 0).any():  # the global probe beside gLocal's
            for v, o in enumerate(outcomes):
                chosen[v].append(_best_setting(o, settings, self.names[v], n_views, alpha == 0, False))
        epochs = [
            [max(1, int(round(o.best_epoch[:, h].mean()))) for h in c] for o, c in zip(outcomes, chosen, strict=True)
        ]
        return chosen, epochs

    def refit(self, x, train_triplets, hyper, seed_ids, chosen, refit_epochs, data) -> SweepOutcome:
        """Each selected setting trained on every training triplet for its refit epochs (no validation left)."""
        settings, multiple = self.settings, self.settings.train.batch_size or 1
        everything, nothing = np.ones((1, len(train_triplets)), bool), np.zeros((1, len(train_triplets)), bool)
        all_train = stack_folds(x, train_triplets, everything, nothing, multiple)
        all_soft = (
            None if self.targets is None else stack_targets(self.targets, train_triplets, everything, nothing, multiple)
        )
        picks = np.array([h for c in chosen for h in c])
        configs = Configurations(
            {k: v[picks] for k, v in hyper.items()},
            np.array([v for v, c in enumerate(chosen) for _ in c]),
            np.array([e for epochs in refit_epochs for e in epochs]),
            seed_ids[picks],
        )
        return train_configurations(
            all_train, configs, settings.train, self.seed, fold_ids=np.array([settings.folds]),
            progress=self.progress, desc="probe refit" + self.what, budget_bytes=settings.memory_gb * 1e9,
            data=data, soft=all_soft,
        )  # fmt: skip

    def results(
        self, features, standardizations, outcomes, hyper, chosen, refit_epochs, refit, test_triplets, test_targets
    ) -> dict[str, ProbeResult]:
        """Per layer the refit transform, its summary (scored on the test triplets) and the sweep's rows."""
        settings, n_views = self.settings, len(self.names)
        is_glocal = settings.objective == "glocal"
        results, column = {}, 0
        for v, name in enumerate(self.names):
            made = []
            for h, epochs in zip(chosen[v], refit_epochs[v], strict=True):
                if refit.failed[0, column]:
                    where = _of(name, n_views)
                    raise InputError(
                        f"the refit{where} on all training triplets diverged (loss NaN/inf): lower probe.lr"
                    )
                params = {k: a[0, column] for k, a in refit.params.items()}
                column += 1
                mean, std = standardizations[v]
                transform = Transform(params["weights"], params.get("bias", np.zeros(self.p)), mean, std)
                summary = _summary(outcomes[v], h, hyper, epochs, settings, glocal_choice=is_glocal and not made)
                summary.update(_test_scores(transform, features[name], test_triplets, test_targets, summary, settings))
                summary["seconds"] = 0.0  # the caller sets the time of the whole probe
                made.append(ProbeResult(transform, summary))
            made[0].summary["sweep"] = _sweep_rows(outcomes[v], hyper, settings.folds)
            beside = made[1] if len(made) > 1 else None
            if beside is not None:
                made[0].summary["global_probe"] = beside.summary
            results[name] = ProbeResult(made[0].transform, made[0].summary, beside)
        return results


def _test_scores(transform, features, test_triplets, test_targets, summary, settings) -> dict:
    """The refit transform on the test triplets: AligNet's test_divergence (at the best tau) and triplet accuracy
    with the soft objectives, else the probe's own test_accuracy and test_cross_entropy."""
    if test_triplets is None or not len(test_triplets):
        return {}
    if not settings.soft:
        ce, acc = probe_scores(transform, features, test_triplets, settings.train.temperature)
        return {"test_accuracy": acc, "test_cross_entropy": ce}
    scores = {}
    if test_targets is not None:  # the objective's mean at the refit transform and best tau
        scores["test_divergence"] = soft_scores(
            transform, features, test_triplets, test_targets, summary["best_tau"], settings.objective
        )[0]
    scores["test_accuracy"] = probe_scores(transform, features, test_triplets)[1]  # AligNet's
    return scores


def _of(name: str, n_views: int) -> str:
    return f" of layer {name}" if n_views > 1 else ""


def _best_setting(
    outcome: SweepOutcome, settings: ProbeSettings, name: str, n_views: int, among: np.ndarray, glocal_rule: bool
) -> int:
    """The hyperparameter setting (column of the (F, H) outcome) of the best mean over folds, among the
    settings `among` (H,) that no fold saw diverge (diverged_configurations). glocal_rule: gLocal's, the
    lowest mean validation loss = triplet cross-entropy + local term; else the paper's (probe.select_by): the
    lowest mean cross-entropy or the highest mean accuracy."""
    complete = ~diverged_configurations(outcome).any(axis=0) & among  # (H,): no fold diverged
    if not complete.any():
        which = "configuration"
        if settings.objective == "glocal":
            which = "gLocal configuration (alpha > 0)" if glocal_rule else "global probe configuration (alpha = 0)"
        local_cause = (
            "; or for gLocal's local term a larger tau or a smaller alpha (probe.taus, probe.alphas: a small tau makes "
            "its gradients outweigh the triplets')"
            if glocal_rule
            else ""
        )
        raise InputError(
            f"every probe {which}{_of(name, n_views)} diverged in some fold (validation cross-entropy NaN/inf or "
            f"above {DIVERGED_CROSS_ENTROPY:.3f} = 2 log 3, twice chance): lower the learning rate (probe.lr, or "
            f"probe.lrs for a sweep of learning rates){local_cause}"
        )
    if glocal_rule:
        score = (outcome.val_cross_entropy + outcome.val_local).mean(axis=0)
    elif settings.select_by == "accuracy":
        score = -outcome.val_accuracy.mean(axis=0)
    else:
        score = outcome.val_cross_entropy.mean(axis=0)
    return int(np.argmin(np.where(complete, score, np.inf)))


def _summary(
    outcome: SweepOutcome,
    best: int,
    hyper: dict[str, np.ndarray],
    refit_epochs: int,
    settings: ProbeSettings,
    glocal_choice: bool,
) -> dict:
    """The numbers of setting `best`: the probe section (with gLocal's objective: `glocal_choice` for its
    selected configuration, else the global probe beside it)."""
    summary = {
        "objective": "glocal" if glocal_choice else ("global" if not settings.soft else settings.objective),
        "best_lambda": float(hyper["lam"][best]),
        "best_lr": float(hyper["lr"][best]),
        "cv_accuracy": float(outcome.val_accuracy[:, best].mean()),
        "cv_accuracy_folds": [float(v) for v in outcome.val_accuracy[:, best]],
        "cv_cross_entropy": float(outcome.val_cross_entropy[:, best].mean()),
        "protocol": settings.protocol,
        "regularizer": settings.train.regularizer,
        "init": settings.train.init,
        "refit_epochs": refit_epochs,
    }
    if settings.soft:  # cv_cross_entropy holds the validation divergence (what the selection minimized)
        summary.update(best_tau=float(hyper["tau"][best]), cv_divergence=summary["cv_cross_entropy"])
    if settings.objective == "glocal":  # the local term on the validation images (at the setting's tau)
        local_term = float(outcome.val_local[:, best].mean())
        summary["cv_local_loss"] = json_values.number(local_term)
        summary["local_batch_size"] = settings.glocal.batch_size
    if glocal_choice:
        summary.update(
            best_alpha=float(hyper["alpha"][best]),
            best_tau=float(hyper["tau"][best]),
            # what the selection minimized: cv_loss = triplet_cross_entropy (= cv_cross_entropy) + cv_local_loss
            cv_loss=json_values.number(summary["cv_cross_entropy"] + local_term),
            triplet_cross_entropy=summary["cv_cross_entropy"],
        )
    return summary


def _sweep_rows(outcome: SweepOutcome, hyper: dict[str, np.ndarray], n_folds: int) -> list[dict]:
    """One row per setting and fold: its hyperparameters, validation numbers (with gLocal's objective both
    terms: the triplet cross_entropy and the local_loss on the validation images), epochs and status."""
    diverged = diverged_configurations(outcome)
    names = {"lam": "lambda", "lr": "lr", "alpha": "alpha", "tau": "tau"}
    rows = []
    for h in range(len(hyper["lam"])):
        for f in range(n_folds):
            row = {names[k]: float(v[h]) for k, v in hyper.items()}
            row.update(
                fold=f,
                accuracy=json_values.number(outcome.val_accuracy[f, h]),
                cross_entropy=json_values.number(outcome.val_cross_entropy[f, h]),
            )
            if "alpha" in hyper:
                row["local_loss"] = json_values.number(outcome.val_local[f, h])
            row.update(
                epochs=int(outcome.epochs[f, h]),
                best_epoch=int(outcome.best_epoch[f, h]),
                status="diverged" if diverged[f, h] else "ok",
            )
            rows.append(row)
    return rows


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


def soft_scores(
    transform: Transform, features: np.ndarray, triplets: np.ndarray, targets: np.ndarray, tau: float, divergence: str
) -> tuple[float, float]:
    """(mean divergence at tau, AligNet's triplet accuracy) of the transform on (T, 3) triplets with (T, 3)
    target distributions."""
    import jax.numpy as jnp

    params = {"weights": jnp.asarray(transform.weights), "bias": jnp.asarray(transform.bias)}
    x = jnp.asarray(transform.standardize(features))
    triplets = jnp.asarray(triplets, jnp.int32)
    formulation = objective.choose_formulation(x.shape[0], len(triplets), x.shape[1])
    value, accuracy = _soft_evaluate(
        params, x, triplets, jnp.asarray(targets, jnp.float32), jnp.ones(len(triplets)), jnp.float32(tau),
        divergence=divergence, formulation=formulation,
    )  # fmt: skip
    return float(value), float(accuracy)


@functools.partial(jax.jit, static_argnames=("divergence", "formulation"))
def _soft_evaluate(params, x, triplets, targets, weights, tau, *, divergence: str, formulation: str):
    return objective.soft_evaluate(
        params, x, triplets, targets, weights, tau, divergence=divergence, formulation=formulation
    )


@functools.partial(jax.jit, static_argnames=("temperature", "formulation"))
def _evaluate(params, x, triplets, weights, *, temperature: float, formulation: str):
    """objective.evaluate, compiled as one program (not op by op)."""
    return objective.evaluate(params, x, triplets, weights, temperature=temperature, formulation=formulation)


def probe_decisions(transform: Transform, features: np.ndarray, triplets: np.ndarray) -> np.ndarray:
    """(T,) bool: whether the probe's dot-product choice on each triplet is the human one; the same computation
    as probe_scores' accuracy (whose mean it is)."""
    import jax.numpy as jnp

    params = {"weights": jnp.asarray(transform.weights), "bias": jnp.asarray(transform.bias)}
    x = jnp.asarray(transform.standardize(features))
    triplets = jnp.asarray(triplets, jnp.int32)
    formulation = objective.choose_formulation(x.shape[0], len(triplets), x.shape[1])
    return np.asarray(objective.triplet_correct(objective.pair_similarities(params, x, triplets, formulation)))
