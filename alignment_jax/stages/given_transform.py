"""A given transform (`config.transform`): a transform.npz from gLocal, thingsvision or an earlier run,
evaluated instead of training one. The probe stage is skipped; `RunContext.transform` is the given file,
so transfer, concepts and the report compare every number with and without it; zero-shot gains the
transformed accuracy on all and on the test triplets, and the `transform` section holds the probe's own
scores of it (dot-product choices on the test split) and, with local images (`probe.local.*`), how much
it moves their neighbourhoods (alignment_jax/evaluation/locality.py).
"""

import ml_collections
import numpy as np

from alignment_jax import json_values
from alignment_jax.errors import InputError
from alignment_jax.evaluation.zero_shot import bootstrap_ci, odd_one_out
from alignment_jax.probing.cross_validation import probe_scores
from alignment_jax.probing.transform import Transform, given_transform_path
from alignment_jax.provenance import file_digest
from alignment_jax.run_context import RunContext
from alignment_jax.stages import local_inputs

READS = ("features", "layer", "things", "transform", "transform_path", *local_inputs.READS)
SETTINGS = (
    "transform", "transform_model", "transform_module", "stages", "similarity", "seed", "zero_shot.bootstrap",
    "probe.temperature", "probe.taus", *local_inputs.SETTINGS
)  # fmt: skip


def check(config: ml_collections.ConfigDict) -> None:
    """The given file exists and is a valid transform (read now, before anything slow); no probe stage."""
    if not config.transform:
        if config.transform_model or config.transform_module:
            raise InputError("transform_model/transform_module pick a file in transform=FOLDER; set transform too")
        return
    path = given_transform_path(config.transform, config.transform_model, config.transform_module)
    Transform.load_npz(path)
    if "probe" in (s.strip() for s in config.stages.split(",")):
        raise InputError(
            f"transform={config.transform}: a given transform replaces the probe stage; drop probe from stages"
        )


def check_inputs(ctx: RunContext) -> None:
    """With a given transform and local images, the local set's inputs (the locality measures need them)."""
    if ctx.config.transform and local_inputs.has_local(ctx.config):
        local_inputs.check_inputs(ctx)


def provenance(ctx: RunContext) -> dict:
    """The given transform's bytes, when there is one (config.transform)."""
    return {"transform": file_digest(ctx.transform_path)} if ctx.config.transform else {}


def zero_shot_transformed(ctx: RunContext, triplets: np.ndarray, n_train: int) -> dict:
    """Zero-shot accuracy of the transformed features on `triplets` (train then test) and on the test
    tail (from index n_train on, when there is one)."""
    config = ctx.config
    transformed = ctx.transform.apply(ctx.features)
    result = odd_one_out(transformed, triplets, config.similarity, config.zero_shot.bootstrap, config.seed)
    section = {"accuracy_transformed": result.accuracy, "ci95_transformed": _interval(result.ci95)}
    if n_train < len(triplets):
        test_correct = result.correct[n_train:]
        section.update(
            test_accuracy_transformed=float(test_correct.mean()),
            test_ci95_transformed=_interval(bootstrap_ci(test_correct, config.zero_shot.bootstrap, config.seed)),
        )
    return section


def _interval(ci: tuple[float, float]) -> list[float | None]:
    """A bootstrap interval for results.json: null, not NaN, without resamples (zero_shot.bootstrap = 0)."""
    return json_values.interval(ci)


def section(ctx: RunContext) -> dict:
    """The `transform` section: the file, its dimension, the probe-style test scores (temperature
    probe.temperature) and, with a local set, the locality measures on its held-out images at the first
    of probe.taus."""
    config, transform, things = ctx.config, ctx.transform, ctx.things
    out = {"source": ctx.transform_path, "dim": transform.dim}
    if things.test is not None and len(things.test):
        cross_entropy, accuracy = probe_scores(transform, ctx.features, things.test.triplets, config.probe.temperature)
        out.update(test_accuracy=accuracy, test_cross_entropy=cross_entropy)
    line = f"transform {out['source']} (p = {out['dim']})"
    if "test_accuracy" in out:
        line += f": probe-style test accuracy {out['test_accuracy']:.4f}, cross-entropy {out['test_cross_entropy']:.4f}"
    ctx.log(line)
    if local_inputs.has_local(config):
        local = local_inputs.local_sets(ctx)[ctx.layer]
        out.update(local_inputs.locality(ctx, local, transform, float(config.probe.taus[0])))
        if "local_knn_overlap" in out:
            ctx.log(local_inputs.locality_line("transform", out))
    return out


def log_line(section: dict) -> str:
    """The zero-shot section's transformed accuracy as a log line."""
    line = f"zero-shot after the given transform: {section['accuracy_transformed']:.4f}"
    if "test_accuracy_transformed" in section:
        line += f" (test {section['test_accuracy_transformed']:.4f})"
    return line
