"""The statistics the zero_shot and probe stages add to a run (not a stage itself).

zero_shot: the human noise ceiling with its interval over repeated sets (`things.noise_ceiling_triplets`, else
repeats in the train/test data when there are at least `things.noise_ceiling_min_sets` sets), and the raw
features' outcome on every test triplet in DIR/decisions.npz.
probe: the spread of the CV accuracy over folds, 95% bootstrap intervals over test triplets for the probe's
test accuracy and the transformed zero-shot accuracy, their outcomes in DIR/decisions.npz, and the paired
comparisons of every two methods on the test triplets in results.json `comparisons` (difference, paired
bootstrap interval, exact McNemar p-value).
"""

import os

import jax
import numpy as np

from alignment_jax import json_values
from alignment_jax.data.triplets import load_triplets
from alignment_jax.errors import InputError
from alignment_jax.evaluation import decisions
from alignment_jax.evaluation.noise_ceiling import ceiling_summary
from alignment_jax.evaluation.statistics import accuracy_ci, paired_comparisons, spread
from alignment_jax.evaluation.zero_shot import ZeroShotResult, odd_one_out
from alignment_jax.probing.cross_validation import probe_decisions
from alignment_jax.probing.transform import Transform
from alignment_jax.provenance import file_digest
from alignment_jax.run_context import RunContext

READS = ("features", "things", "workdir")
SETTINGS = (
    "similarity", "seed", "zero_shot.bootstrap", "things.noise_ceiling_triplets", "things.noise_ceiling_min_sets",
    "things.one_based"
)  # fmt: skip


def check(config) -> None:
    """The noise-ceiling settings (run by the zero_shot stage's check)."""
    min_sets = config.things.noise_ceiling_min_sets
    if isinstance(min_sets, bool) or not isinstance(min_sets, int) or min_sets < 1:
        raise InputError(f"things.noise_ceiling_min_sets={min_sets!r}: must be a whole number >= 1")


def check_inputs(ctx: RunContext) -> None:
    """The noise-ceiling triplet file is there (after the demo world wrote its own)."""
    path = ctx.config.things.noise_ceiling_triplets
    if path and not os.path.isfile(path):
        raise InputError(f"{path}: noise-ceiling triplet file not found (things.noise_ceiling_triplets)")


def provenance(ctx: RunContext) -> dict:
    """The noise-ceiling triplets file's bytes, when one is given."""
    path = ctx.config.things.noise_ceiling_triplets
    return {"noise_ceiling_triplets": file_digest(path)} if path and os.path.isfile(path) else {}


def noise_ceiling(ctx: RunContext, everything: np.ndarray) -> dict:
    """The zero_shot section's `noise_ceiling` entry (evaluation/noise_ceiling.ceiling_summary); logs one line.

    everything: the train (+ test) triplets, searched for repeated sets when no noise-ceiling file is given."""
    config, things = ctx.config, ctx.things
    path = config.things.noise_ceiling_triplets
    if path:
        triplets, source = load_triplets(path, things.n_objects, config.things.one_based).triplets, path
    else:
        triplets = everything
        source = "the train triplets" if things.test is None else "the train and test triplets"
    entry, line = ceiling_summary(
        triplets,
        things.n_objects,
        source,
        dedicated=bool(path),
        min_sets=config.things.noise_ceiling_min_sets,
        bootstrap=config.zero_shot.bootstrap,
        seed=config.seed,
    )
    ctx.log(line)
    return entry


def save_test_decisions(ctx: RunContext, **correct: np.ndarray) -> None:
    """Methods' (T,) outcomes on the THINGS test triplets into DIR/decisions.npz (by the first process)."""
    if jax.process_index() == 0:
        decisions.save_decisions(ctx.workdir, ctx.things.test.triplets, **correct)


def probe_statistics(
    ctx: RunContext, section: dict, transform: Transform, transformed: ZeroShotResult | None
) -> list[dict] | None:
    """Adds the probe section's intervals, saves the test outcomes and returns results.json `comparisons` (None
    without test triplets).

    section: the complete probe section (with `cv_accuracy_folds`, and `test_accuracy` when there is a test split);
    transformed: config.similarity on the transformed features over the test triplets (None without them).
    """
    config = ctx.config
    section.update({f"cv_accuracy_{k}": v for k, v in spread(section["cv_accuracy_folds"]).items()})
    if transformed is None or not transformed.n_triplets:
        return None
    test = ctx.things.test.triplets
    correct = {"probe": probe_decisions(transform, ctx.features, test), "zero_shot_transformed": transformed.correct}
    section["test_accuracy_ci95"] = _json_interval(
        accuracy_ci(correct["probe"], config.zero_shot.bootstrap, config.seed)
    )
    section["test_zero_shot_transformed_ci95"] = _json_interval(transformed.ci95)
    saved = decisions.load_decisions(ctx.workdir)
    if saved is not None and saved.triplets_sha256 == decisions.triplets_sha256(test) and "zero_shot" in saved.correct:
        correct["zero_shot"] = saved.correct["zero_shot"]  # the zero_shot stage's, behind its test accuracy
    else:
        correct["zero_shot"] = odd_one_out(ctx.features, test, config.similarity, bootstrap=0).correct
    if jax.process_index() == 0:
        decisions.save_decisions(ctx.workdir, test, **correct)
    matrix = np.stack([correct[m] for m in decisions.METHODS], axis=1)
    rows = paired_comparisons(matrix, config.zero_shot.bootstrap, config.seed).rows(list(decisions.METHODS))
    for row in rows:
        ctx.log(comparison_line(row))
    return rows


def comparison_line(row: dict) -> str:
    """One comparison of results.json `comparisons` as a log line."""
    low, high = row["ci95"]
    interval = "" if low is None else f" [{low:+.4f}, {high:+.4f}]"
    return (
        f"{row['a']} - {row['b']} on {row['n_triplets']:,} test triplets: {row['difference']:+.4f}{interval}, "
        f"McNemar p = {row['p_value']:.2g} ({row['a_only']:,} vs {row['b_only']:,} discordant)"
    )


def _json_interval(interval: tuple[float, float]) -> list[float | None]:
    return json_values.interval(interval)
