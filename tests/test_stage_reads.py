"""A stage sees only what it declares: every stage module's READS/WRITES cover what its code reads and sets of
the run context, also through the stage helpers it hands the context to, and the StageView refuses the rest."""

import pathlib
import re

import pytest

from alignment_jax import stages
from alignment_jax.config.base import base_config
from alignment_jax.run_context import RunContext

STAGES_DIR = pathlib.Path(stages.__file__).parent
MODULES = sorted(p.stem for p in STAGES_DIR.glob("*.py") if p.stem != "__init__")


def _source(name: str) -> str:
    return (STAGES_DIR / f"{name}.py").read_text()


def _helpers(name: str) -> set[str]:
    """The stage modules that module `name` hands the context to: `helper.f(ctx` or an imported `f(ctx`."""
    source, called = _source(name), set()
    for names in re.findall(r"^from alignment_jax\.stages import ([\w ,]+)$", source, re.M):
        for item in names.split(","):
            module, _, alias = item.strip().partition(" as ")
            if re.search(rf"\b{alias or module}\.\w+\(ctx\b", source):
                called.add(module)
    for module, names in re.findall(r"^from alignment_jax\.stages\.(\w+) import ([\w ,]+)$", source, re.M):
        if any(re.search(rf"(?<![.\w]){f.strip()}\(ctx\b", source) for f in names.split(",")):
            called.add(module)
    return called


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


def test_every_stage_declares_and_the_helpers_are_found():
    assert all(hasattr(stages.load(name), "READS") for name in stages.ORDER)
    assert _helpers("zero_shot") == {"inputs", "statistics", "given_transform", "layers"}
    assert _helpers("student") == {"inputs", "teacher"}


def test_the_view_passes_declared_members_and_refuses_the_rest(tmp_path):
    ctx = RunContext(base_config(), str(tmp_path / "run"))
    view = stages.StageView(ctx, stages.load("report"))
    assert view.workdir == ctx.workdir and view.config is ctx.config
    with pytest.raises(AttributeError, match=r"alignment_jax\.stages\.report reads ctx\.things without declaring"):
        assert view.things is None  # never reached: the view refuses
    with pytest.raises(AttributeError, match="sets ctx.features_path without declaring it in its WRITES"):
        view.features_path = "x.npy"
    world = stages.StageView(ctx, stages.load("world"))
    world.features_path = "x.npy"
    assert ctx.features_path == "x.npy"
