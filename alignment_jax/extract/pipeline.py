"""From images and a model to a finished feature store, resuming where a killed run stopped.

Every process runs `extract` (with `jax.distributed.initialize()` on several hosts): each decodes
only its rows of every global batch; process 0 alone reads and writes the store and broadcasts
what the others need (the shard plan, the final features), so no shared filesystem is assumed
for the store (the images must be readable on every host).
"""

import collections
import dataclasses
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
from alignment_jax.extract.store import FeatureStore, read_record
from alignment_jax.models.layers import relative_depths, resolve_layers
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
    **options: Any,
) -> Extraction:
    """Features of every image of `source` for the extractor's one layer (the store at `store_path`, made
    the way `key` says); see extract_layers for the options."""
    (layer,) = extractor.layers
    return extract_layers(source, extractor, decoding, {layer: (store_path, key)}, **options)[layer]


def extract_layers(
    source: ImageSource,
    extractor: Extractor,
    decoding: Decoding,
    stores: dict[str, tuple[str, dict[str, Any]]],
    *,
    shard_size: int = 1024,
    store_format: str = "npy",
    num_workers: int = 0,
    prefetch: int = 2,
    progress: bool | str = True,
    image_cache: str = "",
) -> dict[str, Extraction]:
    """Features of every image of `source` for every layer of `extractor`, each in its own store
    (stores: {layer: (path, key)}; `key` names how the features are made, a store with another key is an
    error): read where a store is complete, else computed in one pass over the images for all incomplete
    layers together, shard by shard (skipping shards every incomplete store already holds), and stored.
    Same result on every process.

    image_cache: a folder of decoded-image caches (alignment_jax/extract/image_cache.py), "" for none:
    images decoded before under the same decoding are read from it, the others decoded and added
    (by process 0 only; other processes read a cache they can see and decode the rest). progress: a
    mode of alignment_jax/progress.py, shown by process 0."""
    main = jax.process_index() == 0
    opened, size, complete = _open_on_every_process(stores, extractor.layers, source.ids, shard_size, store_format)
    if all(complete.values()):
        features = np.concatenate([opened[layer].load() for layer in extractor.layers], axis=1) if main else None
        return {layer: Extraction(part, 0, 0.0) for layer, part in _shared(features, extractor, len(source)).items()}
    plan = _Plan.make(extractor, opened, complete, len(source), size)
    cache = _open_cache(image_cache, source, decoding, main) if image_cache else None
    finished, seconds, from_cache = _compute(source, extractor, decoding, plan, opened, cache, num_workers, prefetch,
                                             progress if main else "off")  # fmt: skip
    features = _assemble(extractor, opened, complete, finished, len(plan.shards)) if main else None
    split = _shared(features, extractor, len(source))
    cache_path = cache.path if cache is not None else ""
    return {
        layer: Extraction(split[layer], 0, 0.0)
        if complete[layer]
        else Extraction(split[layer], plan.to_compute, seconds, from_cache, cache_path)
        for layer in extractor.layers
    }


