"""Shared fixtures: a small planted world written to disk in the THINGS layout; and, after the session, a check
that every results.json the tests wrote is strict JSON."""

import json
import os

import numpy as np
import pytest

from alignment_jax.data.synthetic import make_world


@pytest.fixture(scope="session", autouse=True)
def package_cache(tmp_path_factory):
    """The package cache folder (decoded images, compiled programs) of this test session, not the user's:
    $ALIGNMENT_JAX_CACHE, inherited by the command-line runs the tests start."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("package_cache")
        patch.setenv("ALIGNMENT_JAX_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="session")
def world():
    return make_world(n_objects=120, n_concepts=6, n_dims=24, n_train=20_000, n_test=4_000, seed=0)


@pytest.fixture(scope="session")
def things_dir(world, tmp_path_factory):
    """ROOT/triplets/{train_90,test_10}.npy, ROOT/things_concepts.tsv and ROOT/features.npy."""
    root = tmp_path_factory.mktemp("things")
    os.makedirs(root / "triplets")
    np.save(root / "triplets" / "train_90.npy", np.concatenate([world.train, world.repeats]))
    np.save(root / "triplets" / "test_10.npy", world.test)
    rows = ["Word\tuniqueID"] + [f"object {i}\tobject_{i:04d}" for i in range(len(world.features))]
    (root / "things_concepts.tsv").write_text("\n".join(rows) + "\n")
    np.save(root / "features.npy", world.features)
    return root


def _refuse(constant: str):
    raise ValueError(f"{constant} is not JSON")


@pytest.fixture(scope="session", autouse=True)
def every_results_json_is_strict(tmp_path_factory):
    """After the session: every JSON file the tests' runs wrote under the temporary folders (results.json,
    DONE, feature store records) parses with a strict parser (no bare NaN or Infinity). A file that is not
    JSON even to a lenient parser is a test's own garbage and is skipped."""
    yield
    bad = []
    for path in tmp_path_factory.getbasetemp().rglob("*"):
        if path.name not in ("results.json", "DONE", "record.json") or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            json.loads(text)
        except ValueError:
            continue
        try:
            json.loads(text, parse_constant=_refuse)
        except ValueError as e:
            bad.append(f"{path}: {e}")
    assert not bad, "not strict JSON:\n" + "\n".join(bad)
