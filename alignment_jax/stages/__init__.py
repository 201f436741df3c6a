"""The stages of a run, in order; one module per stage.

Each stage module defines:
  has_inputs(config) -> bool   whether the config names what the stage needs (used when
                               `config.stages` is empty: every stage whose inputs are there runs);
  run(ctx: RunContext) -> dict the stage's section of results.json (None to write nothing).
"""

import importlib
from types import ModuleType

ORDER = ("world", "extract", "zero_shot", "probe", "transfer", "concepts", "report")


def load(name: str) -> ModuleType:
    """The module of stage `name`."""
    return importlib.import_module(f"alignment_jax.stages.{name}")
