"""Stage probe: the cross-validated sweep (lambda x lr, with gLocal's objective x alpha x tau), selection, refit,
test; writes transform.npz and an orbax checkpoint. With local images (probe.local.*) it also reports how
much the transform moves their neighbourhoods, and with gLocal's objective and alpha = 0 among probe.alphas
the global probe trained beside it (`global_probe`)."""

import os

from alignment_jax import provenance as facts
from alignment_jax.data.splits import object_kfold_masks, triplet_kfold_masks
from alignment_jax.errors import InputError
from alignment_jax.evaluation.zero_shot import odd_one_out
from alignment_jax.probing.cross_validation import DIVERGED_CROSS_ENTROPY, ProbeSettings, run_probe, run_probe_layers
from alignment_jax.probing.objective import DIVERGENCES
from alignment_jax.probing.standardize import standardization
from alignment_jax.run_context import RunContext
from alignment_jax.stages import StageResult, alignet_inputs, inputs, layers, local_inputs, statistics
from alignment_jax.stages.inputs import check_things_and_features, has_features, has_things

READS = (
    "digest", "features", "features_known", "layer", "layer_features", "layers", "things",
    "transform_path", "workdir", *inputs.READS, *statistics.READS, *layers.READS, *local_inputs.READS,
    *alignet_inputs.READS
)  # fmt: skip
SETTINGS = (
    "probe", "seed", "similarity", "progress", "zero_shot.bootstrap", "model", "alignet", "transform",
    *inputs.SETTINGS, *statistics.SETTINGS, *layers.SETTINGS, *local_inputs.SETTINGS, *alignet_inputs.SETTINGS
)  # fmt: skip


def has_inputs(config) -> bool:
    if config.transform:  # a given transform replaces it
        return False
    if alignet_inputs.has_alignet(config):  # AligNet's triplets instead of THINGS
        return alignet_inputs.has_features(config)
    return has_things(config) and has_features(config)


OUTPUTS = ("transform.npz", "transform_checkpoint")
MEMORY = "probe.lambdas or probe.lrs (fewer configurations at once) or probe.batch_size"


def check(config) -> None:

    ProbeSettings.from_config(config.probe)  # every probe setting, checked where the settings are built
    alignet_inputs.check(config)
    if config.probe.objective in DIVERGENCES and not alignet_inputs.has_alignet(config):
        raise InputError(
            f"probe.objective={config.probe.objective} trains on soft targets: set alignet.train=FILE.npz (AligNet's "
            "teacher triplets), or probe.objective=global for THINGS"
        )
    if alignet_inputs.has_alignet(config) and config.probe.objective == "glocal":
        raise InputError("probe.objective=glocal with alignet.train: use kl, jsd or global on AligNet's triplets")
    if alignet_inputs.has_alignet(config) and config.model.layers:
        raise InputError("alignet.train with model.layers: the AligNet probe trains one layer (set model.layers='')")
    local_inputs.check(config)


def check_inputs(ctx: RunContext) -> None:
    """The triplets (and features, when known) load, and every fold has training and validation triplets."""
    if alignet_inputs.has_alignet(ctx.config):
        alignet_inputs.check_inputs(ctx)
        loaded = alignet_inputs.data(ctx)
        _check_folds(ctx.config, loaded.train.triplets, loaded.train.n_images, loaded.train.source)
        return
    check_things_and_features(ctx)
    local_inputs.check_inputs(ctx)
    config, things = ctx.config, ctx.things
    train = things.train.triplets
    if not len(train):
        raise InputError(f"{things.train.source}: no training triplets for the probe")
    _check_folds(config, train, things.n_objects, things.train.source)
    if ctx.features_known:
        standardization(ctx.features, config.probe.standardize)


def _check_folds(config, train, n_objects: int, source: str) -> None:
    """Every fold of the cross-validation has training and validation triplets."""
    folds = config.probe.folds
    if config.probe.split == "objects":
        train_masks, val_masks = object_kfold_masks(train, n_objects, folds, config.seed)
    else:
        train_masks, val_masks = triplet_kfold_masks(len(train), folds, config.seed)
    if (val_masks.sum(axis=1) == 0).any() or (train_masks.sum(axis=1) == 0).any():
        raise InputError(
            f"probe.folds={folds}: a fold of the {config.probe.split} cross-validation has no training or no "
            f"validation triplet ({len(train)} triplets over {n_objects} objects in "
            f"{source}); use fewer folds or more triplets"
        )


def provenance(ctx: RunContext) -> dict:
    if alignet_inputs.has_alignet(ctx.config):
        return {
            **alignet_inputs.provenance(ctx),
            **facts.settings(ctx.config, "probe", "seed", "alignet", "model"),
        }
    return {
        "features": ctx.digest("features"),
        "things": ctx.digest("things"),
        **facts.settings(ctx.config, "probe", "seed"),
        **layers.provenance(ctx),
        **local_inputs.provenance(ctx),
    }


