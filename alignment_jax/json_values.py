"""Numbers for results.json, which is strict JSON: an undefined value (NaN, inf) is written as null."""

import math
from collections.abc import Iterable


def number(value: float | None) -> float | None:
    """A finite value as a float; NaN, inf and None as None."""
    return float(value) if value is not None and math.isfinite(value) else None


def interval(values: Iterable[float | None]) -> list[float | None]:
    """An interval (lo, hi), or any sequence of numbers, with undefined ends as None (a bootstrap of 0
    resamples gives (nan, nan))."""
    return [number(v) for v in values]
