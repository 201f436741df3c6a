"""The report's figures as PNG files, drawn with matplotlib's Agg canvas (no display, no pyplot state).

Each function takes plain numbers (as stored in results.json) and a path, and writes the file atomically.
"""

import os
import textwrap

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from alignment_jax import atomic

CHANCE = 1.0 / 3.0
_BEFORE, _AFTER = "#7f8c9a", "#d1495b"


def plot_accuracy(
    path: str,
    bars: list[tuple[str, float, tuple[float, float] | None]],
    noise_ceiling: float | None = None,
    baselines: int = 1,
    noise_ceiling_ci: tuple[float, float] | None = None,
    chance: float = CHANCE,
    title: str = "Odd-one-out accuracy",
) -> None:
    """Odd-one-out accuracies as bars: bars = [(label, accuracy, (lo, hi) or None)], the first `baselines`
    of them untransformed (drawn grey), with chance and noise-ceiling lines (the ceiling's interval shaded)."""
    fig = Figure(figsize=(1.6 + 1.3 * len(bars), 3.6))
    ax = fig.add_subplot()
    positions = range(len(bars))
    values = [value for _, value, _ in bars]
    ax.bar(positions, values, color=[_BEFORE] * baselines + [_AFTER] * (len(bars) - baselines), width=0.6)
    for x, (_, value, ci) in enumerate(bars):
        if ci:
            ax.errorbar(x, value, yerr=[[value - ci[0]], [ci[1] - value]], color="black", capsize=4)
    ax.axhline(chance, color="black", linestyle=":", linewidth=1, label=f"chance ({chance:.3f})")
    if noise_ceiling is not None:
        shaded = ", 95% CI shaded" if noise_ceiling_ci is not None else ""
        ax.axhline(
            noise_ceiling,
            color="black",
            linestyle="--",
            linewidth=1,
            label=f"noise ceiling ({noise_ceiling:.3f}{shaded})",
        )
        if noise_ceiling_ci is not None:
            ax.axhspan(*noise_ceiling_ci, color="black", alpha=0.12, linewidth=0)
    for x, value in zip(positions, values, strict=True):
        ax.annotate(
            f"{value:.3f}",
            (x, value),
            ha="center",
            va="bottom",
            xytext=(0, 3),
            textcoords="offset points",
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1},
        )
    ax.set_xticks(list(positions), [textwrap.fill(label, 16) for label, _, _ in bars])
    _finish_accuracy(fig, ax, path, title, 2)


def plot_concepts(path: str, rows: list[dict], title: str = "Odd-one-out accuracy per concept") -> None:
    """Per-concept accuracy as horizontal bars sorted by zero-shot accuracy (rows: results.json `concepts`);
    a second bar per concept after the transform when there is one; error bars from the rows' `<column>_ci95`
    intervals where they have them. Concepts without triplets are left out."""
    rows = sorted((r for r in rows if r["n_triplets"] > 0), key=lambda r: r["accuracy"])
    transformed = any(r["accuracy_transformed"] is not None for r in rows)
    fig = Figure(figsize=(6.4, 1.2 + 0.28 * len(rows)))
    ax = fig.add_subplot()
    height = 0.4 if transformed else 0.7
    y = range(len(rows))
    ax.barh(
        [i - height / 2 * transformed for i in y],
        [r["accuracy"] for r in rows],
        height,
        color=_BEFORE,
        label="zero-shot",
        xerr=_errors(rows, "accuracy"),
        error_kw={"elinewidth": 0.8, "capsize": 2},
    )
    if transformed:
        after = [r["accuracy_transformed"] or 0.0 for r in rows]
        ax.barh(
            [i + height / 2 for i in y],
            after,
            height,
            color=_AFTER,
            label="transformed",
            xerr=_errors(rows, "accuracy_transformed"),
            error_kw={"elinewidth": 0.8, "capsize": 2},
        )
    ax.axvline(CHANCE, color="black", linestyle=":", linewidth=1, label="chance")
    ax.set_yticks(list(y), [f"{r['concept']} ({r['n_triplets']})" for r in rows], fontsize="small")
    ax.set_xlabel("odd-one-out accuracy")
    ax.set_xlim(0, 1)
    _legend_above(ax, 3)
    _save(fig, path, title)


