"""Stage student: closes AligNet's loop (docs/alignet.md). A probe trained on the teacher stage's triplets alone
(WORKDIR/teacher: soft targets = softmax of the teacher's similarities, `student.objective` kl | jsd, tau from
`student.taus` swept with probe.lambdas, folds over triplets), never on a human triplet; then scored on THINGS'
test triplets beside the teacher (the probe section) and zero-shot (the zero_shot section). Its transform is
kept in its section's numbers only: transform.npz stays the probe's."""

import os

import ml_collections
import numpy as np

from alignment_jax import provenance as facts
from alignment_jax.config import checks
from alignment_jax.data import teacher as triplets
from alignment_jax.data.alignet import name_chunks, name_hashes, name_words, soft_targets
from alignment_jax.errors import InputError
from alignment_jax.probing.cross_validation import ProbeSettings, probe_scores, run_probe
from alignment_jax.probing.objective import DIVERGENCES
from alignment_jax.run_context import RunContext, section_digest
from alignment_jax.stages import inputs
from alignment_jax.stages import teacher as teacher_stage
from alignment_jax.stages.inputs import check_things_and_features, has_features, has_things

READS = ("digest", "features", "results", "section_facts", "things", "workdir", *inputs.READS, *teacher_stage.READS)
SETTINGS = ("student", "probe", "seed", "progress", *inputs.SETTINGS, *teacher_stage.SETTINGS)

MEMORY = "probe.lambdas or student.taus (fewer configurations at once)"


def has_inputs(config) -> bool:
    return bool(config.student.objective) and teacher_stage.has_inputs(config) and has_things(config)


def check(config) -> None:
    if config.student.objective:
        checks.choice(config, "student.objective", DIVERGENCES)
        ProbeSettings.from_config(_probe_config(config))
        if not (has_things(config) and has_features(config)):
            raise InputError("student.objective: the student is scored on THINGS' test triplets; set things.root")


def _probe_config(config):
    probe = ml_collections.ConfigDict(config.probe.to_dict())  # a copy: the stage's settings are read-only
    probe.objective, probe.taus, probe.split = config.student.objective, tuple(config.student.taus), "triplets"
    return probe


def check_inputs(ctx: RunContext) -> None:
    check_things_and_features(ctx)
    if ctx.things.test is None or not len(ctx.things.test):
        raise InputError(f"{ctx.things.train.source}: the student is scored on test triplets; give things.test")


def provenance(ctx: RunContext) -> dict:
    teacher = ctx.section_facts("teacher")
    return {
        "teacher": section_digest(teacher) if teacher is not None else None,
        "features": ctx.digest("features"),
        "things": ctx.digest("things"),
        **facts.settings(ctx.config, "student", "probe", "seed"),
    }


