"""The run's report: results.json sections as tables (plain text for the log, Markdown for `report.md`)
and the figures, from whichever sections exist.

Sections read (each optional): `zero_shot` {accuracy, ci95, n_triplets, similarity, test_accuracy?,
test_ci95?, noise_ceiling? {accuracy, ci95, source, n_sets, n_responses, note?}}, `probe` {best_lambda,
cv_accuracy, cv_accuracy_{std,min,max}?, test_accuracy, test_accuracy_ci95?, test_zero_shot_transformed?,
test_zero_shot_transformed_ci95?, ...}, `comparisons` [{a, b, n_triplets, difference, ci95, p_value, a_only,
b_only}], `transfer` [{dataset, kernel, spearman, pearson, spearman_transformed, pearson_transformed,
<metric>_ci95?}], `transfer_triplets` [{dataset, n_triplets, accuracy, ci95?, accuracy_transformed,
ci95_transformed?}], `levels` {<level>: {accuracy, ci95, noise_ceiling, temperature, nll, entropy_spearman,
rt_spearman, *_transformed?}, entropy_curves}, `concepts` [{concept, n_triplets, accuracy, accuracy_transformed,
accuracy_ci95?, accuracy_transformed_ci95?}], `transform` (a given transform: {source, test_accuracy,
local_*}), `layers` and `best_layer` (model.layers: report/depth.py). Every key marked ? may be missing (older
results, settings without it).
"""

import dataclasses
import os
from typing import Any

from alignment_jax import atomic
from alignment_jax.report import depth, plots

PLOT_DIR = "plots"
LOCAL_KEYS = ("local_knn_overlap", "local_heldout_loss", "local_tau", "local_n_heldout")  # locality of a transform
PROBE_KEYS = (
    *("objective", "best_lambda", "best_alpha", "best_tau", "cv_cross_entropy", "cv_local_loss", "cv_loss"),
    *("test_cross_entropy", "seconds", *LOCAL_KEYS),
)
# What the report calls the keys of the probe and transform sections (results.json keeps the keys)
READABLE = {
    "objective": "objective",
    "best_lambda": "selected lambda",
    "best_alpha": "selected alpha (weight of the local term)",
    "best_tau": "selected tau (temperature)",
    "cv_cross_entropy": "validation cross-entropy (mean over folds)",
    "cv_local_loss": "validation local loss (mean over folds)",
    "cv_loss": "validation loss, triplet + local (mean over folds)",
    "test_cross_entropy": "test cross-entropy",
    "seconds": "time (s)",
    "local_knn_overlap": "10-NN overlap of held-out local images",
    "local_heldout_loss": "held-out local loss",
    "local_tau": "tau of the held-out local loss",
    "local_n_heldout": "held-out local images",
    "source": "file",
    "test_accuracy": "test accuracy",
}
SYNTHETIC = (
    "These numbers come from the bundled synthetic demo world (planted concepts, simulated people, a tiny model): "
    "they show that the pipeline works, not how any real model or person behaves."
)


def synthetic(results: dict[str, Any]) -> bool:
    """Whether the run's data came from the demo world (its `world` section)."""
    return bool(results.get("world"))


