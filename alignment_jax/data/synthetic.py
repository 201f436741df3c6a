"""A synthetic THINGS-like world with a planted human concept embedding, for tests, the demo and benchmarks.

Objects have a sparse non-negative concept embedding E (n, d) with named dimensions. Simulated people
choose the odd one out of (a, b, c) with probability softmax(beta * [E_b.E_c, E_a.E_c, E_a.E_b]): the
pair with the most shared concepts tends to stay together. A model's features mix E with nuisance
dimensions under a random rotation, so zero-shot similarity is worse than the generating model and a
linear probe can recover it.
"""

import dataclasses

import numpy as np

CONCEPT_NAMES = (
    "Metal", "Food", "Plant-related", "Animal-related", "Furniture", "Clothing", "Royal", "Outdoors",
    "Body part", "Vehicles", "Wood", "Tools", "Technology", "Colorful", "Patterns", "Circular",
    "Sports", "Paper", "Liquids", "Sea",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class World:
    """embedding: (n, d) planted concepts; features: (n, p) what a model sees; train/test/repeats: (T, 3)
    triplets with column 2 = odd one out (repeats: sets of three objects asked several times);
    transfer_embedding / transfer_features: (m, d) / (m, p) for m further objects, a held-out dataset;
    local_embedding / local_features: (l, d) / (l, p) for l further objects without human data, gLocal's
    local image set (drawn after everything else, so the rest of the world does not depend on l)."""

    embedding: np.ndarray
    concept_names: tuple[str, ...]
    features: np.ndarray
    train: np.ndarray
    test: np.ndarray
    repeats: np.ndarray
    transfer_embedding: np.ndarray
    transfer_features: np.ndarray
    local_embedding: np.ndarray
    local_features: np.ndarray
    rotation: np.ndarray | None = None  # (n_dims, n_dims): features = [embedding, nuisance] @ rotation


def concept_embedding(n_objects: int, n_concepts: int, rng: np.random.Generator, density: float = 0.3) -> np.ndarray:
    """(n, d) sparse non-negative embedding; every object has at least one concept."""
    strength = rng.gamma(2.0, 0.5, size=(n_objects, n_concepts))
    active = rng.random((n_objects, n_concepts)) < density
    active[np.arange(n_objects), rng.integers(0, n_concepts, n_objects)] = True
    return strength * active


def random_triplets(n_objects: int, n_triplets: int, rng: np.random.Generator) -> np.ndarray:
    """(T, 3) triplets of three distinct objects, uniformly."""
    first = rng.integers(0, n_objects, n_triplets)
    second = (first + rng.integers(1, n_objects, n_triplets)) % n_objects
    third = rng.integers(0, n_objects - 2, n_triplets)
    low, high = np.minimum(first, second), np.maximum(first, second)
    third = third + (third >= low) + (third + (third >= low) >= high)
    return np.stack([first, second, third], axis=1)


def simulate_choices(embedding: np.ndarray, triplets: np.ndarray, beta: float, rng: np.random.Generator) -> np.ndarray:
    """Reorders each (a, b, c) so that column 2 is the sampled odd one out."""
    similarity = embedding @ embedding.T
    sim = lambda u, v: similarity[triplets[:, u], triplets[:, v]]
    logits = beta * np.stack([sim(1, 2), sim(0, 2), sim(0, 1)], axis=1)  # logit of "column c is odd"
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    odd = (prob.cumsum(axis=1) > rng.random((len(triplets), 1))).argmax(axis=1)
    keep = np.array([[1, 2], [0, 2], [0, 1]])[odd]
    rows = np.arange(len(triplets))
    return np.stack([triplets[rows, keep[:, 0]], triplets[rows, keep[:, 1]], triplets[rows, odd]], axis=1)


def make_world(
    n_objects: int = 200, n_concepts: int = 8, n_dims: int = 32, n_train: int = 30_000, n_test: int = 5_000,
    n_repeated_sets: int = 300, repeats_per_set: int = 3, beta: float = 3.0, nuisance: float = 1.0,
    n_transfer: int = 0, n_local: int = 0, seed: int = 0,
) -> World:  # fmt: skip
    """A world of n_objects (+ n_transfer held-out objects, + n_local local objects) with features of
    n_dims = n_concepts planted + nuisance dimensions."""
    if n_dims < n_concepts:
        raise ValueError(f"n_dims={n_dims} must be >= n_concepts={n_concepts}")
    rng = np.random.default_rng(seed)
    everything = concept_embedding(n_objects + n_transfer, n_concepts, rng)
    mixed = np.concatenate([everything, nuisance * rng.normal(size=(len(everything), n_dims - n_concepts))], axis=1)
    rotation = np.linalg.qr(rng.normal(size=(n_dims, n_dims)))[0]
    all_features = (mixed @ rotation).astype(np.float32)
    embedding, features = everything[:n_objects], all_features[:n_objects]
    triplets = simulate_choices(embedding, random_triplets(n_objects, n_train + n_test, rng), beta, rng)
    sets = np.repeat(random_triplets(n_objects, n_repeated_sets, rng), repeats_per_set, axis=0)
    names = tuple(CONCEPT_NAMES[i] if i < len(CONCEPT_NAMES) else f"Concept {i}" for i in range(n_concepts))
    repeats = simulate_choices(embedding, sets, beta, rng).astype(np.int32)
    local_embedding = concept_embedding(n_local, n_concepts, rng)
    local_mixed = np.concatenate([local_embedding, nuisance * rng.normal(size=(n_local, n_dims - n_concepts))], axis=1)
    return World(
        embedding=embedding.astype(np.float32),
        concept_names=names,
        features=features,
        train=triplets[:n_train].astype(np.int32),
        test=triplets[n_train:].astype(np.int32),
        repeats=repeats,
        transfer_embedding=everything[n_objects:].astype(np.float32),
        transfer_features=all_features[n_objects:],
        local_embedding=local_embedding.astype(np.float32),
        local_features=(local_mixed @ rotation).astype(np.float32),
        rotation=rotation,
    )


@dataclasses.dataclass(frozen=True)
class LevelsWorld:
    """A small Levels-like set: images of a three-level class hierarchy (superclass > class > image) and
    release-format trial rows (alignment_jax/data/levels.py) answered by simulated people.

    names: (m,) image file names `n<class id>_<i>.png` (the WordNet-id convention: the class is the part up to
    the first `_`); embedding / features: (m, d) / (m, p) as the world's objects; trials: the rows of the trial
    files (experimental trials, 4-5 per triplet, and rows each filtering rule drops)."""

    names: tuple[str, ...]
    embedding: np.ndarray
    features: np.ndarray
    trials: list[dict]


def make_levels(
    world: World,
    n_per_level: int = 100,
    n_superclasses: int = 3,
    classes_per_superclass: int = 3,
    images_per_class: int = 9,
    beta: float = 0.5,
    nuisance: float = 1.0,
    seed: int = 0,
) -> LevelsWorld:
    """Levels for `world`'s concepts and feature map: n_per_level random triplets of each level (three images of
    one class; two of one class and one of a sibling class; three classes of three superclasses), plus one
    triplet per three images of each class so every image is shown, each answered 4-5 times from
    softmax(beta * [E_b.E_c, E_a.E_c, E_a.E_b]) with response times that grow with the choice's entropy; mixed
    in: slow trials, trials without a selection, training, catch and break rows, and triplets with too few
    responses."""
    rng = np.random.default_rng(seed)
    d = world.embedding.shape[1]
    n_classes = n_superclasses * classes_per_superclass
    superclass = concept_embedding(n_superclasses, d, rng, density=0.25) * 1.5
    parent = np.repeat(np.arange(n_superclasses), classes_per_superclass)
    classes = superclass[parent] + concept_embedding(n_classes, d, rng, density=0.15)
    label = np.repeat(np.arange(n_classes), images_per_class)
    embedding = classes[label] * rng.gamma(8.0, 1 / 8.0, size=(len(label), d))
    names = tuple(f"n{1000 + c:08d}_{i}.png" for c, i in zip(label, np.arange(len(label)), strict=True))
    p = world.features.shape[1]
    mixed = np.concatenate([embedding, nuisance * rng.normal(size=(len(label), p - d))], axis=1)
    rotation = world.rotation if world.rotation is not None else np.eye(p)
    members = np.arange(len(label)).reshape(n_classes, images_per_class)

    def pick(classes_of_row: np.ndarray, count: int) -> np.ndarray:
        return np.stack([rng.permutation(members[c])[:count] for c in classes_of_row])

    within = pick(rng.integers(0, n_classes, n_per_level), 3)
    first = rng.integers(0, n_classes, n_per_level)
    sibling = parent[first] * classes_per_superclass + (
        (first % classes_per_superclass + rng.integers(1, classes_per_superclass, n_per_level)) % classes_per_superclass
    )
    border = np.concatenate([pick(first, 2), pick(sibling, 1)], axis=1)
    chosen = np.stack([rng.permutation(n_superclasses)[:3] for _ in range(n_per_level)]) * classes_per_superclass
    between = np.concatenate(
        [pick(chosen[:, k] + rng.integers(0, classes_per_superclass, n_per_level), 1) for k in range(3)], axis=1
    )
    cover = members[:, : images_per_class // 3 * 3].reshape(-1, 3)  # every image in a triplet
    triplets = np.concatenate([cover, within, border, between])
    triplets = np.stack([rng.permutation(row) for row in triplets])  # the shown order
    similarity = embedding @ embedding.T
    sim = lambda u, v: similarity[triplets[:, u], triplets[:, v]]
    logits = beta * np.stack([sim(1, 2), sim(0, 2), sim(0, 1)], axis=1)
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    uncertainty = -(prob * np.log(prob)).sum(axis=1)
    trials = []

    def row(t: int, selected: str, rt: float, kind: str = "exp_trial") -> dict:
        shown = [f"stimuli/levels/{names[i]}" for i in triplets[t]]
        return {
            "subject_id": f"subject_{int(rng.integers(0, 12)):02d}",
            "rt": round(float(rt), 1),
            "image1Path": shown[0],
            "image2Path": shown[1],
            "image3Path": shown[2],
            "selected_image": selected,
            "exp_trial_type": kind,
        }

    for t in range(len(triplets)):
        n = 5 if t < len(cover) else int(rng.integers(4, 6))
        if t >= len(cover) and rng.random() < 0.05:
            n = 2  # too few responses: dropped
        for choice in rng.choice(3, size=n, p=prob[t]):
            rt = 1000 * np.exp(0.1 + 0.8 * uncertainty[t] + 0.25 * rng.normal())
            trials.append(row(t, f"stimuli/levels/{names[triplets[t, choice]]}", min(rt, 9_500.0)))
        if t >= len(cover) and rng.random() < 0.15:  # slow: dropped
            trials.append(row(t, f"stimuli/levels/{names[triplets[t, 0]]}", rng.uniform(10_500, 30_000)))
        if t >= len(cover) and rng.random() < 0.05:  # no selection: dropped
            trials.append(row(t, "No image selected", 10_000.0))
        if rng.random() < 0.03:  # other trial types: skipped
            trials.append(row(t, f"stimuli/levels/{names[triplets[t, 1]]}", 800.0, kind="training_trial"))
            trials.append(row(t, f"stimuli/levels/{names[triplets[t, 2]]}", 700.0, kind="catch_trial"))
            trials.append({"exp_trial_type": "break", "rt": 30_000, "trial_index": len(trials)})
    return LevelsWorld(names, embedding.astype(np.float32), (mixed @ rotation).astype(np.float32), trials)