def plot_rsa(
    path: str, rows: list[dict], metric: str = "spearman", title: str = "RSA with human similarity judgments"
) -> None:
    """RSA with the human matrix before and after the transform, one bar pair per dataset and kernel
    (rows: results.json `transfer`)."""
    fig = Figure(figsize=(1.6 + 0.9 * len(rows), 3.8))
    ax = fig.add_subplot()
    width = 0.38
    x = range(len(rows))
    ax.bar([i - width / 2 for i in x], [_nan(r[metric]) for r in rows], width, color=_BEFORE, label="original")
    after = [_nan(r[f"{metric}_transformed"]) for r in rows]
    ax.bar([i + width / 2 for i in x], after, width, color=_AFTER, label="transformed")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(list(x), [f"{r['dataset']}\n{r['kernel']}" for r in rows], rotation=45, ha="right", fontsize="small")
    ax.set_ylabel(f"{metric.capitalize()} correlation with humans")
    _legend_above(ax, 2)
    _save(fig, path, title)


def plot_levels(path: str, rows: list[dict], title: str = "Levels: odd-one-out accuracy per abstraction level") -> None:
    """Levels accuracy per abstraction level before and after the transform, the noise ceiling of each level
    marked (rows: {"level", "accuracy", "ci95", "accuracy_transformed"?, "ci95_transformed"?, "noise_ceiling"},
    from results.json `levels`)."""
    transformed = any(r.get("accuracy_transformed") is not None for r in rows)
    fig = Figure(figsize=(1.8 + 1.4 * len(rows), 3.8))
    ax = fig.add_subplot()
    width = 0.38 if transformed else 0.6
    x = range(len(rows))
    columns = [("accuracy", "ci95", _BEFORE, "zero-shot")]
    if transformed:
        columns.append(("accuracy_transformed", "ci95_transformed", _AFTER, "transformed"))
    for k, (column, interval, colour, label) in enumerate(columns):
        shift = (k - (len(columns) - 1) / 2) * width
        errors = _errors([{column: r.get(column), f"{column}_ci95": r.get(interval)} for r in rows], column)
        values = [_nan(r.get(column)) for r in rows]
        ax.bar([i + shift for i in x], values, width, color=colour, label=label, yerr=errors, capsize=3)
    for i, r in enumerate(rows):
        if r.get("noise_ceiling") is not None:
            ax.hlines(r["noise_ceiling"], i - 0.45, i + 0.45, color="black", linestyle="--", linewidth=1.2,
                      label="noise ceiling (leave one out)" if i == 0 else None)  # fmt: skip
    ax.axhline(CHANCE, color="black", linestyle=":", linewidth=1, label="chance")
    ax.set_xticks(list(x), [r["level"].replace("_", " ") for r in rows])
    ax.set_ylabel("Levels odd-one-out accuracy")
    ax.set_ylim(0, 1)
    _legend_above(ax, 2)
    _save(fig, path, title)


def plot_levels_entropy(
    path: str, curves: dict[str, dict], title: str = "Levels: model entropy against human entropy"
) -> None:
    """The model's entropy (mean over the triplets with each human entropy, at the level's fitted temperature)
    against the entropy of the human responses, one line per level, before (solid) and after the transform
    (dashed); curves: results.json `levels.entropy_curves`."""
    fig = Figure(figsize=(5.6, 4.0))
    ax = fig.add_subplot()
    colours = {"within_class": "#2e86ab", "class_border": "#f18f01", "between_class": "#3b1f2b", "all": "#7f8c9a"}
    for name, curve in curves.items():
        colour = colours.get(name, "black")
        label = name.replace("_", " ")
        ax.plot(curve["human_entropy"], curve["model_entropy"], "o-", color=colour, label=label, markersize=4)
        if curve.get("model_entropy_transformed"):
            ax.plot(curve["human_entropy"], curve["model_entropy_transformed"], "s--", color=colour,
                    label=f"{label} (transformed)", markersize=3)  # fmt: skip
    ax.set_xlabel("entropy of the human responses (nats)")
    ax.set_ylabel("model entropy at the fitted T (nats)")
    _legend_above(ax, 2)
    _save(fig, path, title)


