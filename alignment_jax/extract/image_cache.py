"""The decoded-image cache: the uint8 pixels of an image source under one decoding, decoded once and read
back by every later model and run that decodes the same images the same way (a sweep over models that
share an input size decodes THINGS once).

    ROOT/<kind>-<size>px-<hash of the key>/
        record.json   version, key = {"images": kind, n, sha256 of the names (paths)[, TFDS dataset],
                      "decoding": size, resize method, crop, resampling, jpeg_draft}, shape
        pixels.npy    (n, size, size, 3) uint8, memory-mapped, allocated in full when the folder is made;
                      row i = image i of the source
        stamps.npy    (n, 16) uint8: per row, the first 16 bytes of sha256(name, signature) of the image the
                      row was decoded from (signature: the file's size and modification time); zeros = empty

A row is used only while its stamp matches the image as it is now: an image replaced in place (new size
or modification time) is decoded again, as the feature store notices it. Stamps are written only after
the rows' pixels are flushed to disk, so a run killed at any moment (SIGKILL included) leaves rows that
are either complete and stamped or decoded again by the next run. The folder appears complete or not at
all (made under a temporary name, then renamed). ROOT defaults to <package cache folder>/images
(alignment_jax/caches.py); every folder in it can be deleted at any time.
"""

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence

import numpy as np

from alignment_jax import atomic
from alignment_jax.errors import InputError
from alignment_jax.extract.decode import Decoding, decoded_images
from alignment_jax.extract.sources import ImageSource

VERSION = 1
STAMP_BYTES = 16
COMMIT_EVERY = 256  # rows decoded between two flushes (pixels, then their stamps)


def cache_key(source: ImageSource, decoding: Decoding) -> dict:
    """What the pixels depend on: which images (kind, count, names in order, TFDS dataset) and how they
    are decoded. The images' contents are checked per row (stamps), not here."""
    images = {
        "kind": source.description["kind"],
        "n": len(source),
        "names_sha256": hashlib.sha256("\n".join(source.names).encode("utf-8")).hexdigest(),
    }
    if "dataset" in source.description:
        images["dataset"] = source.description["dataset"]
    decoding_record = {**decoding.record, "jpeg_draft": decoding.jpeg_draft}
    return json.loads(json.dumps({"images": images, "decoding": decoding_record}))  # as it reads back from JSON


def stamps(names: Sequence[str], signatures: Sequence[str]) -> np.ndarray:
    """(n, STAMP_BYTES) uint8: the stamp of image i = sha256(names[i], signatures[i]) (no signatures: the name)."""
    signatures = signatures or [""] * len(names)
    digests = b"".join(
        hashlib.sha256(f"{name}\0{signature}".encode()).digest()[:STAMP_BYTES]
        for name, signature in zip(names, signatures, strict=True)
    )
    return np.frombuffer(digests, np.uint8).reshape(len(names), STAMP_BYTES)


class ImageCache:
    """An open cache folder for one source and decoding.

    cached: (n,) bool, the rows holding the current image (stamp matches), as of opening plus the rows
      committed since. Only a writable cache takes new rows (`put`, made durable by `commit`); a cache
      whose files this process may not write is opened for reading."""

    def __init__(self, path: str, source: ImageSource, decoding: Decoding, writable: bool):
        self.path = path
        self.writable = writable
        shape = (len(source), decoding.size, decoding.size, 3)
        record = _read_record(path)
        if record.get("version") != VERSION or record.get("key") != cache_key(source, decoding):
            raise InputError(f"{path}: decoded-image cache made another way (record.json); delete the folder")
        if tuple(record.get("shape", ())) != shape:
            raise InputError(f"{path}: decoded-image cache of shape {record.get('shape')}, expected {shape}; delete it")
        if writable and not os.access(os.path.join(path, "pixels.npy"), os.W_OK):
            self.writable = False  # another user's cache, say: read what it holds, decode the rest
        mode = "r+" if self.writable else "r"
        try:
            self.pixels = np.load(os.path.join(path, "pixels.npy"), mmap_mode=mode)
            self.stamps = np.load(os.path.join(path, "stamps.npy"), mmap_mode=mode)
        except (OSError, ValueError) as e:
            raise InputError(f"{path}: unreadable decoded-image cache ({e}); delete the folder") from e
        if self.pixels.shape != shape or self.stamps.shape != (shape[0], STAMP_BYTES):
            raise InputError(f"{path}: decoded-image cache files do not match record.json; delete the folder")
        self.wanted = stamps(source.names, source.signatures)
        self.cached = (np.asarray(self.stamps) == self.wanted).all(axis=1)
        self._pending: list[int] = []

    @property
    def nbytes(self) -> int:
        """Bytes on disk: the pixels (allocated in full) and the stamps."""
        return int(self.pixels.nbytes + self.stamps.nbytes)

    def read(self, i: int) -> np.ndarray:
        """(size, size, 3) uint8 view of row i (only meaningful where cached[i])."""
        return self.pixels[i]

    def put(self, i: int, image: np.ndarray) -> None:
        """Stores the decoded image of row i; it counts (is stamped) from the next commit on."""
        if not self.writable:
            return
        self.pixels[i] = image
        self._pending.append(i)
        if len(self._pending) >= COMMIT_EVERY:
            self.commit()

    def commit(self) -> None:
        """Flushes the rows put since the last commit, then stamps them (and flushes the stamps)."""
        if not self._pending:
            return
        rows = np.array(self._pending)
        self.pixels.flush()
        self.stamps[rows] = self.wanted[rows]
        self.stamps.flush()
        self.cached[rows] = True
        self._pending.clear()


