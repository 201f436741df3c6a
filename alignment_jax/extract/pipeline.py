"""From images and a model to a finished feature store, resuming where a killed run stopped.

Every process runs `extract` (with `jax.distributed.initialize()` on several hosts): each decodes
only its rows of every global batch; process 0 alone reads and writes the store and broadcasts
what the others need (the shard plan, the final features), so no shared filesystem is assumed
for the store (the images must be readable on every host).
"""

import collections
import dataclasses
import functools
import hashlib
import json
import os
import re
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from alignment_jax.caches import cache_folder
from alignment_jax.data.triplets import load_object_ids
from alignment_jax.errors import InputError
from alignment_jax.extract import memory
from alignment_jax.extract.decode import Decoding, decoded_images
from alignment_jax.extract.extractor import Extractor, fetch
from alignment_jax.extract.image_cache import ImageCache, cached_images, open_image_cache
from alignment_jax.extract.sources import ImageSource, file_source, folder_source, tfds_source, things_source
from alignment_jax.extract.store import FeatureStore
from alignment_jax.models.registry import LoadedModel, load_model
from alignment_jax.models.standins import standin_model
from alignment_jax.progress import progress_bar

SOURCES = ("things", "folder", "tfds")


@dataclasses.dataclass(frozen=True)
class Extraction:
    """features: (n, p) float32, row i = image i; computed: images run through the model by this
    call (0 when the store was complete); seconds: wall time of that computation; from_cache: how many
    of the computed images (this process's rows) came from the decoded-image cache at `image_cache`."""

    features: np.ndarray
    computed: int
    seconds: float
    from_cache: int = 0
    image_cache: str = ""

    @property
    def images_per_s(self) -> float:
        return self.computed / self.seconds if self.seconds else 0.0


def extract(
    source: ImageSource,
    extractor: Extractor,
    decoding: Decoding,
    store_path: str,
    key: dict[str, Any],
    *,
    shard_size: int = 1024,
    store_format: str = "npy",
    num_workers: int = 0,
    prefetch: int = 2,
    progress: bool | str = True,
    image_cache: str = "",
) -> Extraction:
    """Features of every image of `source`: read from the store at `store_path` when it is complete,
    else computed shard by shard (skipping shards already on disk) and stored. Same result on
    every process. `key` names how the features are made; a store with another key is an error.

    image_cache: a folder of decoded-image caches (alignment_jax/extract/image_cache.py), "" for none:
    images decoded before under the same decoding are read from it, the others decoded and added
    (by process 0 only; other processes read a cache they can see and decode the rest). progress: a
    mode of alignment_jax/progress.py, shown by process 0."""
    main = jax.process_index() == 0
    store, error = None, None
    if main:
        try:
            store = FeatureStore(store_path, key, source.ids, shard_size, store_format)
        except InputError as e:
            error = e
        if store is not None and store.damage:
            print(f"extract: {store_path}: {store.damage}; computing the features again", flush=True)
    size, complete = _broadcast(np.array([store.shard_size, store.complete] if store else [0, 0], np.int64))
    if size == 0:
        raise error or InputError(f"{store_path}: process 0 could not open the feature store (see its output)")
    n, dim = len(source), extractor.dim
    if complete:
        features = _broadcast(store.load() if store else np.zeros((n, dim), np.float32))
        return Extraction(features, computed=0, seconds=0.0)

    shards = [range(s, min(s + size, n)) for s in range(0, n, size)]
    done = _broadcast(store.done().astype(np.int32) if store else np.zeros(len(shards), np.int32)).astype(bool)
    batch, local = extractor.batch_size, extractor.local_rows
    batches = [
        (s, t, min(t + batch, rows.stop))
        for s, rows in enumerate(shards)
        if not done[s]
        for t in range(rows.start, rows.stop, batch)
    ]
    mine = [range(t + local.start, min(t + local.stop, stop)) for _, t, stop in batches]
    todo = sum(stop - t for _, t, stop in batches)
    local_size = local.stop - local.start
    indices = [i for rows in mine for i in rows]
    cache = _open_cache(image_cache, source, decoding, main) if image_cache else None
    if cache is None:
        images = decoded_images(source, indices, decoding, num_workers, prefetch * local_size)
    else:
        images = cached_images(source, indices, decoding, cache, num_workers, prefetch * local_size)
    from_cache = int(cache.cached[indices].sum()) if cache is not None else 0
    bar = progress_bar(n, "extract", progress if main else "off", unit="img", initial=n - todo)
    parts: dict[int, list[np.ndarray]] = collections.defaultdict(list)
    finished: dict[int, np.ndarray] = {}

    def finish_batch(shard: int, count: int, out: jax.Array) -> None:
        parts[shard].append(fetch(out)[:count])
        bar.update(count)
        if sum(len(p) for p in parts[shard]) == len(shards[shard]):
            finished[shard] = np.concatenate(parts.pop(shard))
            if store:
                store.write_shard(shard, finished[shard])

    start = time.perf_counter()
    in_flight: collections.deque = collections.deque()
    try:
        for (shard, t, stop), rows in zip(batches, mine, strict=True):
            local_batch = np.zeros((local_size, *extractor.image_shape), np.uint8)
            error = None
            try:
                for r in range(len(rows)):
                    local_batch[r] = next(images)
            except InputError as e:
                error = e
            if _any_process(error is not None):  # an undecodable image: keep the finished shards, then stop
                while in_flight:
                    finish_batch(*in_flight.popleft())
                raise error or InputError("another process could not decode an image (see its error); stopped")
            in_flight.append((shard, stop - t, extractor(local_batch)))  # runs while the next batch decodes
            if len(in_flight) > 1:
                finish_batch(*in_flight.popleft())
        while in_flight:
            finish_batch(*in_flight.popleft())
    finally:
        images.close()
        bar.close()
    seconds = time.perf_counter() - start

    features = np.zeros((n, dim), np.float32)
    if store:
        features = np.concatenate([finished[s] if s in finished else store.read_shard(s) for s in range(len(shards))])
        store.finish(features)
    return Extraction(_broadcast(features), todo, seconds, from_cache, cache.path if cache is not None else "")


