"""Command line: run the configured stages of alignment_jax on one model.

    python -m alignment_jax.probe --config=configs/features.py --workdir=DIR \
        --config.features=X.npy --config.things.root=ROOT

Any config field can be overridden as --config.a.b=v. Writes DIR/results.json (atomically, after every
stage) and prints a short summary. Bad input gets one line on stderr and exit status 2.

A run, in order: every setting of every stage it will execute is checked (nothing is written yet); the
workdir is checked and locked, temporary files of a killed run are removed; the world stage makes the
demo's inputs; every stage's input files are read and checked; the extract stage makes the features; the
outputs already in the workdir are compared with what this run computes from (provenance) and moved
aside whole to DIR/previous/<time>/ when anything differs; then the stages that write outputs run. A
finished section whose inputs and settings are unchanged is kept (its stage is skipped) unless
config.stages names the stage.
"""

import contextlib
import copy
import os

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from alignment_jax import atomic, caches, cli, progress, provenance, stages, workdir
from alignment_jax.config import checks
from alignment_jax.data.triplets import count_duplicates, count_shared
from alignment_jax.errors import InputError, first_line, out_of_memory
from alignment_jax.evaluation.similarity import check_kind
from alignment_jax.probing.placement import process_zero
from alignment_jax.run_context import PROVENANCE, RunContext, section_digest

SEED_LIMIT = 2**31 - 2  # seeds go to numpy and jax.random.key, and seed + 1 is used too


def requested_stages(config: ml_collections.ConfigDict) -> list[str] | None:
    """The stages named in config.stages in run order, or None: every stage whose inputs are there."""
    if not config.stages:
        return None
    names = [s.strip() for s in config.stages.split(",") if s.strip()]
    unknown = [s for s in names if s not in stages.ORDER]
    if unknown:
        raise InputError(f"config.stages: unknown stage(s) {unknown}; choose from {', '.join(stages.ORDER)}")
    return [s for s in stages.ORDER if s in names]


def run(config: ml_collections.ConfigDict, workdir_path: str) -> RunContext:
    """Runs the stages; each stage's results are in results.json as soon as it finishes.

    Without config.stages, a stage runs if its inputs are there when its turn comes, so inputs that an
    earlier stage provides (the demo world, extracted features) count.
    """
    check_run_settings(config)
    requested = requested_stages(config)
    planned = plan(config, workdir_path, requested)
    caches.use_compilation_cache(config.compilation_cache)
    with workdir.removed_if_left_empty(workdir_path):
        return _run(config, workdir_path, requested, planned)


def _run(config: ml_collections.ConfigDict, workdir_path: str, requested, planned: list[str]) -> RunContext:
    ctx = RunContext(config, workdir_path)
    ctx.trains_transform = "probe" in planned
    for line in skipped_stages(config, requested):
        ctx.log(line)
    with _held(ctx):
        ctx.reload()
        _run_stages(ctx, planned, requested)
    if jax.process_index() == 0:
        print(f"results: {ctx.results_path}")
    return ctx


@contextlib.contextmanager
def _held(ctx: RunContext):
    """Process 0 locks the workdir and removes the temporary files an interrupted run left; the other processes
    (which may share the workdir) wait until it has, and stop with it when another run holds the lock."""
    with contextlib.ExitStack() as stack:
        refused = None
        if jax.process_index() == 0:
            try:
                stack.enter_context(workdir.Lock(ctx.workdir))
            except InputError as e:
                refused = e
            else:
                removed = atomic.remove_temporary(ctx.workdir)
                if removed:
                    ctx.log(f"workdir: removed {len(removed)} temporary file(s) that an interrupted run left")
        if not process_zero(refused is None):
            raise refused or InputError(f"--workdir={ctx.workdir}: process 0 could not lock it (its error says why)")
        yield


