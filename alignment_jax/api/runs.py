"""Whole runs from a notebook: `get_config` loads a run config as the command line does (`--config=...`, then
`--config.a.b=...` overrides), `run` executes its stages into a workdir and returns what results.json holds."""

import dataclasses
import os
from pathlib import Path

import ml_collections

from alignment_jax.config import files
from alignment_jax.errors import InputError

CONFIGS = Path(__file__).resolve().parent.parent.parent / "configs"  # the repository's configs/


@dataclasses.dataclass(frozen=True)
class RunResult:
    """workdir: the run's folder; results: results.json as a dict (one section per stage); report: the path of
    report.md ("" when the report stage did not run)."""

    workdir: str
    results: dict
    report: str


def config_path(name_or_path: str) -> tuple[str, str]:
    """ "demo", "demo:features=True", "configs/vit_b16.py:runlocal=True" -> (file, argument)."""
    if not isinstance(name_or_path, str | os.PathLike) or not os.fspath(name_or_path):
        raise InputError(f"get_config: {name_or_path!r}; give a config name (e.g. 'demo') or a path to a .py file")
    text = os.fspath(name_or_path)
    head, _, arg = text.partition(":") if not os.path.isfile(text) else (text, "", "")
    for candidate in (head, f"{head}.py", os.path.join("configs", f"{head}.py"), str(CONFIGS / f"{head}.py")):
        if os.path.isfile(candidate) and candidate.endswith(".py"):
            return candidate, arg
    known = ", ".join(sorted(p.stem for p in CONFIGS.glob("*.py"))) if CONFIGS.is_dir() else "(none found)"
    raise InputError(f"get_config: {text!r} is neither a config file nor a config name (names: {known})")


def get_config(name_or_path: str, **overrides) -> ml_collections.ConfigDict:
    """The run config of a config file (`get_config(ARG)` for NAME:ARG) with fields overridden:
    get_config("demo:features=True", seed=1, **{"probe.lambdas": (0.1, 0.01)}); a double underscore also
    separates sections (probe__folds=5). Unknown fields name the closest valid one."""
    path, arg = config_path(name_or_path)
    config = files.load_config(path, arg)
    for key, value in overrides.items():
        files.set_field(config, key.replace("__", "."), value, source="get_config")
    return config


def run(config: ml_collections.ConfigDict, workdir: str) -> RunResult:
    """Runs the config's stages (alignment_jax.probe.run: the command line's run) into `workdir`."""
    from alignment_jax import probe

    if not isinstance(workdir, str | os.PathLike) or not os.fspath(workdir):
        raise InputError(f"run: workdir={workdir!r}; give the folder the run writes to")
    ctx = probe.run(config, os.fspath(workdir))
    report = os.path.join(ctx.workdir, "report.md")
    return RunResult(ctx.workdir, ctx.results, report if "report" in ctx.results else "")
