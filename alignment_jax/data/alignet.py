"""AligNet's teacher triplets (google-deepmind/alignet): `.npz` files of soft-labelled ImageNet triplets.

Keys (n triplets):
    filenames     (n, 3) strings: ImageNet file names; column 2 is the odd one out
    similarities  (n, 3) floats [s01, s02, s12]: the teacher's pair similarities; pair (0, 1) is meant to be
                  the most similar (AligNet's triplet accuracy assumes it); rows where s01 is not the largest
                  are counted (`n_not_first`), not rejected
    indices       (n, 3) ints into TFDS imagenet2012 (train), optional here (needed only to read the images
                  from TFDS); `sampling` (n,) the sampling scheme per triplet, optional (written by the
                  teacher stage)

The image set of a file (or of a train and a test file together) is its distinct file names in sorted
order; a triplet is three row numbers into it. The 10M-triplet file is read in chunks straight from the
archive: each chunk of names is packed into uint64 words, hashed and deduplicated with numpy, and only the
distinct names (1.28M for ImageNet) are sorted, once: never a Python object per triplet
(bench/alignet_load.py prints the peak memory and time).
"""

import dataclasses
import os
import zipfile
from collections.abc import Iterator

import numpy as np

from alignment_jax.errors import InputError
from alignment_jax.evaluation.similarity import human_pair_most_similar

IMAGENET_TRAIN_SIZE = 1_281_167  # images in TFDS imagenet2012 "train": the range of `indices`
REQUIRED = ("filenames", "similarities")
CHUNK_ROWS = 500_000  # triplets read at once (500k x 3 names of 24 characters: 144 MB as numpy unicode)


@dataclasses.dataclass(frozen=True)
class AlignetTriplets:
    """One AligNet triplet file, as row numbers into an image set.

    names: (n_images,) the distinct file names in sorted order (a numpy string array);
    triplets: (T, 3) int32 rows of `names`, column 2 = the odd one out;
    similarities: (T, 3) float32 [s01, s02, s12] (pair order of the columns of `triplets`);
    image_indices: (n_images,) int64 TFDS imagenet2012 index of each name (-1 where the file gives none);
    sampling: (T,) strings, the sampling scheme per triplet, or None;
    n_not_first: rows where s01 is not strictly the largest similarity (AligNet's accuracy counts them wrong).
    """

    names: np.ndarray
    triplets: np.ndarray
    similarities: np.ndarray
    image_indices: np.ndarray
    source: str
    n_not_first: int
    sampling: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.triplets)

    @property
    def n_images(self) -> int:
        return len(self.names)

    @property
    def targets(self) -> np.ndarray:
        """(T, 3) AligNet's target distribution over the pairs [(0, 1), (0, 2), (1, 2)]: `soft_targets`."""
        return soft_targets(self.similarities)

    def reindexed(self, names: np.ndarray) -> "AlignetTriplets":
        """The same triplets as rows of `names` (sorted, a superset of this file's names: e.g. the union
        of a train and a test file's)."""
        position = np.searchsorted(names, self.names)
        indices = np.full(len(names), -1, np.int64)
        indices[position] = self.image_indices
        return dataclasses.replace(
            self, names=names, triplets=position[self.triplets].astype(np.int32), image_indices=indices
        )


def soft_targets(similarities: np.ndarray) -> np.ndarray:
    """(T, 3) [s01, s02, s12] -> (T, 3) softmax over the three similarities: AligNet's target distribution."""
    s = np.asarray(similarities, np.float64)
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


# Per most similar pair m (argmax of [s01, s02, s12]): the column order that puts that pair first and the odd
# one out last, and the order of the similarities that goes with it.
_ROWS = np.array([[0, 1, 2], [0, 2, 1], [1, 2, 0]])
_SIMS = np.array([[0, 1, 2], [1, 0, 2], [2, 0, 1]])


