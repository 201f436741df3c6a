"""Stage `levels`: alignment with the Levels triplets (Muttenthaler et al., Nature 2025) per abstraction level,
against their leave-one-out noise ceiling, and the model's uncertainty against people's (docs/levels.md).

Runs when `levels.root` is set, also alone (`--config.stages=levels`, no THINGS data). The trials are read and
filtered by alignment_jax/data/levels.py; the features of its images come from `levels.features` or from
`config.model` (a store `WORKDIR/features/levels-...`, reused and resumable like the THINGS images'); the
metrics are alignment_jax/evaluation/levels.py's. It runs after the probe stage, so a transform learned in the
same run (WORKDIR/transform.npz), an earlier run's, or a given one (`config.transform`) is evaluated on Levels
too: every model-dependent metric again as `<metric>_transformed`.

Section `levels`: {"within_class", "class_border", "between_class", "all": {n_triplets, n_responses, accuracy,
ci95, noise_ceiling, temperature, nll, entropy_spearman, rt_spearman (+ *_transformed)}, "similarity",
"n_images", "n_trials", "dropped_trials", "dropped_triplets", "entropy_curves", "transform"}. With model.layers
(and the extract stage in the run), every layer's metrics from the same extraction pass go into results.json
`layers` (entry["levels"], transformed with each layer's own transform), the section describing model.layer.
"""

import ml_collections
import numpy as np

from alignment_jax import provenance as facts
from alignment_jax.config import checks
from alignment_jax.data.features import load_features
from alignment_jax.data.levels import LEVEL_NAMES, Levels, images_folder, load_levels
from alignment_jax.errors import InputError
from alignment_jax.evaluation.levels import MODEL_METRICS, entropy_curves, levels_metrics
from alignment_jax.evaluation.similarity import check_kind
from alignment_jax.run_context import RunContext
from alignment_jax.stages import StageResult, extract, given_transform, layers

READS = (
    "earlier_transform", "layer", "layers", "memo", "model_runner", "transform", "transform_path",
    "transform_source", "workdir", *given_transform.READS, *layers.READS
)  # fmt: skip
SETTINGS = (
    "levels", "similarity", "seed", "zero_shot.bootstrap", "model", "images", "progress", *given_transform.SETTINGS,
    *layers.SETTINGS, *extract.SETTINGS
)  # fmt: skip

MEMORY = "images.batch_size (the Levels images are extracted in batches)"


def has_inputs(config: ml_collections.ConfigDict) -> bool:
    return bool(config.levels.root)


def _extracts(config: ml_collections.ConfigDict) -> bool:
    """Whether the Levels features come from config.model (no levels.features)."""
    return not config.levels.features


def check(config: ml_collections.ConfigDict) -> None:
    settings = config.levels
    if not settings.root:
        raise InputError("levels.root is empty: give the folder of the Levels trial files (*.json, JSON lines)")
    check_kind(config.similarity)
    checks.number(config, "levels.max_rt_ms", above=0)
    minimum = checks.integer(config, "levels.min_responses", minimum=1)
    checks.integer(config, "levels.max_responses", minimum=minimum)
    checks.integer(config, "zero_shot.bootstrap", minimum=0)  # the accuracy intervals
    given_transform.check(config)
    if _extracts(config):
        if not (config.model.name or config.model.variant):
            raise InputError(
                "levels: no features for the Levels images; give levels.features=FILE (.npy/.h5, one row per image "
                "in sorted file-name order) or a model (model.name) to extract them from levels.images"
            )
        extract.check(config)


def levels_data(ctx: RunContext) -> Levels:
    """The filtered Levels triplets (read once per run); the images are looked up only when extracting."""
    cached = ctx.memo.get("levels")
    if cached is None:
        settings, config = ctx.config.levels, ctx.config
        cached = load_levels(
            settings.root,
            settings.images if _extracts(config) else None,
            max_rt_ms=settings.max_rt_ms,
            min_responses=settings.min_responses,
            max_responses=settings.max_responses,
            seed=config.seed,
        )
        ctx.memo["levels"] = cached
    return cached


def _given_features(ctx: RunContext, levels: Levels) -> np.ndarray:
    path = ctx.config.levels.features
    features = load_features(path)
    if features.shape[0] != len(levels.images):
        raise InputError(
            f"levels.features={path}: {features.shape[0]} rows but the kept Levels triplets show {len(levels.images)} "
            "images; row i must be the i-th image in sorted file-name order (of the kept triplets)"
        )
    return features


def check_inputs(ctx: RunContext) -> None:
    """The trial files (and images, when extracting) and a given features file are read and checked; so is the
    width of a transform made before this run (the probe does not run now)."""
    levels = levels_data(ctx)
    if not _extracts(ctx.config):
        features = _given_features(ctx, levels)
        transform = ctx.earlier_transform
        if transform is not None and features.shape[1] != transform.dim:
            raise InputError(
                f"levels.features={ctx.config.levels.features}: {features.shape[1]} dimensions but "
                f"{ctx.transform_path} maps {transform.dim}; use features of the model and layer the transform was "
                "learned on"
            )