def _open_cache(root: str, source: ImageSource, decoding: Decoding, main: bool) -> ImageCache | None:
    """The decoded-image cache in `root` (made by process 0; None where it cannot be had: then the images
    are decoded as without a cache, and process 0 says why)."""
    try:
        return open_image_cache(root, source, decoding, create=main)
    except InputError as e:
        if main:
            print(f"warning: decoding without the decoded-image cache: {e}", file=sys.stderr, flush=True)
        return None


def _any_process(flag: bool) -> bool:
    """True on every process if `flag` is true on any: all processes stop together instead of the others
    waiting forever in the next batch's collectives."""
    if jax.process_count() == 1:
        return flag
    return bool(np.asarray(multihost_utils.process_allgather(np.array(flag))).any())


def _broadcast(array: np.ndarray) -> np.ndarray:
    """Process 0's `array` on every process (same shape everywhere)."""
    return np.asarray(multihost_utils.broadcast_one_to_all(array))


# --- wiring to the config and the model registry ---


def image_source(config: ml_collections.ConfigDict) -> ImageSource:
    """The source named by `config.images` (THINGS objects in the order of the things object list)."""
    images = config.images
    if images.source == "things":
        objects = config.things.objects or (
            os.path.join(config.things.root, "things_concepts.tsv") if config.things.root else ""
        )
        if not objects:
            raise InputError(
                "images.source=things needs the object order: set things.objects=things_concepts.tsv or things.root"
            )
        root = images.root or os.path.join(config.things.root, "images")
        return things_source(root, load_object_ids(objects))
    if images.source == "folder":
        return folder_source(images.root, images.list)
    if images.source == "tfds":
        if not images.tfds_name:
            raise InputError("images.source=tfds needs images.tfds_name (a TFDS name or a prepared dataset folder)")
        return tfds_source(images.tfds_name, images.tfds_split, images.image_key, images.tfds_data_dir, images.id_key)
    raise InputError(f"images.source: {images.source!r} is not one of {SOURCES}")