def _open_on_every_process(
    stores: dict[str, tuple[str, dict[str, Any]]], layers: tuple[str, ...], ids, shard_size: int, store_format: str
) -> tuple[dict[str, FeatureStore], int, dict[str, bool]]:
    """(the stores, opened by process 0 alone; the shard size and which layers are complete, on every process)."""
    opened: dict[str, FeatureStore] = {}
    error = None
    if jax.process_index() == 0:
        try:
            opened = _open_stores(stores, ids, shard_size, store_format)
        except InputError as e:
            error = e
        for layer, store in opened.items():
            if store.damage:
                print(f"extract: {stores[layer][0]}: {store.damage}; computing the features again", flush=True)
    header = [opened[layers[0]].shard_size, *(opened[layer].complete for layer in layers)] if opened else []
    header = _broadcast(np.array(header or [0] * (1 + len(layers)), np.int64))  # shard size 0: no store
    if int(header[0]) == 0:
        raise error or InputError(
            f"{stores[layers[0]][0]}: process 0 could not open the feature store (see its output)"
        )
    return opened, int(header[0]), dict(zip(layers, header[1:].astype(bool), strict=True))


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What one pass computes: the shards (image rows of each), which shards each incomplete store already
    holds, the global batches (shard, first row, stop) of the shards not held by every incomplete store, and
    this process's rows of each batch."""

    shards: list[range]
    held: dict[str, np.ndarray]
    batches: list[tuple[int, int, int]]
    mine: list[range]

    @property
    def to_compute(self) -> int:
        return sum(stop - start for _, start, stop in self.batches)

    @classmethod
    def make(cls, extractor: Extractor, opened: dict[str, FeatureStore], complete: dict[str, bool], n: int, size: int):
        main = jax.process_index() == 0
        shards = [range(s, min(s + size, n)) for s in range(0, n, size)]
        held = {layer: opened[layer].done() for layer in extractor.layers if not complete[layer]} if main else {}
        done = np.logical_and.reduce(list(held.values())) if main else np.zeros(len(shards), bool)
        done = _broadcast(done.astype(np.int32)).astype(bool)
        batch, local = extractor.batch_size, extractor.local_rows
        batches = [
            (s, t, min(t + batch, rows.stop))
            for s, rows in enumerate(shards)
            if not done[s]
            for t in range(rows.start, rows.stop, batch)
        ]
        mine = [range(t + local.start, min(t + local.stop, stop)) for _, t, stop in batches]
        return cls(shards, held, batches, mine)


def _compute(
    source: ImageSource,
    extractor: Extractor,
    decoding: Decoding,
    plan: _Plan,
    opened: dict[str, FeatureStore],
    cache: ImageCache | None,
    num_workers: int,
    prefetch: int,
    progress: bool | str,
) -> tuple[dict[int, np.ndarray], float, int]:
    """Runs the plan's batches through the model while the next batch decodes, writing each finished shard
    to the stores that lack it. Returns ({shard: its (rows, P) features}, seconds, images read from the cache)."""
    local = extractor.local_rows
    local_size = local.stop - local.start
    indices = [i for rows in plan.mine for i in rows]
    if cache is None:
        images = decoded_images(source, indices, decoding, num_workers, prefetch * local_size)
    else:
        images = cached_images(source, indices, decoding, cache, num_workers, prefetch * local_size)
    from_cache = int(cache.cached[indices].sum()) if cache is not None else 0
    n = len(source)
    bar = progress_bar(n, "extract", progress, unit="img", initial=n - plan.to_compute)
    parts: dict[int, list[np.ndarray]] = collections.defaultdict(list)
    finished: dict[int, np.ndarray] = {}

    def finish_batch(shard: int, count: int, out: jax.Array) -> None:
        parts[shard].append(fetch(out)[:count])
        bar.update(count)
        if sum(len(p) for p in parts[shard]) == len(plan.shards[shard]):
            finished[shard] = np.concatenate(parts.pop(shard))
            for layer, part in extractor.split(finished[shard]).items():
                if layer in plan.held and not plan.held[layer][shard]:
                    opened[layer].write_shard(shard, part)

    start = time.perf_counter()
    in_flight: collections.deque = collections.deque()
    try:
        for (shard, t, stop), rows in zip(plan.batches, plan.mine, strict=True):
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
    return finished, time.perf_counter() - start, from_cache


def _assemble(
    extractor: Extractor,
    opened: dict[str, FeatureStore],
    complete: dict[str, bool],
    finished: dict[int, np.ndarray],
    n_shards: int,
) -> np.ndarray:
    """(n, P) features of every layer side by side (process 0): complete stores read, the others from the
    shards just computed and those they held, each store finished with its whole matrix."""
    columns = []
    for layer in extractor.layers:
        if complete[layer]:
            columns.append(opened[layer].load())
            continue
        computed = {s: extractor.split(part)[layer] for s, part in finished.items()}
        rows = [computed[s] if s in computed else opened[layer].read_shard(s) for s in range(n_shards)]
        columns.append(np.concatenate(rows))
        opened[layer].finish(columns[-1])
    return np.concatenate(columns, axis=1)