def _titled(results: dict[str, Any], title: str) -> str:
    return f"{title} (synthetic demo data)" if synthetic(results) else title


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
        keys = [k for k in PROBE_KEYS if k in probe]
        out.append(Table("Probe", ("setting", "value"), [(READABLE[k], _fmt(probe[k])) for k in keys]))
        if probe.get("global_probe"):
            out.append(_side_by_side(probe))
    if results.get("student"):  # AligNet's loop (docs/alignet.md): the student beside its teacher
        student = results["student"]
        rows = [
            (name, _fmt(student.get(key)))
            for name, key in (
                ("zero-shot", "zero_shot_test_accuracy"),
                ("teacher (probe on human triplets)", "teacher_test_accuracy"),
                (f"student ({student['objective']} on {student['n_triplets']:,} teacher triplets)", "test_accuracy"),
            )
        ]
        out.append(Table("AligNet: student trained on teacher triplets alone", ("", "test accuracy"), rows))
    if results.get("comparisons"):
        out.append(_comparisons_table(results["comparisons"]))
    if results.get("transform"):  # a given transform (config.transform)
        given = results["transform"]
        keys = [k for k in ("source", "test_accuracy", "test_cross_entropy", *LOCAL_KEYS) if k in given]
        out.append(Table("Given transform", ("", "value"), [(READABLE[k], _fmt(given[k])) for k in keys]))
    if results.get("transfer"):
        columns = ("dataset", "kernel", "spearman", "spearman_transformed", "pearson", "pearson_transformed")
        rows = [tuple(_with_ci(r, c) for c in columns) for r in results["transfer"]]
        headers = ("dataset", "kernel", "Spearman", "Spearman (transformed)", "Pearson", "Pearson (transformed)")
        out.append(Table("Transfer: RSA with other human datasets", headers, rows, plot="rsa"))
    if results.get("transfer_triplets"):
        rows = [
            (
                _fmt(r.get("dataset")),
                _fmt(r.get("n_triplets")),
                _fmt(r.get("accuracy")) + _ci_suffix(r.get("ci95")),
                _fmt(r.get("accuracy_transformed")) + _ci_suffix(r.get("ci95_transformed")),
            )
            for r in results["transfer_triplets"]
        ]
        headers = ("dataset", "triplets", "zero-shot", "transformed")
        out.append(Table("Transfer: odd-one-out on other triplet datasets", headers, rows))
    if isinstance(results.get("levels"), dict):
        out += _levels_tables(results["levels"])
    if results.get("concepts"):
        ordered = sorted(
            results["concepts"], key=lambda r: -1.0 if r["accuracy"] is None else r["accuracy"], reverse=True
        )
        columns = ("concept", "n_triplets", "accuracy", "accuracy_transformed")
        rows = [tuple(_with_ci(r, c) for c in columns) for r in ordered]
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
        ceiling, interval = noise_ceiling(results), _ceiling_interval(results)
        title = _titled(results, "Odd-one-out accuracy")
        plots.plot_accuracy(os.path.join(workdir, made["accuracy"]), bars, ceiling, baselines, interval, title=title)
    depth_title = _titled(results, "Odd-one-out accuracy through the depth of the network")
    if depth.plot(os.path.join(workdir, PLOT_DIR, "depth.png"), results, noise_ceiling(results), depth_title):
        made["depth"] = os.path.join(PLOT_DIR, "depth.png")
    if results.get("transfer"):
        made["rsa"] = os.path.join(PLOT_DIR, "rsa.png")
        title = _titled(results, "RSA with human similarity judgments")
        plots.plot_rsa(os.path.join(workdir, made["rsa"]), results["transfer"], title=title)
    levels = _levels_rows(results)
    if levels:
        made["levels"] = os.path.join(PLOT_DIR, "levels.png")
        title = _titled(results, "Levels: odd-one-out accuracy per abstraction level")
        plots.plot_levels(os.path.join(workdir, made["levels"]), levels, title=title)
        if results["levels"].get("entropy_curves"):
            made["levels_entropy"] = os.path.join(PLOT_DIR, "levels_entropy.png")
            title = _titled(results, "Levels: model entropy against human entropy")
            plots.plot_levels_entropy(
                os.path.join(workdir, made["levels_entropy"]), results["levels"]["entropy_curves"], title=title
            )
    if any(r["n_triplets"] > 0 for r in results.get("concepts") or ()):
        made["concepts"] = os.path.join(PLOT_DIR, "concepts.png")
        title = _titled(results, "Odd-one-out accuracy per concept")
        plots.plot_concepts(os.path.join(workdir, made["concepts"]), results["concepts"], title=title)
    return made


LEVELS = ("within_class", "class_border", "between_class", "all")


def _levels_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The levels section's per-level entries that have triplets, as rows with their `level` name."""
    section = results.get("levels")
    if not isinstance(section, dict):
        return []
    return [
        {"level": name, **section[name]}
        for name in LEVELS
        if isinstance(section.get(name), dict) and section[name].get("n_triplets")
    ]


