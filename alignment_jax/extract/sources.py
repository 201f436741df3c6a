"""Image sources: the images of a run in a fixed order, one id per image.

A source hands out *references* in row order: a file path (read and decoded later in a worker
thread) or the encoded bytes of an image (TFDS, read sequentially). Row i of the feature matrix is
image i of the source.
"""

import contextlib
import dataclasses
import hashlib
import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from alignment_jax.data.text import read_text
from alignment_jax.errors import InputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

Ref = str | bytes  # a file path, or the encoded bytes of one image


@dataclasses.dataclass(frozen=True)
class ImageSource:
    """n images in row order.

    ids: (n,) one id per image (object id, relative path, TFDS id or index).
    names: (n,) what an error message calls image i (its path, or `tfds:NAME/SPLIT[i]`).
    refs: refs(indices) yields the reference of each index, in the given (ascending) order.
    description: JSON-able facts that define the images (kind, count, digest), for the store record.
    signatures: (n,) what identifies image i's content without reading it (a file's size and modification
      time), or () where the description alone fixes every image (a prepared TFDS dataset).
    """

    ids: tuple[str, ...]
    names: tuple[str, ...]
    refs: Callable[[Sequence[int]], Iterator[Ref]]
    description: dict
    signatures: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.ids)


def is_image_file(name: str) -> bool:
    return not os.path.basename(name).startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def file_source(paths: Sequence[str], ids: Sequence[str] | None = None, kind: str = "files") -> ImageSource:
    """Images from explicit file paths; ids default to the paths as given. Missing files fail here."""
    paths = tuple(paths)
    ids = tuple(ids) if ids is not None else paths
    if not paths:
        raise InputError(f"{kind}: no images given")
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise InputError(f"{missing[0]}: image file not found ({len(missing)} of {len(paths)} missing)")
    stats = [os.stat(p) for p in paths]
    signatures = tuple(f"{st.st_size}:{st.st_mtime_ns}" for st in stats)
    description = {"kind": kind, "n": len(paths), "digest": _digest(ids, signatures)}
    return ImageSource(
        ids=ids,
        names=paths,
        refs=lambda indices: (paths[i] for i in indices),
        description=description,
        signatures=signatures,
    )


def things_source(images_root: str, object_ids: Sequence[str]) -> ImageSource:
    """THINGS layout: object i is `images_root/<id>.jpg` (any image extension) or the first image
    file, in sorted order, of the folder `images_root/<id>/`."""
    if not os.path.isdir(images_root):
        raise InputError(f"{images_root}: THINGS image folder not found (images.root)")
    paths, missing = [], []
    for object_id in object_ids:
        path = _things_image(images_root, object_id)
        if path is None:
            missing.append(object_id)
        paths.append(path)
    if missing:
        raise InputError(
            f"{images_root}: no image for {len(missing)} of {len(object_ids)} objects ({', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}); expected <id>.jpg or a folder <id>/ with an image in it"
        )
    return file_source(paths, object_ids, kind="things")


def _things_image(root: str, object_id: str) -> str | None:
    for extension in IMAGE_EXTENSIONS:
        path = os.path.join(root, object_id + extension)
        if os.path.isfile(path):
            return path
    folder = os.path.join(root, object_id)
    if os.path.isdir(folder):
        files = sorted(f for f in os.listdir(folder) if is_image_file(f) and os.path.isfile(os.path.join(folder, f)))
        if files:
            return os.path.join(folder, files[0])
    return None


