"""Concept embeddings, the assignment of triplets to concepts, per-concept accuracy, and the stage."""

import numpy as np
import pytest

from alignment_jax.config.base import base_config
from alignment_jax.data.concept_embedding import load_concept_embedding
from alignment_jax.errors import InputError
from alignment_jax.evaluation import concepts
from alignment_jax.probing.transform import Transform
from alignment_jax.run_context import RunContext
from alignment_jax.stages import concepts as concepts_stage


def test_assignment_by_mean_weight_of_the_chosen_pair():
    weights = np.array(
        [
            [1.0, 0.0, 0.2],
            [0.5, 0.25, 0.0],
            [0.0, 0.0, 5.0],  # the odd one out's weights must not count
            [0.0, 0.25, 0.4],
        ]
    )
    triplets = np.array([[0, 1, 2], [3, 1, 2], [0, 3, 2]])
    np.testing.assert_array_equal(concepts.assign_concepts(weights, triplets)[:, 0], [0, 0, 0])
    # pair (0, 1): means [0.75, 0.125, 0.1]; pair (3, 1): [0.25, 0.25, 0.2], a tie goes to the lower
    # index; pair (0, 3): [0.5, 0.125, 0.3]
    np.testing.assert_array_equal(concepts.assign_concepts(weights, triplets, top_k=2), [[0, 1], [0, 1], [0, 2]])
    with pytest.raises(ValueError, match="top_k"):
        concepts.assign_concepts(weights, triplets, top_k=4)


def test_top_k_and_accuracy_match_a_plain_loop(monkeypatch):
    rng = np.random.default_rng(0)
    weights = rng.random((30, 6))
    triplets = np.stack([rng.choice(30, 3, replace=False) for _ in range(500)])
    correct = rng.random(500) < 0.6
    monkeypatch.setattr(concepts, "_CHUNK", 64)  # several chunks
    assignment = concepts.assign_concepts(weights, triplets, top_k=3)
    counts, accuracy = concepts.concept_accuracy(assignment, correct, 6)
    loop_counts, loop_right = np.zeros(6), np.zeros(6)
    for (i, j, _), ok in zip(triplets, correct, strict=True):
        for d in np.argsort(-(weights[i] + weights[j]))[:3]:
            loop_counts[d] += 1
            loop_right[d] += ok
    np.testing.assert_array_equal(counts, loop_counts)
    np.testing.assert_allclose(accuracy, loop_right / loop_counts)
    assert counts.sum() == 3 * 500


def test_rows_schema_and_empty_concepts():
    rows = concepts.concept_rows(
        ("Metal", "Food", "Royal"), np.array([[0], [0], [1]]), np.array([True, False, True]), np.array([1, 1, 0], bool)
    )
    assert rows == [
        {"concept": "Metal", "n_triplets": 2, "accuracy": 0.5, "accuracy_transformed": 1.0},
        {"concept": "Food", "n_triplets": 1, "accuracy": 1.0, "accuracy_transformed": 0.0},
        {"concept": "Royal", "n_triplets": 0, "accuracy": None, "accuracy_transformed": None},
    ]
    assert concepts.concept_rows(("a",), np.array([[0]]), np.array([False]))[0]["accuracy_transformed"] is None


def test_embedding_loader_formats_and_errors(tmp_path):
    weights = np.random.default_rng(1).random((5, 3))
    np.savetxt(tmp_path / "spose.txt", weights)
    (tmp_path / "labels.txt").write_text("Metal\nFood\n\nPlant-related\n")
    embedding = load_concept_embedding(str(tmp_path / "spose.txt"), str(tmp_path / "labels.txt"), n_objects=5)
    np.testing.assert_allclose(embedding.weights, weights, rtol=1e-6)
    assert embedding.labels == ("Metal", "Food", "Plant-related")
    np.save(tmp_path / "vice.npy", weights)
    assert load_concept_embedding(str(tmp_path / "vice.npy")).labels == ("dimension 1", "dimension 2", "dimension 3")

    def fails(array, message, labels="", n_objects=None):
        np.save(tmp_path / "bad.npy", array)
        with pytest.raises(InputError, match=message):
            load_concept_embedding(str(tmp_path / "bad.npy"), labels, n_objects)

    fails(weights - 0.5, r"negative weight .* non-negative")
    fails(np.where(np.eye(5, 3) > 0, np.nan, weights), r"NaN or inf .*\(row 0, column 0\)")
    fails(weights[0], r"shape \(n_objects, d\)")
    fails(weights, "5 rows but 1854 objects", n_objects=1854)
    fails(np.array([["a"]]), "must be numeric")
    (tmp_path / "two.txt").write_text("Metal\nFood\n")
    fails(weights, "2 labels for 3 embedding dimensions", labels=str(tmp_path / "two.txt"))
    (tmp_path / "dup.txt").write_text("Metal\nFood\nMetal\n")
    fails(weights, r"duplicate labels \['Metal'\]", labels=str(tmp_path / "dup.txt"))
    fails(weights, "label file not found", labels=str(tmp_path / "absent.txt"))
    with pytest.raises(InputError, match="concept embedding not found"):
        load_concept_embedding(str(tmp_path / "absent.npy"))
    (tmp_path / "words.txt").write_text("0.1 zero\n")
    with pytest.raises(InputError, match="not a whitespace-separated numeric table"):
        load_concept_embedding(str(tmp_path / "words.txt"))


