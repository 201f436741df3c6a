import json
import os

import numpy as np
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


def test_temporary_files_of_killed_writes_are_found_and_removed(tmp_path):
    (tmp_path / "sub").mkdir()
    left = [
        tmp_path / f".results.json.x1{atomic.TEMPORARY}",
        tmp_path / "sub" / f".a.png.x2{atomic.TEMPORARY}.png",
    ]
    for path in left:
        path.write_bytes(b"half")
    (tmp_path / f".checkpoint.x3{atomic.TEMPORARY}" / "new").mkdir(parents=True)
    keep = [tmp_path / "results.json", tmp_path / ".hidden", tmp_path / "sub" / "notes.tmp"]
    for path in keep:
        path.write_text("mine")
    assert [os.path.basename(p) for p in atomic.remove_temporary(tmp_path, recursive=False)] == [
        f".checkpoint.x3{atomic.TEMPORARY}",
        f".results.json.x1{atomic.TEMPORARY}",
    ]
    assert left[1].exists()
    assert atomic.remove_temporary(tmp_path) == [str(left[1])]
    assert all(p.exists() for p in keep)


def test_only_idle_temporary_files_of_one_target_are_removed_in_a_shared_folder(tmp_path):
    old, fresh = tmp_path / f".model.npz.a{atomic.TEMPORARY}", tmp_path / f".model.npz.b{atomic.TEMPORARY}"
    other = tmp_path / f".other.npz.c{atomic.TEMPORARY}"
    for path in (old, fresh, other):
        path.write_bytes(b"part")
    os.utime(old, (0, 0))
    os.utime(other, (0, 0))
    assert atomic.remove_stale_temporary(tmp_path / "model.npz") == [str(old)]
    assert fresh.exists() and other.exists()


def test_json_is_strict(tmp_path):
    atomic.write_json(tmp_path / "r.json", {"a": float("nan"), "b": [np.float32(np.inf), 1.5], "c": np.arange(2)})
    text = (tmp_path / "r.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {"a": None, "b": [None, 1.5], "c": [0, 1]}
