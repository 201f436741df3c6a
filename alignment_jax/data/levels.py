"""The Levels release (Muttenthaler et al., Nature 2025; GIN `fborn/Dataset_Levels`): ImageNet odd-one-out
triplets of three abstraction levels, each answered by 4-5 people.

Trial files are JSON lines (one trial per line, any number of `*.json` files under a root folder, found
recursively) with the study codebook's fields: `subject_id`, `rt` (ms), `image1Path`, `image2Path`,
`image3Path` (paths whose last component is the image file name, e.g. `n01440764_10026.JPEG`),
`selected_image` (the chosen odd one out's path, or "No image selected") and `exp_trial_type` (only
`exp_trial` rows count; `training_trial`, `catch_trial`, `break` and any other type are skipped, whatever
fields they carry).

Kept responses: experimental trials whose selection is one of the three shown images and whose `rt` is at
most `max_rt_ms`. A triplet is its three file names, sorted; triplets with fewer than `min_responses` kept
responses are dropped, those with more than `max_responses` keep a seeded random sample of that many. The
level of a triplet is its number of distinct WordNet ids (a file name up to its first `_`): 1 within_class
(fine-grained), 2 class_border, 3 between_class (coarse-grained).
"""

import dataclasses
import json
import math
import os

import numpy as np

from alignment_jax.config import checks
from alignment_jax.errors import InputError

FIELDS = ("subject_id", "rt", "image1Path", "image2Path", "image3Path", "selected_image", "exp_trial_type")
EXPERIMENTAL = "exp_trial"
SKIPPED_TYPES = ("training_trial", "catch_trial", "break")  # counted by name; any other type as other_type
LEVEL_NAMES = {1: "within_class", 2: "class_border", 3: "between_class"}
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp")


@dataclasses.dataclass(frozen=True)
class Levels:
    """The kept Levels triplets.

    images: (n,) image file names, sorted; row i of a features matrix is images[i].
    image_paths: (n,) files the names were matched to in the images folder (empty when not looked up).
    triplets: (t, 3) int32 indices into `images`, each row in sorted name order (so ascending).
    counts: (t, 3) int32 kept responses choosing column j as the odd one out (each row sums to 4-5).
    mean_log_rt: (t,) float64 mean over the kept responses of log(rt in seconds).
    level: (t,) int8 in 1..3 (LEVEL_NAMES).
    dropped_trials / dropped_triplets: {rule: count} of what each filtering rule removed (module docstring).
    n_trials: trial rows read (every type); source: the root folder.
    """

    images: tuple[str, ...]
    image_paths: tuple[str, ...]
    triplets: np.ndarray
    counts: np.ndarray
    mean_log_rt: np.ndarray
    level: np.ndarray
    dropped_trials: dict[str, int]
    dropped_triplets: dict[str, int]
    n_trials: int
    source: str

    @property
    def n_triplets(self) -> int:
        return len(self.triplets)

    @property
    def n_responses(self) -> int:
        return int(self.counts.sum())


def trial_files(root: str) -> list[str]:
    """Every `*.json` file at or under `root`, in sorted path order."""
    if not os.path.isdir(root):
        raise InputError(f"levels.root={root}: folder not found; give the folder of the Levels trial files (*.json)")
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        found += [os.path.join(folder, f) for f in sorted(files) if f.lower().endswith(".json")]
    if not found:
        raise InputError(
            f"levels.root={root}: no trial files (*.json, JSON lines, one trial per line) in it or its subfolders"
        )
    return found