def plan(config: ml_collections.ConfigDict, workdir_path: str, requested: list[str] | None) -> list[str]:
    """The stages this run executes, after checking every setting they use (before anything is written).

    Without config.stages: every stage whose inputs the config names, judged on the config as the world
    stage will rewrite it (the demo's files are inputs that stage makes).
    """
    check_run_settings(config)
    predicted = copy.deepcopy(config)
    world = stages.load("world")
    if requested is None and world.has_inputs(predicted) or requested and "world" in requested:
        world.check_unused_inputs(config)
        world.configure(predicted, world.root_of(workdir_path))
    if requested is None:
        planned = [s for s in stages.ORDER if stages.load(s).has_inputs(predicted)]
        if not [s for s in planned if s != "report"]:
            raise InputError(_missing_data_message(config))
    else:
        planned = requested
    check_settings(predicted, planned)
    return planned


def skipped_stages(config: ml_collections.ConfigDict, requested: list[str] | None) -> list[str]:
    """One line for each stage whose inputs the config sets but that config.stages leaves out (the report,
    which needs no input of its own, is not announced)."""
    if requested is None:
        return []
    return [
        f"stage {name} skipped: its inputs are set but config.stages={config.stages!r} leaves it out "
        f"(add it: --config.stages={','.join(s for s in stages.ORDER if s in requested or s == name)})"
        for name in stages.ORDER
        if name not in requested and name != "report" and stages.load(name).has_inputs(config)
    ]


def check_run_settings(config: ml_collections.ConfigDict) -> None:
    """The fields of the config and the settings every stage shares (seed, similarity, progress, caches)."""
    checks.fields_of_a_run(config)
    checks.integer(config, "seed", minimum=0, maximum=SEED_LIMIT)
    check_kind(config.similarity)
    if config.model.standin and config.model.checkpoint:
        raise InputError(
            f"model.checkpoint={config.model.checkpoint!r} is not used: model.standin=True (set by runlocal) loads a "
            "tiny random stand-in of the registry entry instead; drop runlocal (or the checkpoint)"
        )
    progress.check_mode(config.progress)
    caches.cache_folder(config.compilation_cache, "jax", "compilation_cache")
    layers = stages.load("layers")
    layers.check(stages.settings_view(config, layers))


def check_settings(config: ml_collections.ConfigDict, names: list[str] | tuple[str, ...] = stages.ORDER) -> None:
    """The settings of the stages `names` (default: all), checked before any stage runs (nothing slow has run
    when one is bad)."""
    check_run_settings(config)
    for name in names:
        stage = stages.load(name)
        if hasattr(stage, "check"):
            stage.check(stages.settings_view(config, stage))


def _run_stages(ctx: RunContext, planned: list[str], requested: list[str] | None) -> None:
    made = {}
    if "world" in planned:
        made["world"] = _run_stage(ctx, "world")
        # every process wrote the world's files: none may read their modification times (image sources do)
        # while another still writes them
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("world")
    for name in planned:  # the demo's files exist now; nothing slow has run yet
        stage = stages.load(name)
        if hasattr(stage, "check_inputs"):
            stage.check_inputs(stages.StageView(ctx, stage))
    if "extract" in planned:
        made["extract"] = _run_stage(ctx, "extract")
    finished = settle(ctx, planned, requested)
    for name, section in made.items():
        if section is not None:
            ctx.record(name, section, facts=ctx.section_facts(name))
    for name in planned:
        if name in stages.INPUTS:
            continue
        if name in finished:
            ctx.log(f"{name}: inputs and settings unchanged; kept its finished result (config.stages={name} redoes it)")
            continue
        ctx.facts = facts_of(ctx, name)
        outcome = _run_stage(ctx, name)
        outcome = outcome if isinstance(outcome, stages.StageResult) else stages.StageResult(outcome)
        for file in outcome.files:  # results.json records which files this section wrote
            ctx.facts[f"output:{file}"] = provenance.file_digest(os.path.join(ctx.workdir, file))
        if outcome.section is not None:
            ctx.record(name, outcome.section)
        else:
            ctx.results.setdefault(PROVENANCE, {})[name] = provenance.normalized(ctx.facts)
            ctx.write()
        for other, value in outcome.more.items():  # computed by this stage, with its provenance
            ctx.record(other, value)
        ctx.facts = None


def _run_stage(ctx: RunContext, name: str):
    """stage.run(ctx), with running out of memory turned into a line naming the settings to lower."""
    stage = stages.load(name)
    try:
        return stage.run(stages.StageView(ctx, stage))
    except Exception as e:
        if not out_of_memory(e):
            raise
        lower = getattr(stage, "MEMORY", "the sizes of this stage's inputs")
        raise InputError(f"{name}: out of memory ({first_line(e, 200)}); lower {lower}") from e


