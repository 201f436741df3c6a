"""Command line: run several model configs one after another and compare them.

    python -m alignment_jax.sweep --config=configs/sweep.py --workdir=DIR \
        --config.models="configs/vit_b16.py,configs/vit_l16.py" --config.shared.things.root=THINGS

config.models: specs `[NAME=]PATH[:ARG][ KEY=VALUE ...]` (alignment_jax/config/files.py), comma-separated
  (or a tuple, one spec per item); config.shared: fields set in every model's config (nested like it; None
  leaves a field alone); config.plot: draw DIR/summary.png and DIR/comparisons.png; config.bootstrap: paired
  bootstrap resamples for DIR/comparisons.csv (default 1000).
Each model runs in DIR/<name>/ with alignment_jax.probe.run. A finished run leaves DIR/<name>/DONE with
its config's fingerprint; a rerun skips it while the config is unchanged (delete DONE to force a rerun,
e.g. after replacing a data file in place). A model whose config changed runs again: alignment_jax.probe
moves its earlier outputs to DIR/<name>/previous/<time>/ when they came from other inputs or settings, and
keeps its finished stages when they did not. A model that fails is reported (internal errors with a
traceback in DIR/<name>/error.log) and the others go on. DIR is locked while the sweep runs (DIR/.lock,
as for a single run). Writes DIR/summary.csv (alignment_jax/report/sweep_summary.py) after every model,
and prints it as a table; at the end DIR/comparisons.csv and DIR/comparisons.png, the paired comparisons
of the finished models on shared test triplets (alignment_jax/report/comparisons.py; config.bootstrap
resamples, default 1000); with model.layers, DIR/depth.png holds every model's accuracy against relative
depth. Exit status: 2 for a bad sweep config, 1 if a model failed.
"""

import contextlib
import dataclasses
import json
import os
import sys
import traceback
from typing import Any

import ml_collections

from alignment_jax import atomic, cli, probe
from alignment_jax import workdir as workdir_module
from alignment_jax.config import files as config_files
from alignment_jax.config.files import RunSpec
from alignment_jax.errors import InputError, first_line, out_of_memory
from alignment_jax.report import comparisons, depth, sweep_summary

DONE = "DONE"


@dataclasses.dataclass(frozen=True)
class ModelRun:
    """The outcome of one model: status is ran, cached (finished before, skipped) or failed."""

    spec: RunSpec
    status: str
    results: dict[str, Any]
    error: str = ""


def run_sweep(config: ml_collections.ConfigDict, workdir: str) -> list[ModelRun]:
    """Runs (or skips, when finished) every model of config.models; rewrites summary.csv after each."""
    specs = config_files.parse_specs(config.get("models", ""))
    bootstrap = config.get("bootstrap", 1000)
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise InputError(f"bootstrap={bootstrap!r}: the number of paired bootstrap resamples, a whole number >= 0")
    shared = config.get("shared")
    workdir_module.prepare(workdir)
    with workdir_module.Lock(workdir):
        atomic.remove_temporary(workdir, recursive=False)  # each model's run cleans its own folder
        return _run_models(specs, shared, workdir, config.get("plot", True), bootstrap)


def _run_models(specs: list[RunSpec], shared, workdir: str, plot: bool, bootstrap: int) -> list[ModelRun]:
    runs: list[ModelRun] = []
    for i, spec in enumerate(specs):
        print(f"\n== {spec.name} ({i + 1}/{len(specs)}): {spec.text}", flush=True)
        runs.append(run_model(spec, shared, os.path.join(workdir, spec.name)))
        sweep_summary.write_csv(os.path.join(workdir, "summary.csv"), _rows(runs))
    rows = _rows(runs)
    print()
    for line in sweep_summary.text_lines(rows):
        print(line)
    if plot and sweep_summary.plot(os.path.join(workdir, "summary.png"), rows):
        print(f"plot: {os.path.join(workdir, 'summary.png')}")
    if plot and depth.plot_models(os.path.join(workdir, "depth.png"), [(r.spec.name, r.results) for r in runs]):
        print(f"plot: {os.path.join(workdir, 'depth.png')} (every model's accuracy against relative depth)")
    print(f"summary: {os.path.join(workdir, 'summary.csv')}")
    finished = [(r.spec.name, r.results) for r in runs if r.status != "failed"]
    for line in comparisons.write(workdir, finished, bootstrap, draw=plot) if finished else ():
        print(line)
    return runs


def run_model(spec: RunSpec, shared: ml_collections.ConfigDict | None, workdir: str) -> ModelRun:
    """One model in its own workdir: skipped when DONE says it finished with the same config.

    A failed model's row shows what its run wrote before failing; when it failed before running (a bad
    spec or config), nothing: a results.json left there belongs to another config."""
    started = False
    try:
        config = config_files.resolve(spec, shared)
        fingerprint = config_files.fingerprint(config)
        finished = finished_results(workdir, fingerprint)
        if finished is not None:
            print(f"{spec.name}: finished before with the same config; skipped ({os.path.join(workdir, DONE)})")
            return ModelRun(spec, "cached", finished)
        with contextlib.suppress(FileNotFoundError):  # probe.run moves the outputs of another config aside
            os.remove(os.path.join(workdir, DONE))
        started = True
        results = probe.run(config, workdir).results
        done = {"spec": spec.text, "fingerprint": fingerprint, "sections": list(results)}
        atomic.write_json(os.path.join(workdir, DONE), done)
        return ModelRun(spec, "ran", results)
    except InputError as e:
        message = str(e)
    except Exception as e:  # one model's bug must not stop the others
        if out_of_memory(e):
            message = f"out of memory ({first_line(e, 200)}); lower images.batch_size or probe.lambdas"
        else:
            log = workdir_module.write_error_log(workdir, traceback.format_exc())
            message = f"{type(e).__name__}: {e} (traceback in {log})"
    print(f"error: {spec.name}: {message}", file=sys.stderr, flush=True)
    return ModelRun(spec, "failed", _read_results(workdir) if started else {}, message)


def finished_results(workdir: str, fingerprint: str) -> dict[str, Any] | None:
    """The results of a finished run with this config fingerprint (every section DONE lists), else None."""
    done = _read_json(os.path.join(workdir, DONE))
    if not done or done.get("fingerprint") != fingerprint:
        return None
    results = _read_results(workdir)
    return results if all(s in results for s in done.get("sections", ())) else None


def _rows(runs: list[ModelRun]) -> list[dict[str, Any]]:
    return [sweep_summary.row(r.spec.name, r.status, r.results, r.spec.text, r.error) for r in runs]


def _read_results(workdir: str) -> dict[str, Any]:
    return _read_json(os.path.join(workdir, "results.json")) or {}


def _read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _command(config: ml_collections.ConfigDict, workdir: str) -> int:
    """Exit status 1 when a model failed."""
    runs = run_sweep(config, workdir)
    failed = [r.spec.name for r in runs if r.status == "failed"]
    if failed:
        print(f"error: {len(failed)} of {len(runs)} models failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    cli.run_app(_command)
