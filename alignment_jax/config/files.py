"""Run configs named by text, as in a sweep: `[NAME=]PATH[:ARG][ KEY=VALUE ...]`.

PATH is a config file defining `get_config`; with `:ARG` it is called as `get_config(ARG)` (big_vision
style: `configs/vit_b16.py:runlocal=True`), without as `get_config()`, like `--config=PATH:ARG`.
KEY=VALUE pairs override fields of the config it returns (`similarity=dot probe.folds=5`; a VALUE is
read as the field's type), NAME names the run (default: made from the file name and the arguments).
Several specs in one string are separated by commas; a comma-separated piece that does not start a new
spec (its first word before any `:` is not a `.py` path) continues the previous one, so
`configs/vit.py:variant=B/16,runlocal=True,configs/demo.py` is two specs.
"""

import ast
import dataclasses
import difflib
import hashlib
import importlib.util
import os
import re
import traceback
from collections.abc import Sequence
from typing import Any

import ml_collections

from alignment_jax.errors import InputError, first_line

_TRUE, _FALSE = ("true", "t", "1", "yes"), ("false", "f", "0", "no")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_MAX_NAME = 80


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One parsed spec: the run's name, the config file, get_config's argument and field overrides."""

    name: str
    path: str
    arg: str
    overrides: tuple[tuple[str, str], ...]
    text: str


def parse_specs(specs: str | Sequence[str], field: str = "models") -> list[RunSpec]:
    """A comma/newline-separated string, or a sequence with one spec per item -> specs with distinct names."""
    items = split_specs(specs) if isinstance(specs, str) else [s.strip() for s in specs if s.strip()]
    if not items:
        raise InputError(f"{field}: no model config given; list PATH.py[:ARG] specs, e.g. configs/demo.py")
    parsed = [parse_spec(item, field) for item in items]
    names = [s.name for s in parsed]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"{field}: more than one model named {', '.join(repeated)}; name them: NAME=PATH.py[:ARG]")
    return parsed


def split_specs(text: str) -> list[str]:
    """Splits at commas and newlines, joining pieces that continue a spec's ARG or KEY=VALUE list."""
    specs: list[str] = []
    for piece in (p.strip() for p in text.replace("\n", ",").split(",")):
        if not piece:
            continue
        if _starts_spec(piece) or not specs:
            specs.append(piece)
        else:
            specs[-1] += "," + piece
    return specs


def parse_spec(text: str, field: str = "models") -> RunSpec:
    """`[NAME=]PATH[:ARG][ KEY=VALUE ...]` -> RunSpec."""
    words = text.split()
    head = words[0] if words else ""
    name = ""
    if "=" in head.split(":", 1)[0]:
        name, head = head.split("=", 1)
        if not _NAME.fullmatch(name):
            raise InputError(f"{field}: {text!r}: the name {name!r} must be letters, digits, '.', '_', '+' or '-'")
    path, _, arg = head.partition(":")
    if not path.endswith(".py"):
        raise InputError(f"{field}: {text!r} is not a model spec; write [NAME=]PATH.py[:ARG][ KEY=VALUE ...]")
    overrides = []
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise InputError(f"{field}: {text!r}: {word!r} is not a KEY=VALUE override (e.g. similarity=dot)")
        overrides.append((key, value))
    return RunSpec(name or default_name(path, arg, words[1:]), path, arg, tuple(overrides), text)


def default_name(path: str, arg: str, overrides: Sequence[str]) -> str:
    """The file name without .py, then the argument and the overrides, as one folder-safe word."""
    raw = os.path.basename(path)[: -len(".py")] + (f"_{arg}" if arg else "") + "".join(f"_{o}" for o in overrides)
    name = re.sub(r"[^A-Za-z0-9._+-]+", "-", raw).strip("-.") or "model"
    if len(name) > _MAX_NAME:
        name = name[: _MAX_NAME - 9] + "-" + hashlib.sha256(raw.encode()).hexdigest()[:8]
    return name


