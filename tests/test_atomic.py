import json
import os

import pytest

from alignment_jax import atomic


def test_files_are_replaced_whole_or_not_at_all(tmp_path):
    path = tmp_path / "sub" / "results.json"
    atomic.write_json(path, {"a": 1})
    with pytest.raises(RuntimeError), atomic.atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write('{"a": 2, "trunc')
        raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(path.parent) == ["results.json"]  # no temporary file left behind


def test_directories_are_replaced_only_when_complete(tmp_path):
    path = tmp_path / "checkpoint"
    with atomic.atomic_directory(path) as tmp:
        os.makedirs(tmp)
        with open(os.path.join(tmp, "v"), "w") as f:
            f.write("1")
    with pytest.raises(RuntimeError), atomic.atomic_directory(path) as tmp:
        os.makedirs(tmp)
        raise RuntimeError("killed mid-write")
    assert (path / "v").read_text() == "1"
    with atomic.atomic_directory(path) as tmp:
        os.makedirs(tmp)
        with open(os.path.join(tmp, "v"), "w") as f:
            f.write("2")
    assert (path / "v").read_text() == "2"
    assert sorted(os.listdir(tmp_path)) == ["checkpoint"]
