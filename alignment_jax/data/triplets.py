"""Human odd-one-out triplets: a validated set, and loaders for the published file layouts.

A triplet (i, j, k) lists object indices, 0-based; column 2 (k) is the object people chose as the
odd one out, so (i, j) is the pair judged most similar.
"""

import csv
import dataclasses
import os

import numpy as np

from alignment_jax.data.npy import read_npy
from alignment_jax.data.text import read_text
from alignment_jax.errors import InputError


@dataclasses.dataclass(frozen=True)
class TripletSet:
    """triplets: (T, 3) int32, column 2 = odd one out; every index in [0, n_objects).

    one_based: the given array counts objects from 1 (as some published files do); it is stored 0-based.
    """

    triplets: np.ndarray
    n_objects: int
    source: str = "triplets"
    one_based: bool = False

    def __post_init__(self):
        triplets = validate_triplets(self.triplets, self.n_objects, self.source, self.one_based)
        object.__setattr__(self, "triplets", triplets)
        object.__setattr__(self, "one_based", False)

    def __len__(self) -> int:
        return len(self.triplets)

    def subset(self, mask_or_index: np.ndarray, source: str | None = None) -> "TripletSet":
        return TripletSet(self.triplets[mask_or_index], self.n_objects, source or self.source)


@dataclasses.dataclass(frozen=True)
class ThingsData:
    """The THINGS odd-one-out data: train triplets, optional test triplets, object ids (n_objects,)."""

    train: TripletSet
    test: TripletSet | None
    object_ids: tuple[str, ...] | None
    n_objects: int


def validate_triplets(
    array: np.ndarray, n_objects: int, source: str = "triplets", one_based: bool = False
) -> np.ndarray:
    """Checks shape, integrality, range and distinctness; returns (T, 3) int32, 0-based.

    one_based: the indices count from 1 (1..n_objects); they are shifted to 0-based after the checks, in a
    wide integer type (an unsigned 0 never wraps around to the largest value).
    """
    array = np.asarray(array)
    if array.ndim != 2 or array.shape[1] != 3:
        raise InputError(f"{source}: triplets must have shape (T, 3), got {array.shape}")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array).all(axis=1)
        if bad.any():
            raise InputError(f"{source}: non-finite value in row {int(np.argmax(bad))}")
        if not np.array_equal(array, np.round(array)):
            row = int(np.argmax((array != np.round(array)).any(axis=1)))
            raise InputError(f"{source}: non-integer object index in row {row}: {array[row].tolist()}")
    elif array.dtype.kind not in "iu":
        raise InputError(f"{source}: triplets must be integers, got dtype {array.dtype}")
    if len(array):
        first = 1 if one_based else 0
        out = (array < first) | (array > n_objects - 1 + first)  # in the file's own type: nothing wraps
        if out.any():
            row, col = np.argwhere(out)[0]
            raise InputError(f"{source}: {_range_problem(array[row, col].item(), n_objects, one_based)} (row {row})")
    array = array.astype(np.int64) - (1 if one_based else 0)
    if len(array):
        repeats = (array[:, 0] == array[:, 1]) | (array[:, 0] == array[:, 2]) | (array[:, 1] == array[:, 2])
        if repeats.any():
            row = int(np.argmax(repeats))
            raise InputError(f"{source}: triplet repeats an object (row {row}: {array[row].tolist()})")
    return array.astype(np.int32)


def _range_problem(value: float, n_objects: int, one_based: bool) -> str:
    """Why `value` is not an object index, with the fix that fits (never the setting already made)."""
    value = int(value) if float(value).is_integer() else value
    if one_based:
        fix = "; if the file counts objects from 0, set one_based=False" if value == 0 else ""
        return f"index {value} out of range 1..{n_objects} for {n_objects} objects counted from 1 (one_based=True){fix}"
    fix = "; if the file counts objects from 1, set one_based=True" if value == n_objects else ""
    return f"index {value} out of range for {n_objects} objects{fix}"


def read_triplet_array(path: str) -> np.ndarray:
    """Reads (T, 3) indices as stored (not yet shifted or checked) from .npy or from whitespace/comma/tab
    separated text (header optional)."""
    if path.endswith(".npy"):
        array = read_npy(path, "triplet file")
    else:
        array = _read_text_table(path)
    if array.ndim != 2 or array.shape[1] != 3:
        raise InputError(f"{path}: triplets must have shape (T, 3), got {array.shape}")
    return array


def _read_text_table(path: str) -> np.ndarray:
    """A (rows, 3) float array from a text file; a first line that is not numeric is a header."""
    lines = read_text(path, "triplet file").replace(",", " ").replace("\t", " ").splitlines()
    lines = [line for line in lines if line.strip()]
    if lines and not _is_numeric(lines[0].split()):
        lines = lines[1:]
    counts = np.fromiter((len(line.split()) for line in lines), dtype=np.int64, count=len(lines))
    if (counts != 3).any():
        row = int(np.argmax(counts != 3))
        raise InputError(f"{path}: expected 3 values per line, got {counts[row]} on data line {row + 1}")
    try:
        return np.asarray(" ".join(lines).split(), dtype=np.float64).reshape(-1, 3)
    except ValueError as e:
        raise InputError(f"{path}: non-numeric value ({e})") from e