def plot_models(
    path: str,
    models: list[tuple[str, float | None, float | None, float | None]],
    chance: float = CHANCE,
    title: str = "Zero-shot and probe accuracy per model",
) -> None:
    """Zero-shot against probe accuracy, one bar pair per model: models = [(name, zero-shot, probe, noise
    ceiling)], None where missing; a chance line across and each model's noise ceiling dashed over its pair."""
    fig = Figure(figsize=(2.0 + 1.1 * len(models), 3.8))
    ax = fig.add_subplot()
    width = 0.38
    x = range(len(models))
    ax.bar([i - width / 2 for i in x], [_nan(m[1]) for m in models], width, color=_BEFORE, label="zero-shot")
    ax.bar([i + width / 2 for i in x], [_nan(m[2]) for m in models], width, color=_AFTER, label="probe")
    ax.axhline(chance, color="black", linestyle=":", linewidth=1, label=f"chance ({chance:.3f})")
    ceilings = [(i, m[3]) for i, m in zip(x, models, strict=True) if m[3] is not None]
    for i, ceiling in ceilings:
        ax.hlines(ceiling, i - 0.45, i + 0.45, color="black", linestyle="--", linewidth=1)
    if ceilings:
        ax.plot([], [], color="black", linestyle="--", linewidth=1, label="noise ceiling")
    tilt = len(models) > 3
    ax.set_xticks(list(x), [m[0] for m in models], rotation=30 if tilt else 0, ha="right" if tilt else "center")
    _finish_accuracy(fig, ax, path, title, 4)


def plot_model_intervals(
    path: str,
    models: list[tuple[str, list[tuple[str, float, tuple[float, float] | None]]]],
    noise_ceilings: list[tuple[float, tuple[float, float] | None] | None],
    chance: float = CHANCE,
    title: str = "Test accuracy per model (95% CI)",
) -> None:
    """Each model's accuracies with their 95% intervals: models = [(name, [(method, accuracy, (lo, hi) or None)])],
    one marker colour per method; noise_ceilings: per model (ceiling, its interval or None) or None, drawn as a
    shaded band with a dashed line (one band across all models when they share it)."""
    methods = list(dict.fromkeys(method for _, points in models for method, _, _ in points))
    palette = (_BEFORE, _AFTER, "#3a7ca5", "#e8a33d", "#5b8c5a")
    colours = {method: palette[k % len(palette)] for k, method in enumerate(methods)}
    fig = Figure(figsize=(2.4 + 0.9 * len(models), 3.8))
    ax = fig.add_subplot()
    shared = len({c for c in noise_ceilings if c is not None}) == 1 and all(c is not None for c in noise_ceilings)
    for i, ceiling in enumerate(noise_ceilings):
        if ceiling is None or (shared and i > 0):
            continue
        left, right = (-0.5, len(models) - 0.5) if shared else (i - 0.45, i + 0.45)
        value, interval = ceiling
        if interval is not None:
            ax.fill_between([left, right], *interval, color="black", alpha=0.12, linewidth=0)
        ax.hlines(value, left, right, color="black", linestyle="--", linewidth=1)
    if any(c is not None for c in noise_ceilings):
        ax.plot([], [], color="black", linestyle="--", linewidth=1, label="noise ceiling (95% CI shaded)")
    offsets = {m: (k - (len(methods) - 1) / 2) * 0.22 for k, m in enumerate(methods)}
    for i, (_, points) in enumerate(models):
        for method, value, interval in points:
            error = None if interval is None else [[value - interval[0]], [interval[1] - value]]
            ax.errorbar(i + offsets[method], value, yerr=error, fmt="o", color=colours[method], capsize=3, markersize=5)
    for method in methods:
        ax.plot([], [], "o", color=colours[method], label=method)
    ax.axhline(chance, color="black", linestyle=":", linewidth=1, label=f"chance ({chance:.3f})")
    tilt = len(models) > 3
    ax.set_xticks(
        range(len(models)), [name for name, _ in models], rotation=30 if tilt else 0, ha="right" if tilt else "center"
    )
    ax.set_xlim(-0.6, len(models) - 0.4)
    ax.set_ylabel("test odd-one-out accuracy (95% CI)")
    _legend_above(ax, 3)
    _save(fig, path, title)


