"""A stage sees only what it declares: every stage module's READS/WRITES cover what its code reads and sets of
the run context, and its SETTINGS the settings its code reads, also through the stage helpers it hands the
context (or config) to; the StageView and its config, a SettingsView, refuse the rest."""

import pathlib
import re

import pytest

from alignment_jax import probe, stages
from alignment_jax.config.base import base_config
from alignment_jax.run_context import RunContext

STAGES_DIR = pathlib.Path(stages.__file__).parent
MODULES = sorted(p.stem for p in STAGES_DIR.glob("*.py") if p.stem != "__init__")


def _source(name: str) -> str:
    return (STAGES_DIR / f"{name}.py").read_text()


def _helpers(name: str, handed: str = "ctx") -> set[str]:
    """The stage modules that module `name` hands the context to (`handed`: a regex of the names handed):
    `helper.f(ctx` or an imported `f(ctx`."""
    source, called = _source(name), set()
    for names in re.findall(r"^from alignment_jax\.stages import ([\w ,]+)$", source, re.M):
        for item in names.split(","):
            module, _, alias = item.strip().partition(" as ")
            if re.search(rf"\b{alias or module}\.\w+\((?:{handed})\b", source):
                called.add(module)
    for module, names in re.findall(r"^from alignment_jax\.stages\.(\w+) import ([\w ,]+)$", source, re.M):
        if any(re.search(rf"(?<![.\w]){f.strip()}\((?:{handed})\b", source) for f in names.split(",")):
            called.add(module)
    return called


def _settings_used(source: str) -> set[str]:
    """The settings a module's code reads: `config.a.b...` chains (a trailing method name included) and the
    fields named in `f(config, "a.b", ...)` calls (checks.integer, provenance.settings)."""
    used = set(re.findall(r"(?:(?<=ctx\.)|(?<![.\w]))config((?:\.[A-Za-z_]\w*)+)", source))
    used = {chain[1:] for chain in used}
    for fields in re.findall(r"\(\s*(?:ctx\.)?config,((?:\s*\"[\w.]+\",?)+)", source):
        used |= set(re.findall(r"\"([\w.]+)\"", fields))
    return used


def _covered(key: str, declared: set[str]) -> bool:
    return any(key == d or key.startswith(d + ".") for d in declared)


@pytest.mark.parametrize("name", MODULES)
def test_declarations_cover_what_the_code_reads_and_sets(name):
    module = stages.load(name)
    source = _source(name)
    reads = set(getattr(module, "READS", ())) | set(stages.StageView.ALWAYS)
    used = set(re.findall(r"\bctx\.([A-Za-z_]\w*)", source))
    assert used <= reads, f"{name} reads {sorted(used - reads)} without declaring them"
    sets = set(re.findall(r"\bctx\.([A-Za-z_]\w*)\s*=[^=]", source))
    assert sets <= set(getattr(module, "WRITES", ())), f"{name} sets {sorted(sets)}"
    for helper in _helpers(name):
        needed = set(stages.load(helper).READS) - reads
        assert not needed, f"{name} hands ctx to {helper}, which reads {sorted(needed)}"


@pytest.mark.parametrize("name", MODULES)
def test_settings_cover_what_the_code_reads(name):
    declared = set(stages.load(name).SETTINGS)
    if declared == set(stages.ALL_SETTINGS):
        return
    used = _settings_used(_source(name))
    missing = sorted(key for key in used if not _covered(key, declared))
    assert not missing, f"{name} reads config.{missing} without declaring them in its SETTINGS"
    for helper in _helpers(name, "ctx|config"):
        needed = [key for key in stages.load(helper).SETTINGS if not _covered(key, declared)]
        assert not needed, f"{name} hands ctx or config to {helper}, which reads {needed}"


def test_every_stage_declares_and_the_helpers_are_found():
    assert all(hasattr(stages.load(name), "READS") for name in stages.ORDER)
    assert _helpers("zero_shot") == {"inputs", "statistics", "given_transform", "layers"}
    assert _helpers("student") == {"inputs", "teacher"}
    assert _helpers("levels", "ctx|config") == {"extract", "given_transform", "layers"}
    code = 'checks.integer(config, "a.b", minimum=0)\nx = ctx.config.c.d.strip()'
    assert _settings_used(code) == {"a.b", "c.d.strip"}


def test_the_view_passes_declared_members_and_refuses_the_rest(tmp_path):
    ctx = RunContext(base_config(), str(tmp_path / "run"))
    view = stages.StageView(ctx, stages.load("report"))
    assert view.workdir == ctx.workdir and view.config.report.plots == ctx.config.report.plots
    with pytest.raises(AttributeError, match=r"alignment_jax\.stages\.report reads ctx\.things without declaring"):
        assert view.things is None  # never reached: the view refuses
    with pytest.raises(AttributeError, match="sets ctx.features_path without declaring it in its WRITES"):
        view.features_path = "x.npy"
    world = stages.StageView(ctx, stages.load("world"))
    world.features_path = "x.npy"
    assert ctx.features_path == "x.npy" and world.config is ctx.config  # ALL_SETTINGS: the config itself


def test_the_config_view_passes_declared_settings_and_refuses_the_rest():
    config = base_config()
    report_view = stages.settings_view(config, stages.load("report"))
    assert report_view.report.plots == report_view["report"]["plots"] == config.report.plots
    with pytest.raises(AttributeError, match=r"^alignment_jax\.stages\.report reads config\.glocal without declaring"):
        assert report_view.glocal is None  # never reached: the view refuses
    with pytest.raises(AttributeError, match="report reads config.seed without declaring it in its SETTINGS"):
        assert report_view["seed"] is None
    probe_view = stages.settings_view(config, stages.load("probe"))  # concepts.layers only, of its section
    assert probe_view.probe.lambdas == tuple(config.probe.lambdas)
    assert probe_view.probe.local.heldout == config.probe.local.heldout
    assert probe_view.concepts.layers == config.concepts.layers
    with pytest.raises(AttributeError, match="probe reads config.concepts.embedding without declaring"):
        assert probe_view.concepts.embedding is None
    for write in (
        lambda: setattr(probe_view, "seed", 1),
        lambda: setattr(probe_view.concepts, "layers", "all"),
        lambda: setattr(probe_view.probe, "lambdas", (1.0,)),
        lambda: setattr(probe_view.probe.local, "heldout", 1),
    ):
        with pytest.raises(AttributeError):
            write()
    assert config == base_config()


def test_a_stage_without_provenance_is_computed_from_its_settings(tmp_path, monkeypatch):
    ctx = RunContext(base_config(), str(tmp_path / "run"))
    monkeypatch.delattr(stages.load("report"), "provenance")
    assert probe.facts_of(ctx, "report") == {"config:report.plots": ctx.config.report.plots}
