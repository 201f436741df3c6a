"""The run's report: results.json sections as tables (plain text for the log, Markdown for `report.md`)
and the figures, from whichever sections exist.

Sections read (each optional): `zero_shot` {accuracy, ci95, n_triplets, similarity, noise_ceiling?},
`probe` {best_lambda, cv_accuracy, test_accuracy, ...}, `transfer` [{dataset, kernel, spearman, pearson,
spearman_transformed, pearson_transformed}], `transfer_triplets` [{dataset, n_triplets, accuracy,
accuracy_transformed}], `concepts` [{concept, n_triplets, accuracy, accuracy_transformed}], `layers` and
`best_layer` (model.layers: report/depth.py).
"""

import dataclasses
import os
from typing import Any

from alignment_jax import atomic
from alignment_jax.report import depth, plots

PLOT_DIR = "plots"


@dataclasses.dataclass(frozen=True)
class Table:
    """A titled table of already formatted cells; `plot` names the figure that goes with it."""

    title: str
    headers: tuple[str, ...]
    rows: list[tuple[str, ...]]
    note: str = ""
    plot: str = ""


def tables(results: dict[str, Any]) -> list[Table]:
    """The tables of every section present in `results`, in reading order."""
    out = []
    accuracy = _accuracy_table(results)
    if accuracy:
        out.append(accuracy)
    layers = depth.table(results, _fmt)
    if layers:
        out.append(Table(*layers, plot="depth"))
    if results.get("probe"):
        probe = results["probe"]
        keys = [
            k
            for k in ("best_lambda", "cv_cross_entropy", "test_cross_entropy", "test_zero_shot_transformed", "seconds")
            if k in probe
        ]
        out.append(Table("Probe", ("setting", "value"), [(k, _fmt(probe[k])) for k in keys]))
    if results.get("transfer"):
        columns = ("dataset", "kernel", "spearman", "spearman_transformed", "pearson", "pearson_transformed")
        rows = [tuple(_with_ci(r, c) for c in columns) for r in results["transfer"]]
        headers = ("dataset", "kernel", "Spearman", "Spearman (transformed)", "Pearson", "Pearson (transformed)")
        out.append(Table("Transfer: RSA with other human datasets", headers, rows, plot="rsa"))
    if results.get("transfer_triplets"):
        columns = ("dataset", "n_triplets", "accuracy", "accuracy_transformed")
        rows = [tuple(_fmt(r.get(c)) for c in columns) for r in results["transfer_triplets"]]
        headers = ("dataset", "triplets", "zero-shot", "transformed")
        out.append(Table("Transfer: odd-one-out on other triplet datasets", headers, rows))
    if results.get("concepts"):
        ordered = sorted(
            results["concepts"], key=lambda r: -1.0 if r["accuracy"] is None else r["accuracy"], reverse=True
        )
        columns = ("concept", "n_triplets", "accuracy", "accuracy_transformed")
        rows = [tuple(_fmt(r.get(c)) for c in columns) for r in ordered]
        headers = ("concept", "triplets", "zero-shot", "transformed")
        out.append(Table("Per-concept accuracy", headers, rows, plot="concepts"))
    return out


def make_plots(results: dict[str, Any], workdir: str) -> dict[str, str]:
    """Draws the figures the sections allow into workdir/plots/; returns {name: path relative to workdir}."""
    made = {}
    bars = _accuracy_bars(results)
    if bars:
        made["accuracy"] = os.path.join(PLOT_DIR, "accuracy.png")
        baselines = sum(label.startswith("zero-shot") for label, _, _ in bars)
        plots.plot_accuracy(os.path.join(workdir, made["accuracy"]), bars, _noise_ceiling(results), baselines)
    if depth.plot(os.path.join(workdir, PLOT_DIR, "depth.png"), results, _noise_ceiling(results)):
        made["depth"] = os.path.join(PLOT_DIR, "depth.png")
    if results.get("transfer"):
        made["rsa"] = os.path.join(PLOT_DIR, "rsa.png")
        plots.plot_rsa(os.path.join(workdir, made["rsa"]), results["transfer"])
    if any(r["n_triplets"] > 0 for r in results.get("concepts") or ()):
        made["concepts"] = os.path.join(PLOT_DIR, "concepts.png")
        plots.plot_concepts(os.path.join(workdir, made["concepts"]), results["concepts"])
    return made