def settle(ctx: RunContext, planned: list[str], requested: list[str] | None) -> set[str]:
    """Compares what the workdir's outputs were computed from with what this run computes from; moves them
    aside whole when anything differs, then records this run's provenance (claiming the outputs before they
    are written). Returns the stages whose finished sections are kept (auto mode, same facts)."""
    earlier = ctx.results.get(PROVENANCE)
    reasons = [ctx.unreadable_results] if ctx.unreadable_results else []
    if [k for k in ctx.results if k != PROVENANCE] and not isinstance(earlier, dict):
        reasons.append("results.json has no provenance (an earlier version wrote it)")
    earlier = earlier if isinstance(earlier, dict) else {}
    if not earlier:
        orphans = [
            n for n in _outputs() if _exists(ctx, n) and not (n == "transform.npz" and _reads_transform(planned))
        ]
        if orphans:
            reasons.append(f"{', '.join(orphans)} without a results.json that records them")
    now = _facts_now(ctx, planned)
    everything = {k: v for facts in now.values() for k, v in facts.items()}
    everything.update({f"section:{name}": section_digest(facts) for name, facts in now.items()})
    reasons += provenance.conflicts(earlier, everything)
    transform_intact = _transform_intact(ctx, earlier)
    if not transform_intact and "probe" not in planned:
        if _reads_transform(planned):
            raise InputError(
                f"{ctx.transform_path}: differs from the transform the probe stage wrote (results.json records "
                "another sha256); rerun the probe stage (add probe to --config.stages) or restore the file"
            )
        reasons.append("transform.npz differs from the one the probe stage wrote")
    if reasons:
        if jax.process_index() == 0:
            moved = ["results.json", workdir.ERROR_LOG, *_outputs()]
            folder = workdir.move_aside(ctx.workdir, moved, "; ".join(reasons))
            more = f" (and {len(reasons) - 1} more differences)" if len(reasons) > 1 else ""
            ctx.log(
                f"workdir: earlier outputs came from other inputs or settings ({reasons[0]}{more}); moved to {folder}"
            )
        ctx.results, earlier = {}, {}
        now = _facts_now(ctx, planned)
    finished = set()
    for name, facts in now.items():
        before = earlier.get(name) or {}
        facts = provenance.normalized(facts)
        same = all(k in before for k in facts)
        if requested is None and same and name in ctx.results and _outputs_intact(ctx, name, before):
            finished.add(name)
        ctx.results.setdefault(PROVENANCE, {})[name] = {**before, **facts} if same else facts
        if not same:  # a section computed from facts results.json did not record: this run redoes it
            ctx.results.pop(name, None)
    finished = _same_on_every_process(finished, planned)
    ctx.pending = {}
    if ctx.things_loaded:
        ctx.record("data", data_section(ctx), facts={"things": ctx.digest("things")})
    else:
        ctx.write()
    return finished


def _facts_now(ctx: RunContext, planned: list[str]) -> dict[str, dict]:
    """{stage: facts} for the planned stages, in order (later ones may read earlier ones through
    ctx.section_facts, e.g. the transform the probe will write)."""
    ctx.pending = {}
    for name in planned:
        ctx.pending[name] = facts_of(ctx, name)
    return dict(ctx.pending)


def facts_of(ctx: RunContext, name: str) -> dict:
    """What stage `name`'s section is computed from: its `provenance(ctx)`, or for a stage without one, the
    values of its SETTINGS (a change of one makes its section stale; config.stages never does)."""
    stage = stages.load(name)
    if hasattr(stage, "provenance"):
        return dict(stage.provenance(stages.StageView(ctx, stage)))
    declared = getattr(stage, "SETTINGS", ())
    declared = ctx.config.keys() if declared == stages.ALL_SETTINGS else declared
    return provenance.settings(ctx.config, *[k for k in declared if k != "stages"])


