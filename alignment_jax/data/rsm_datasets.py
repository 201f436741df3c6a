"""Human datasets beyond THINGS for the transfer analyses, read from their published layouts.

A user names them as `KIND:PATH` entries (`transfer.datasets`):

  peterson[_CATEGORY]:ROOT  Peterson et al. (2018): ROOT/<category>/images/* (jpg/png, sorted) and a
                            similarity matrix in the .mat file under ROOT/<category>/sim_judgements/
                            whose name contains "sim" (key containing "sim"). `peterson` loads every
                            category folder present; `peterson_animals` one of them.
  cichy:ROOT                Cichy et al. (2019), 118 images: ROOT/images/*.jpg (sorted) and
                            ROOT/sim_judgements/judgments_general.mat, key `judgments`
                            (participants, n, n) dissimilarities, averaged over participants.
  king[_SET]:ROOT           King et al. (2019): ROOT/sim_judgements/BEHAVIOR.mat, struct
                            BEHAVIOR.<set>.pairwisedistances (subjects, n (n - 1) / 2) in `pdist` pair
                            order, averaged over subjects; images ROOT/images/<set>/*.jpg (sorted).
                            `king` loads set1 and set2.
  rsm:DIR                   generic: DIR/similarity.npy or DIR/dissimilarity.npy (n, n), and the
                            stimuli as DIR/stimuli.txt (image paths, one per line, relative to DIR)
                            or DIR/images/* (sorted). Named after DIR.
  triplets:DIR              odd-one-out triplets over other stimuli: DIR/triplets.npy (or .txt),
                            (T, 3), column 2 = odd one out, stimuli as for `rsm`. Named after DIR.

Images are optional: without them the stimuli list is empty and features must be given per dataset.
"""

import dataclasses
import os
import warnings

import numpy as np

from alignment_jax.data.npy import read_npy
from alignment_jax.data.text import read_text
from alignment_jax.data.triplets import TripletSet, load_triplets
from alignment_jax.errors import InputError
from alignment_jax.evaluation.rsa import as_similarity

PETERSON_CATEGORIES = ("animals", "automobiles", "fruits", "furniture", "various", "vegetables")
KING_SETS = ("set1", "set2")
KINDS = ("peterson", "cichy", "king", "rsm", "triplets")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclasses.dataclass(frozen=True)
class RSMDataset:
    """Human judgments over n stimuli.

    matrix: (n, n) float64 of `kind` ("similarity" or "dissimilarity"); only the upper triangle is used.
    stimuli: (n,) image paths in row order, or () when the images are not available.
    """

    name: str
    matrix: np.ndarray
    kind: str
    stimuli: tuple[str, ...]
    source: str

    def __post_init__(self):
        matrix = np.asarray(self.matrix)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise InputError(f"{self.source}: human matrix must be square (n, n), got shape {matrix.shape}")
        if matrix.dtype.kind not in "fiu":
            raise InputError(f"{self.source}: human matrix must be numeric, got dtype {matrix.dtype}")
        if matrix.shape[0] < 3:
            raise InputError(f"{self.source}: RSA needs at least 3 stimuli, got {matrix.shape[0]}")
        matrix = matrix.astype(np.float64)
        rows, cols = np.triu_indices(len(matrix), k=1)
        bad = ~np.isfinite(matrix[rows, cols])
        if bad.any():
            pair = (int(rows[np.argmax(bad)]), int(cols[np.argmax(bad)]))
            raise InputError(f"{self.source}: NaN or inf in the human matrix at stimulus pair {pair}")
        upper = matrix[rows, cols]
        if np.all(upper == upper[0]):
            below = matrix[cols, rows]
            hint = " (the entries below it are not: transpose a lower-triangular matrix)" if np.ptp(below) > 0 else ""
            raise InputError(
                f"{self.source}: the human matrix is constant above the diagonal{hint}; RSA reads the upper triangle"
            )
        if self.stimuli and len(self.stimuli) != len(matrix):
            raise InputError(
                f"{self.source}: {len(matrix)} stimuli in the human matrix but {len(self.stimuli)} images; "
                "row i must be image i (sorted by file name)"
            )
        object.__setattr__(self, "matrix", matrix)

    @property
    def n_stimuli(self) -> int:
        return len(self.matrix)

    @property
    def similarity(self) -> np.ndarray:
        """(n, n): higher = more similar (a dissimilarity negated)."""
        return as_similarity(self.matrix, self.kind)


@dataclasses.dataclass(frozen=True)
class TripletDataset:
    """Odd-one-out triplets over other stimuli; stimuli: (n_objects,) image paths in index order, or ()."""

    name: str
    triplets: TripletSet
    stimuli: tuple[str, ...]


