"""Stage zero_shot: odd-one-out accuracy of the raw features on all THINGS triplets and on the test split."""

import numpy as np

from alignment_jax import provenance as facts
from alignment_jax.config import checks
from alignment_jax.errors import InputError
from alignment_jax.evaluation.noise_ceiling import CHANCE
from alignment_jax.evaluation.similarity import check_kind
from alignment_jax.evaluation.zero_shot import bootstrap_ci, odd_one_out
from alignment_jax.run_context import RunContext
from alignment_jax.stages import StageResult, given_transform, inputs, layers, statistics
from alignment_jax.stages.inputs import check_things_and_features, has_features, has_things

READS = (
    "digest", "features", "layers", "things", *inputs.READS, *statistics.READS, *given_transform.READS,
    *layers.READS
)  # fmt: skip
SETTINGS = (
    "similarity", "seed", "zero_shot", "things", "transform", *inputs.SETTINGS, *statistics.SETTINGS,
    *given_transform.SETTINGS, *layers.SETTINGS
)  # fmt: skip

MEMORY = "zero_shot.bootstrap (resamples)"


def has_inputs(config) -> bool:
    return has_things(config) and has_features(config)


def check(config) -> None:
    check_kind(config.similarity)
    statistics.check(config)
    given_transform.check(config)
    checks.integer(config, "zero_shot.bootstrap", minimum=0)


def check_inputs(ctx: RunContext) -> None:
    check_things_and_features(ctx)
    statistics.check_inputs(ctx)
    given_transform.check_inputs(ctx)
    things = ctx.things
    if not len(things.train) and (things.test is None or not len(things.test)):
        raise InputError(f"{things.train.source}: no triplets (and no test triplets either)")


def provenance(ctx: RunContext) -> dict:
    return {
        "features": ctx.digest("features"),
        "things": ctx.digest("things"),
        **facts.settings(ctx.config, "similarity", "seed", "zero_shot", "things", "transform"),
        **given_transform.provenance(ctx),
        **statistics.provenance(ctx),
        **layers.provenance(ctx),
    }


def run(ctx: RunContext) -> dict:
    config, things = ctx.config, ctx.things
    similarity = check_kind(config.similarity)
    everything = (
        things.train.triplets if things.test is None else np.concatenate([things.train.triplets, things.test.triplets])
    )
    result = odd_one_out(ctx.features, everything, similarity, config.zero_shot.bootstrap, config.seed)
    section = result.summary()
    section["chance"] = CHANCE
    if things.test is not None:  # the test triplets are the tail of `everything`: reuse their decisions
        test_correct = result.correct[len(things.train) :]
        test_ci95 = bootstrap_ci(test_correct, config.zero_shot.bootstrap, config.seed)
        section.update(
            test_accuracy=float(test_correct.mean()) if len(test_correct) else float("nan"),
            test_ci95=[None if np.isnan(v) else v for v in test_ci95],  # results.json: no NaN
            test_n_triplets=len(test_correct),
        )
    interval = f" [{result.ci95[0]:.4f}, {result.ci95[1]:.4f}]" if np.isfinite(result.ci95).all() else ""
    ctx.log(
        f"zero-shot ({similarity}): {result.accuracy:.4f}{interval} "
        f"on {result.n_triplets:,} triplets (chance {CHANCE:.3f})"
    )
    section["noise_ceiling"] = statistics.noise_ceiling(ctx, everything)
    if things.test is not None and len(things.test):
        statistics.save_test_decisions(ctx, zero_shot=test_correct)
    more = {}
    if config.transform:
        section.update(given_transform.zero_shot_transformed(ctx, everything, len(things.train)))
        ctx.log(given_transform.log_line(section))
        more["transform"] = given_transform.section(ctx)
    if ctx.layers:
        more["layers"] = layers.zero_shot_entries(ctx, everything, len(things.train), similarity)
    return StageResult(section, more) if more else section