def _outputs_intact(ctx: RunContext, name: str, facts: dict) -> bool:
    """Whether a finished stage can be kept: it may be (REUSE), its OUTPUTS exist, and the files whose
    digests its provenance recorded (`output:<file>`) are unchanged."""
    stage = stages.load(name)
    if not getattr(stage, "REUSE", True) or not all(_exists(ctx, n) for n in getattr(stage, "OUTPUTS", ())):
        return False
    recorded = {k[len("output:") :]: v for k, v in facts.items() if k.startswith("output:")}
    files = [n for n in getattr(stage, "OUTPUTS", ()) if os.path.isfile(os.path.join(ctx.workdir, n))]
    if any(n not in recorded for n in files):
        return False
    return all(provenance.file_digest(os.path.join(ctx.workdir, n)) == d for n, d in recorded.items())


def _same_on_every_process(finished: set[str], planned: list[str]) -> set[str]:
    """Process 0's choice of kept stages, on every process (their workdirs may differ; their stages must
    not, the extraction in transfer has collectives)."""
    if jax.process_count() == 1:
        return finished
    mask = np.array([name in finished for name in planned], np.int32)
    mask = np.asarray(multihost_utils.broadcast_one_to_all(mask))
    return {name for name, keep in zip(planned, mask, strict=True) if keep}


def _transform_intact(ctx: RunContext, earlier: dict) -> bool:
    """Whether transform.npz is the file the recorded probe section wrote (True when none is recorded)."""
    recorded = (earlier.get("probe") or {}).get("output:transform.npz")
    if recorded is None:
        return True
    return _exists(ctx, "transform.npz") and provenance.file_digest(ctx.transform_path) == recorded


def _reads_transform(planned: list[str]) -> bool:
    """Whether a planned stage applies a transform.npz made before this run."""
    return "probe" not in planned and bool({"levels", "transfer", "concepts"} & set(planned))


def _outputs() -> list[str]:
    """The files and folders the stages write in the workdir besides results.json."""
    return [
        *(name for stage in stages.ORDER for name in getattr(stages.load(stage), "OUTPUTS", ())),
        *stages.SHARED_OUTPUTS,
    ]


def _exists(ctx: RunContext, name: str) -> bool:
    return os.path.lexists(os.path.join(ctx.workdir, name))


def data_section(ctx: RunContext) -> dict:
    """The `data` section: sizes of the THINGS data, exact duplicate rows, and test triplets whose three
    objects also form a training triplet (any order); logs a line for each that is not zero."""
    things = ctx.things
    train = things.train.triplets
    test = things.test.triplets if things.test is not None else np.zeros((0, 3), np.int32)
    section = {
        "n_objects": things.n_objects,
        "train_triplets": len(train),
        "test_triplets": len(test),
        "train_duplicates": count_duplicates(train, things.n_objects),
        "test_duplicates": count_duplicates(test, things.n_objects),
        "train_test_overlap": count_shared(test, train, things.n_objects),
    }
    for split, source in (("train", things.train.source), ("test", things.test.source if things.test else "")):
        if section[f"{split}_duplicates"]:
            ctx.log(
                f"data: {section[f'{split}_duplicates']:,} of {section[f'{split}_triplets']:,} rows of {source} "
                "repeat an earlier row exactly (kept: each counts as a judgment)"
            )
    if section["train_test_overlap"]:
        ctx.log(
            f"warning: {section['train_test_overlap']:,} of {len(test):,} test triplets have the same three objects "
            "as a training triplet (data.train_test_overlap in results.json); test accuracy is not fully held out"
        )
    return section


def _missing_data_message(config: ml_collections.ConfigDict) -> str:
    model = config.model.name or config.model.variant
    what = f"model {model} is configured but there are no THINGS data" if model else "nothing to run"
    return (
        f"{what}: download THINGS from OSF (images: https://osf.io/jum2f/, triplets: https://osf.io/f5rn6/) and "
        "set --config.things.root=ROOT (ROOT/images/, ROOT/triplets/train_90.npy, ROOT/things_concepts.tsv)"
        + (", or set --config.features=X.npy" if not model else ", or add :runlocal=True to the config path")
        + "; configs/demo.py runs everything on bundled synthetic data"
    )


def _command(config: ml_collections.ConfigDict, workdir_path: str) -> int:
    run(config, workdir_path)
    return 0


if __name__ == "__main__":
    cli.run_app(_command)