def _world(tmp_path, rng):
    """Objects that each belong to concept 0 or 1; humans choose by the embedding. The features carry concept
    0 clearly, concept 1 only faintly (dimension 1, scaled by 0.05), plus noise (dimensions 2, 3)."""
    n = 60
    member = np.arange(n) % 2
    weights = np.zeros((n, 2))
    weights[np.arange(n), member] = 1.0 + rng.random(n)
    triplets = []
    while len(triplets) < 600:
        i, j, k = rng.choice(n, 3, replace=False)
        if member[i] == member[j] != member[k]:
            triplets.append((i, j, k))
    features = np.concatenate(
        [weights[:, :1] + 0.05 * rng.normal(size=(n, 1)), 0.05 * weights[:, 1:], 0.3 * rng.normal(size=(n, 2))], 1
    )
    np.save(tmp_path / "features.npy", features.astype(np.float32))
    np.save(tmp_path / "test.npy", np.array(triplets))
    np.save(tmp_path / "train.npy", np.array(triplets[:10]))
    np.save(tmp_path / "embedding.npy", weights)
    (tmp_path / "labels.txt").write_text("Animal-related\nVehicles\n")
    config = base_config()
    config.features = str(tmp_path / "features.npy")
    config.things.train = str(tmp_path / "train.npy")
    config.things.test = str(tmp_path / "test.npy")
    config.concepts.embedding = str(tmp_path / "embedding.npy")
    config.concepts.labels = str(tmp_path / "labels.txt")
    return config


def test_stage_finds_the_concept_the_model_misses(tmp_path):
    config = _world(tmp_path, np.random.default_rng(2))
    assert concepts_stage.has_inputs(config)
    ctx = RunContext(config, str(tmp_path / "run"))
    rows = concepts_stage.run(ctx)
    by_name = {r["concept"]: r for r in rows}
    assert by_name["Animal-related"]["n_triplets"] + by_name["Vehicles"]["n_triplets"] == 600  # the test split
    assert by_name["Animal-related"]["accuracy"] > 0.9
    assert by_name["Vehicles"]["accuracy"] < 0.75
    assert by_name["Vehicles"]["accuracy_transformed"] is None

    # A transform that amplifies the faint concept and drops the noise fixes it.
    Transform(np.diag([1.0, 20.0, 0.0, 0.0]), np.zeros(4), 0.0, 1.0).save_npz(ctx.transform_path)
    rows = concepts_stage.run(ctx)
    assert all(r["accuracy_transformed"] > 0.95 for r in rows), rows
    assert {r["concept"]: r["accuracy"] for r in rows} == {k: v["accuracy"] for k, v in by_name.items()}


def test_stage_errors(tmp_path):
    config = _world(tmp_path, np.random.default_rng(3))
    config.concepts.top_k = 3
    with pytest.raises(InputError, match="concepts.top_k=3"):
        concepts_stage.run(RunContext(config, str(tmp_path / "run")))
    config.concepts.top_k = 1
    np.save(tmp_path / "embedding.npy", np.ones((59, 2)))
    with pytest.raises(InputError, match="59 rows but 60 objects"):
        concepts_stage.run(RunContext(config, str(tmp_path / "run")))
    config.concepts.embedding = ""
    assert not concepts_stage.has_inputs(config)
