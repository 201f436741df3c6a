"""The stages of a run, in order; one module per stage.

Each stage module defines:
  has_inputs(config) -> bool  whether the config names what the stage needs (used when `config.stages`
                              is empty: a stage runs if its inputs are there when its turn comes);
  check(config) -> None       optional: raises InputError for a bad setting of the stage (settings only, no
                              file is read); runs for every stage the run will execute before anything is
                              written (alignment_jax/config/checks.py has the checks of single values);
  check_inputs(ctx) -> None   optional: reads and validates the stage's input files; runs after the world
                              stage made the demo's inputs and before the extract stage (nothing slow ran);
  provenance(ctx) -> dict     optional: what its section is computed from (alignment_jax/provenance.py;
                              without it, the values of its SETTINGS); a rerun whose facts differ moves
                              the earlier outputs aside before writing, and a finished section with the
                              same facts is kept instead of recomputed;
  run(ctx: RunContext)        returns the stage's section of results.json: a dict, or a list of rows
                              (transfer, concepts); None writes nothing; a StageResult when it computed
                              further sections too (per-layer entries, comparisons) or wrote files whose
                              digests a rerun checks (transform.npz). The run records them all
                              (alignment_jax/probe.py): no stage writes results.json or another stage's
                              section, and none reads the run's plan (a transform made before this run is
                              the declared input ctx.earlier_transform).
  READS      the members of the run context (alignment_jax/run_context.py) that the module reads, its own and
             those of the stage helpers it hands the context to (`*layers.READS`); WRITES, those it sets.
             Its functions above receive a `StageView` of the context, which has the config, `log` and these
             only: a stage reads the inputs it declares and nothing else;
  SETTINGS   the settings it reads, config sections ("probe") or dotted keys ("zero_shot.bootstrap"), its own
             and those of the helpers it hands the context or config to (`*layers.SETTINGS`): check(config)
             and `ctx.config` are a read-only `SettingsView` that has these only (the world stage, which points
             the config at the files it writes, declares ALL_SETTINGS and gets the config itself).
             tests/test_stage_reads.py checks every module's declarations against its code;
and optionally the constants
  OUTPUTS    files and folders of the workdir it writes besides results.json (moved aside with it);
  REUSE      False: always rerun, even when its section is finished with the same facts (report);
  MEMORY     the settings to lower when it runs out of device memory.

world (demo data) -> extract (features from images) -> zero_shot -> probe (transform.npz) -> levels -> teacher
(AligNet-format triplets labelled with the transform) -> student (a probe on them alone) -> transfer -> concepts ->
report (report.md, plots): each reads what the stages before it wrote (levels, after the probe, evaluates the
transform it learned in the same run on the Levels triplets). The INPUTS stages make the run's inputs in the
workdir's caches (DIR/world, DIR/features); the others write its outputs.
Beside the stages, modules that several stages share (not stages themselves): inputs.py (THINGS data and
features present), layers.py (model.layers: results.json `layers`, per-layer transforms), statistics.py
(noise ceiling, intervals, paired comparisons, decisions.npz), given_transform.py (config.transform instead
of the probe), local_inputs.py (gLocal's local image set and locality measures), alignet_inputs.py (AligNet's
triplet files and their image set, which the probe trains on instead of THINGS).
SHARED_OUTPUTS are outputs that several stages add to (decisions.npz: zero_shot and probe outcomes per test
triplet) or that only some runs write (transforms/<layer>/: model.layers): moved aside with the other
outputs, never a reason on their own to redo a stage.
"""

import dataclasses
import importlib
from types import ModuleType
from typing import Any

import ml_collections

ORDER = (
    "world", "extract", "zero_shot", "probe", "levels", "teacher", "student", "transfer", "concepts", "report",
)  # fmt: skip
INPUTS = ("world", "extract")
SHARED_OUTPUTS = ("decisions.npz", "transforms")
ALL_SETTINGS = ("*",)  # SETTINGS of the world stage: every setting, the config itself


@dataclasses.dataclass(frozen=True)
class StageResult:
    """What `run` returns when a stage computed more than its own section: `section`, its own (as a plain
    return value would be), `more`, further sections of results.json it computed ({name: value}: the
    per-layer entries `layers` and `best_layer`, `comparisons`, `transform`, `transfer_triplets`), and `files`,
    workdir-relative files it wrote whose sha256 its provenance records (`output:<file>`: a rerun redoes the
    stage when one changed). The run (alignment_jax/probe.py) records them, the section first, then `more` in
    order; no stage records any."""

    section: Any
    more: dict[str, Any] = dataclasses.field(default_factory=dict)
    files: tuple[str, ...] = ()


def load(name: str) -> ModuleType:
    """The module of stage `name`."""
    return importlib.import_module(f"alignment_jax.stages.{name}")


class SettingsView:
    """A read-only view of a config that has only the `declared` settings of stage `owner`: a declared section
    (or a section below a declared key) is a FrozenConfigDict copy, a section holding declared keys a
    SettingsView of them; any other setting, and any write, is an AttributeError naming the stage."""

    def __init__(self, config: ml_collections.ConfigDict, declared: frozenset[str], owner: str, prefix: str = ""):
        object.__setattr__(self, "_config", config)
        object.__setattr__(self, "_declared", declared)
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_prefix", prefix)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        key = self._prefix + name
        if any(key == d or key.startswith(d + ".") for d in self._declared):
            value = self._config[name]
            return ml_collections.FrozenConfigDict(value) if isinstance(value, ml_collections.ConfigDict) else value
        if any(d.startswith(key + ".") for d in self._declared):
            return SettingsView(self._config[name], self._declared, self._owner, key + ".")
        raise AttributeError(f"{self._owner} reads config.{key} without declaring it in its SETTINGS")

    __getitem__ = __getattr__

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{self._owner} sets config.{self._prefix}{name}: a stage's settings are read-only")

    __setitem__ = __setattr__


def settings_view(config: ml_collections.ConfigDict, stage: ModuleType) -> Any:
    """What `stage` sees of `config`: a SettingsView of its SETTINGS, or the config itself (ALL_SETTINGS)."""
    declared = getattr(stage, "SETTINGS", ())
    if declared == ALL_SETTINGS:
        return config
    return SettingsView(config, frozenset(declared), stage.__name__)


class StageView:
    """What a stage sees of the run context: `config` (its SETTINGS: `settings_view`), `log` and the members its
    module declares in READS (set only those in WRITES); any other member is an error naming the stage, so a
    stage cannot depend on an input it did not declare."""

    ALWAYS = ("config", "log")

    def __init__(self, ctx: Any, stage: ModuleType):
        object.__setattr__(self, "_ctx", ctx)
        object.__setattr__(self, "_stage", stage)
        object.__setattr__(self, "_reads", frozenset((*self.ALWAYS, *getattr(stage, "READS", ()))))
        object.__setattr__(self, "_writes", frozenset(getattr(stage, "WRITES", ())))

    @property
    def config(self) -> Any:
        return settings_view(self._ctx.config, self._stage)

    def __getattr__(self, name: str) -> Any:
        if name not in self._reads:
            raise AttributeError(f"{self._stage.__name__} reads ctx.{name} without declaring it in its READS")
        return getattr(self._ctx, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._writes:
            raise AttributeError(f"{self._stage.__name__} sets ctx.{name} without declaring it in its WRITES")
        setattr(self._ctx, name, value)
