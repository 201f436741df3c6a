"""Stage zero_shot: odd-one-out accuracy of the raw features on all THINGS triplets and on the test split."""

import numpy as np

from alignment_jax.evaluation.noise_ceiling import CHANCE, noise_ceiling
from alignment_jax.evaluation.similarity import check_kind
from alignment_jax.evaluation.zero_shot import bootstrap_ci, odd_one_out
from alignment_jax.run_context import RunContext
from alignment_jax.stages import layers
from alignment_jax.stages.inputs import has_features, has_things


def has_inputs(config) -> bool:
    return has_things(config) and has_features(config)


def check(config) -> None:
    check_kind(config.similarity)


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
            test_ci95=list(test_ci95),
            test_n_triplets=len(test_correct),
        )
    ceiling = noise_ceiling(everything, things.n_objects)
    if ceiling.n_repeated_sets:
        section.update(noise_ceiling=ceiling.accuracy, noise_ceiling_sets=ceiling.n_repeated_sets)
    ctx.log(
        f"zero-shot ({similarity}): {result.accuracy:.4f} [{result.ci95[0]:.4f}, {result.ci95[1]:.4f}] "
        f"on {result.n_triplets:,} triplets (chance {CHANCE:.3f}"
        + (f", noise ceiling {ceiling.accuracy:.3f})" if ceiling.n_repeated_sets else ")")
    )
    if ctx.layers:
        layers.record_zero_shot(ctx, everything, len(things.train), similarity)
    return section
