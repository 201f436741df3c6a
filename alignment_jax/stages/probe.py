"""Stage probe: the cross-validated lambda sweep, refit, test; writes transform.npz and an orbax checkpoint."""

import os

from alignment_jax.errors import InputError
from alignment_jax.evaluation.zero_shot import odd_one_out
from alignment_jax.probing.cross_validation import ProbeSettings, run_probe
from alignment_jax.run_context import RunContext
from alignment_jax.stages import local_inputs, statistics
from alignment_jax.stages.inputs import has_features, has_things


def has_inputs(config) -> bool:
    return has_things(config) and has_features(config) and not config.transform  # a given transform replaces it


def check(config) -> None:
    ProbeSettings.from_config(config.probe, n_dims=1)
    local_inputs.check(config)
    if config.probe.objective == "glocal" and not config.transform:
        raise InputError(
            "probe.objective=glocal: training with gLocal's local term is not in the sweep yet (issue 13, part 2); "
            "use probe.objective=global (with probe.local.* it reports the local measures too)"
        )


def run(ctx: RunContext) -> dict:
    config, things, features = ctx.config, ctx.things, ctx.features
    settings = ProbeSettings.from_config(config.probe, features.shape[1])
    test = things.test.triplets if things.test is not None else None
    result = run_probe(features, things.train.triplets, test, settings, seed=config.seed, progress=config.progress)
    result.transform.save_npz(ctx.transform_path)
    result.transform.save_orbax(os.path.join(ctx.workdir, "transform_checkpoint"))
    section = result.summary
    line = (
        f"probe ({settings.protocol}, {settings.train.regularizer}): best lambda {section['best_lambda']:g}, "
        f"CV accuracy {section['cv_accuracy']:.4f}"
    )
    transformed = None
    if test is not None:
        transformed = odd_one_out(
            result.transform.apply(features), test, config.similarity, config.zero_shot.bootstrap, config.seed
        )
        section["test_zero_shot_transformed"] = transformed.accuracy
        line += f", test accuracy {section['test_accuracy']:.4f}"
        line += f" ({config.similarity} after transform {transformed.accuracy:.4f})"
    ctx.log(line + f" in {section['seconds']:.1f} s")
    if local_inputs.has_local(config):
        section.update(local_inputs.locality(ctx, result.transform))
        if "local_knn_overlap" in section:
            ctx.log(local_inputs.locality_line("probe", section))
    failed = [r for r in section["sweep"] if r["status"] == "failed"]
    if failed:
        listed = ", ".join(f"lambda {r['lambda']:g} lr {r['lr']:g} fold {r['fold']}" for r in failed)
        ctx.log(f"probe: {len(failed)} configuration(s) diverged (loss NaN/inf) and were left out: {listed}")
    statistics.probe_statistics(ctx, section, result.transform, transformed)
    return section