def parse_datasets(spec: str) -> list[tuple[str, str]]:
    """`KIND:PATH,KIND:PATH` -> [(kind, path)]; kind may carry a subset (`peterson_animals`, `king_set1`)."""
    entries = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        kind, sep, path = item.partition(":")
        kind = kind.strip().lower()
        if not sep or not path.strip():
            raise InputError(f"transfer.datasets: entry {item!r} must be KIND:PATH (e.g. cichy:/data/cichy118)")
        if _base_kind(kind) is None:
            raise InputError(
                f"transfer.datasets: unknown dataset kind {kind!r} in {item!r}; use one of "
                f"{', '.join(KINDS)}, peterson_<{'|'.join(PETERSON_CATEGORIES)}>, king_<{'|'.join(KING_SETS)}>"
            )
        entries.append((kind, path.strip()))
    return entries


def load_datasets(spec: str) -> list["RSMDataset | TripletDataset"]:
    """Every dataset a `transfer.datasets` value names, in order; names must be unique."""
    datasets = [dataset for kind, path in parse_datasets(spec) for dataset in load_dataset(kind, path)]
    names = [d.name for d in datasets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"transfer.datasets: dataset name(s) {duplicates} appear twice; rename a folder")
    return datasets


def load_dataset(kind: str, path: str) -> list["RSMDataset | TripletDataset"]:
    """The dataset(s) of one `KIND:PATH` entry."""
    base = _base_kind(kind)
    subset = kind[len(base) + 1 :]
    if base == "peterson":
        if subset:
            return [load_peterson(path, subset)]
        _check_dir(path, kind)
        present = [c for c in PETERSON_CATEGORIES if os.path.isdir(os.path.join(path, c))]
        if not present:
            raise InputError(f"{path}: no Peterson category folder ({', '.join(PETERSON_CATEGORIES)}) in it")
        return [load_peterson(path, category) for category in present]
    if base == "king":
        return [load_king(path, s) for s in ([subset] if subset else KING_SETS)]
    loaders = {"cichy": load_cichy, "rsm": load_generic_rsm, "triplets": load_triplet_folder}
    return [loaders[base](path)]


def load_peterson(root: str, category: str) -> RSMDataset:
    """Peterson et al.: one category's similarity matrix and its images."""
    if category not in PETERSON_CATEGORIES:
        raise InputError(f"peterson: unknown category {category!r}; use one of {', '.join(PETERSON_CATEGORIES)}")
    folder = os.path.join(root, category)
    _check_dir(folder, f"peterson_{category}")
    sim_dir = os.path.join(folder, "sim_judgements")
    _check_dir(sim_dir, f"peterson_{category}")
    mat_files = sorted(f for f in os.listdir(sim_dir) if "sim" in f.lower() and f.lower().endswith(".mat"))
    if len(mat_files) != 1:
        found = mat_files or sorted(os.listdir(sim_dir))
        raise InputError(
            f"{sim_dir}: expected one .mat file with 'sim' in its name, found {found}; keep exactly one there"
        )
    path = os.path.join(sim_dir, mat_files[0])
    contents = _read_mat(path)
    keys = [k for k in contents if not k.startswith("__") and "sim" in k.lower()]
    if len(keys) != 1:
        raise InputError(f"{path}: expected one variable with 'sim' in its name, found {_variables(contents)}")
    stimuli = _images(os.path.join(folder, "images"))
    return RSMDataset(f"peterson_{category}", contents[keys[0]], "similarity", stimuli, path)


def load_cichy(root: str) -> RSMDataset:
    """Cichy et al. (2019): dissimilarities averaged over participants, and the 118 images."""
    _check_dir(root, "cichy")
    path = os.path.join(root, "sim_judgements", "judgments_general.mat")
    contents = _read_mat(path)
    if "judgments" not in contents:
        raise InputError(f"{path}: no variable 'judgments' (found {_variables(contents)})")
    judgments = _numeric(contents["judgments"], f"{path}: judgments")
    if judgments.ndim == 2:  # one participant, or already averaged
        judgments = judgments[None]
    if judgments.ndim != 3 or judgments.shape[1] != judgments.shape[2]:
        raise InputError(f"{path}: judgments must have shape (participants, n, n), got {judgments.shape}")
    return RSMDataset("cichy", judgments.mean(axis=0), "dissimilarity", _images(os.path.join(root, "images")), path)