def read_shards(folder: str, chunk_rows: int = 250_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(names (n,) of the teacher's image set, triplets (T, 3) int32 rows of it, similarities (T, 3) float32) of a
    complete teacher folder, read shard by shard into arrays allocated once from the manifest's counts; each
    shard's file names streamed from its archive `chunk_rows` triplets at a time and mapped to rows of names.txt
    through their hashes (uint64, searched in the names' hashes sorted once; the names' words compared, so a
    collision or a foreign name fails)."""
    manifest = triplets._read_manifest(os.path.join(folder, triplets.MANIFEST))
    if manifest is None or not manifest.get("complete"):
        raise InputError(f"{folder}: no complete teacher triplets ({triplets.MANIFEST}); run the teacher stage")
    with open(os.path.join(folder, "names.txt"), encoding="utf-8") as f:
        names = np.array(f.read().split("\n")[:-1])
    known_words = name_words(names)
    table = name_hashes(known_words)
    by_hash = np.argsort(table).astype(np.int32)
    table = table[by_hash]
    total = sum(shard["n"] for shard in manifest["shards"])
    rows, sims = np.empty((total, 3), np.int32), np.empty((total, 3), np.float32)
    start = 0
    for shard in manifest["shards"]:
        path = os.path.join(folder, shard["file"])
        if not os.path.isfile(path):
            raise InputError(f"{path}: teacher shard missing (listed in {triplets.MANIFEST}); run the teacher stage")
        stop = start + shard["n"]
        with np.load(path) as data:
            if data["similarities"].shape != (shard["n"], 3):
                raise InputError(
                    f"{path}: {data['similarities'].shape[0]:,} triplets, {triplets.MANIFEST} says {shard['n']:,}; "
                    "run the teacher stage"
                )
            sims[start:stop] = data["similarities"]
        at = start
        for chunk in name_chunks(path, "filenames.npy", shard["n"], chunk_rows):
            found = _rows_of(chunk.reshape(-1), names, known_words, table, by_hash)
            if (found < 0).any():
                unknown = chunk.reshape(-1)[np.argmax(found < 0)]
                raise InputError(f"{path}: {unknown} is not in names.txt; run the teacher stage")
            rows[at : at + len(chunk)] = found.reshape(-1, 3)
            at += len(chunk)
        start = stop
    return names, rows, sims


def _rows_of(flat, names, known_words, table, by_hash) -> np.ndarray:
    """(m,) file names -> (m,) int32 rows of the sorted `names` (their words, hashes sorted as `table` with rows
    `by_hash`); -1 for a name not there. By hash; by sorting as strings where the words disagree (names of
    other lengths or encodings than names.txt's)."""
    words, width = name_words(flat), known_words.shape[1]
    if words.shape[1] > width and not words[:, width:].any():  # a wider string type, no longer name
        words = words[:, :width]
    elif words.shape[1] < width:
        words = np.pad(words, ((0, 0), (0, width - words.shape[1])))
    if words.shape[1] == width:
        at = np.minimum(np.searchsorted(table, name_hashes(words)), len(table) - 1)
        found = by_hash[at]
        if (known_words[found] == words).all():
            return found
    found = np.minimum(np.searchsorted(names, flat), len(names) - 1).astype(np.int32)
    return np.where(names[found] == flat, found, -1)


def run(ctx: RunContext) -> dict:
    config = ctx.config
    names, rows, sims = read_shards(os.path.join(ctx.workdir, "teacher"))
    features = teacher_stage._features(ctx, teacher_stage.pool(ctx))
    used = np.unique(rows)  # the pool images the triplets use, as the student's image set
    settings = ProbeSettings.from_config(_probe_config(config))
    result = run_probe(
        features[used], np.searchsorted(used, rows), None, settings, seed=config.seed, progress=config.progress,
        targets=soft_targets(sims),
    )  # fmt: skip
    test = ctx.things.test.triplets
    summary = result.summary
    section = {
        "objective": settings.objective,
        "n_triplets": len(rows),
        "n_images": len(used),
        "best_lambda": summary["best_lambda"],
        "best_tau": summary["best_tau"],
        "cv_divergence": summary["cv_divergence"],
        "cv_accuracy": summary["cv_accuracy"],
        "refit_epochs": summary["refit_epochs"],
        "test_accuracy": probe_scores(result.transform, ctx.features, test)[1],
        "teacher_test_accuracy": ctx.results.get("probe", {}).get("test_accuracy"),
        "zero_shot_test_accuracy": ctx.results.get("zero_shot", {}).get("test_accuracy"),
        "seconds": summary["seconds"],
    }
    beside = [
        f"{name} {section[key]:.4f}"
        for name, key in (("teacher", "teacher_test_accuracy"), ("zero-shot", "zero_shot_test_accuracy"))
        if section[key] is not None
    ]
    ctx.log(
        f"student ({settings.objective} on {len(rows):,} teacher triplets over {len(used):,} images, no human "
        f"triplet): best lambda {section['best_lambda']:g} tau {section['best_tau']:g}, THINGS test accuracy "
        f"{section['test_accuracy']:.4f}" + (f" ({', '.join(beside)})" if beside else "")
    )
    return section