def provenance(ctx: RunContext) -> dict:
    config = ctx.config
    paths = [config.levels.root, config.levels.features]
    if _extracts(config):
        paths.append(images_folder(config.levels.root, config.levels.images))
    found = {
        "files:levels": facts.files_fingerprint(paths),
        **facts.settings(config, "levels", "similarity", "seed", "zero_shot.bootstrap"),
        "transform": ctx.transform_source(),
        **layers.provenance(ctx),
    }
    if _extracts(config):
        found.update(facts.settings(config, "model", "images.resize", "images.jpeg_draft", "images.token_pooling"))
        found.pop("config:model.cache_dir")  # where checkpoints are kept, not what they are
    return found


def run(ctx: RunContext) -> dict:
    """Returns the `levels` section (module docstring)."""
    config = ctx.config
    levels = levels_data(ctx)
    by_layer = {}
    if _extracts(config) and ctx.layers:  # model.layers: every layer from one pass (model.layer's store is `levels`)
        from alignment_jax.extract.pipeline import layer_features_for_images

        extracted = layer_features_for_images(
            config, list(levels.image_paths), "levels", ctx.workdir, ",".join(ctx.layers), ctx.model_runner
        )
        by_layer = {layer: np.asarray(extracted[layer], np.float32) for layer in ctx.layers}
        features = by_layer[ctx.layer]
    elif _extracts(config):
        from alignment_jax.extract.pipeline import features_for_images

        features = np.asarray(
            features_for_images(config, list(levels.image_paths), "levels", ctx.workdir, ctx.model_runner), np.float32
        )
    else:
        features = _given_features(ctx, levels)
    similarity, bootstrap = config.similarity, config.zero_shot.bootstrap
    section = levels_metrics(features, levels, similarity, bootstrap, config.seed)
    curves = entropy_curves(features, levels, section, similarity)
    transform = ctx.transform
    if transform is not None:
        if features.shape[1] != transform.dim:
            raise InputError(
                f"levels: the Levels features have {features.shape[1]} dimensions but {ctx.transform_path} maps "
                f"{transform.dim}; use features of the model and layer the transform was learned on"
            )
        transformed = transform.apply(features)
        after = levels_metrics(transformed, levels, similarity, bootstrap, config.seed)
        for name, metrics in section.items():
            metrics.update({f"{key}_transformed": after[name][key] for key in MODEL_METRICS})
        for name, curve in entropy_curves(transformed, levels, after, similarity).items():
            curves[name]["model_entropy_transformed"] = curve["model_entropy"]
    section.update(
        similarity=similarity,
        n_images=len(levels.images),
        n_trials=levels.n_trials,
        dropped_trials=levels.dropped_trials,
        dropped_triplets=levels.dropped_triplets,
        entropy_curves=curves,
        transform=ctx.transform_path if transform is not None else None,
    )
    _log(ctx, levels, section)
    if by_layer:
        return StageResult(section, {"layers": _layer_entries(ctx, levels, by_layer)})
    return section


def _layer_entries(ctx: RunContext, levels: Levels, by_layer: dict[str, np.ndarray]) -> list[dict]:
    """results.json `layers` with each layer's {level: metrics} (+ *_transformed with its own transform,
    DIR/transforms/<layer>/transform.npz), as the section holds them for model.layer."""
    config = ctx.config
    values = {}
    for layer, features in by_layer.items():
        metrics = levels_metrics(features, levels, config.similarity, config.zero_shot.bootstrap, config.seed)
        transform = layers.layer_transform(ctx, layer)
        if transform is not None and transform.dim == features.shape[1]:
            transformed = transform.apply(features)
            after = levels_metrics(transformed, levels, config.similarity, config.zero_shot.bootstrap, config.seed)
            for name, value in metrics.items():
                value.update({f"{key}_transformed": after[name][key] for key in MODEL_METRICS})
        values[layer] = metrics
    entries = layers.update(ctx, "levels", values)
    shown = lambda m: (
        f"{m['accuracy']:.3f}"
        + (f" -> {m['accuracy_transformed']:.3f}" if m.get("accuracy_transformed") is not None else "")
    )
    ctx.log(
        "levels per layer (all triplets): " + ", ".join(f"{layer} {shown(v['all'])}" for layer, v in values.items())
    )
    return entries


def _log(ctx: RunContext, levels: Levels, section: dict) -> None:
    dropped = ", ".join(f"{rule} {n:,}" for rule, n in levels.dropped_trials.items() if n) or "none"
    ctx.log(
        f"levels: {levels.n_triplets:,} triplets ({levels.n_responses:,} responses) of {len(levels.images):,} images "
        f"from {levels.n_trials:,} trial rows; trials dropped: {dropped}; triplets dropped: "
        + (", ".join(f"{rule} {n:,}" for rule, n in levels.dropped_triplets.items() if n) or "none")
    )
    fmt = lambda v: "-" if v is None else f"{v:.3f}"
    for name in (*LEVEL_NAMES.values(), "all"):
        m = section[name]
        if not m["n_triplets"]:
            continue
        line = (
            f"levels {name}: accuracy {fmt(m['accuracy'])} (ceiling {fmt(m['noise_ceiling'])}), "
            f"T {fmt(m['temperature'])}, entropy Spearman {fmt(m['entropy_spearman'])}"
        )
        if "accuracy_transformed" in m:
            line += (
                f"; transformed: accuracy {fmt(m['accuracy_transformed'])}, "
                f"entropy Spearman {fmt(m['entropy_spearman_transformed'])}"
            )
        ctx.log(line + f" ({m['n_triplets']:,} triplets)")
