"""What the stages record per layer with model.layers: results.json's `layers` and `best_layer`, and each
layer's transform at DIR/transforms/<layer>/transform.npz (the gLocal repository's layout).

`layers` holds one entry per layer in network order; the extract stage makes it, the later stages fill in
their parts, with the keys of their own sections:

    {"layer": "block03", "depth": 0.333, "p": 768,
     "zero_shot": {"accuracy", "ci95", "test_accuracy", "test_ci95"},
     "probe": {"best_lambda", "best_lr", "cv_accuracy", "cv_cross_entropy", "test_accuracy",
               "test_cross_entropy", "test_zero_shot_transformed", "refit_epochs", "transform", "sweep"},
     "transfer": [rows of the transfer section], "transfer_triplets": [...]   (transfer.layers)
     "concepts": [rows of the concepts section]}                             (concepts.layers)

`best_layer` names the layer whose probe did best in cross-validation (probe.select_by: the lowest mean
cross-entropy, or the highest accuracy). The zero_shot and probe sections keep describing model.layer.
"""

import os
from typing import Any

import numpy as np

from alignment_jax import json_values
from alignment_jax.errors import InputError
from alignment_jax.evaluation.zero_shot import bootstrap_ci, odd_one_out
from alignment_jax.probing.cross_validation import DIVERGED_CROSS_ENTROPY
from alignment_jax.probing.transform import Transform
from alignment_jax.run_context import RunContext
from alignment_jax.stages import local_inputs
from alignment_jax.stages.local_inputs import locality

READS = (
    "digest", "layer", "layer_features", "layer_rows", "layer_transform_path", "layers", "results", "workdir",
    *local_inputs.READS
)  # fmt: skip
WRITES = ("layer", "layer_rows")
SETTINGS = (
    "features", "model", "similarity", "seed", "zero_shot.bootstrap", "probe.taus", "transfer.layers",
    "concepts.layers", *local_inputs.SETTINGS
)  # fmt: skip


def start(ctx: RunContext, default: str, rows: list[dict[str, Any]]) -> None:
    """The extract stage's part: rows [{"layer", "depth", "p"}] in network order, `default` the main layer.
    Kept on the context, not yet in results.json: the run decides first whether the earlier outputs are
    its own (probe.settle), and the stages that fill in the entries write them."""
    ctx.layer = default
    ctx.layer_rows = rows


def provenance(ctx: RunContext) -> dict[str, Any]:
    """What the per-layer parts of a stage come from: model.layers, and every layer's features."""
    facts = {"config:model.layers": ctx.config.model.layers}
    if ctx.layers:
        facts["layers"] = ctx.digest("layers")
    return facts


def update(
    ctx: RunContext, section: str, values: dict[str, Any], entries: list[dict] | None = None
) -> list[dict[str, Any]]:
    """results.json `layers` with entry[section] = values[layer] for every layer in `values`: the entries of
    results.json (or `entries`, when a stage updates more than one part) in network order. Parts an earlier run
    of the same inputs left (a stage kept as finished) stay."""
    earlier = {entry.get("layer"): entry for entry in (ctx.results.get("layers") if entries is None else entries) or ()}
    entries = [{**earlier.get(row["layer"], {}), **row} for row in ctx.layer_rows]
    for entry in entries:
        if entry["layer"] in values:
            entry[section] = values[entry["layer"]]
    return entries


def zero_shot_entries(ctx: RunContext, triplets: np.ndarray, n_train: int, similarity: str) -> list[dict]:
    """Zero-shot accuracy with its bootstrap CI per layer, over all `triplets` and over the test split
    (`triplets[n_train:]`), as the zero_shot stage computes them for model.layer."""
    config = ctx.config
    values = {}
    for layer in ctx.layers:
        result = odd_one_out(ctx.layer_features(layer), triplets, similarity, config.zero_shot.bootstrap, config.seed)
        value = {"accuracy": json_values.number(result.accuracy), "ci95": json_values.interval(result.ci95)}
        test = result.correct[n_train:]
        if len(test):
            ci = bootstrap_ci(test, config.zero_shot.bootstrap, config.seed)
            value.update(test_accuracy=float(test.mean()), test_ci95=json_values.interval(ci))
        values[layer] = value
    ctx.log(f"zero-shot ({similarity}) per layer: " + _listing(values, "test_accuracy", "accuracy"))
    return update(ctx, "zero_shot", values)


