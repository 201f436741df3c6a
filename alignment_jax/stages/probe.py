"""Stage probe: the cross-validated lambda sweep, refit, test; writes transform.npz and an orbax checkpoint."""

import os

from alignment_jax.evaluation.zero_shot import odd_one_out
from alignment_jax.probing.cross_validation import ProbeSettings, run_probe, run_probe_layers
from alignment_jax.run_context import RunContext
from alignment_jax.stages import layers
from alignment_jax.stages.inputs import has_features, has_things


def has_inputs(config) -> bool:
    return has_things(config) and has_features(config)


def check(config) -> None:
    ProbeSettings.from_config(config.probe, n_dims=1)


def run(ctx: RunContext) -> dict:
    config, things, features = ctx.config, ctx.things, ctx.features
    settings = ProbeSettings.from_config(config.probe, features.shape[1])
    test = things.test.triplets if things.test is not None else None
    if ctx.layers:  # every layer in one sweep per width; model.layer's result is this section's
        for_width = lambda p: ProbeSettings.from_config(config.probe, p)
        by_layer = run_probe_layers(
            {layer: ctx.layer_features(layer) for layer in ctx.layers}, things.train.triplets, test, for_width,
            seed=config.seed,
        )  # fmt: skip
        result = by_layer[ctx.layer]
    else:
        result = run_probe(features, things.train.triplets, test, settings, seed=config.seed)
    result.transform.save_npz(ctx.transform_path)
    result.transform.save_orbax(os.path.join(ctx.workdir, "transform_checkpoint"))
    section = result.summary
    line = (
        f"probe ({settings.protocol}, {settings.train.regularizer}): best lambda {section['best_lambda']:g}, "
        f"CV accuracy {section['cv_accuracy']:.4f}"
    )
    if test is not None:
        transformed = odd_one_out(result.transform.apply(features), test, config.similarity, bootstrap=0)
        section["test_zero_shot_transformed"] = transformed.accuracy
        line += f", test accuracy {section['test_accuracy']:.4f}"
        line += f" ({config.similarity} after transform {transformed.accuracy:.4f})"
    ctx.log(line + f" in {section['seconds']:.1f} s")
    failed = [r for r in section["sweep"] if r["status"] == "failed"]
    if failed:
        listed = ", ".join(f"lambda {r['lambda']:g} lr {r['lr']:g} fold {r['fold']}" for r in failed)
        ctx.log(f"probe: {len(failed)} configuration(s) diverged (loss NaN/inf) and were left out: {listed}")
    if ctx.layers:
        layers.record_probe(ctx, by_layer, test, settings.select_by)
    return section