def odd_one_out_last(triplets: np.ndarray, similarities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, 3) triplets and their (T, 3) [s01, s02, s12] -> both reordered so that the most similar pair is
    (0, 1) and the odd one out is last (AligNet's layout); ties keep the first pair in [01, 02, 12] order."""
    best = np.argmax(similarities, axis=1)
    rows = np.take_along_axis(triplets, _ROWS[best], axis=1)
    return rows, np.take_along_axis(similarities, _SIMS[best], axis=1)


def triplet_accuracy(similarities: np.ndarray) -> float:
    """AligNet's triplet accuracy of (T, 3) [s01, s02, s12]: the pair (0, 1) strictly the most similar
    (ties count as wrong)."""
    s = np.asarray(similarities)
    return float(np.mean(human_pair_most_similar(s[:, 0], s[:, 1], s[:, 2]))) if len(s) else float("nan")


def load_alignet_triplets(path: str, chunk_rows: int = CHUNK_ROWS) -> AlignetTriplets:
    """Reads and validates one AligNet `.npz` triplet file (module docstring); InputError names the file,
    the key and the fix for a missing key, a shape that differs, a NaN, a repeated image or an index out of
    range."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: AligNet triplet file not found")
    members = _members(path)
    missing = [key for key in REQUIRED if key not in members]
    if missing:
        raise InputError(
            f"{path}: no {', '.join(missing)} in the archive (found {sorted(members)}); an AligNet triplet file "
            "holds filenames (n, 3), similarities (n, 3) and indices (n, 3)"
        )
    shapes = {key: _header(path, members[key])[0] for key in members if key in (*REQUIRED, "indices")}
    for key, shape in shapes.items():
        if len(shape) != 2 or shape[1] != 3:
            raise InputError(f"{path}: {key} must have shape (n, 3), got {shape}")
    if len({shape[0] for shape in shapes.values()}) != 1:
        listed = ", ".join(f"{key} {shape}" for key, shape in shapes.items())
        raise InputError(f"{path}: the arrays have different numbers of triplets ({listed}); one row per triplet")
    n = shapes["filenames"][0]
    if n == 0:
        raise InputError(f"{path}: no triplets (filenames has 0 rows)")
    similarities = _numeric(path, members, "similarities", "f").astype(np.float32)
    bad = ~np.isfinite(similarities).all(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        raise InputError(
            f"{path}: similarities has NaN or inf in row {row} ({int(bad.sum())} rows in all); every triplet needs "
            "three finite similarities"
        )
    names, triplets = _name_ids(path, members["filenames"], n, chunk_rows)
    repeats = (
        (triplets[:, 0] == triplets[:, 1]) | (triplets[:, 0] == triplets[:, 2]) | (triplets[:, 1] == triplets[:, 2])
    )
    if repeats.any():
        row = int(np.argmax(repeats))
        raise InputError(f"{path}: triplet repeats an image (row {row}: {[str(names[i]) for i in triplets[row]]})")
    image_indices = np.full(len(names), -1, np.int64)
    if "indices" in members:
        indices = _numeric(path, members, "indices", "iu")
        out = (indices < 0) | (indices >= IMAGENET_TRAIN_SIZE)
        if out.any():
            row, col = np.argwhere(out)[0]
            raise InputError(
                f"{path}: indices[{row}, {col}] = {indices[row, col]} out of range for TFDS imagenet2012 train "
                f"({IMAGENET_TRAIN_SIZE:,} images, 0-based)"
            )
        image_indices[triplets.ravel()] = indices.ravel()
        conflict = image_indices[triplets] != indices
        if conflict.any():
            row, col = np.argwhere(conflict)[0]
            name = names[triplets[row, col]]
            raise InputError(
                f"{path}: file {name!s} has two TFDS indices (row {row} gives {indices[row, col]}, another row "
                f"{image_indices[triplets[row, col]]}); each file name is one image"
            )
    sampling = None
    if "sampling" in members:
        sampling = _load_member(path, members["sampling"], "sampling")
        if sampling.shape != (n,):
            raise InputError(f"{path}: sampling must have shape ({n},), got {sampling.shape}")
    not_first = ~((similarities[:, 0] > similarities[:, 1]) & (similarities[:, 0] > similarities[:, 2]))
    return AlignetTriplets(names, triplets, similarities, image_indices, path, int(not_first.sum()), sampling)


def load_alignet_pair(train: str, test: str = "") -> tuple[AlignetTriplets, AlignetTriplets | None]:
    """A train file and optionally a test file over ONE image set: the sorted union of their names."""
    first = load_alignet_triplets(train)
    if not test:
        return first, None
    second = load_alignet_triplets(test)
    names = np.union1d(first.names, second.names)
    first, second = first.reindexed(names), second.reindexed(names)
    both = (first.image_indices >= 0) & (second.image_indices >= 0)
    if (first.image_indices[both] != second.image_indices[both]).any():
        i = int(np.argmax(both & (first.image_indices != second.image_indices)))
        raise InputError(
            f"{test}: file {names[i]!s} has another TFDS index than in {train}; each file name is one image"
        )
    indices = np.maximum(first.image_indices, second.image_indices)
    return dataclasses.replace(first, image_indices=indices), dataclasses.replace(second, image_indices=indices)


def _members(path: str) -> dict[str, str]:
    """{key: member name} of the arrays in an .npz archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise InputError(f"{path}: not a readable .npz archive ({e}); save it with numpy.savez") from e
    return {name[: -len(".npy")]: name for name in names if name.endswith(".npy")}


def _header(path: str, member: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of one array of the archive, read from its header only."""
    with zipfile.ZipFile(path) as archive, archive.open(member) as f:
        return _read_header(path, member, f)


def _read_header(path: str, member: str, f) -> tuple[tuple[int, ...], bool, np.dtype]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        return (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(f)
    except (ValueError, OSError, EOFError, SyntaxError) as e:
        raise InputError(f"{path}: {member} is not a readable array ({e})") from e


def _load_member(path: str, member: str, key: str) -> np.ndarray:
    try:
        with zipfile.ZipFile(path) as archive, archive.open(member) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except ValueError as e:
        raise InputError(
            f"{path}: {key} holds Python objects or is damaged ({e}); save it as a plain numpy array"
        ) from e
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"{path}: {key} is truncated or damaged ({e}); write the file again") from e


def _numeric(path: str, members: dict[str, str], key: str, kinds: str) -> np.ndarray:
    array = _load_member(path, members[key], key)
    if array.dtype.kind not in kinds:
        wanted = "floats" if kinds == "f" else "integers"
        raise InputError(f"{path}: {key} must hold {wanted}, got dtype {array.dtype}")
    return array


def name_chunks(path: str, member: str, n: int, chunk_rows: int) -> Iterator[np.ndarray]:
    """The (rows, 3) file names of the archive member, chunk by chunk (numpy `U` or `S` strings), decompressed
    from the archive as they are read."""
    with zipfile.ZipFile(path) as archive, archive.open(member) as f:
        shape, fortran, dtype = _read_header(path, member, f)
        if dtype.kind not in "US":
            raise InputError(
                f"{path}: filenames must be strings, got dtype {dtype}; save them as a numpy string array "
                "(np.array(names, dtype=str)), not as Python objects"
            )
        if fortran:  # column-major: the rows are not contiguous
            raise InputError(f"{path}: filenames is stored column-major (Fortran order); save it with numpy.savez")
        row_bytes = 3 * dtype.itemsize
        for start in range(0, n, chunk_rows):
            rows = min(chunk_rows, n - start)
            data = f.read(rows * row_bytes)
            if len(data) < rows * row_bytes:
                raise InputError(f"{path}: filenames is truncated (row {start + len(data) // row_bytes} of {n})")
            yield np.frombuffer(data, dtype).reshape(rows, 3)


def name_words(names: np.ndarray) -> np.ndarray:
    """(m,) numpy strings -> (m, w) uint64 words whose lexicographic order is the strings' order (big-endian
    bytes: ASCII as one byte per character, other text as 4 bytes per code point; zero padding sorts first,
    as a shorter string does)."""
    names = np.ascontiguousarray(names)
    if names.dtype.kind == "S":
        data = names.view(np.uint8).reshape(len(names), names.dtype.itemsize)
    else:
        codes = names.view(np.uint32).reshape(len(names), names.dtype.itemsize // 4)
        data = codes.astype(np.uint8) if not (codes >= 128).any() else codes.astype(">u4").view(np.uint8)
    width = -(-max(data.shape[1], 1) // 8) * 8
    padded = np.zeros((len(names), width), np.uint8)
    padded[:, : data.shape[1]] = data
    return padded.view(">u8").astype(np.uint64)


def name_hashes(words: np.ndarray) -> np.ndarray:
    """(m, w) uint64 -> (m,) uint64 hash (multiply-xor with a splitmix64 finish)."""
    h = np.full(len(words), 0x9E3779B97F4A7C15, np.uint64)
    with np.errstate(over="ignore"):
        for column in words.T:
            h = (h ^ column) * np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(31)
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def _name_ids(path: str, member: str, n: int, chunk_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct names (n_images,) as str, triplets (n, 3) int32) in one streaming pass: each chunk's
    names are hashed to uint64 (numpy, no Python object per name) and deduplicated by hash; the distinct
    names are sorted once at the end. Two different names with one hash (never seen: about n^2 / 2^65 for n
    names) are detected and then the names are sorted as strings instead."""
    chunk_hashes, chunk_inverse = [], []
    seen_hashes, seen_words = np.zeros(0, np.uint64), None  # the distinct names so far, by hash (sorted)
    new_hashes, new_names = [], []  # in order of arrival
    for chunk in name_chunks(path, member, n, chunk_rows):
        flat = chunk.reshape(-1)
        words = name_words(flat)
        hashes, first, inverse = np.unique(name_hashes(words), return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        if not np.array_equal(words[first][inverse], words):  # two names of this chunk share a hash
            return _name_ids_by_sorting(path, member, n, chunk_rows)
        chunk_hashes.append(hashes)
        chunk_inverse.append(inverse.astype(np.int32))
        at = np.minimum(np.searchsorted(seen_hashes, hashes), max(len(seen_hashes) - 1, 0))
        known = (seen_hashes[at] == hashes) if len(seen_hashes) else np.zeros(len(hashes), bool)
        if seen_words is not None and (
            seen_words.shape[1] != words.shape[1] or not np.array_equal(seen_words[at[known]], words[first[known]])
        ):  # a name of this chunk shares a hash with another one of an earlier chunk
            return _name_ids_by_sorting(path, member, n, chunk_rows)
        fresh = first[~known]
        new_hashes.append(hashes[~known])
        new_names.append(flat[fresh].astype(str))
        merged_words = words[fresh] if seen_words is None else np.concatenate([seen_words, words[fresh]])
        merged = np.concatenate([seen_hashes, hashes[~known]])
        order = np.argsort(merged, kind="stable")
        seen_hashes, seen_words = merged[order], merged_words[order]
    names = np.concatenate(new_names)[np.argsort(np.concatenate(new_hashes), kind="stable")]  # seen_hashes' order
    if (np.char.str_len(names) == 0).any():
        raise InputError(f"{path}: an empty file name in filenames; every image needs its name")
    order = np.lexsort(seen_words.T[::-1])  # the distinct names in string order
    rank = np.empty(len(names), np.int32)
    rank[order] = np.arange(len(names), dtype=np.int32)
    triplets = np.empty(n * 3, np.int32)
    start = 0
    for hashes, inverse in zip(chunk_hashes, chunk_inverse, strict=True):
        triplets[start : start + len(inverse)] = rank[np.searchsorted(seen_hashes, hashes)][inverse]
        start += len(inverse)
    return names[order], triplets.reshape(n, 3)


def _name_ids_by_sorting(path: str, member: str, n: int, chunk_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """_name_ids by sorting the names as strings (two passes; slower): where two names share a hash."""
    distinct: np.ndarray | None = None
    for chunk in name_chunks(path, member, n, chunk_rows):
        found = np.unique(chunk.astype(str))
        distinct = found if distinct is None else np.union1d(distinct, found)
    assert distinct is not None
    if (np.char.str_len(distinct) == 0).any():
        raise InputError(f"{path}: an empty file name in filenames; every image needs its name")
    triplets = np.empty((n, 3), np.int32)
    start = 0
    for chunk in name_chunks(path, member, n, chunk_rows):
        triplets[start : start + len(chunk)] = np.searchsorted(distinct, chunk.astype(str))
        start += len(chunk)
    return distinct, triplets