RUN_KEYS = ("seconds", "protocol", "regularizer", "init")  # the same for every layer: in the probe section only


def probe_entries(
    ctx: RunContext, results: dict, test: np.ndarray | None, select_by: str, local: dict | None = None
) -> dict[str, Any]:
    """Each layer's transform (DIR/transforms/<layer>/transform.npz, written here) and probe numbers: the
    sections {"layers": entries, "best_layer": name}.
    results: {layer: cross_validation.ProbeResult}; local: {layer: LocalSet} (stages/local_inputs.py), whose
    held-out images give each layer's locality measures (and those of the global probe beside gLocal's)."""
    values = {}
    for layer, result in results.items():
        path = ctx.layer_transform_path(layer)
        result.transform.save_npz(path)
        value = {k: v for k, v in result.summary.items() if k not in RUN_KEYS}
        if test is not None and len(test):
            transformed = result.transform.apply(ctx.layer_features(layer))
            value["test_zero_shot_transformed"] = odd_one_out(transformed, test, ctx.config.similarity, 0).accuracy
        if local and local.get(layer) is not None and local[layer].heldout is not None:
            tau = float(value.get("best_tau", ctx.config.probe.taus[0]))
            value.update(locality(ctx, local[layer], result.transform, tau))
            if result.global_probe is not None:
                value["global_probe"] = {
                    **{k: v for k, v in value["global_probe"].items() if k not in RUN_KEYS},
                    **locality(ctx, local[layer], result.global_probe.transform, tau),
                }
        value["transform"] = os.path.relpath(path, ctx.workdir)
        values[layer] = value
    if select_by == "cross_entropy":
        best = min(values, key=lambda layer: values[layer]["cv_cross_entropy"])
    else:
        best = max(values, key=lambda layer: values[layer]["cv_accuracy"])
    ctx.log("probe per layer: " + _listing(values, "test_accuracy", "cv_accuracy") + f"; best layer (CV) {best}")
    diverged = [(layer, r) for layer, v in values.items() for r in v["sweep"] if r["status"] == "diverged"]
    if diverged:
        listed = ", ".join(f"{layer} lambda {r['lambda']:g} fold {r['fold']}" for layer, r in diverged[:10])
        ctx.log(
            f"probe: {len(diverged)} layer configuration(s) diverged (validation cross-entropy NaN/inf or above "
            f"{DIVERGED_CROSS_ENTROPY:.3f} = 2 log 3) and were never selected: {listed}"
        )
    return {"layers": update(ctx, "probe", values), "best_layer": best}


def layer_transform(ctx: RunContext, layer: str) -> Transform | None:
    """The transform the probe stage learned for `layer`, or None."""
    path = ctx.layer_transform_path(layer)
    return Transform.load_npz(path) if os.path.exists(path) else None


def require_transforms(ctx: RunContext, layers: list[str], field: str) -> None:
    """Logs which of `layers` have no transform yet (their transformed columns stay empty)."""
    missing = [layer for layer in layers if not os.path.exists(ctx.layer_transform_path(layer))]
    if missing:
        ctx.log(f"{field}: no transform for {', '.join(missing)} (run the probe stage); transformed columns are empty")


def check(config) -> None:
    """model.layers needs a model to extract the layers with, transfer.layers and concepts.layers need
    model.layers (checked for every run, whichever stages run: a setting must not pass silently)."""
    check_subset(config.transfer.layers, "transfer.layers", config)
    check_subset(config.concepts.layers, "concepts.layers", config)
    if config.model.layers.strip() and (config.features or not (config.model.name or config.model.variant)):
        raise InputError(
            f"model.layers={config.model.layers!r} extracts layers with config.model, and "
            + ("features= gives precomputed features of one layer" if config.features else "no model is set")
            + "; set model.name (or model.variant) and leave features empty, or set model.layers=''"
        )


def check_subset(spec: str, field: str, config) -> None:
    """transfer.layers / concepts.layers need model.layers."""
    if spec.strip() and not config.model.layers.strip():
        raise InputError(f"{field}={spec!r} needs model.layers (e.g. model.layers=all): the layers to take them from")


def _listing(values: dict[str, dict], key: str, fallback: str) -> str:
    """'block00 0.412, block01 0.455, ...' of values[layer][key] (else [fallback])."""
    shown = []
    for layer, value in values.items():
        number = value.get(key, value.get(fallback))
        shown.append(f"{layer} {number:.3f}" if number is not None else f"{layer} -")
    return ", ".join(shown)