def _shared(features: np.ndarray | None, extractor: Extractor, n: int) -> dict[str, np.ndarray]:
    """Process 0's (n, P) features on every process (the others pass None), split by layer."""
    return extractor.split(_broadcast(np.zeros((n, extractor.dim), np.float32) if features is None else features))


def _open_cache(root: str, source: ImageSource, decoding: Decoding, main: bool) -> ImageCache | None:
    """The decoded-image cache in `root` (made by process 0; None where it cannot be had: then the images
    are decoded as without a cache, and process 0 says why)."""
    try:
        return open_image_cache(root, source, decoding, create=main)
    except InputError as e:
        if main:
            print(f"warning: decoding without the decoded-image cache: {e}", file=sys.stderr, flush=True)
        return None


def _open_stores(
    stores: dict[str, tuple[str, dict[str, Any]]], ids: list[str], shard_size: int, store_format: str
) -> dict[str, FeatureStore]:
    """Every layer's store; new ones take the shard size of the unfinished ones already there (the stores
    of one pass are filled shard by shard together)."""
    records = {layer: read_record(path) for layer, (path, _) in stores.items()}
    sizes = {r["shard_size"] for r in records.values() if r and not r.get("complete") and "shard_size" in r}
    if len(sizes) > 1:
        unfinished = [stores[layer][0] for layer, r in records.items() if r and not r.get("complete")]
        raise InputError(
            f"{unfinished[0]}: unfinished feature stores of these layers were started with different shard sizes "
            f"{sorted(sizes)}; delete all but one of: {', '.join(unfinished)}"
        )
    size = sizes.pop() if sizes else shard_size
    return {layer: FeatureStore(path, key, ids, size, store_format) for layer, (path, key) in stores.items()}


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


@dataclasses.dataclass(frozen=True)
class LayerExtraction:
    """One pass of a model over a source. default: model.layer (or the registry's default layer), the run's
    main features; layers: {layer: (Extraction, store path)} in network order; depths: {layer: relative
    depth} (models/layers.py)."""

    default: str
    layers: dict[str, tuple[Extraction, str]]
    depths: dict[str, float]


