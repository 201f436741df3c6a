"""Data for a notebook: the THINGS odd-one-out data from their published layout, and the synthetic world the
demo runs on (planted concepts, simulated people, a model's features)."""

from alignment_jax.api import arguments
from alignment_jax.data import synthetic
from alignment_jax.data.alignet import AlignetTriplets, load_alignet_pair
from alignment_jax.data.triplets import ThingsData
from alignment_jax.data.triplets import load_things as _load_things
from alignment_jax.errors import InputError


def load_things(
    root: str = "", *, train: str = "", test: str = "", objects: str = "", one_based: bool = False
) -> ThingsData:
    """THINGS from ROOT/triplets/{train_90,test_10}.npy and ROOT/things_concepts.tsv (OSF's layout), or explicit
    files (.npy or text, (T, 3), column 2 = the odd one out). Returns `.train` and `.test` (TripletSet:
    `.triplets` (T, 3) int32, 0-based), `.object_ids` and `.n_objects`. one_based: the files count from 1."""
    if not isinstance(one_based, bool):
        raise InputError(f"one_based={one_based!r}: must be True or False")
    if not (root or train):
        raise InputError("load_things: give root=ROOT (with triplets/train_90.npy) or train=FILE")
    return _load_things(root, train, test, objects, one_based=one_based)


# name: (the demo's size, configs/demo.py's world; the least make_world accepts); n_dims is at least n_concepts
_SIZES = {
    "n_objects": (300, 3), "n_concepts": (10, 1), "n_dims": (64, 1), "n_train": (60_000, 1), "n_test": (10_000, 0),
    "n_repeated_sets": (500, 0), "n_transfer": (60, 0), "n_local": (0, 0),
}  # fmt: skip


def make_world(seed: int = 0, **sizes: int) -> synthetic.World:
    """The demo's synthetic THINGS-like world: `.features` (n_objects, n_dims) of a "model" that mixes
    n_concepts planted concepts with nuisance dimensions, `.embedding` (n_objects, n_concepts) >= 0, simulated
    human triplets `.train`, `.test` (T, 3) and `.repeats` (n_repeated_sets sets asked three times, for a noise
    ceiling), held-out `.transfer_features` / `.transfer_embedding` (n_transfer objects) and gLocal's local set
    `.local_features` (n_local objects). sizes: keywords n_objects=300, n_concepts=10, n_dims=64, n_train=60_000,
    n_test=10_000, n_repeated_sets=500, n_transfer=60, n_local=0 (configs/demo.py's sizes by default)."""
    unknown = sorted(set(sizes) - set(_SIZES))
    if unknown:
        raise InputError(f"make_world: unknown size {unknown[0]!r}; use one of {', '.join(_SIZES)}")
    arguments.integer(seed, "seed", minimum=0)
    sizes = {name: sizes.get(name, default) for name, (default, _) in _SIZES.items()}
    for name, (_, minimum) in _SIZES.items():
        arguments.integer(sizes[name], name, minimum=minimum)
    arguments.integer(sizes["n_dims"], "n_dims", minimum=sizes["n_concepts"])
    return synthetic.make_world(**sizes, seed=seed)


def load_alignet(train: str, test: str = "") -> tuple[AlignetTriplets, AlignetTriplets | None]:
    """AligNet's triplet files (`alignet_train.npz`, `alignet_valid.npz`: filenames, similarities [s01, s02, s12],
    indices) over one image set, the sorted union of their file names (feature rows). Each has `.triplets`
    (T, 3) rows of `.names` (column 2 = the odd one out), `.similarities`, `.targets` (softmax of the
    similarities: the soft targets of fit_probe(objective="kl")) and `.n_not_first` (rows where s01 is not the
    largest, reported rather than rejected)."""
    for name, value in (("train", train), ("test", test)):
        if not isinstance(value, str) or (name == "train" and not value):
            raise InputError(f"load_alignet: {name}={value!r}; give the path of an AligNet .npz triplet file")
    return load_alignet_pair(train, test)
