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


# the smallest world make_world accepts (n_dims: at least n_concepts)
_MINIMUM_SIZES = {
    "n_objects": 3, "n_concepts": 1, "n_train": 1, "n_test": 0, "n_repeated_sets": 0, "n_transfer": 0, "n_local": 0,
}  # fmt: skip


def make_world(
    seed: int = 0,
    *,
    n_objects: int = 300,
    n_concepts: int = 10,
    n_dims: int = 64,
    n_train: int = 60_000,
    n_test: int = 10_000,
    n_repeated_sets: int = 500,
    n_transfer: int = 60,
    n_local: int = 0,
) -> synthetic.World:
    """The demo's synthetic THINGS-like world (configs/demo.py's sizes by default): `.features` (n_objects,
    n_dims) of a "model" that mixes n_concepts planted concepts with nuisance dimensions, `.embedding`
    (n_objects, n_concepts) >= 0, simulated human triplets `.train`, `.test` (T, 3) and `.repeats` (sets asked
    three times, for a noise ceiling), and held-out `.transfer_features` / `.transfer_embedding`."""
    sizes = {name: value for name, value in locals().items() if name != "seed"}
    arguments.integer(seed, "seed", minimum=0)
    for name, minimum in {**_MINIMUM_SIZES, "n_dims": n_concepts}.items():
        arguments.integer(sizes[name], name, minimum=minimum)
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