def model_extractor(
    config: ml_collections.ConfigDict, n_images: int | None = None
) -> tuple[Extractor, Decoding, dict[str, Any]]:
    """config.model as an Extractor over every device, the decoding its inputs need, and the key
    that identifies features made this way (model info incl. checkpoint sha256, image size, dtype and
    matmul precision, stand-in or not; layer, pooling, decoding; the caller adds the images).

    Decoding: images.resize=model uses the model's own resizing (its preprocessing's `fit_image`,
    e.g. bicubic shorter side + centre crop for CLIP); full / center_crop override it. Values are
    scaled on the device (the preprocessing's `normalize`), so uint8 pixels cross to the devices."""
    m, images = config.model, config.images
    name = m.name or m.variant
    if not name:
        raise InputError("no model: set model.name (a registry entry) or model.variant (e.g. B/16)")
    model, extractor = _compiled_model(
        name, m.checkpoint, m.dtype, m.image_size, m.cache_dir, m.normalization, m.layer,
        min(images.batch_size, n_images or images.batch_size), images.token_pooling, m.standin,
    )  # fmt: skip
    layer = m.layer or model.default_layer
    if images.resize == "model":
        record = {"size": model.image_size, "resize": "model", **model.preprocess.options()}
        decoding = Decoding(model.image_size, model.preprocess.fit_image, record, images.jpeg_draft)
    else:
        decoding = Decoding.resize(model.image_size, images.resize, images.jpeg_draft)
    key = {
        "model": model.info,
        "layer": layer,
        "pooling": images.token_pooling if extractor.tokens else "none",
        "decoding": {**decoding.record, "jpeg_draft": decoding.jpeg_draft},
    }
    return extractor, decoding, key


@functools.lru_cache(maxsize=1)
def _compiled_model(
    name: str,
    checkpoint: str,
    dtype: str,
    image_size: int,
    cache_dir: str,
    normalization: str,
    layer: str,
    batch_size: int,
    pooling: str,
    standin: bool,
) -> tuple[LoadedModel, Extractor]:
    """The loaded model and its Extractor, kept for the next call with the same settings (the transfer
    stage extracts several datasets with one model: it is loaded and compiled once). `standin`: the
    registry entry's stand-in weights (models/standins.py) instead of its checkpoint."""
    options = dict(dtype=dtype, image_size=image_size or None, normalization=normalization)
    if standin:
        model = standin_model(name, **options)
    else:
        model = load_model(name, checkpoint, cache_dir=cache_dir or None, **options)
    batch_size, note = memory.fit_batch(
        batch_size,
        memory.bytes_per_image(model.module, model.image_size),
        memory.parameter_bytes(model.params),
        len(jax.devices()),
        memory.free_bytes(),
        name,
    )
    if note and jax.process_index() == 0:
        print(note, flush=True)
    extractor = Extractor(
        lambda params, x: model.module.apply({"params": params}, x)[1],
        model.params,
        layer or model.default_layer,
        image_shape=(model.image_size, model.image_size, 3),
        preprocess=model.preprocess.normalize,
        batch_size=batch_size,
        pooling=pooling,
        n_prefix_tokens=class_tokens(model.module, layer or model.default_layer),
    )
    return model, extractor


def class_tokens(module: Any, layer: str) -> int:
    """How many class tokens lead the tokens of `layer`: 1 for a class-token ("tok") ViT, except in
    `with_posemb` of big_vision's order, where the class token is prepended only after it."""
    if module.pool_type != "tok":
        return 0
    return 0 if layer == "with_posemb" and not module.posemb_with_cls else 1


def extract_with_config(
    config: ml_collections.ConfigDict, source: ImageSource, features_dir: str, name: str = ""
) -> tuple[Extraction, str]:
    """Runs config.model over `source` into the store `features_dir/<name>` (default name: source
    kind, model, layer and a hash of the key). Returns the extraction and the store path."""
    extractor, decoding, key = model_extractor(config, len(source))
    key["images"] = source.description
    if not name:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:10]
        model = config.model.name or config.model.variant
        name = "-".join(_slug(part) for part in (source.description["kind"], model, key["layer"], digest))
    path = os.path.join(features_dir, name)
    images = config.images
    result = extract(
        source,
        extractor,
        decoding,
        path,
        key,
        shard_size=images.shard_size,
        store_format=images.store_format,
        num_workers=images.num_workers,
        prefetch=images.prefetch,
        progress=config.progress,
        image_cache=cache_folder(images.cache, "images", "images.cache"),
    )
    return result, path


def features_for_images(
    config: ml_collections.ConfigDict, image_paths: list[str], name: str, workdir: str
) -> np.ndarray:
    """(n, p) features of config.model (layer, pooling, decoding from config) for image files, row i =
    image_paths[i]; cached in the store `workdir/features/<name>` and reused when it matches."""
    result, _ = extract_with_config(config, file_source(image_paths), os.path.join(workdir, "features"), name)
    return result.features


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", str(text)).strip("_") or "x"
