"""A sweep's comparison of models: one row per model from its results.json, as CSV, text and a figure.

Columns: name, status, zero_shot_accuracy (all triplets), zero_shot_test_accuracy, probe_cv_accuracy,
probe_test_accuracy, best_lambda, noise_ceiling, then for models run with model.layers best_layer (by
the probe's cross-validation), best_layer_cv_accuracy and best_layer_test_accuracy, for gLocal's objective
best_alpha and best_tau, with local images local_knn_overlap (the probe's transform), per transfer dataset
and kernel `spearman_<dataset>_<kernel>` and `spearman_<dataset>_<kernel>_transformed`, per transfer triplet dataset
`accuracy_<dataset>` and `accuracy_<dataset>_transformed`, and last config (the spec) and error.
"""

import csv
import io
from typing import Any

from alignment_jax import atomic
from alignment_jax.report import depth, plots
from alignment_jax.report.markdown import Table, noise_ceiling, text_table

FIXED = (
    "name",
    "status",
    "zero_shot_accuracy",
    "zero_shot_test_accuracy",
    "probe_cv_accuracy",
    "probe_test_accuracy",
    "best_lambda",
    "noise_ceiling",
)
TRAILING = ("config", "error")


def row(name: str, status: str, results: dict[str, Any], config: str = "", error: str = "") -> dict[str, Any]:
    """The summary row of one model: numbers from its results.json sections (None where absent)."""
    zero_shot, probe = results.get("zero_shot") or {}, results.get("probe") or {}
    out: dict[str, Any] = {
        "name": name,
        "status": status,
        "zero_shot_accuracy": zero_shot.get("accuracy"),
        "zero_shot_test_accuracy": zero_shot.get("test_accuracy"),
        "probe_cv_accuracy": probe.get("cv_accuracy"),
        "probe_test_accuracy": probe.get("test_accuracy"),
        "best_lambda": probe.get("best_lambda"),
        "noise_ceiling": noise_ceiling(results),
        **depth.best_layer_columns(results),
    }
    if probe.get("objective") == "glocal":
        out.update(best_alpha=probe.get("best_alpha"), best_tau=probe.get("best_tau"))
    if "local_knn_overlap" in probe:
        out["local_knn_overlap"] = probe["local_knn_overlap"]
    for r in results.get("transfer") or ():
        column = f"spearman_{r['dataset']}_{r['kernel']}"
        out[column], out[column + "_transformed"] = r.get("spearman"), r.get("spearman_transformed")
    for r in results.get("transfer_triplets") or ():
        column = f"accuracy_{r['dataset']}"
        out[column], out[column + "_transformed"] = r.get("accuracy"), r.get("accuracy_transformed")
    out.update(config=config, error=error)
    return out


def columns(rows: list[dict[str, Any]]) -> list[str]:
    """The fixed columns, then every model's transfer columns in order of first appearance, then config, error."""
    extra = [k for r in rows for k in r if k not in FIXED and k not in TRAILING]
    return [*FIXED, *dict.fromkeys(extra), *TRAILING]


def write_csv(path: str, rows: list[dict[str, Any]]) -> None:
    """All columns, full precision, empty cells for missing values; written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns(rows), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    atomic.write_text(path, buffer.getvalue())


def text_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The summary as an aligned text table (numbers to 3 decimals), then one line per failed model."""
    shown = [c for c in columns(rows) if c not in TRAILING]
    cells = [tuple(_cell(r.get(c)) for c in shown) for r in rows]
    note = "zs = zero-shot; RSA columns: Spearman with the human RSM, raw | after the probe's transform (+T)"
    lines = text_table(Table("Sweep summary", tuple(_header(c) for c in shown), cells, note=note))
    return lines + [f"{r['name']} failed: {r['error']}" for r in rows if r["status"] == "failed"]


def plot(path: str, rows: list[dict[str, Any]]) -> bool:
    """The comparison figure of the models with results: test-split accuracies where there are some, else
    zero-shot over all triplets and the probe's CV accuracy. Returns False (no file) when no model has any."""
    models = []
    for r in rows:
        zero_shot = _first(r["zero_shot_test_accuracy"], r["zero_shot_accuracy"])
        probe = _first(r["probe_test_accuracy"], r["probe_cv_accuracy"])
        if zero_shot is not None or probe is not None:
            models.append((r["name"], zero_shot, probe, r["noise_ceiling"]))
    if models:
        plots.plot_models(path, models)
    return bool(models)


_HEADERS = {
    "zero_shot_accuracy": "zs (all)",
    "zero_shot_test_accuracy": "zs (test)",
    "probe_cv_accuracy": "probe (CV)",
    "probe_test_accuracy": "probe (test)",
    "best_lambda": "lambda",
    "noise_ceiling": "ceiling",
    "best_layer": "best layer",
    "best_layer_cv_accuracy": "best (CV)",
    "best_layer_test_accuracy": "best (test)",
}


def _header(column: str) -> str:
    """A short header: RSA columns as dataset/kernel (+T after the transform)."""
    if column in _HEADERS:
        return _HEADERS[column]
    short = column.removeprefix("spearman_").removesuffix("_transformed")
    if column.startswith("spearman_"):
        short = "/".join(short.rsplit("_", 1))
    return short + (" +T" if column.endswith("_transformed") else "")


def _first(*values: Any) -> float | None:
    return next((v for v in values if v is not None), None)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"
    return str(value)