def _errors(rows: list[dict], column: str) -> list[list[float]] | None:
    """(2, n) error-bar lengths of the rows' `<column>_ci95` intervals; None when no row has one."""
    intervals = [r.get(f"{column}_ci95") for r in rows]
    if not any(i and None not in i for i in intervals):
        return None
    values = [r[column] or 0.0 for r in rows]
    low = [v - i[0] if i and None not in i else 0.0 for v, i in zip(values, intervals, strict=True)]
    high = [i[1] - v if i and None not in i else 0.0 for v, i in zip(values, intervals, strict=True)]
    return [low, high]


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _legend_above(ax, columns: int) -> None:
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=columns, fontsize="small", frameon=False)


def _finish_accuracy(fig: Figure, ax, path: str, title: str, legend_columns: int) -> None:
    """An accuracy figure's y axis (0 to 1), its legend above and the file."""
    ax.set_ylabel("odd-one-out accuracy")
    ax.set_ylim(0, 1)
    _legend_above(ax, legend_columns)
    _save(fig, path, title)


def _save(fig: Figure, path: str, title: str) -> None:
    """Writes the figure with `title` above everything else (the legends sit above the axes)."""
    renderer = FigureCanvasAgg(fig).get_renderer()
    top = max(ax.get_tightbbox(renderer).y1 for ax in fig.axes) / fig.bbox.height
    fig.text(0.5, top + 0.02, title, ha="center", va="bottom", fontsize="medium", fontweight="bold")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")


def plot_depth(
    path: str,
    layers: list[dict],
    noise_ceiling: float | None = None,
    best: str = "",
    chance: float = CHANCE,
    title: str = "Odd-one-out accuracy through the depth of the network",
) -> None:
    """Odd-one-out accuracy against relative depth, one point per layer: layers = [{"layer", "depth",
    "zero_shot", "probe"}] with the accuracies (None where missing) and the split they are on ("split");
    chance and the noise ceiling as lines, the best layer (by CV) ringed."""
    fig = Figure(figsize=(6.4, 3.8))
    ax = fig.add_subplot()
    x = [layer["depth"] for layer in layers]
    for key, colour, label in (("zero_shot", _BEFORE, "zero-shot"), ("probe", _AFTER, "probe")):
        values = [_nan(layer[key]) for layer in layers]
        if any(v == v for v in values):
            ax.plot(x, values, marker="o", color=colour, label=f"{label} ({layers[0]['split']})")
    ringed = [(layer["depth"], layer["probe"]) for layer in layers if layer["layer"] == best and layer["probe"]]
    for depth, value in ringed:
        ax.plot([depth], [value], "o", markersize=13, markerfacecolor="none", color="black", label="best (CV)")
    ax.axhline(chance, color="black", linestyle=":", linewidth=1, label=f"chance ({chance:.3f})")
    if noise_ceiling is not None:
        ax.axhline(
            noise_ceiling, color="black", linestyle="--", linewidth=1, label=f"noise ceiling ({noise_ceiling:.3f})"
        )
    step = max(1, -(-len(layers) // 14))  # at most about 14 labelled ticks
    shown = layers[::step] if layers[-1] in layers[::step] else [*layers[::step], layers[-1]]
    ax.set_xticks([layer["depth"] for layer in shown], [layer["layer"] for layer in shown], rotation=45, ha="right")
    ax.set_xlabel("layer (placed at its relative depth)")
    _finish_accuracy(fig, ax, path, title, 3)


def plot_depth_models(
    path: str,
    models: list[tuple[str, list[float], list[float | None], list[float | None]]],
    title: str = "Probe accuracy against relative depth, per model",
) -> None:
    """Every model's depth curve in one figure, x = relative depth (block i of d at (i + 1) / d): models =
    [(name, depths, probe accuracies, zero-shot accuracies)]; probe solid, zero-shot dashed in the same colour."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    colours = [f"C{i % 10}" for i in range(len(models))]
    for (name, depths, probe, zero_shot), colour in zip(models, colours, strict=True):
        ax.plot(depths, [_nan(v) for v in probe], marker="o", markersize=3, color=colour, label=name)
        ax.plot(depths, [_nan(v) for v in zero_shot], linestyle="--", linewidth=1, color=colour)
    ax.plot([], [], linestyle="--", linewidth=1, color="black", label="zero-shot")
    ax.axhline(CHANCE, color="black", linestyle=":", linewidth=1, label="chance")
    ax.set_xlabel("relative depth (block / number of blocks)")
    ax.set_ylabel("odd-one-out accuracy (probe solid)")
    ax.set_ylim(0, 1)
    _legend_above(ax, 4)
    _save(fig, path, title)
