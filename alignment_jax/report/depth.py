"""The report's view of results.json `layers` (model.layers): a table of accuracy per layer and the depth
figures, for one run (report.md) and for a sweep over models (every model's curve against relative depth).
"""

from typing import Any

from alignment_jax.report import plots

HEADERS = ("layer", "depth", "p", "zero-shot (test)", "probe (CV)", "probe (test)", "lambda")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value == value else None


def curve(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per layer in network order: {"layer", "depth", "zero_shot", "probe", "split"}, the accuracies on the
    test split where there is one (else zero-shot over all triplets and the probe's CV accuracy)."""
    entries = results.get("layers") or []
    has_test = any(_number((e.get("probe") or {}).get("test_accuracy")) is not None for e in entries) or any(
        _number((e.get("zero_shot") or {}).get("test_accuracy")) is not None for e in entries
    )
    points = []
    for entry in entries:
        zero_shot, probe = entry.get("zero_shot") or {}, entry.get("probe") or {}
        points.append(
            {
                "layer": entry["layer"],
                "depth": entry["depth"],
                "zero_shot": _number(zero_shot.get("test_accuracy" if has_test else "accuracy")),
                "probe": _number(probe.get("test_accuracy" if has_test else "cv_accuracy")),
                "split": "test" if has_test else "all / CV",
            }
        )
    return points


def table(results: dict[str, Any], fmt) -> tuple[str, tuple[str, ...], list[tuple[str, ...]], str] | None:
    """(title, headers, rows, note) of the layer table, cells formatted by `fmt`; None without layers."""
    entries = results.get("layers") or []
    if not entries:
        return None
    best = results.get("best_layer")
    local = any("local_knn_overlap" in (e.get("probe") or {}) for e in entries)  # the locality of each transform
    rows = []
    for entry in entries:
        zero_shot, probe = entry.get("zero_shot") or {}, entry.get("probe") or {}
        test = fmt(zero_shot.get("test_accuracy"))
        if zero_shot.get("test_ci95"):
            test += f" {fmt(zero_shot['test_ci95'])}"
        name = entry["layer"] + (" *" if entry["layer"] == best else "")
        rows.append(
            (
                name,
                f"{entry['depth']:.2f}",
                str(entry.get("p", "-")),
                test,
                fmt(probe.get("cv_accuracy")),
                fmt(probe.get("test_accuracy")),
                fmt(probe.get("best_lambda")),
            )
            + ((fmt(probe.get("local_knn_overlap")),) if local else ())
        )
    note = "depth: relative depth (block i of d at (i + 1) / d; outputs after the last block follow it)."
    if best:
        note += f" * best layer by the probe's cross-validation: {best}."
    if local:
        note += " 10-NN: the held-out local images' nearest neighbours kept by each layer's transform."
    return "Accuracy through the depth of the network", HEADERS + (("10-NN overlap",) if local else ()), rows, note


def plot(
    path: str,
    results: dict[str, Any],
    noise_ceiling: float | None,
    title: str = "Odd-one-out accuracy through the depth of the network",
) -> bool:
    """Draws the run's depth figure; False (no file) without layers."""
    points = curve(results)
    if not points:
        return False
    plots.plot_depth(path, points, noise_ceiling, results.get("best_layer") or "", title=title)
    return True


def plot_models(path: str, runs: list[tuple[str, dict[str, Any]]]) -> bool:
    """Every model's depth curve (runs: [(name, results)]); False (no file) when no model has layers."""
    models = []
    for name, results in runs:
        points = curve(results)
        if points:
            depths = [p["depth"] for p in points]
            models.append((name, depths, [p["probe"] for p in points], [p["zero_shot"] for p in points]))
    if models:
        plots.plot_depth_models(path, models)
    return bool(models)


def best_layer_columns(results: dict[str, Any]) -> dict[str, Any]:
    """The sweep summary's columns of a model with layers: best_layer, its probe CV and test accuracy."""
    best = results.get("best_layer")
    if not best:
        return {}
    entry = next((e for e in results.get("layers") or () if e.get("layer") == best), {})
    probe = entry.get("probe") or {}
    return {
        "best_layer": best,
        "best_layer_cv_accuracy": probe.get("cv_accuracy"),
        "best_layer_test_accuracy": probe.get("test_accuracy"),
    }
