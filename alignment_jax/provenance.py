"""What each results.json section was computed from, and whether earlier outputs still belong to this run.

A section's provenance is a flat dict of facts, each `name -> JSON value`:

    "config:probe.lambdas": [0.1, 0.01]   a setting that matters for the section (every field of the
                                          config sections a stage names, so new settings count at once)
    "features": "sha256:..."              the THINGS feature matrix (its float32 values), "things": the
                                          triplets and object ids, "transform": the transform applied,
                                          "files:concepts.embedding": size and time of files read as they are
    "section:probe": "..."                the digest of another section's provenance (report, transfer)

results.json keeps them under "provenance". Earlier outputs are stale when one of their facts differs from
the value this run gives the same fact (`conflicts`); a run then moves them aside whole before writing.
"""

import hashlib
import json
import os
from collections.abc import Iterable
from typing import Any

import ml_collections
import numpy as np

from alignment_jax import atomic
from alignment_jax.config.files import leaves


def digest(value: Any) -> str:
    """A short hash of a JSON-able value (equal values, equal digests)."""
    text = json.dumps(atomic.strict(value), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def array_digest(*arrays: np.ndarray | None) -> str:
    """A hash of arrays' shapes, types and values (None counts as an absent array)."""
    h = hashlib.sha256()
    for array in arrays:
        if array is None:
            h.update(b"none;")
            continue
        array = np.ascontiguousarray(array)
        h.update(f"{array.dtype.str}{array.shape};".encode())
        if array.size:
            h.update(memoryview(array).cast("B"))
    return "sha256:" + h.hexdigest()[:32]


def file_digest(path: str) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()[:32]


def files_fingerprint(paths: Iterable[str]) -> str | None:
    """Size and modification time of every file at or under `paths` (folders are walked), hashed: a changed,
    added or removed file changes it. None when no path is given."""
    entries = []
    for path in (p for p in paths if p):
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    entries.append(_stat(os.path.join(root, name)))
        else:
            entries.append(_stat(path))
    return digest(entries) if entries else None


def _stat(path: str) -> list:
    try:
        st = os.stat(path)
    except OSError:
        return [path, None]
    return [path, st.st_size, st.st_mtime_ns]


def settings(config: ml_collections.ConfigDict, *fields: str) -> dict[str, Any]:
    """{"config:<field>": value} for every leaf at or under the dotted `fields` of `config`."""
    out = {}
    for field in fields:
        value = config
        for part in field.split("."):
            value = value[part]
        if isinstance(value, ml_collections.ConfigDict):
            for key, leaf in leaves(value, field + "."):
                out[f"config:{key}"] = atomic.strict(leaf)
        else:
            out[f"config:{field}"] = atomic.strict(value)
    return out


def normalized(facts: dict[str, Any]) -> dict[str, Any]:
    """`facts` as they read back from results.json (tuples as lists, non-finite numbers as None)."""
    return json.loads(json.dumps(atomic.strict(facts)))


def conflicts(earlier: dict[str, dict[str, Any]], now: dict[str, Any]) -> list[str]:
    """The facts of earlier sections ({section: provenance}) that differ from this run's facts `now`, as
    readable lines ("probe: config:probe.lambdas was [0.1], now [0.01]"). Facts only one side has count as
    agreeing: a section this run does not touch stays as long as nothing it was computed from changed."""
    lines = []
    now = normalized(now)
    for section, facts in earlier.items():
        for name, value in (facts or {}).items():
            if name in now and now[name] != value:
                lines.append(f"{section}: {name} was {_short(value)}, now {_short(now[name])}")
    return lines


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