def _file_name(path: object) -> str:
    """The last component of an image path ('/' or '\\' separated)."""
    return str(path).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def read_trials(root: str) -> tuple[list[tuple[str, str, str, int, float]], dict[str, int], int]:
    """The experimental trials of every trial file under root: ([(name1, name2, name3, selected column (-1 =
    none of the three), rt ms)], {skipped trial type: rows}, rows read). Raises InputError for a line that is
    not a JSON object and an exp_trial row that lacks a field or whose rt is not a positive number."""
    trials, skipped, n_rows = [], dict.fromkeys((*SKIPPED_TYPES, "other_type"), 0), 0
    for path in trial_files(root):
        with open(path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputError(
                        f"{path} line {number}: not JSON ({e.msg}); trial files hold one JSON object per line"
                    ) from None
                if not isinstance(row, dict):
                    raise InputError(f"{path} line {number}: a JSON {type(row).__name__}, not an object (one trial)")
                n_rows += 1
                kind = row.get("exp_trial_type")
                if kind != EXPERIMENTAL:
                    skipped[kind if kind in SKIPPED_TYPES else "other_type"] += 1
                    continue
                missing = [field for field in FIELDS if field not in row]
                if missing:
                    raise InputError(
                        f"{path} line {number}: an exp_trial row without {', '.join(missing)}; every experimental "
                        f"trial needs {', '.join(FIELDS)}"
                    )
                names = [_file_name(row[f"image{i}Path"]) for i in (1, 2, 3)]
                if len(set(names)) < 3:
                    raise InputError(f"{path} line {number}: image1Path..image3Path name one image twice ({names})")
                selected = _file_name(row["selected_image"])
                column = names.index(selected) if selected in names else -1
                rt = row["rt"]
                if column >= 0 and not _positive_number(rt):
                    raise InputError(f"{path} line {number}: rt={rt!r}; expected the response time in ms (> 0)")
                trials.append((*names, column, float(rt) if column >= 0 else 0.0))
    return trials, skipped, n_rows


def _positive_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def load_levels(
    root: str,
    images: str | None = "",
    max_rt_ms: float = 10_000,
    min_responses: int = 4,
    max_responses: int = 5,
    seed: int = 0,
) -> Levels:
    """The Levels release (Muttenthaler et al., Nature 2025; module docstring): JSON-lines trial files under
    `root` (found recursively) and the images. Keeps `exp_trial` rows with a shown image selected and
    rt <= max_rt_ms, and triplets (their three file names, sorted) with min_responses..max_responses responses
    (more: a seeded sample). Returns `.images` (sorted file names: feature rows), `.triplets` (t, 3), `.counts`
    (t, 3) responses per image, the level of each triplet, `.mean_log_rt`, and how many trials and triplets
    each rule dropped.

    images: the folder of the image files ("" = ROOT/images), matched by file name anywhere under it; every
    image of a kept triplet must be there. None: do not look (the features are given).
    """
    if not isinstance(root, str) or not root:
        raise InputError(f"load_levels: root={root!r}; give the folder of the Levels trial files")
    given = {"max_rt_ms": max_rt_ms, "min_responses": min_responses, "max_responses": max_responses, "seed": seed}
    checks.number(given, "max_rt_ms", above=0)
    checks.integer(given, "min_responses", minimum=1)
    checks.integer(given, "max_responses", minimum=min_responses)
    checks.integer(given, "seed", minimum=0)
    trials, skipped, n_rows = read_trials(root)
    dropped_trials = {**skipped, "no_selection": 0, "slow": 0, "too_few_responses": 0, "over_max_responses": 0}
    dropped_triplets = {"no_selection": 0, "slow": 0, "too_few_responses": 0}
    if not trials:
        types = ", ".join(f"{k} {v}" for k, v in skipped.items() if v) or "none"
        raise InputError(f"levels.root={root}: no exp_trial rows among {n_rows} trial rows (types: {types})")
    names = np.array([t[:3] for t in trials], dtype=object)
    column = np.array([t[3] for t in trials], np.int64)
    rt = np.array([t[4] for t in trials], np.float64)
    order = np.argsort(names, axis=1, kind="stable")  # the triplet is its three names, sorted
    names = np.take_along_axis(names, order, axis=1)
    vocabulary, flat = np.unique(names.astype(str).ravel(), return_inverse=True)
    index = flat.reshape(-1, 3).astype(np.int64)
    n_names = len(vocabulary)
    key = (index[:, 0] * n_names + index[:, 1]) * n_names + index[:, 2]
    selected = column >= 0
    odd = np.where(selected, np.argmax(order == np.maximum(column, 0)[:, None], axis=1), -1)

    def remove(keep: np.ndarray, rule: str, what: str) -> np.ndarray:
        before = len(np.unique(key[alive]))
        dropped_trials[rule] = int((alive & ~keep).sum())
        now = alive & keep
        dropped_triplets[rule] = before - len(np.unique(key[now]))
        if not now.any():
            raise InputError(f"levels.root={root}: no triplet left: {what}")
        return now

    alive = np.ones(len(trials), bool)
    alive = remove(selected, "no_selection", f"none of the {len(trials)} exp_trial rows selects a shown image")
    alive = remove(rt <= max_rt_ms, "slow", f"every answered trial has rt > levels.max_rt_ms={max_rt_ms:g}; raise it")
    rows = np.flatnonzero(alive)
    triplet_keys, trial_triplet, responses = np.unique(key[rows], return_inverse=True, return_counts=True)
    enough = responses[trial_triplet] >= min_responses
    dropped_trials["too_few_responses"] = int((~enough).sum())
    dropped_triplets["too_few_responses"] = int((responses < min_responses).sum())
    if not enough.any():
        raise InputError(
            f"levels.root={root}: no triplet left: none of {len(triplet_keys)} triplets has levels.min_responses="
            f"{min_responses} kept responses (most: {responses.max()}); lower levels.min_responses"
        )
    # More than max_responses: a seeded random sample of them (rank within the triplet by a random key).
    rng = np.random.default_rng(seed)
    rows, trial_triplet = rows[enough], trial_triplet[enough]
    by_triplet = np.lexsort((rng.random(len(rows)), trial_triplet))
    rows, trial_triplet = rows[by_triplet], trial_triplet[by_triplet]
    first = np.searchsorted(trial_triplet, trial_triplet, side="left")
    sampled = np.arange(len(rows)) - first < max_responses
    dropped_trials["over_max_responses"] = int((~sampled).sum())
    rows, trial_triplet = rows[sampled], trial_triplet[sampled]
    kept_triplets, trial_triplet = np.unique(trial_triplet, return_inverse=True)
    t = len(kept_triplets)
    counts = np.zeros((t, 3), np.int64)
    np.add.at(counts, (trial_triplet, odd[rows]), 1)
    n = counts.sum(axis=1)
    mean_log_rt = np.bincount(trial_triplet, np.log(rt[rows] / 1000.0), minlength=t) / n
    first_row = np.zeros(t, np.int64)
    first_row[trial_triplet[::-1]] = rows[::-1]  # a row of each kept triplet, for its names
    kept_names = vocabulary[index[first_row]]
    used, inverse = np.unique(kept_names.ravel(), return_inverse=True)
    wnids = np.char.partition(kept_names.astype(str), "_")[..., 0]
    w0, w1, w2 = wnids[:, 0], wnids[:, 1], wnids[:, 2]
    level = 1 + (w1 != w0).astype(np.int8) + ((w2 != w0) & (w2 != w1)).astype(np.int8)  # distinct WordNet ids
    image_paths = () if images is None else find_images(root, images, list(used))
    return Levels(
        images=tuple(str(u) for u in used),
        image_paths=image_paths,
        triplets=inverse.reshape(-1, 3).astype(np.int32),
        counts=counts.astype(np.int32),
        mean_log_rt=mean_log_rt,
        level=level.astype(np.int8),
        dropped_trials=dropped_trials,
        dropped_triplets=dropped_triplets,
        n_trials=n_rows,
        source=root,
    )


def images_folder(root: str, images: str) -> str:
    """The images folder: `images`, or ROOT/images when it is ""."""
    return images or os.path.join(root, "images")


def find_images(root: str, images: str, names: list[str]) -> tuple[str, ...]:
    """The file of each name in the images folder (searched recursively, by file name); InputError naming the
    first missing one."""
    folder = images_folder(root, images)
    if not os.path.isdir(folder):
        raise InputError(
            f"levels.images={folder}: folder not found; give the folder of the Levels images or levels.features"
        )
    found: dict[str, str] = {}
    for current, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            found.setdefault(name, os.path.join(current, name))
    missing = [name for name in names if name not in found]
    if missing:
        raise InputError(
            f"levels.images={folder}: {len(missing)} image(s) of kept triplets missing, e.g. {missing[0]}; add them "
            "or give levels.features"
        )
    return tuple(found[name] for name in names)


def level_masks(levels: Levels) -> dict[str, np.ndarray]:
    """{"within_class", "class_border", "between_class", "all"} -> (t,) bool masks of the triplets."""
    masks = {name: levels.level == value for value, name in LEVEL_NAMES.items()}
    masks["all"] = np.ones(levels.n_triplets, bool)
    return masks
