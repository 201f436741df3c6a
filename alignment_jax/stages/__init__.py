"""The stages of a run, in order; one module per stage.

Each stage module defines:
  has_inputs(config) -> bool  whether the config names what the stage needs (used when `config.stages`
                              is empty: a stage runs if its inputs are there when its turn comes);
  check(config) -> None       optional: raises InputError for a bad setting of the stage; every stage's
                              check runs before the first stage does anything;
  run(ctx: RunContext)        returns the stage's section of results.json: a dict, or a list of rows
                              (transfer, concepts); None writes nothing.

world (demo data) -> extract (features from images) -> zero_shot -> probe (transform.npz) -> transfer ->
concepts -> report (report.md, plots): each reads what the stages before it wrote.
"""

import importlib
from types import ModuleType

ORDER = ("world", "extract", "zero_shot", "probe", "transfer", "concepts", "report")


def load(name: str) -> ModuleType:
    """The module of stage `name`."""
    return importlib.import_module(f"alignment_jax.stages.{name}")
