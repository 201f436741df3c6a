"""Atomic writes: write to a temporary file beside the target, then rename over it.

A reader never sees a half-written file; an interrupted write leaves the old file (or none). A kill can
leave the temporary file itself (`.<name>.<random>.aj-tmp[.ext]`); `remove_temporary` clears them, and
every run does so in its workdir before writing. JSON is strict: NaN and infinities are written as null.
"""

import contextlib
import json
import math
import os
import re
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np

TEMPORARY = ".aj-tmp"  # marks the temporary files and folders of atomic writes
_TEMPORARY_NAME = re.compile(r"^\..+" + re.escape(TEMPORARY) + r"(\.[A-Za-z0-9]+)?$")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """Yields a temporary path in the target's folder; renames it to `path` on success."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=TEMPORARY + suffix)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[str]:
    """Yields a fresh temporary folder beside `path` (not yet existing, for writers such as orbax that make
    it); on success it replaces `path`. An old `path` is moved aside first and deleted last, so some
    complete version is on disk at every moment."""
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    stage = tempfile.mkdtemp(dir=os.path.dirname(path), prefix="." + os.path.basename(path) + ".", suffix=TEMPORARY)
    new, old = os.path.join(stage, "new"), os.path.join(stage, "old")
    try:
        yield new
        if os.path.exists(path):
            os.replace(path, old)
        os.replace(new, path)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Strict JSON (any parser reads it back): NaN and infinities become null."""
    write_text(path, dumps(obj) + "\n")


def dumps(obj: Any) -> str:
    """`obj` as strict, indented JSON; numpy scalars and arrays as numbers and lists, non-finite floats as null."""
    return json.dumps(strict(obj), indent=2, sort_keys=False, allow_nan=False)


def strict(obj: Any) -> Any:
    """A copy of `obj` with plain Python containers and numbers, every non-finite float replaced by None."""
    if isinstance(obj, dict):
        return {str(k): strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return strict(obj.tolist())
    if isinstance(obj, np.generic):
        return strict(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, str | int | float):
        return obj
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def remove_stale_temporary(path: str | os.PathLike, idle_seconds: float = 600.0) -> list[str]:
    """Deletes temporary files of atomic writes to `path` that nothing has written for `idle_seconds` (a
    killed write's; in a folder that other processes share, such as a download cache, where a younger one
    may be another process's write in progress)."""
    path = os.fspath(path)
    folder, prefix = os.path.dirname(os.path.abspath(path)), "." + os.path.basename(path) + "."
    removed = []
    for name in os.listdir(folder) if os.path.isdir(folder) else ():
        full = os.path.join(folder, name)
        if name.startswith(prefix) and _TEMPORARY_NAME.match(name):
            with contextlib.suppress(FileNotFoundError):
                if time.time() - os.path.getmtime(full) > idle_seconds:
                    if os.path.isdir(full):
                        shutil.rmtree(full)
                    else:
                        os.remove(full)
                    removed.append(full)
    return removed


def remove_temporary(folder: str | os.PathLike, recursive: bool = True) -> list[str]:
    """Deletes the temporary files and folders that killed atomic writes left in `folder` (and below it when
    `recursive`); returns their paths."""
    removed = []
    for root, dirs, files in os.walk(os.fspath(folder)):
        for name in [d for d in dirs if _TEMPORARY_NAME.match(d)]:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            dirs.remove(name)
            removed.append(os.path.join(root, name))
        for name in files:
            if _TEMPORARY_NAME.match(name):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(root, name))
                removed.append(os.path.join(root, name))
        if not recursive:
            break
    return removed


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, np.asarray(array))


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """np.savez's format (a zip of `<key>.npy` files, stored) with a fixed timestamp: the same arrays give the
    same bytes, so a file's sha256 does not depend on when, or by which of several processes, it was written."""
    with atomic_path(path, suffix=".npz") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for key, value in arrays.items():
            entry = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(entry, "w", force_zip64=True) as f:  # as np.savez: entries over 2 GiB
                np.lib.format.write_array(f, np.asarray(value), allow_pickle=False)