def _levels_tables(section: dict[str, Any]) -> list[Table]:
    """Levels (docs/levels.md): accuracy per abstraction level before and after the transform against its noise
    ceiling, and the uncertainty measures."""
    rows = _levels_rows({"levels": section})
    if not rows:
        return []
    after = any("accuracy_transformed" in r for r in rows)
    cells = []
    for r in rows:
        cell = [r["level"], _fmt(r["n_triplets"]), _fmt(r["accuracy"]) + _ci_suffix(r.get("ci95"))]
        if after:
            cell.append(_fmt(r.get("accuracy_transformed")) + _ci_suffix(r.get("ci95_transformed")))
        cell += [_fmt(r.get("noise_ceiling")), _fmt(r.get("entropy_spearman"))]
        if after:
            cell.append(_fmt(r.get("entropy_spearman_transformed")))
        cells.append(tuple(cell))
    headers = ["level", "triplets", "accuracy"] + (["transformed"] if after else [])
    headers += ["noise ceiling", "entropy Spearman"] + (["(transformed)"] if after else [])
    dropped = section.get("dropped_trials") or {}
    note = (
        f"Levels odd-one-out ({_fmt(section.get('similarity'))} similarity, {_fmt(section.get('n_images'))} images): "
        "accuracy = fraction of the 4-5 human responses per triplet that chose the model's odd one out, 95% bootstrap "
        "over triplets; noise ceiling = each response predicted by the most frequent choice of the others (ties "
        "shared); entropy Spearman = rank correlation over triplets of the model's choice entropy (softmax of the "
        "similarities at the level's fitted temperature) with the entropy of the human responses."
        + (" Trials dropped: " + ", ".join(f"{k} {v:,}" for k, v in dropped.items() if v) + "." if dropped else "")
    )
    out = [Table("Levels: accuracy per abstraction level", tuple(headers), cells, note=note, plot="levels")]
    columns = ["temperature", "nll", "rt_spearman"]
    if after:
        columns = [c for column in columns for c in (column, f"{column}_transformed")]
    uncertainty = [(r["level"], *(_fmt(r.get(c)) for c in columns)) for r in rows]
    names = {"temperature": "T", "nll": "NLL", "rt_spearman": "RT Spearman"}
    header = lambda c: names[c] if c in names else f"{names[c.removesuffix('_transformed')]} (transformed)"
    headers = ("level", *(header(c) for c in columns))
    note = (
        "T: the temperature of softmax(similarity / T) that best predicts the responses (minimum mean negative "
        "log-likelihood, NLL; log 3 = 1.099 is chance); RT Spearman: rank correlation of the model's entropy with "
        "the triplet's mean log response time."
    )
    out.append(Table("Levels: uncertainty", headers, uncertainty, note=note, plot="levels_entropy"))
    return out


def _side_by_side(probe: dict[str, Any]) -> Table:
    """gLocal's selected transform beside the global probe (alpha = 0) of the same sweep."""
    columns = ("cv_accuracy", "test_accuracy", "local_knn_overlap", "local_heldout_loss")
    beside = probe["global_probe"]
    rows = [
        ("global probe", _fmt(beside.get("best_lambda")), "0", "-", *(_fmt(beside.get(c)) for c in columns)),
        ("gLocal", *(_fmt(probe.get(c)) for c in ("best_lambda", "best_alpha", "best_tau", *columns))),
    ]
    headers = ("", "lambda", "alpha", "tau", "CV accuracy", "test accuracy", "10-NN overlap", "held-out local loss")
    note = (
        "Both transforms come from the same sweep: alpha = 0 is the global probe, selected by its validation "
        "triplet cross-entropy; gLocal's configuration by triplet cross-entropy + local term on validation images. "
        "Test accuracy: the probe's dot-product choices on the test triplets. 10-NN overlap: the mean fraction of "
        "each held-out local image's 10 nearest neighbours kept by the transform (1 = all); held-out local loss: "
        f"gLocal's contrastive loss over all {_fmt(probe.get('local_n_heldout'))} held-out images as one batch at "
        f"tau {_fmt(probe.get('local_tau'))}."
    )
    return Table("gLocal beside the global probe", headers, rows, note=note)


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
    if synthetic(results):
        parts += [f"> {SYNTHETIC}", ""]
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
    for key, label in (
        ("cv_accuracy", "probe (CV)"),
        ("test_accuracy", "probe (test)"),
        ("test_zero_shot_transformed", "transformed zero-shot (test)"),
    ):
        if _is_number(probe.get(key)):
            bars.append((label, probe[key], _interval(probe.get(f"{key}_ci95"))))
    for key, label in (("", "given transform (all)"), ("test_", "given transform (test)")):  # config.transform
        if _is_number(zero_shot.get(f"{key}accuracy_transformed")):
            bars.append(
                (label, zero_shot[f"{key}accuracy_transformed"], _interval(zero_shot.get(f"{key}ci95_transformed")))
            )
    return bars


def _interval(ci: Any) -> tuple[float, float] | None:
    return tuple(ci) if isinstance(ci, list | tuple) and len(ci) == 2 and all(_is_number(v) for v in ci) else None