def _is_numeric(tokens: list[str]) -> bool:
    try:
        [float(t) for t in tokens]
    except ValueError:
        return False
    return True


def load_triplets(path: str, n_objects: int | None = None, one_based: bool = False) -> TripletSet:
    """Loads and validates one triplet file; n_objects defaults to the largest index + 1."""
    array = read_triplet_array(path)
    if n_objects is None:
        n_objects = _objects_indexed(array, one_based=one_based)
    return TripletSet(array, n_objects, source=path, one_based=one_based)


def _objects_indexed(*arrays: np.ndarray | None, one_based: bool = False) -> int:
    """The number of objects the largest index of the arrays implies (0 without any triplet)."""
    numeric = [a for a in arrays if a is not None and len(a) and a.dtype.kind in "iuf"]
    largest = [np.max(a) for a in numeric if np.isfinite(np.max(a))]
    return max(0, int(max(largest)) + (0 if one_based else 1)) if largest else 0


def count_duplicates(triplets: np.ndarray, n_objects: int) -> int:
    """How many rows of (T, 3) triplets repeat an earlier row exactly (same objects, same order)."""
    return len(triplets) - len(np.unique(_keys(triplets, n_objects, ordered=True)))


def count_shared(triplets: np.ndarray, others: np.ndarray, n_objects: int) -> int:
    """How many rows of (T, 3) `triplets` have the same three objects, in any order, as a row of `others`."""
    if not len(triplets) or not len(others):
        return 0
    return int(np.isin(_keys(triplets, n_objects, ordered=False), _keys(others, n_objects, ordered=False)).sum())


def _keys(triplets: np.ndarray, n_objects: int, ordered: bool) -> np.ndarray:
    """One integer per row, equal for equal rows (for equal object sets when not `ordered`): (T,)."""
    rows = np.asarray(triplets, np.int64)
    if not ordered:
        rows = np.sort(rows, axis=1)
    n = max(int(n_objects), 1)
    if n < 2_000_000:  # n^3 fits into int64
        return (rows[:, 0] * n + rows[:, 1]) * n + rows[:, 2]
    return np.unique(rows, axis=0, return_inverse=True)[1].ravel()


def load_object_ids(path: str) -> tuple[str, ...]:
    """Object ids in index order: the `uniqueID` column of things_concepts.tsv, or one id per line."""
    text = read_text(path, "object list")
    first = text.splitlines()[0] if text.strip() else ""
    if "uniqueID" in first.split("\t"):
        column = first.split("\t").index("uniqueID")
        ids = []
        for line_number, row in enumerate(csv.reader(text.splitlines()[1:], delimiter="\t"), start=2):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) <= column or not row[column].strip():
                raise InputError(
                    f"{path}: line {line_number} has no uniqueID (column {column + 1} of the header); "
                    "every row names one object"
                )
            ids.append(row[column].strip())
    else:
        ids = [line.strip() for line in text.splitlines() if line.strip()]
    if not ids:
        raise InputError(f"{path}: no object ids found")
    duplicates = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
    if duplicates:
        raise InputError(f"{path}: duplicate object ids {duplicates[:5]}")
    return tuple(ids)


def load_things(
    root: str = "",
    train: str = "",
    test: str = "",
    objects: str = "",
    n_objects: int | None = None,
    one_based: bool = False,
) -> ThingsData:
    """THINGS data from ROOT/triplets/{train_90,test_10}.npy (+ ROOT/things_concepts.tsv) or explicit paths.

    n_objects: from the object list if there is one, else the given number (e.g. feature rows), else
    the largest index + 1 over both files.
    """
    if root:
        if not os.path.isdir(root):
            raise InputError(f"{root}: THINGS root folder not found (things.root)")
        train = train or os.path.join(root, "triplets", "train_90.npy")
        default_test = os.path.join(root, "triplets", "test_10.npy")
        test = test or (default_test if os.path.exists(default_test) else "")
        default_objects = os.path.join(root, "things_concepts.tsv")
        objects = objects or (default_objects if os.path.exists(default_objects) else "")
    if not train:
        raise InputError("no triplets given: set things.root=ROOT (with triplets/train_90.npy) or things.train=FILE")
    object_ids = load_object_ids(objects) if objects else None
    if object_ids is not None:
        if n_objects is not None and n_objects != len(object_ids):
            raise InputError(f"{objects}: lists {len(object_ids)} objects but the features have {n_objects} rows")
        n_objects = len(object_ids)
    train_array = read_triplet_array(train)
    test_array = read_triplet_array(test) if test else None
    if n_objects is None:
        n_objects = _objects_indexed(train_array, test_array, one_based=one_based)
    return ThingsData(
        train=TripletSet(train_array, n_objects, source=train, one_based=one_based),
        test=TripletSet(test_array, n_objects, source=test, one_based=one_based) if test_array is not None else None,
        object_ids=object_ids,
        n_objects=n_objects,
    )