def folder_source(root: str = "", list_file: str = "") -> ImageSource:
    """A plain folder: every image file under `root` (recursively, sorted by relative path; id = that
    path), or the files named in `list_file`, one per line, relative to `root` (default: the list
    file's folder); id = the line."""
    if list_file:
        if not os.path.isfile(list_file):
            raise InputError(f"{list_file}: image list file not found (images.list)")
        text = read_text(list_file, "image list file (images.list)")
        lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        if not lines:
            raise InputError(f"{list_file}: no image paths in the list file (images.list)")
        base = root or os.path.dirname(os.path.abspath(list_file))
        paths = [line if os.path.isabs(line) else os.path.join(base, line) for line in lines]
        missing = [(n, line) for n, (line, p) in enumerate(zip(lines, paths, strict=True)) if not os.path.isfile(p)]
        if missing:
            n, line = missing[0]
            raise InputError(
                f"{list_file}: line {n + 1} names {line!r}, not a file under {base} ({len(missing)} missing); "
                "fix the list or set images.root to the folder the paths are relative to"
            )
        return file_source(paths, lines, kind="list")
    if not os.path.isdir(root):
        raise InputError(f"{root or '(empty)'}: image folder not found (images.root)")
    relative = sorted(
        os.path.relpath(os.path.join(folder, f), root).replace(os.sep, "/")
        for folder, _, files in os.walk(root)
        for f in files
        if is_image_file(f)
    )
    if not relative:
        raise InputError(f"{root}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in the folder (images.root)")
    return file_source([os.path.join(root, r) for r in relative], relative, kind="folder")


def subset_source(source: ImageSource, indices: Sequence[int], ids: Sequence[str], kind: str) -> ImageSource:
    """The images of `source` at `indices` (any order; e.g. AligNet's TFDS imagenet2012 indices of its sorted
    file names), image i named ids[i]. Each chunk is read from `source` in ascending order and handed back in
    the subset's order."""
    indices = np.asarray(indices, np.int64)
    if len(indices) and (indices.min() < 0 or indices.max() >= len(source)):
        bad = int(np.argmax((indices < 0) | (indices >= len(source))))
        raise InputError(f"{kind}: image {ids[bad]} has index {int(indices[bad])}, not in 0..{len(source) - 1}")

    def refs(rows: Sequence[int]) -> Iterator[Ref]:
        wanted = indices[np.asarray(rows, np.int64)]
        order = np.argsort(wanted, kind="stable")
        fetched = list(source.refs([int(i) for i in wanted[order]]))
        by_row = [None] * len(wanted)
        for position, ref in zip(order, fetched, strict=True):
            by_row[position] = ref
        return iter(by_row)

    description = {"kind": kind, "of": source.description, "n": len(ids), "digest": _digest(ids, map(str, indices))}
    signatures = tuple(source.signatures[i] for i in indices) if source.signatures else ()
    names = tuple(source.names[i] for i in indices)
    return ImageSource(ids=tuple(ids), names=names, refs=refs, description=description, signatures=signatures)


def tfds_source(name: str, split: str, image_key: str = "image", data_dir: str = "", id_key: str = "") -> ImageSource:
    """A prepared TFDS dataset (`name` registered in `data_dir`, or a prepared dataset folder), in stored
    order without shuffling; images stay encoded until the worker threads decode them. ids: the `id_key`
    feature, or the example index.

    A dataset prepared in the array_record format (`tfds build --file_format=array_record`) is read by
    random access through `tfds.data_source`, without TensorFlow; a tfrecord one through tf.data, which
    needs TensorFlow."""
    builder, n = tfds_split(name, split, data_dir)
    features = builder.info.features
    for key in (image_key, id_key):
        if key and key not in features:
            raise InputError(f"tfds:{name}: no feature {key!r} (features: {sorted(features.keys())})")
    rows = _rows(builder, split, name)

    def refs(indices: Sequence[int]) -> Iterator[bytes]:
        return (example[image_key] for example in rows(indices, (image_key,)))

    ids = tuple(_text(e[id_key]) for e in rows(range(n), (id_key,))) if id_key else tuple(str(i) for i in range(n))
    names = tuple(f"tfds:{builder.info.name}/{split}[{i}]" for i in range(n))
    description = {
        "kind": "tfds",
        "dataset": f"{builder.info.full_name}/{split}",
        "image_key": image_key,
        "n": n,
        "digest": _digest(ids, []),
    }
    return ImageSource(ids=ids, names=names, refs=refs, description=description)