def run_alignet(ctx: RunContext) -> StageResult:
    """The probe on AligNet's triplets (alignet.train; scored on alignet.test): soft targets with kl | jsd,
    the teacher's odd one out (column 2) with global."""
    config = ctx.config
    loaded, features = alignet_inputs.data(ctx), alignet_inputs.features(ctx)
    settings = ProbeSettings.from_config(config.probe)
    soft = settings.objective in DIVERGENCES
    test = loaded.test.triplets if loaded.test is not None else None
    result = run_probe(
        features, loaded.train.triplets, test, settings, seed=config.seed, progress=config.progress,
        targets=loaded.targets if soft else None, test_targets=loaded.test_targets if soft else None,
    )  # fmt: skip
    result.transform.save_npz(ctx.transform_path)
    result.transform.save_orbax(os.path.join(ctx.workdir, "transform_checkpoint"))
    section = {**result.summary, "data": "alignet", "alignet": alignet_inputs.section(loaded)}
    line = summary_line(section, config.similarity)
    if "test_divergence" in section:
        line += f", test {settings.objective} {section['test_divergence']:.4f}"
    ctx.log(line + f" in {section['seconds']:.1f} s")
    return StageResult(section, files=("transform.npz",))


def run(ctx: RunContext) -> StageResult:
    if alignet_inputs.has_alignet(ctx.config):
        return run_alignet(ctx)
    config, things, features = ctx.config, ctx.things, ctx.features
    settings = ProbeSettings.from_config(config.probe)
    test = things.test.triplets if things.test is not None else None
    local = local_inputs.local_sets(ctx) if local_inputs.has_local(config) else {}
    train_local = {layer: s.train for layer, s in local.items()} if settings.objective == "glocal" else None
    if ctx.layers:  # every layer in one sweep per width; model.layer's result is this section's
        by_layer = run_probe_layers(
            {layer: ctx.layer_features(layer) for layer in ctx.layers}, things.train.triplets, test, settings,
            seed=config.seed, progress=config.progress, local=train_local,
        )  # fmt: skip
        result = by_layer[ctx.layer]
    else:
        result = run_probe(
            features, things.train.triplets, test, settings, seed=config.seed, progress=config.progress,
            local=None if train_local is None else train_local[ctx.layer],
        )  # fmt: skip
    result.transform.save_npz(ctx.transform_path)
    result.transform.save_orbax(os.path.join(ctx.workdir, "transform_checkpoint"))
    section = result.summary
    transformed = None
    if test is not None:
        transformed = odd_one_out(
            result.transform.apply(features), test, config.similarity, config.zero_shot.bootstrap, config.seed
        )
        section["test_zero_shot_transformed"] = transformed.accuracy
    ctx.log(summary_line(section, config.similarity) + f" in {section['seconds']:.1f} s")
    if local:
        add_locality(ctx, local[ctx.layer], result, section)
    diverged = [r for r in section["sweep"] if r["status"] == "diverged"]
    if diverged:
        listed = ", ".join(f"{setting_name(r)} fold {r['fold']}" for r in diverged)
        ctx.log(
            f"probe: {len(diverged)} configuration(s) diverged (validation cross-entropy NaN/inf or above "
            f"{DIVERGED_CROSS_ENTROPY:.3f} = 2 log 3) and were never selected: {listed}"
        )
    comparisons = statistics.probe_statistics(ctx, section, result.transform, transformed)
    more = {"comparisons": comparisons} if comparisons is not None else {}
    if ctx.layers:
        more.update(layers.probe_entries(ctx, by_layer, test, settings.select_by, local))
    return StageResult(section, more, files=("transform.npz",))


def setting_name(row: dict) -> str:
    """'lambda 0.01 lr 0.02' (with gLocal's objective also 'alpha 0.25 tau 0.1') of a sweep row."""
    return " ".join(f"{name} {row[name]:g}" for name in ("lambda", "alpha", "tau", "lr") if name in row)


def summary_line(section: dict, similarity: str) -> str:
    """The probe's log line: objective, selected setting, CV and test accuracy (and the global probe beside)."""
    names = (("lambda", "best_lambda"), ("alpha", "best_alpha"), ("tau", "best_tau"))
    chosen = " ".join(f"{name} {section[key]:g}" for name, key in names if key in section)
    line = (
        f"probe ({section['protocol']}, {section['objective']}, {section['regularizer']}): best {chosen}, "
        f"CV accuracy {section['cv_accuracy']:.4f}"
    )
    if "test_accuracy" in section:
        line += f", test accuracy {section['test_accuracy']:.4f}"
    if "test_zero_shot_transformed" in section:
        line += f" ({similarity} after transform {section['test_zero_shot_transformed']:.4f})"
    beside = section.get("global_probe")
    if beside:
        line += f"; global probe (alpha 0): lambda {beside['best_lambda']:g}, CV accuracy {beside['cv_accuracy']:.4f}"
        if "test_accuracy" in beside:
            line += f", test accuracy {beside['test_accuracy']:.4f}"
    return line


def locality_tau(section: dict, config) -> float:
    """The temperature of the held-out local loss: gLocal's selected tau, else the first of probe.taus."""
    return float(section.get("best_tau", config.probe.taus[0]))


def add_locality(ctx: RunContext, local, result, section: dict) -> None:
    """The locality measures of the probe's transform (and of the global probe beside gLocal's) on the
    held-out local images, at `locality_tau`, into `section` (and its `global_probe` entry); logged."""
    tau = locality_tau(section, ctx.config)
    section.update(local_inputs.locality(ctx, local, result.transform, tau))
    if "local_knn_overlap" not in section:
        return
    ctx.log(local_inputs.locality_line("probe", section))
    if result.global_probe is not None:
        beside = section["global_probe"]
        beside.update(local_inputs.locality(ctx, local, result.global_probe.transform, tau))
        ctx.log(local_inputs.locality_line("global probe (alpha 0)", beside))
