"""Checks of single config values for the stages' `check(config)` functions: each raises InputError naming
the field, the value and what is allowed, so a bad setting fails before any stage runs."""

import math
from collections.abc import Iterable, Sequence
from typing import Any

import ml_collections

from alignment_jax.errors import InputError


def integer(
    config: Any, field: str, minimum: int | None = None, maximum: int | None = None, also: Iterable = ()
) -> int:
    """config.<field> (dotted) is an integer in [minimum, maximum], or one of the special values `also`."""
    value = get(config, field)
    if value in tuple(also) and not isinstance(value, bool):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{field}={value!r}: must be an integer{_range(minimum, maximum, also)}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise InputError(f"{field}={value}: must be an integer{_range(minimum, maximum, also)}")
    return value


def number(
    config: Any, field: str, minimum: float | None = None, above: float | None = None, also: Iterable = ()
) -> float:
    """config.<field> is a finite number >= minimum (or > above), or one of the special values `also`."""
    value = get(config, field)
    return _number(value, field, minimum, above, tuple(also))


def numbers(config: Any, field: str, minimum: float | None = None, above: float | None = None) -> tuple[float, ...]:
    """config.<field> is a non-empty sequence of finite numbers, each >= minimum (or > above)."""
    value = get(config, field)
    items = value if isinstance(value, list | tuple) else (value,)
    if not items:
        raise InputError(f"{field} is empty: give at least one value")
    return tuple(_number(v, field, minimum, above, ()) for v in items)


def float_tuple(value: Any, field: str, example: str) -> tuple[float, ...]:
    """A non-empty sequence as a tuple of floats (the command line gives `--config.probe.lambdas=0.1,0.01`);
    `example` shows a valid value in the error."""
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError) as e:
        raise InputError(f"{field}={value!r}: expected numbers, e.g. {example}") from e
    if not out:
        raise InputError(f"{field} is empty")
    return out


def choice(config: Any, field: str, choices: Sequence[str]) -> str:
    """config.<field> is one of `choices`."""
    value = get(config, field)
    if value not in choices:
        raise InputError(f"{field}={value!r} is not one of {', '.join(map(str, choices))}")
    return value


def fields_of_a_run(config: Any) -> None:
    """`config` has every field of alignment_jax/config/base.py and no other (a misspelt field in a config
    file would otherwise be ignored without a word)."""
    from alignment_jax.config.base import base_config

    if not isinstance(config, ml_collections.ConfigDict):
        raise InputError(
            f"config: a {type(config).__name__}, not an ml_collections.ConfigDict; start from base_config()"
        )
    want, have = set(_paths(base_config())), set(_paths(config))
    missing, unknown = sorted(want - have), sorted(have - want)
    if missing:
        raise InputError(
            f"config: no field(s) {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; a run config starts "
            "from alignment_jax.config.base.base_config()"
        )
    if unknown:
        from alignment_jax.config.files import did_you_mean

        raise InputError(
            f"config: unknown field(s) {', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}: not in "
            f"alignment_jax/config/base.py{did_you_mean(base_config(), unknown[0]) or ' (misspelt?)'}"
        )


def _paths(config: Any, prefix: str = "") -> list[str]:
    out = []
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            out += _paths(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out


def get(config: Any, field: str) -> Any:
    for part in field.split("."):
        config = config[part]
    return config


def _number(value: Any, field: str, minimum: float | None, above: float | None, also: tuple) -> float:
    if value in also and not isinstance(value, bool):
        return value
    bound = f" >= {minimum:g}" if minimum is not None else f" > {above:g}" if above is not None else ""
    bound += "".join(f" (or {a:g})" for a in also)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{field}={value!r}: must be a number{bound}")
    if not math.isfinite(value):
        raise InputError(f"{field}={value}: must be a finite number{bound}")
    if (minimum is not None and value < minimum) or (above is not None and value <= above):
        raise InputError(f"{field}={value:g}: must be a number{bound}")
    return float(value)


def _range(minimum: int | None, maximum: int | None, also: Iterable) -> str:
    parts = []
    if minimum is not None:
        parts.append(f">= {minimum}")
    if maximum is not None:
        parts.append(f"<= {maximum}")
    text = (" " + " and ".join(parts)) if parts else ""
    return text + "".join(f" (or {a})" for a in also)
