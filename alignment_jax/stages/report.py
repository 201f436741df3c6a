"""Stage `report`: every results section present as text tables in the log, plus DIR/report.md with plots.

Works with any subset of the sections zero_shot, probe, transfer, transfer_triplets and concepts.
"""

import os

import jax
import ml_collections

from alignment_jax import provenance as facts
from alignment_jax.report import markdown as report
from alignment_jax.run_context import RunContext, section_digest

READS = ("results", "section_facts", "sections", "workdir")
SETTINGS = ("report",)

OUTPUTS = ("report.md", report.PLOT_DIR)
REUSE = False  # cheap, and it prints the tables: always rerun


def has_inputs(config: ml_collections.ConfigDict) -> bool:
    return True


def provenance(ctx: RunContext) -> dict:
    """The report summarizes the other sections: their provenance digests, and the report settings."""
    sections = {name: ctx.section_facts(name) for name in ctx.sections() if name != "report"}
    found = {f"section:{name}": section_digest(f) for name, f in sections.items() if f is not None}
    return {**found, **facts.settings(ctx.config, "report")}


def run(ctx: RunContext) -> dict | None:
    """Returns the `report` section: {"markdown": "report.md", "plots": {name: "plots/<name>.png"}} (None on
    processes other than 0)."""
    results = {k: v for k, v in ctx.results.items() if k != "report"}
    if report.synthetic(results):
        ctx.log("")
        ctx.log(f"note: {report.SYNTHETIC}")
    for table in report.tables(results):
        ctx.log("")
        for line in report.text_table(table):
            ctx.log(line)
    if jax.process_index() != 0:  # report.md and the plots show results.json, which process 0 alone writes
        return None
    written = report.write_report(results, ctx.workdir, draw=ctx.config.report.plots)
    ctx.log(f"report: {os.path.join(ctx.workdir, written['markdown'])}")
    return written
