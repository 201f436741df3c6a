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
    n_objects: int = 200,
    n_concepts: int = 8,
    n_dims: int = 32,
    n_train: int = 30_000,
    n_test: int = 5_000,
    n_repeated_sets: int = 300,
    repeats_per_set: int = 3,
    beta: float = 3.0,
    nuisance: float = 1.0,
    n_transfer: int = 0,
    n_local: int = 0,
    seed: int = 0,
) -> World:
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
    )
