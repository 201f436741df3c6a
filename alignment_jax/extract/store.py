"""The feature store: a folder with features (n, p), the image ids and a record of how they were made.

    STORE/record.json       key (model, checkpoint hash, layer, pooling, dtype, preprocessing, images),
                            n, sha256 of the ids, shard_size, complete, size and sha256 of the final file
    STORE/shards/00000.npy  rows [0, shard_size), then [shard_size, 2 shard_size), ...: each written
                            atomically when it is finished; a killed run resumes after the last one
    STORE/features.npy      (n, p) float32, row i = image ids[i]      } written when every shard is
    STORE/features.h5       or HDF5: datasets features, object_ids    } done (thingsvision layout)
    STORE/object_ids.txt    one id per line

A store whose record names another key is never reused: opening it raises InputError. A shard or final
file that is truncated or damaged (its size, header or sha256 differs from what was written) is computed
again instead of read. Each layer of a model has its own store (the key names the layer); a run of several
layers fills theirs in one pass over the images (extract/pipeline.py).
"""

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from typing import Any

import numpy as np

from alignment_jax import atomic
from alignment_jax.data.npy import npy_problem
from alignment_jax.errors import InputError

FORMATS = ("npy", "h5")
RECORD_VERSION = 1


class FeatureStore:
    """A feature store at `path` for images `ids` and the extraction described by `key` (JSON-able).

    Opening an existing store checks that it was made with the same key and ids; a new store
    records them at once, before any shard is written.
    """

    def __init__(self, path: str, key: dict[str, Any], ids: Sequence[str], shard_size: int, fmt: str = "npy"):
        if fmt not in FORMATS:
            raise InputError(f"images.store_format: {fmt!r} is not one of {FORMATS}")
        if shard_size < 1:
            raise InputError(f"images.shard_size must be >= 1, got {shard_size}")
        self.path = path
        self.ids = tuple(ids)
        self.fmt = fmt
        self.key = json.loads(json.dumps(key))  # as it reads back from record.json
        self.record_path = os.path.join(path, "record.json")
        record = self._read_record()
        if record is None:
            record = {
                "version": RECORD_VERSION,
                "key": self.key,
                "n": len(self.ids),
                "ids_sha256": _ids_digest(self.ids),
            }
            record.update(shard_size=shard_size, complete=False)
            atomic.write_json(self.record_path, record)
        else:
            self._check(record)
        self.record = record
        self.shard_size = int(record["shard_size"])
        self.n_shards = -(-len(self.ids) // self.shard_size)
        atomic.remove_temporary(os.path.join(path, "shards"))  # left by a killed write
        self.damage = self._final_damage() if self.complete else ""
        if self.damage:  # recompute instead of failing: the record says what the features must be
            self.record = {**self.record, "complete": False}
            atomic.write_json(self.record_path, self.record)

    def _read_record(self) -> dict | None:
        return read_record(self.path)

    def _check(self, record: dict) -> None:
        old = record.get("key", {})
        if old != self.key:
            changed = sorted(k for k in set(old) | set(self.key) if old.get(k) != self.key.get(k))
            detail = "; ".join(f"{k}: stored {old.get(k)!r}, now {self.key.get(k)!r}" for k in changed[:3])
            raise InputError(
                f"{self.path}: feature store made another way ({detail}); delete it or choose another store name"
            )
        if record.get("n") != len(self.ids) or record.get("ids_sha256") != _ids_digest(self.ids):
            raise InputError(f"{self.path}: feature store holds other images; delete it or choose another store name")

    def _final_damage(self) -> str:
        """Why the final features file of a complete store cannot be used ("" when it can): missing, or its
        size, header or sha256 differs from what the record says was written."""
        path = self.features_path
        if not os.path.exists(path):
            other = os.path.join(self.path, "features." + ("h5" if self.fmt == "npy" else "npy"))
            if not os.path.exists(other):
                return "its features file is missing"
            path = other
        written = self.record.get("files", {}).get(os.path.basename(path))
        if written is None:  # a store of an earlier version: check what the file itself says
            problem = npy_problem(path) if path.endswith(".npy") else ""
            return f"{os.path.basename(path)}: {problem}" if problem else ""
        if os.path.getsize(path) != written["bytes"]:
            return f"{os.path.basename(path)} has {os.path.getsize(path):,} bytes, the record says {written['bytes']:,}"
        if _sha256(path) != written["sha256"]:
            return f"{os.path.basename(path)} differs from what was written (sha256)"
        return ""

    @property
    def complete(self) -> bool:
        return bool(self.record.get("complete"))

    @property
    def features_path(self) -> str:
        return os.path.join(self.path, f"features.{self.fmt}")

    def shard_rows(self, shard: int) -> range:
        """The image indices of `shard`."""
        return range(shard * self.shard_size, min((shard + 1) * self.shard_size, len(self.ids)))

    def _shard_path(self, shard: int) -> str:
        return os.path.join(self.path, "shards", f"{shard:05d}.npy")

    def done(self) -> np.ndarray:
        """(n_shards,) bool: which shards are on disk with the right number of rows."""
        done = np.zeros(self.n_shards, bool)
        for shard in range(self.n_shards):
            path = self._shard_path(shard)
            if os.path.exists(path):
                if npy_problem(path):  # truncated or damaged (a copy or disk gone wrong): computed again
                    os.remove(path)
                    continue
                shape = np.load(path, mmap_mode="r").shape
                done[shard] = len(shape) == 2 and shape[0] == len(self.shard_rows(shard))
        return done

    def write_shard(self, shard: int, features: np.ndarray) -> None:
        """features: (len(shard_rows(shard)), p)."""
        if features.shape[0] != len(self.shard_rows(shard)):
            raise ValueError(f"shard {shard}: {features.shape[0]} rows, expected {len(self.shard_rows(shard))}")
        atomic.save_npy(self._shard_path(shard), features.astype(np.float32))

    def read_shard(self, shard: int) -> np.ndarray:
        return np.load(self._shard_path(shard))

    def finish(self, features: np.ndarray) -> None:
        """Writes the final (n, p) features and the ids, marks the store complete, drops the shards."""
        if features.shape[0] != len(self.ids):
            raise ValueError(f"{features.shape[0]} feature rows for {len(self.ids)} images")
        self._write_final(features)
        atomic.write_text(os.path.join(self.path, "object_ids.txt"), "".join(i + "\n" for i in self.ids))
        files = {**self.record.get("files", {}), os.path.basename(self.features_path): self._written()}
        self.record = {**self.record, "p": int(features.shape[1]), "files": files, "complete": True}
        atomic.write_json(self.record_path, self.record)
        shutil.rmtree(os.path.join(self.path, "shards"), ignore_errors=True)

    def _write_final(self, features: np.ndarray) -> None:
        features = np.asarray(features, np.float32)
        if self.fmt == "npy":
            atomic.save_npy(self.features_path, features)
            return
        h5py = _h5py(self.features_path)
        with atomic.atomic_path(self.features_path, suffix=".h5") as tmp, h5py.File(tmp, "w") as f:
            f.create_dataset("features", data=features)
            f.create_dataset("object_ids", data=np.array(self.ids, dtype=object), dtype=h5py.string_dtype())

    def load(self) -> np.ndarray:
        """(n, p) float32 features of a complete store (written in this format from the other if missing)."""
        if not self.complete:
            raise ValueError(f"{self.path}: store is not complete")
        if not os.path.exists(self.features_path):
            other = os.path.join(self.path, "features." + ("h5" if self.fmt == "npy" else "npy"))
            if not os.path.exists(other):
                raise InputError(f"{self.path}: marked complete but has no features file; delete the store folder")
            self._write_final(_read_features(other))
            files = {**self.record.get("files", {}), os.path.basename(self.features_path): self._written()}
            self.record = {**self.record, "files": files}
            atomic.write_json(self.record_path, self.record)
        return _read_features(self.features_path)

    def _written(self) -> dict:
        return {"bytes": os.path.getsize(self.features_path), "sha256": _sha256(self.features_path)}


def read_record(path: str) -> dict | None:
    """The record of the store at `path`, or None when there is none yet (read before opening several
    stores that are filled together, so new ones take the shard size of unfinished ones)."""
    record_path = os.path.join(path, "record.json")
    if not os.path.exists(record_path):
        return None
    try:
        with open(record_path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(f"{record_path}: not valid JSON ({e}); delete the store folder") from e


def _read_features(path: str) -> np.ndarray:
    if path.endswith(".npy"):
        return np.load(path)
    with _h5py(path).File(path, "r") as f:
        return np.asarray(f["features"], np.float32)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _ids_digest(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


def _h5py(path: str):
    try:
        import h5py
    except ImportError as e:
        raise InputError(f"{path}: the HDF5 store needs h5py (pip install h5py), or set images.store_format=npy") from e
    return h5py
