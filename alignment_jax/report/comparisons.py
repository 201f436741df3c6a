"""A sweep's paired comparisons of models on the same test triplets: DIR/comparisons.csv and DIR/comparisons.png.

For each method (probe, transformed zero-shot, zero-shot: evaluation/decisions.METHODS) that any model has,
one row per two models (in sweep order): the difference of their test accuracies (model_a - model_b), its
95% paired bootstrap interval over the shared test triplets, the exact McNemar p-value, and the discordant
counts. Models are comparable only when their DIR/<name>/decisions.npz hold outcomes on the same test
triplets (same hash); other pairs get empty numbers and a `note` saying why. All comparable models of a
method are compared in one computation (evaluation/statistics.paired_comparisons). The p-values are per
pair, not corrected for the number of pairs.
"""

import csv
import io
import os
from typing import Any

import numpy as np

from alignment_jax import atomic
from alignment_jax.evaluation.decisions import FILE, METHODS, Decisions, load_decisions
from alignment_jax.evaluation.statistics import paired_comparisons
from alignment_jax.report import plots
from alignment_jax.report.markdown import noise_ceiling

COLUMNS = (
    "method",
    "model_a",
    "model_b",
    "n_triplets",
    "accuracy_a",
    "accuracy_b",
    "difference",
    "ci95_low",
    "ci95_high",
    "p_value",
    "a_only",
    "b_only",
    "note",
)
# results.json keys of each method's test accuracy and its interval
_ACCURACY_KEYS = {
    "zero_shot": ("zero_shot", "test_accuracy", "test_ci95"),
    "probe": ("probe", "test_accuracy", "test_accuracy_ci95"),
    "zero_shot_transformed": ("probe", "test_zero_shot_transformed", "test_zero_shot_transformed_ci95"),
}
_LABELS = {"zero_shot": "zero-shot", "probe": "probe", "zero_shot_transformed": "transformed zero-shot"}


def model_comparisons(
    models: list[tuple[str, Decisions | None]], n_resamples: int = 1000, seed: int = 0
) -> list[dict[str, Any]]:
    """models: (name, its test decisions or None) in sweep order -> rows with the COLUMNS keys (None where a
    pair is not comparable, with the reason in `note`)."""
    rows = []
    for method in METHODS:
        if not any(d is not None and method in d.correct for _, d in models):
            continue
        compared = _compare_groups(models, method, n_resamples, seed)
        for i, (name_a, decisions_a) in enumerate(models):
            for name_b, decisions_b in models[i + 1 :]:
                row = compared.get((name_a, name_b))
                if row is None:
                    row = {"note": _why_not(method, name_a, decisions_a, name_b, decisions_b)}
                rows.append({k: None for k in COLUMNS} | row | {"method": method, "model_a": name_a, "model_b": name_b})
    return rows


def _compare_groups(
    models: list[tuple[str, Decisions | None]], method: str, n_resamples: int, seed: int
) -> dict[tuple[str, str], dict[str, Any]]:
    """{(name_a, name_b): row} for every two models with outcomes of `method` on the same test triplets."""
    groups: dict[str, list[tuple[str, np.ndarray]]] = {}
    for name, decisions in models:
        if decisions is not None and method in decisions.correct:
            groups.setdefault(decisions.triplets_sha256, []).append((name, decisions.correct[method]))
    out = {}
    for members in groups.values():
        if len(members) < 2:
            continue
        names = [name for name, _ in members]
        result = paired_comparisons(np.stack([c for _, c in members], axis=1), n_resamples, seed)
        for row in result.rows(names):
            low, high = row.pop("ci95")
            out[(row.pop("a"), row.pop("b"))] = row | {"ci95_low": low, "ci95_high": high, "note": ""}
    return out


def _why_not(method: str, name_a: str, a: Decisions | None, name_b: str, b: Decisions | None) -> str:
    for name, decisions in ((name_a, a), (name_b, b)):
        if decisions is None:
            return f"{name}: no readable {FILE} (a run before outcomes were saved, or without a test split); rerun it"
        if method not in decisions.correct:
            return f"{name}: no {method} outcomes on the test triplets"
    return "not comparable: scored on different test triplets (their decisions.npz hashes differ)"


def write_csv(path: str, rows: list[dict[str, Any]]) -> None:
    """The rows with full precision, empty cells for missing values; written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if r[k] is None else r[k] for k in COLUMNS} for r in rows)
    atomic.write_text(path, buffer.getvalue())


def plot(path: str, models: list[tuple[str, dict[str, Any]]]) -> bool:
    """Each model's test accuracies with their 95% intervals and the noise-ceiling band, from (name, results.json)
    pairs. Returns False (no file) when no model has a test accuracy."""
    points, ceilings = [], []
    for name, results in models:
        mine = []
        for method, (section, key, interval_key) in _ACCURACY_KEYS.items():
            values = results.get(section) or {}
            if isinstance(values.get(key), int | float):
                interval = values.get(interval_key)
                usable = isinstance(interval, list) and len(interval) == 2 and None not in interval
                mine.append((_LABELS[method], values[key], tuple(interval) if usable else None))
        points.append((name, mine))
        entry = (results.get("zero_shot") or {}).get("noise_ceiling")
        ceiling = noise_ceiling(results)
        interval = entry.get("ci95") if isinstance(entry, dict) else None
        usable = isinstance(interval, list) and len(interval) == 2 and None not in interval
        ceilings.append(None if ceiling is None else (ceiling, tuple(interval) if usable else None))
    if not any(mine for _, mine in points):
        return False
    plots.plot_model_intervals(path, points, ceilings)
    return True


def write(
    workdir: str, models: list[tuple[str, dict[str, Any]]], n_resamples: int = 1000, seed: int = 0, draw: bool = True
) -> list[str]:
    """DIR/comparisons.csv (and DIR/comparisons.png when `draw`) for models [(name, results.json)] whose runs are
    in DIR/<name>/; returns lines for the log."""
    decisions = [(name, load_decisions(os.path.join(workdir, name))) for name, _ in models]
    rows = model_comparisons(decisions, n_resamples, seed)
    path = os.path.join(workdir, "comparisons.csv")
    write_csv(path, rows)
    compared = sum(1 for r in rows if r["difference"] is not None)
    lines = [f"comparisons: {path} ({compared} of {len(rows)} model pairs x methods on shared test triplets)"]
    missing = [name for name, d in decisions if d is None]
    if missing:
        lines.append(f"  no readable {FILE} (rerun them to compare them): {', '.join(missing)}")
    groups: dict[str, list[str]] = {}
    for name, d in decisions:
        if d is not None:
            groups.setdefault(d.triplets_sha256, []).append(name)
    if len(groups) > 1:
        listed = " | ".join(", ".join(names) for names in groups.values())
        lines.append(f"  different test triplets; compared only within each group: {listed}")
    figure = os.path.join(workdir, "comparisons.png")
    if draw and plot(figure, models):
        lines.append(f"plot: {figure}")
    return lines