class ModelRunner:
    """config.model, loaded once and passed explicitly (a run keeps one: RunContext.model_runner): the model
    and the Extractors made of it, one per set of layers, batch size and poolings (the transfer stage extracts
    several datasets with one model: it is compiled once). Nothing is kept between runs."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.settings = _model_settings(config)
        self._model: LoadedModel | None = None
        self._extractors: dict[tuple, Extractor] = {}

    @property
    def model(self) -> LoadedModel:
        if self._model is None:
            self._model = _load(*self.settings)
        return self._model

    def extractor(self, layers: tuple[str, ...], batch_size: int, poolings: tuple[str, ...]) -> Extractor:
        key = (layers, batch_size, poolings)
        if key not in self._extractors:
            self._extractors[key] = extractor_of(self.model, layers, batch_size, poolings)
        return self._extractors[key]


def model_extractor(
    config: ml_collections.ConfigDict, layers: str = "", n_images: int | None = None, runner: ModelRunner | None = None
) -> tuple[Extractor, Decoding, dict[str, dict[str, Any]]]:
    """config.model as an Extractor over every device of the layers that `layers` names (model.layers'
    syntax: "" = model.layer alone, "all", or a comma list; model.layer is always among them), the decoding
    its inputs need, and per layer the key that identifies features made this way ({layer: key}: model
    info incl. checkpoint sha256, image size, dtype and matmul precision, stand-in or not; layer, pooling,
    decoding; the caller adds the images). The batch is at most `n_images` and lowered to fit the devices'
    memory (extract/memory.py).

    Token layers pool as images.token_pooling says; with several layers (or model.layers set), a layer
    without a class token pools by mean (its key says so) where token_pooling=cls. Decoding:
    images.resize=model uses the model's own resizing (its preprocessing's `fit_image`, e.g. bicubic
    shorter side + centre crop for CLIP); full / center_crop override it. Values are scaled on the device
    (the preprocessing's `normalize`), so uint8 pixels cross to the devices. runner: the run's model (default:
    config.model loaded now)."""
    m, images = config.model, config.images
    runner = runner or ModelRunner(config)
    model = runner.model
    chosen = resolve_layers(layers, model.layer_order, m.layer or model.default_layer)
    several = bool(layers.strip() or m.layers.strip())  # every extraction of a run with model.layers pools alike
    poolings = tuple(layer_pooling(model.module, layer, images.token_pooling, several) for layer in chosen)
    batch_size, note = memory.fit_batch(
        min(images.batch_size, n_images or images.batch_size),
        memory.bytes_per_image(model.module, model.image_size),
        memory.parameter_bytes(model.params),
        len(jax.devices()),
        memory.free_bytes(),
        runner.settings[0],
    )
    if note and jax.process_index() == 0:
        print(note, flush=True)
    extractor = runner.extractor(chosen, batch_size, poolings)
    if images.resize == "model":
        record = {"size": model.image_size, "resize": "model", **model.preprocess.options()}
        decoding = Decoding(model.image_size, model.preprocess.fit_image, record, images.jpeg_draft)
    else:
        decoding = Decoding.resize(model.image_size, images.resize, images.jpeg_draft)
    keys = {
        layer: {
            "model": model.info,
            "layer": layer,
            "pooling": pooling if extractor.token_layers[layer] else "none",
            "decoding": {**decoding.record, "jpeg_draft": decoding.jpeg_draft},
        }
        for layer, pooling in zip(chosen, poolings, strict=True)
    }
    return extractor, decoding, keys


def _model_settings(config: ml_collections.ConfigDict) -> tuple:
    """The arguments of _load for config.model."""
    m = config.model
    if not (m.name or m.variant):
        raise InputError("no model: set model.name (a registry entry) or model.variant (e.g. B/16)")
    return (m.name or m.variant, m.checkpoint, m.dtype, m.image_size, m.cache_dir, m.normalization, m.standin)


def layer_pooling(module: Any, layer: str, pooling: str, fall_back: bool) -> str:
    """The pooling of `layer`'s tokens: `pooling`, or mean where it is cls, the layer has no class token and
    several layers are extracted (`fall_back`)."""
    return "mean" if fall_back and pooling == "cls" and class_tokens(module, layer) == 0 else pooling


def _load(
    name: str, checkpoint: str, dtype: str, image_size: int, cache_dir: str, normalization: str, standin: bool
) -> LoadedModel:
    """The model of config.model's settings. `standin`: the registry entry's stand-in weights
    (models/standins.py) instead of its checkpoint."""
    options = dict(dtype=dtype, image_size=image_size or None, normalization=normalization)
    if standin:
        return standin_model(name, **options)
    return load_model(name, checkpoint, cache_dir=cache_dir or None, **options)


def extractor_of(model: LoadedModel, layers: tuple[str, ...], batch_size: int, poolings: tuple[str, ...]) -> Extractor:
    """An Extractor over every device of `model`'s `layers`, each pooled as `poolings` says (cls | mean)."""
    return Extractor(
        lambda params, x: model.module.apply({"params": params}, x)[1],
        model.params,
        layers,
        image_shape=(model.image_size, model.image_size, 3),
        preprocess=model.preprocess.normalize,
        batch_size=batch_size,
        pooling=dict(zip(layers, poolings, strict=True)),
        n_prefix_tokens={layer: class_tokens(model.module, layer) for layer in layers},
    )


def class_tokens(module: Any, layer: str) -> int:
    """How many tokens lead the patch tokens of `layer` (left out of their mean): 1 for a class-token ("tok")
    ViT plus its registers (DINOv2), except in `with_posemb`, before the registers and, in big_vision's order,
    before the class token. Models that are no ViT say it themselves (`prefix_tokens`)."""
    if hasattr(module, "prefix_tokens"):
        return module.prefix_tokens(layer)
    if layer == "with_posemb":
        return int(module.pool_type == "tok" and module.posemb_with_cls)
    return int(module.pool_type == "tok") + module.num_registers


def extract_with_config(
    config: ml_collections.ConfigDict,
    source: ImageSource,
    features_dir: str,
    name: str = "",
    runner: ModelRunner | None = None,
) -> tuple[Extraction, str]:
    """Runs config.model (the `runner`'s, when given) over `source` into the store `features_dir/<name>`
    (default name: source kind, model, layer and a hash of the key). Returns the extraction and the store path."""
    result = extract_layers_with_config(config, source, features_dir, "", name, runner)
    return result.layers[result.default]


def extract_layers_with_config(
    config: ml_collections.ConfigDict,
    source: ImageSource,
    features_dir: str,
    layers: str,
    name: str = "",
    runner: ModelRunner | None = None,
) -> LayerExtraction:
    """Runs config.model (the `runner`'s, when given: a run passes its own) over `source` once for every layer
    that `layers` names (model.layers' syntax), each into its own store `features_dir/<name>`: by default
    source kind, model, layer and a hash of the key; with a given name, `name` for model.layer and
    `name.<layer>` for the others."""
    runner = runner or ModelRunner(config)
    extractor, decoding, keys = model_extractor(config, layers, len(source), runner)
    model = runner.model
    default = config.model.layer or model.default_layer
    stores = {}
    for layer, key in keys.items():
        key["images"] = source.description
        if name:
            store = name if layer == default else f"{name}.{_slug(layer)}"
        else:
            digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:10]
            model_name = config.model.name or config.model.variant
            store = "-".join(_slug(part) for part in (source.description["kind"], model_name, layer, digest))
        stores[layer] = (os.path.join(features_dir, store), key)
    images = config.images
    results = extract_layers(
        source,
        extractor,
        decoding,
        stores,
        shard_size=images.shard_size,
        store_format=images.store_format,
        num_workers=images.num_workers,
        prefetch=images.prefetch,
        progress=config.progress,
        image_cache=cache_folder(images.cache, "images", "images.cache"),
    )
    return LayerExtraction(
        default,
        {layer: (results[layer], stores[layer][0]) for layer in extractor.layers},
        relative_depths(extractor.layers, model.layer_order),
    )


def features_for_images(
    config: ml_collections.ConfigDict,
    image_paths: list[str],
    name: str,
    workdir: str,
    runner: ModelRunner | None = None,
) -> np.ndarray:
    """(n, p) features of config.model (layer, pooling, decoding from config) for image files, row i =
    image_paths[i]; cached in the store `workdir/features/<name>` and reused when it matches."""
    folder = os.path.join(workdir, "features")
    result, _ = extract_with_config(config, file_source(image_paths), folder, name, runner)
    return result.features


def layer_features_for_images(
    config: ml_collections.ConfigDict,
    image_paths: list[str],
    name: str,
    workdir: str,
    layers: str,
    runner: ModelRunner | None = None,
) -> dict[str, np.ndarray]:
    """{layer: (n, p) features} of config.model for image files, every layer `layers` names (model.layers'
    syntax) from one pass; cached per layer in `workdir/features/<name>` (model.layer) and
    `workdir/features/<name>.<layer>`."""
    source = file_source(image_paths)
    result = extract_layers_with_config(config, source, os.path.join(workdir, "features"), layers, name, runner)
    return {layer: extraction.features for layer, (extraction, _) in result.layers.items()}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", str(text)).strip("_") or "x"
