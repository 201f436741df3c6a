"""Command line: run the configured stages of alignment_jax on one model.

    python -m alignment_jax.probe --config=configs/features.py --workdir=DIR \
        --config.features=X.npy --config.things.root=ROOT

Any config field can be overridden as --config.a.b=v. Writes DIR/results.json (atomically, after every
stage) and prints a short summary. Bad input gets one line on stderr and exit status 2.
"""

import ml_collections

from alignment_jax import caches, cli, progress, stages
from alignment_jax.errors import InputError
from alignment_jax.run_context import RunContext


def requested_stages(config: ml_collections.ConfigDict) -> list[str] | None:
    """The stages named in config.stages in run order, or None: every stage whose inputs are there."""
    if not config.stages:
        return None
    names = [s.strip() for s in config.stages.split(",") if s.strip()]
    unknown = [s for s in names if s not in stages.ORDER]
    if unknown:
        raise InputError(f"config.stages: unknown stage(s) {unknown}; choose from {', '.join(stages.ORDER)}")
    return [s for s in stages.ORDER if s in names]


def run(config: ml_collections.ConfigDict, workdir: str) -> RunContext:
    """Runs the stages; each stage's results are in results.json as soon as it finishes.

    Without config.stages, a stage runs if its inputs are there when its turn comes, so inputs that an
    earlier stage provides (the demo world, extracted features) count.
    """
    requested = requested_stages(config)
    check_settings(config)
    if requested is None and not any(stages.load(s).has_inputs(config) for s in stages.ORDER if s != "report"):
        raise InputError(_missing_data_message(config))
    caches.use_compilation_cache(config.compilation_cache)
    ctx = RunContext(config, workdir)
    for line in skipped_stages(config, requested):
        ctx.log(line)
    for name in stages.ORDER:
        stage = stages.load(name)
        if (requested is None and stage.has_inputs(config)) or (requested is not None and name in requested):
            section = stage.run(ctx)
            if section is not None:
                ctx.record(name, section)
    print(f"results: {ctx.results_path}")
    return ctx


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


def check_settings(config: ml_collections.ConfigDict) -> None:
    """Every stage's settings, checked before any stage runs (nothing slow has run when one is bad), and
    the run's own: progress, compilation_cache."""
    progress.check_mode(config.progress)
    caches.cache_folder(config.compilation_cache, "jax", "compilation_cache")
    for name in stages.ORDER:
        check = getattr(stages.load(name), "check", None)
        if check is not None:
            check(config)


def _missing_data_message(config: ml_collections.ConfigDict) -> str:
    model = config.model.name or config.model.variant
    what = f"model {model} is configured but there are no THINGS data" if model else "nothing to run"
    return (
        f"{what}: download THINGS from OSF (images: https://osf.io/jum2f/, triplets: https://osf.io/f5rn6/) and "
        "set --config.things.root=ROOT (ROOT/images/, ROOT/triplets/train_90.npy, ROOT/things_concepts.tsv)"
        + (", or set --config.features=X.npy" if not model else ", or add :runlocal=True to the config path")
        + "; configs/demo.py runs everything on bundled synthetic data"
    )


def _command(config: ml_collections.ConfigDict, workdir: str) -> int:
    run(config, workdir)
    return 0


if __name__ == "__main__":
    cli.run_app(_command)