def load_config(path: str, arg: str = "") -> ml_collections.ConfigDict:
    """`get_config(arg)` (or `get_config()` when arg is "") of the config file at `path`."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: config file not found (paths are relative to {os.getcwd()})")
    module_name = "_alignment_jax_config_" + hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:12]
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if not callable(getattr(module, "get_config", None)):
            raise InputError(f"{path}: no get_config function; a config file defines get_config(arg='')")
        config = module.get_config(arg) if arg else module.get_config()
    except InputError:
        raise
    except Exception as e:  # the file is the user's code: whatever it raises is a problem of that file
        raise InputError(f"{path}: the config file failed to load ({load_error(e, path)}); fix the file") from e
    if not isinstance(config, ml_collections.ConfigDict):
        raise InputError(f"{path}: get_config returned {type(config).__name__}, not an ml_collections.ConfigDict")
    return config


def load_error(error: BaseException, path: str) -> str:
    """'Type: message, line N' of an exception raised while loading the config file at `path` (no line when
    the exception did not come from a line of that file)."""
    if isinstance(error, SyntaxError):
        return f"SyntaxError: {error.msg}" + (f", line {error.lineno}" if error.lineno else "")
    frames = [f for f in traceback.extract_tb(error.__traceback__) if same_file(f.filename, path)]
    text = first_line(error) if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" + (f", line {frames[-1].lineno}" if frames else "")


def same_file(a: str, b: str) -> bool:
    """Whether two paths name the same existing file (False when either does not exist)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def resolve(spec: RunSpec, shared: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
    """The spec's config with the `shared` overrides, then the spec's own KEY=VALUE overrides, applied."""
    config = load_config(spec.path, spec.arg)
    if shared is not None:
        apply_overrides(config, shared, source="shared")
    for key, text in spec.overrides:
        set_from_text(config, key, text, source=spec.name)
    return config


def apply_overrides(config: ml_collections.ConfigDict, overrides: ml_collections.ConfigDict, source: str) -> None:
    """Sets every field of the nested `overrides` in `config`; a None value (a placeholder) leaves it alone."""
    for key, value in leaves(overrides):
        if value is not None:
            set_field(config, key, value, source)


def set_field(config: ml_collections.ConfigDict, key: str, value: Any, source: str) -> None:
    """config[a][b] = value for key "a.b"; the field must exist and keep its type."""
    parent, field = parent_of(config, key, source)
    try:
        parent[field] = value
    except TypeError as e:
        raise InputError(f"{source}: {key}={value!r}: {type_problem(parent, field)}") from e


def set_from_text(config: ml_collections.ConfigDict, key: str, text: str, source: str) -> None:
    """set_field with `text` read as the field's type: str as is, bool from true/false, others as literals."""
    parent, field = parent_of(config, key, source)
    try:
        value = typed_value(parent, field, text)
        parent[field] = value
    except (ValueError, TypeError) as e:
        reason = str(e) if isinstance(e, ValueError) else type_problem(parent, field)
        raise InputError(f"{source}: {key}={text!r}: {reason}") from e


def typed_value(parent: ml_collections.ConfigDict, field: str, text: str) -> Any:
    """`text` as a value of parent[field]'s type (ValueError with the reason when it is not one)."""
    kind = parent.get_type(field)
    if kind is str:
        return text
    if kind is bool:
        if text.lower() not in _TRUE + _FALSE:
            raise ValueError("expected true or false")
        return text.lower() in _TRUE
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as e:
        raise ValueError(type_problem(parent, field)) from e
    return (value,) if kind in (tuple, list) and not isinstance(value, tuple | list) else value


def type_problem(parent: ml_collections.ConfigDict, field: str) -> str:
    return f"expected type {parent.get_type(field).__name__}, like its default {parent[field]!r}"


def fingerprint(config: ml_collections.ConfigDict) -> str:
    """A short hash of every field's value: equal configs, equal fingerprints."""
    return hashlib.sha256(config.to_json_best_effort(sort_keys=True).encode()).hexdigest()[:16]


def _starts_spec(piece: str) -> bool:
    return piece.split()[0].split(":", 1)[0].endswith(".py")


def parent_of(
    config: ml_collections.ConfigDict, key: str, source: str = "config"
) -> tuple[ml_collections.ConfigDict, str]:
    """(the section holding key "a.b", "b"); InputError naming the closest field when there is none."""
    *path, field = key.split(".")
    parent = config
    for part in path:
        if not isinstance(parent.get(part), ml_collections.ConfigDict):
            raise InputError(f"{source}: {key}: the config has no section {part!r}{did_you_mean(config, key)}")
        parent = parent[part]
    if field not in parent:
        raise InputError(f"{source}: {key}: the config has no field {field!r}{did_you_mean(config, key)}")
    return parent, field


def did_you_mean(config: ml_collections.ConfigDict, key: str) -> str:
    """ "; did you mean probe.lambdas?" for the dotted field of `config` closest to the unknown `key`: its last
    part close to the key's, then the whole name closest ("" when none is close)."""
    names = [name for name, _ in leaves(config)]
    tail = key.rsplit(".", 1)[-1]
    scored = [
        (
            difflib.SequenceMatcher(None, tail, name.rsplit(".", 1)[-1]).ratio(),
            difflib.SequenceMatcher(None, key, name).ratio(),
            name,
        )
        for name in names
    ]
    close = [entry for entry in scored if entry[0] >= 0.6]
    return f"; did you mean {max(close)[2]}?" if close else ""


def leaves(config: ml_collections.ConfigDict, prefix: str = "") -> list[tuple[str, Any]]:
    """[("a.b", value), ...]: every field of a nested config with its dotted name (after `prefix`)."""
    out = []
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            out += leaves(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out