def cached_images(
    source: ImageSource,
    indices: Sequence[int],
    decoding: Decoding,
    cache: ImageCache,
    num_workers: int = 0,
    ahead: int = 256,
) -> Iterator[np.ndarray]:
    """Like `decoded_images`: the decoded image of each index, in order; rows the cache holds are read from
    it, the others decoded in background threads and put into it (committed as they accumulate, and
    when the iteration stops, an error included)."""
    hit = cache.cached.copy()
    decoded = decoded_images(source, [i for i in indices if not hit[i]], decoding, num_workers, ahead)
    try:
        for i in indices:
            if hit[i]:
                yield cache.read(i)
            else:
                image = next(decoded)
                cache.put(i, image)
                yield image
    finally:
        decoded.close()
        cache.commit()


def open_image_cache(root: str, source: ImageSource, decoding: Decoding, create: bool = True) -> ImageCache | None:
    """The cache of `source` under `decoding` in folder `root`: opened, or made first when `create` (the
    writer; other processes of a multi-host run pass create=False and read a cache they can see, or None)."""
    key = cache_key(source, decoding)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:12]
    path = os.path.join(root, f"{key['images']['kind']}-{decoding.size}px-{digest}")
    if not os.path.isfile(os.path.join(path, "record.json")):
        if not create:
            return None
        _make(path, key, len(source), decoding.size)
    return ImageCache(path, source, decoding, writable=create)


def _make(path: str, key: dict, n: int, size: int) -> None:
    """Makes the cache folder under a temporary name and renames it into place (a folder another run made
    meanwhile wins). The pixels are allocated in full, so a full disk fails here with a clear error
    instead of killing the run later (writing to a memory map past the disk's end is a SIGBUS)."""
    root = os.path.dirname(path)
    try:
        os.makedirs(root, exist_ok=True)
        stage = tempfile.mkdtemp(dir=root, prefix="." + os.path.basename(path) + ".")
    except OSError as e:
        raise InputError(f"{root}: cannot make the decoded-image cache ({e}); set images.cache=DIR or off") from e
    try:
        shape = (n, size, size, 3)
        pixels = np.lib.format.open_memmap(os.path.join(stage, "pixels.npy"), "w+", np.uint8, shape)
        with open(os.path.join(stage, "pixels.npy"), "r+b") as f:
            allocate = getattr(os, "posix_fallocate", None)
            if allocate is not None:
                allocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
        del pixels
        np.save(os.path.join(stage, "stamps.npy"), np.zeros((n, STAMP_BYTES), np.uint8))
        atomic.write_json(os.path.join(stage, "record.json"), {"version": VERSION, "key": key, "shape": list(shape)})
        try:
            os.rename(stage, path)
        except OSError:
            if not os.path.isfile(os.path.join(path, "record.json")):
                raise
    except OSError as e:
        gigabytes = n * size * size * 3 / 1e9
        raise InputError(
            f"{root}: cannot make the decoded-image cache of {gigabytes:.2f} GB ({e}); free space there, "
            "set images.cache=DIR to put it elsewhere, or images.cache=off"
        ) from e
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _read_record(path: str) -> dict:
    try:
        with open(os.path.join(path, "record.json"), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: unreadable decoded-image cache record ({e}); delete the folder") from e
    return record if isinstance(record, dict) else {}
