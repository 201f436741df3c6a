"""What results.json sections were computed from, and when earlier outputs are stale."""

import numpy as np

from alignment_jax import provenance
from alignment_jax.config.base import base_config
from alignment_jax.data.triplets import count_duplicates, count_shared


def test_settings_cover_every_field_of_a_section():
    config = base_config()
    facts = provenance.settings(config, "probe", "seed")
    assert facts["config:probe.lambdas"] == [0.1, 0.01, 0.001, 0.0001, 1e-05] and facts["config:seed"] == 0
    leaves = lambda c: sum(leaves(v) if hasattr(v, "items") else 1 for v in c.values())  # noqa: E731
    assert len([k for k in facts if k.startswith("config:probe.")]) == leaves(config.probe)
    assert "config:probe.local.batch_size" in facts  # nested sections count too


def test_conflicts_compare_only_the_facts_both_sides_have():
    earlier = {
        "zero_shot": {"features": "a", "config:similarity": "cosine"},
        "probe": {"features": "a", "config:probe.lambdas": [0.1]},
    }
    assert provenance.conflicts(earlier, {"features": "a", "config:probe.lambdas": [0.1]}) == []
    assert provenance.conflicts(earlier, {"config:similarity": "dot"}) == [
        'zero_shot: config:similarity was "cosine", now "dot"'
    ]
    lines = provenance.conflicts(earlier, {"features": "b"})
    assert [line.split(":")[0] for line in lines] == ["zero_shot", "probe"]
    assert provenance.conflicts(earlier, {"config:probe.lambdas": (0.1,)}) == []  # as read back from JSON


def test_digests_see_values_shapes_and_types():
    a = np.arange(6, dtype=np.int32).reshape(2, 3)
    assert provenance.array_digest(a) == provenance.array_digest(a.copy())
    assert provenance.array_digest(a) != provenance.array_digest(a.reshape(3, 2))
    assert provenance.array_digest(a) != provenance.array_digest(a.astype(np.int64))
    assert provenance.array_digest(np.zeros((0, 3))) != provenance.array_digest(None)
    assert provenance.digest({"a": float("nan")}) == provenance.digest({"a": None})


def test_duplicate_rows_and_shared_object_sets_are_counted():
    rng = np.random.default_rng(0)
    train = np.array([rng.choice(30, 3, replace=False) for _ in range(400)])
    train = np.concatenate([train, train[:9], train[20:23][:, [1, 0, 2]]])
    test = np.concatenate([np.array([rng.choice(30, 3, replace=False) for _ in range(100)]), train[5:8][:, ::-1]])
    assert count_duplicates(train, 30) == len(train) - len({tuple(t) for t in train.tolist()})
    sets = {frozenset(t) for t in train.tolist()}
    assert count_shared(test, train, 30) == sum(frozenset(t) in sets for t in test.tolist())
    assert count_shared(test[:0], train, 30) == 0