def load_king(root: str, stimulus_set: str) -> RSMDataset:
    """King et al. (2019): one stimulus set's pairwise distances averaged over subjects, as an (n, n) matrix."""
    if stimulus_set not in KING_SETS:
        raise InputError(f"king: unknown stimulus set {stimulus_set!r}; use one of {', '.join(KING_SETS)}")
    _check_dir(root, f"king_{stimulus_set}")
    path = os.path.join(root, "sim_judgements", "BEHAVIOR.mat")
    contents = _read_mat(path)
    behavior = contents.get("BEHAVIOR")
    if not isinstance(behavior, dict) or not isinstance(behavior.get(stimulus_set), dict):
        found = sorted(behavior) if isinstance(behavior, dict) else _variables(contents)
        raise InputError(f"{path}: no struct BEHAVIOR.{stimulus_set} (found {found})")
    if "pairwisedistances" not in behavior[stimulus_set]:
        raise InputError(
            f"{path}: BEHAVIOR.{stimulus_set} has no field 'pairwisedistances' (found {sorted(behavior[stimulus_set])})"
        )
    distances = _numeric(behavior[stimulus_set]["pairwisedistances"], f"{path}: BEHAVIOR.{stimulus_set}")
    if distances.ndim not in (1, 2):
        raise InputError(f"{path}: pairwisedistances must be (subjects, pairs), got shape {distances.shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a pair no subject rated stays NaN and is reported
        pairs = np.nanmean(np.atleast_2d(distances), axis=0)
    matrix = _squareform(pairs, f"{path}: BEHAVIOR.{stimulus_set}.pairwisedistances")
    stimuli = _images(os.path.join(root, "images", stimulus_set))
    return RSMDataset(f"king_{stimulus_set}", matrix, "dissimilarity", stimuli, path)


def load_generic_rsm(root: str) -> RSMDataset:
    """DIR/similarity.npy or DIR/dissimilarity.npy (n, n) with DIR/stimuli.txt or DIR/images/."""
    _check_dir(root, "rsm")
    found = [k for k in ("similarity", "dissimilarity") if os.path.isfile(os.path.join(root, f"{k}.npy"))]
    if len(found) != 1:
        problem = "both" if found else "neither"
        raise InputError(f"{root}: {problem} of similarity.npy and dissimilarity.npy found; keep exactly one")
    path = os.path.join(root, f"{found[0]}.npy")
    matrix = read_npy(path, "human matrix")
    return RSMDataset(_folder_name(root), matrix, found[0], _stimuli(root), path)


def load_triplet_folder(root: str) -> TripletDataset:
    """DIR/triplets.npy (or .txt) with DIR/stimuli.txt or DIR/images/; objects are stimuli."""
    _check_dir(root, "triplets")
    candidates = [os.path.join(root, f"triplets{ext}") for ext in (".npy", ".txt", ".tsv", ".csv")]
    paths = [p for p in candidates if os.path.isfile(p)]
    if not paths:
        raise InputError(f"{root}: no triplets.npy (or triplets.txt) file; write the (T, 3) triplets there")
    stimuli = _stimuli(root)
    triplets = load_triplets(paths[0], n_objects=len(stimuli) or None)
    return TripletDataset(_folder_name(root), triplets, stimuli)


def _base_kind(kind: str) -> str | None:
    if kind in KINDS:
        return kind
    for base in ("peterson", "king"):
        if kind.startswith(base + "_"):
            return base
    return None


def _check_dir(path: str, what: str) -> None:
    if not os.path.isdir(path):
        raise InputError(f"{path}: folder not found (transfer.datasets entry {what})")


def _folder_name(root: str) -> str:
    return os.path.basename(os.path.normpath(root))


def _images(folder: str) -> tuple[str, ...]:
    """Image files of `folder` sorted by name; () when the folder does not exist."""
    if not os.path.isdir(folder):
        return ()
    names = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))
    return tuple(os.path.join(folder, f) for f in names)


def _stimuli(root: str) -> tuple[str, ...]:
    """DIR/stimuli.txt (paths relative to DIR, one per line), else DIR/images/* sorted, else ()."""
    listing = os.path.join(root, "stimuli.txt")
    if not os.path.isfile(listing):
        return _images(os.path.join(root, "images"))
    names = [line.strip() for line in read_text(listing, "stimulus list").splitlines() if line.strip()]
    if not names:
        raise InputError(f"{listing}: empty; list the image files one per line, in row order")
    paths = tuple(os.path.join(root, name) for name in names)
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise InputError(f"{listing}: {len(missing)} listed image(s) not found, first {missing[0]}")
    return paths


def _read_mat(path: str) -> dict:
    """Variables of a MATLAB file, structs as nested dicts (scipy.io, formats up to v7)."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: file not found")
    from scipy import io

    try:
        return io.loadmat(path, simplify_cells=True)
    except NotImplementedError as e:
        raise InputError(f"{path}: MATLAB v7.3 file; re-save it in MATLAB with save(..., '-v7')") from e
    except (io.matlab.MatReadError, ValueError, OSError, TypeError, IndexError) as e:
        raise InputError(f"{path}: not a readable .mat file ({type(e).__name__}: {e})") from e


def _variables(contents: dict) -> list[str]:
    return sorted(k for k in contents if not k.startswith("__"))


def _numeric(value, source: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise InputError(f"{source}: expected a numeric array, got {type(value).__name__} of dtype {array.dtype}")
    return array.astype(np.float64)


def _squareform(pairs: np.ndarray, source: str) -> np.ndarray:
    """(n (n - 1) / 2,) pair values in pdist order -> symmetric (n, n) with a zero diagonal."""
    n = int(round((1 + np.sqrt(1 + 8 * len(pairs))) / 2))
    if n * (n - 1) // 2 != len(pairs):
        raise InputError(f"{source}: {len(pairs)} pairs is not n (n - 1) / 2 for any number of stimuli n")
    matrix = np.zeros((n, n))
    rows, cols = np.triu_indices(n, k=1)
    matrix[rows, cols] = pairs
    matrix[cols, rows] = pairs
    return matrix