def _accuracy_table(results: dict[str, Any]) -> Table | None:
    bars = _accuracy_bars(results)
    if not bars:
        return None
    zero_shot, probe = results.get("zero_shot") or {}, results.get("probe") or {}
    spread = all(_is_number(probe.get(f"cv_accuracy_{k}")) for k in ("min", "max"))
    rows = [
        (label, _fmt(value), _fold_spread(probe) if label == "probe (CV)" and spread else _fmt(list(ci)) if ci else "-")
        for label, value, ci in bars
    ]
    note = f"Chance: {plots.CHANCE:.3f}."
    ceiling = noise_ceiling(results)
    entry = zero_shot.get("noise_ceiling")
    if ceiling is not None:
        note += f" Noise ceiling: {ceiling:.3f}"
        if isinstance(entry, dict):
            interval = _ceiling_interval(results)
            note += (f" {_fmt(list(interval))}" if interval else "") + (
                f" ({_fmt(entry.get('n_sets'))} repeated sets, {_fmt(entry.get('n_responses'))} responses, "
                f"from {entry.get('source')})"
            )
        note += "."
    elif isinstance(entry, dict) and entry.get("note"):
        note += f" {entry['note'][0].upper()}{entry['note'][1:]}."
    if zero_shot.get("similarity"):
        note += f" Zero-shot similarity: {zero_shot['similarity']}, {_fmt(zero_shot.get('n_triplets'))} triplets."
    note += (
        " Intervals: 95% bootstrap over triplets (noise ceiling: over repeated sets); probe (CV): range and sd over"
        " folds; transformed: the zero-shot similarity on the probe's transformed features."
    )
    return Table("Odd-one-out accuracy (THINGS)", ("", "accuracy", "interval"), rows, note=note, plot="accuracy")


def _fold_spread(probe: dict[str, Any]) -> str:
    """The CV accuracy's spread over folds: "folds [min, max], sd x"."""
    text = f"folds {_fmt([probe['cv_accuracy_min'], probe['cv_accuracy_max']])}"
    return text + (f", sd {_fmt(probe['cv_accuracy_std'])}" if _is_number(probe.get("cv_accuracy_std")) else "")


def _comparisons_table(rows: list[dict[str, Any]]) -> Table:
    """results.json `comparisons`: every two methods on the same test triplets."""
    cells = [
        (
            f"{_METHOD_NAMES.get(r['a'], r['a'])} - {_METHOD_NAMES.get(r['b'], r['b'])}",
            f"{r['difference']:+.3f}",
            f"[{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}]" if _interval(r.get("ci95")) else "-",
            _p_value(r["p_value"]),
            f"{r['a_only']:,} / {r['b_only']:,}",
        )
        for r in rows
    ]
    n_triplets = rows[0]["n_triplets"]
    note = (
        f"On the same {n_triplets:,} test triplets: difference in accuracy, 95% paired bootstrap interval over "
        "triplets, exact two-sided McNemar test on the discordant triplets (right by only the first / only the second)."
    )
    headers = ("comparison", "difference", "95% CI", "McNemar p", "discordant")
    return Table("Paired comparisons (test triplets)", headers, cells, note=note)


_METHOD_NAMES = {"probe": "probe", "zero_shot": "zero-shot", "zero_shot_transformed": "transformed zero-shot"}


def _p_value(p: float) -> str:
    return f"{p:.3f}" if p >= 1e-3 else ("< 1e-300" if p == 0 else f"{p:.1e}")


def _with_ci(row: dict[str, Any], column: str) -> str:
    """A cell, followed by its bootstrap interval when the row has one (`<column>_ci95`)."""
    ci = row.get(f"{column}_ci95")
    return _fmt(row.get(column)) + (f" {_fmt(list(ci))}" if ci else "")


def noise_ceiling(results: dict[str, Any]) -> float | None:
    """The human noise ceiling of results.json's zero_shot section (an entry {"accuracy", "ci95", ...}, or a
    plain number in older files); None when there is none."""
    value = (results.get("zero_shot") or {}).get("noise_ceiling")
    if isinstance(value, dict):
        value = value.get("accuracy")
    return float(value) if _is_number(value) else None


def _ceiling_interval(results: dict[str, Any]) -> tuple[float, float] | None:
    entry = (results.get("zero_shot") or {}).get("noise_ceiling")
    return _interval(entry.get("ci95")) if isinstance(entry, dict) and noise_ceiling(results) is not None else None


def _ci_suffix(ci: Any) -> str:
    interval = _interval(ci)
    return f" {_fmt(list(interval))}" if interval else ""


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