def text_table(table: Table) -> list[str]:
    """A table as aligned plain-text lines (title, header, rule, rows)."""
    widths = [max(len(cell) for cell in column) for column in zip(table.headers, *table.rows, strict=True)]
    line = lambda cells: "  ".join(
        cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
    )
    lines = [table.title, line(table.headers), "  ".join("-" * w for w in widths)]
    lines += [line(row) for row in table.rows]
    return lines + ([table.note] if table.note else [])


def markdown(results: dict[str, Any], figures: dict[str, str]) -> str:
    """The report as Markdown: one section per table, each followed by its figure when there is one."""
    parts = ["# Human alignment report", ""]
    sections = tables(results)
    if not sections:
        parts += ["No results yet: run the zero_shot, probe, transfer or concepts stages first.", ""]
    for table in sections:
        parts += [f"## {table.title}", ""]
        parts.append("| " + " | ".join(table.headers) + " |")
        parts.append("|" + "|".join(":--" if i == 0 else "--:" for i in range(len(table.headers))) + "|")
        parts += ["| " + " | ".join(row) + " |" for row in table.rows]
        parts.append("")
        if table.note:
            parts += [table.note, ""]
        if table.plot in figures:
            parts += [f"![{table.title}]({figures[table.plot]})", ""]
    return "\n".join(parts)


def write_report(results: dict[str, Any], workdir: str, draw: bool = True) -> dict[str, Any]:
    """Writes workdir/report.md (and the figures when `draw`); returns {"markdown", "plots"} relative paths."""
    figures = make_plots(results, workdir) if draw else {}
    atomic.write_text(os.path.join(workdir, "report.md"), markdown(results, figures))
    return {"markdown": "report.md", "plots": figures}


def _accuracy_bars(results: dict[str, Any]) -> list[tuple[str, float, tuple[float, float] | None]]:
    """Zero-shot accuracy over all triplets and on the test split, then the probe's CV and test accuracy."""
    bars = []
    zero_shot = results.get("zero_shot") or {}
    has_test = _is_number(zero_shot.get("test_accuracy"))
    for key, label in (("", "zero-shot (all)" if has_test else "zero-shot"), ("test_", "zero-shot (test)")):
        if _is_number(zero_shot.get(f"{key}accuracy")):
            bars.append((label, zero_shot[f"{key}accuracy"], _interval(zero_shot.get(f"{key}ci95"))))
    probe = results.get("probe") or {}
    for key, label in (("cv_accuracy", "probe (CV)"), ("test_accuracy", "probe (test)")):
        if _is_number(probe.get(key)):
            bars.append((label, probe[key], None))
    return bars


def _interval(ci: Any) -> tuple[float, float] | None:
    return tuple(ci) if isinstance(ci, list | tuple) and len(ci) == 2 and all(_is_number(v) for v in ci) else None


def _accuracy_table(results: dict[str, Any]) -> Table | None:
    bars = _accuracy_bars(results)
    if not bars:
        return None
    zero_shot = results.get("zero_shot") or {}
    rows = [(label, _fmt(value), _fmt(list(ci)) if ci else "-") for label, value, ci in bars]
    note = f"Chance: {plots.CHANCE:.3f}."
    if _noise_ceiling(results) is not None:
        note += f" Noise ceiling: {_noise_ceiling(results):.3f}."
    if zero_shot.get("similarity"):
        note += f" Zero-shot similarity: {zero_shot['similarity']}, {_fmt(zero_shot.get('n_triplets'))} triplets."
    return Table("Odd-one-out accuracy (THINGS)", ("", "accuracy", "95% CI"), rows, note=note, plot="accuracy")


def _with_ci(row: dict[str, Any], column: str) -> str:
    """A cell, followed by its bootstrap interval when the row has one (`<column>_ci95`)."""
    ci = row.get(f"{column}_ci95")
    return _fmt(row.get(column)) + (f" {_fmt(list(ci))}" if ci else "")


def _noise_ceiling(results: dict[str, Any]) -> float | None:
    value = (results.get("zero_shot") or {}).get("noise_ceiling")
    if isinstance(value, dict):  # a section of its own, e.g. {"accuracy": ..., "n_triplets": ...}
        value = value.get("accuracy")
    return float(value) if _is_number(value) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        return f"{value:.3f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)
