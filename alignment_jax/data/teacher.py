"""Teacher triplets at scale (AligNet's data, written by this package): sample image triplets by a class rule,
score them with the teacher's (transformed) features, put the odd one out last, write AligNet-format shards.

Sampling schemes (AligNet): `between_class` three images of three different classes, `class_border` two
images of one class and one of another, `within_class` three images of one class. Classes are drawn uniformly
among the classes that can serve the scheme (at least 3 images for within_class, 2 for the pair of
class_border), images uniformly within their class, all vectorised in numpy (no Python loop per triplet).
A shard's triplets depend on (seed, shard index) only, so shards can be written in any order, and a killed
run resumes at the first missing shard with the same numbers.

Similarities: cosine or dot products of the transformed features, three per triplet, computed in blocks of
triplets from the (n_images, p) matrix of transformed features: never an n x n matrix.
"""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from alignment_jax.errors import InputError

SCHEMES = ("between_class", "class_border", "within_class")
SIMILARITIES = ("cosine", "dot")
BLOCK = 8_192  # triplets per block of similarities (triplet_similarities)


@dataclasses.dataclass(frozen=True)
class ClassIndex:
    """Images grouped by class: members[starts[c] : starts[c] + counts[c]] are the images of class c."""

    members: np.ndarray
    starts: np.ndarray
    counts: np.ndarray

    @classmethod
    def of(cls, labels: np.ndarray) -> "ClassIndex":
        labels = np.asarray(labels)
        n_classes = int(labels.max()) + 1 if len(labels) else 0
        counts = np.bincount(labels, minlength=n_classes)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        return cls(np.argsort(labels, kind="stable"), starts, counts)

    def draw(self, classes: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """The image at position `positions` (< counts) of each class in `classes`."""
        return self.members[self.starts[classes] + positions]


def scheme_counts(n: int, proportions: tuple[float, float, float]) -> np.ndarray:
    """(3,) how many of n triplets each scheme gets: n * proportions (normalized), rounded by largest remainder."""
    share = np.asarray(proportions, np.float64)
    share = n * share / share.sum()
    counts = np.floor(share).astype(np.int64)
    counts[np.argsort(-(share - counts), kind="stable")[: n - counts.sum()]] += 1
    return counts


def check_classes(labels: np.ndarray, proportions: tuple[float, float, float], source: str = "labels") -> None:
    """InputError when a scheme with a positive proportion has no class to draw from."""
    counts = np.bincount(np.asarray(labels))
    needs = {
        "between_class": (counts >= 1).sum() >= 3,
        "class_border": (counts >= 2).any() and (counts >= 1).sum() >= 2,
        "within_class": (counts >= 3).any(),
    }
    for scheme, share in zip(SCHEMES, proportions, strict=True):
        if share > 0 and not needs[scheme]:
            what = {
                "between_class": "3 classes",
                "class_border": "2 classes, one with 2 images",
                "within_class": "a class with 3 images",
            }[scheme]
            raise InputError(
                f"{source}: teacher.proportions gives {scheme} {share:g} but there is no {what} "
                f"({(counts > 0).sum()} classes, largest {counts.max() if len(counts) else 0} images); set its "
                "proportion to 0 or use more images or classes"
            )


def _distinct(rng: np.random.Generator, sizes: np.ndarray, k: int) -> np.ndarray:
    """(m, k) positions, distinct within each row, uniform in [0, sizes[row]) (sizes >= k)."""
    m = len(sizes)
    first = np.floor(rng.random(m) * sizes).astype(np.int64)
    if k == 1:
        return first[:, None]
    second = (first + 1 + np.floor(rng.random(m) * (sizes - 1)).astype(np.int64)) % sizes
    if k == 2:
        return np.stack([first, second], axis=1)
    third = np.floor(rng.random(m) * (sizes - 2)).astype(np.int64)
    low, high = np.minimum(first, second), np.maximum(first, second)
    third += third >= low  # skip the two taken positions, in increasing order
    third += third >= high
    return np.stack([first, second, third], axis=1)


def _classes(rng: np.random.Generator, eligible: np.ndarray, m: int, k: int) -> np.ndarray:
    """(m, k) distinct classes per row, uniform among `eligible` class ids."""
    return eligible[_distinct(rng, np.full(m, len(eligible)), k)]


def sample_teacher_triplets(
    labels: "np.ndarray | ClassIndex", n: int, proportions: tuple[float, float, float], seed: int | tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """labels: (n_images,) class id per image (or their ClassIndex, built once for many calls) -> (triplets
    (n, 3) int64 image rows, sampling (n,) int8: the index of the scheme in SCHEMES). For class_border the two
    images of one class come first. Deterministic for a seed (an int or a tuple such as (seed, shard))."""
    rng = np.random.default_rng(seed)
    index = labels if isinstance(labels, ClassIndex) else ClassIndex.of(labels)
    counts = scheme_counts(n, proportions)
    present = np.flatnonzero(index.counts >= 1)
    parts, schemes = [], []
    if counts[0]:
        classes = _classes(rng, present, counts[0], 3)
        pos = _distinct(rng, index.counts[classes].ravel(), 1).reshape(-1, 3)
        parts.append(index.draw(classes, pos))
    if counts[1]:
        pairs = np.flatnonzero(index.counts >= 2)
        pair_class = pairs[np.floor(rng.random(counts[1]) * len(pairs)).astype(np.int64)]
        # the other class: uniform among the present classes but pair_class (skip it)
        other = np.floor(rng.random(counts[1]) * (len(present) - 1)).astype(np.int64)
        rank = np.searchsorted(present, pair_class)
        other = present[other + (other >= rank)]
        two = index.draw(pair_class[:, None], _distinct(rng, index.counts[pair_class], 2))
        one = index.draw(other[:, None], _distinct(rng, index.counts[other], 1))
        parts.append(np.concatenate([two, one], axis=1))
    if counts[2]:
        triples = np.flatnonzero(index.counts >= 3)
        cls = triples[np.floor(rng.random(counts[2]) * len(triples)).astype(np.int64)]
        parts.append(index.draw(cls[:, None], _distinct(rng, index.counts[cls], 3)))
    for s, c in enumerate(counts):
        schemes.append(np.full(c, s, np.int8))
    triplets = np.concatenate(parts) if parts else np.zeros((0, 3), np.int64)
    sampling = np.concatenate(schemes)
    order = rng.permutation(n)  # the schemes interleaved
    return triplets[order], sampling[order]


def teacher_embedding(features: np.ndarray, transform=None, similarity: str = "cosine") -> np.ndarray:
    """(n, p) features -> the rows whose dot products are the teacher's similarities: the transformed features
    (`transform`: a probing.transform.Transform, or None), unit-normalized for cosine."""
    if similarity not in SIMILARITIES:
        raise InputError(f"teacher.similarity={similarity!r} is not one of {', '.join(SIMILARITIES)}")
    z = np.asarray(features, np.float32) if transform is None else transform.apply(features)
    if similarity == "cosine":
        norms = np.linalg.norm(z, axis=1, keepdims=True)
        z = z / np.maximum(norms, 1e-12)
    return np.asarray(z, np.float32)


@jax.jit
def _block_similarities(z: jax.Array, triplets: jax.Array) -> jax.Array:
    """z: (n, p); triplets: (B, 3) -> (B, 3) [s01, s02, s12] as dot products of gathered rows."""
    a, b, c = z[triplets[:, 0]], z[triplets[:, 1]], z[triplets[:, 2]]
    dot = lambda u, v: jnp.sum(u * v, axis=1)
    return jnp.stack([dot(a, b), dot(a, c), dot(b, c)], axis=1)


def triplet_similarities(z: np.ndarray | jax.Array, triplets: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """(n, p) teacher rows (teacher_embedding), (T, 3) triplets -> (T, 3) float32 [s01, s02, s12], in blocks of
    `block` triplets (the last one padded, so one compiled program serves every block). A block's three
    (block, p) gathers stay in the CPU's cache at the default size (measured: 8k-16k triplets ran 10x faster
    per triplet than 64k at p = 128)."""
    z = jnp.asarray(z)
    out = np.empty((len(triplets), 3), np.float32)
    padded = np.zeros((block, 3), np.int32)
    for start in range(0, len(triplets), block):
        part = np.asarray(triplets[start : start + block], np.int32)
        padded[: len(part)] = part
        padded[len(part) :] = 0
        out[start : start + len(part)] = np.asarray(_block_similarities(z, jnp.asarray(padded)))[: len(part)]
    return out


MANIFEST = "manifest.json"


def shard_name(index: int, n_shards: int) -> str:
    return f"triplets-{index:05d}-of-{n_shards:05d}.npz"


def write_teacher_shards(
    folder: str,
    names: np.ndarray,
    image_indices: np.ndarray,
    labels: np.ndarray,
    z: np.ndarray,
    n_triplets: int,
    proportions: tuple[float, float, float],
    seed: int,
    shard_size: int,
    key: dict,
    log=print,
) -> dict:
    """Writes n_triplets AligNet-format triplets in shards of `shard_size` to `folder` (+ manifest.json);
    returns the manifest.

    names: (n_images,) file names (sorted); image_indices: (n_images,) what `indices` holds per image (the
    TFDS index, or the row); labels: (n_images,) class ids; z: (n_images, p) teacher rows (teacher_embedding).
    Shard i holds triplets sampled with the seed (seed, i), scored, odd one out last: `filenames`,
    `similarities` [s01, s02, s12], `indices`, `sampling` (scheme names). Each shard is written atomically;
    a manifest with the same `key` (what the triplets are computed from) resumes at the missing shards; one
    with another key is replaced, its shards removed."""
    import os

    from alignment_jax import atomic
    from alignment_jax.data.alignet import odd_one_out_last

    n_shards = max(1, -(-n_triplets // shard_size))
    manifest_path = os.path.join(folder, MANIFEST)
    manifest = _read_manifest(manifest_path)
    if manifest is not None and manifest.get("key") != atomic.strict(key):
        for shard in manifest.get("shards", []):
            path = os.path.join(folder, shard["file"])
            if os.path.exists(path):
                os.remove(path)
        log(f"teacher: {folder} held triplets of other inputs or settings; writing them again")
        manifest = None
    shards = [
        {"file": shard_name(i, n_shards), "n": min(shard_size, n_triplets - i * shard_size)} for i in range(n_shards)
    ]
    manifest = {
        "format": "alignet",
        "key": key,
        "n_triplets": n_triplets,
        "n_images": len(names),
        "shard_size": shard_size,
        "schemes": list(SCHEMES),
        "shards": shards,
        "complete": False,
    }
    atomic.write_json(manifest_path, manifest)
    z_device = jnp.asarray(z)
    index = ClassIndex.of(labels)
    written = 0
    for i, shard in enumerate(shards):
        path = os.path.join(folder, shard["file"])
        if os.path.exists(path):  # written by an earlier run with the same key (atomic: complete)
            continue
        triplets, sampling = sample_teacher_triplets(index, shard["n"], proportions, (seed, i))
        sims = triplet_similarities(z_device, triplets)
        triplets, sims = odd_one_out_last(triplets, sims)
        atomic.save_npz(
            path,
            filenames=names[triplets],
            similarities=sims,
            indices=image_indices[triplets],
            sampling=np.asarray(SCHEMES)[sampling],
        )
        written += 1
    manifest["complete"] = True
    manifest["shards_written_by_this_run"] = written
    atomic.write_json(manifest_path, manifest)
    return manifest


def _read_manifest(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def merge_shards(folder: str, path: str) -> str:
    """The shards of a complete teacher folder as ONE AligNet .npz at `path` (what alignet.train reads)."""
    from alignment_jax import atomic

    manifest = _read_manifest(os.path.join(folder, MANIFEST))
    if manifest is None or not manifest.get("complete"):
        raise InputError(f"{folder}: no complete teacher manifest ({MANIFEST}); run the teacher stage")
    arrays: dict[str, list] = {"filenames": [], "similarities": [], "indices": [], "sampling": []}
    for shard in manifest["shards"]:
        with np.load(os.path.join(folder, shard["file"])) as data:
            for key in arrays:
                arrays[key].append(data[key])
    atomic.save_npz(path, **{k: np.concatenate(v) for k, v in arrays.items()})
    return path