def tfds_split(name: str, split: str, data_dir: str = "") -> tuple[object, int]:
    """(builder, number of examples) of a prepared TFDS dataset's split: `name` registered in `data_dir`, or a
    prepared dataset folder. Reads the dataset's description only."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise InputError("images.source=tfds needs tensorflow-datasets: pip install 'alignment_jax[tfds]'") from e
    try:
        if os.path.isfile(os.path.join(name, "dataset_info.json")):
            builder = tfds.builder_from_directory(name)
        else:
            builder = tfds.builder(name, data_dir=data_dir or None)
        return builder, builder.info.splits[split].num_examples
    except Exception as e:  # tfds raises many types (DatasetNotFoundError, KeyError, ...)
        reason = (str(e).strip().splitlines() or [""])[0]  # DatasetNotFoundError goes on to list every dataset
        raise InputError(
            f"tfds:{name}: cannot open split {split!r} ({type(e).__name__}: {reason}); prepare it with `tfds build "
            "--file_format=array_record` and set images.tfds_data_dir, or give the prepared dataset folder as "
            "images.tfds_name"
        ) from e


def tfds_columns(builder, split: str, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """{key: (n,) array} of the scalar features `keys` (text as str, e.g. imagenet2012's file_name; numbers as
    int64, e.g. its label) of every example of the split, in stored order: one sequential pass, images left
    encoded and dropped as each example is read."""
    n = builder.info.splits[split].num_examples
    rows = _rows(builder, split, builder.info.name)
    values: dict[str, list] = {key: [] for key in keys}
    for example in rows(range(n), keys):
        for key in keys:
            values[key].append(example[key])
    return {
        key: np.array([_text(v) for v in column]) if column and isinstance(column[0], bytes) else np.array(column)
        for key, column in values.items()
    }


Rows = Callable[[Sequence[int], tuple[str, ...]], Iterator[dict]]


def _rows(builder, split: str, name: str) -> Rows:
    """rows(indices, keys) of the split, with every image feature left encoded (SkipDecoding)."""
    import tensorflow_datasets as tfds

    features = builder.info.features
    decoders = {k: tfds.decode.SkipDecoding() for k, f in features.items() if isinstance(f, tfds.features.Image)}
    if builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD:
        return _data_source_rows(builder, split, decoders)
    return _tf_data_rows(builder, split, decoders, name)


def _data_source_rows(builder, split: str, decoders: dict) -> Rows:
    """rows(indices, keys): the examples at `indices` (ascending), by random access into array_record files."""
    source = builder.as_data_source(split=split, decoders=decoders)

    def rows(indices: Sequence[int], keys: tuple[str, ...]) -> Iterator[dict]:
        for i in indices:
            example = source[int(i)]
            yield {k: example[k] for k in keys}

    return rows


def _tf_data_rows(builder, split: str, decoders: dict, name: str) -> Rows:
    """rows(indices, keys): the examples at `indices` (ascending), read in order through tf.data."""
    try:
        import tensorflow as tf
    except ImportError as e:
        raise InputError(
            f"tfds:{name}: prepared as {builder.info.file_format.value}, which needs TensorFlow to read: prepare "
            "it again with `tfds build --file_format=array_record` (read without TensorFlow), "
            "or pip install 'alignment_jax[tfrecord]'"
        ) from e
    import tensorflow_datasets as tfds

    with contextlib.suppress(RuntimeError):  # already initialized
        tf.config.set_visible_devices([], "GPU")  # tf.data only reads; the accelerators are JAX's

    def rows(indices: Sequence[int], keys: tuple[str, ...]) -> Iterator[dict]:
        if not len(indices):
            return
        start, stop = indices[0], indices[-1] + 1
        dataset = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders)
        dataset = dataset.map(lambda example: {k: example[k] for k in keys}).skip(start).take(stop - start)
        wanted = iter(indices)
        target = next(wanted)
        for i, example in enumerate(tfds.as_numpy(dataset), start=start):
            if i == target:
                yield example
                target = next(wanted, -1)

    return rows


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _digest(ids: Sequence[str], signatures: Sequence[str]) -> str:
    """sha256 over the ids and the files' sizes and modification times: what identifies the images
    without reading them (an image replaced in place changes its modification time)."""
    h = hashlib.sha256()
    for item in (*ids, *signatures):
        h.update(item.encode("utf-8") + b"\0")
    return h.hexdigest()
