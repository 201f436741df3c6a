"""The student's streaming reader of a teacher folder: the same arrays as concatenating the shards, and one line
for a folder the teacher stage did not finish."""

import json
import os

import numpy as np
import pytest

from alignment_jax.data import teacher
from alignment_jax.errors import InputError
from alignment_jax.stages.student import read_shards


@pytest.fixture
def folder(tmp_path):
    """A teacher folder: 250 triplets over 30 images in 3 classes, shards of 100."""
    rng = np.random.default_rng(0)
    names = np.array(sorted(f"n{i % 3:08d}_{i}.JPEG" for i in range(30)))
    z = rng.normal(size=(30, 4)).astype(np.float32)
    labels = np.array([int(n[1:9]) for n in names])
    teacher.write_teacher_shards(str(tmp_path), names, np.arange(30), labels, z, 250, (1, 1, 1), 0, 100, {})
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n")
    return tmp_path


@pytest.mark.parametrize("chunk_rows", [250_000, 7])
def test_equals_the_concatenated_shards(folder, chunk_rows):
    names, rows, sims = read_shards(str(folder), chunk_rows)
    manifest = json.loads((folder / teacher.MANIFEST).read_text())
    shards = [np.load(folder / s["file"]) for s in manifest["shards"]]
    np.testing.assert_array_equal(names[rows], np.concatenate([s["filenames"] for s in shards]))
    np.testing.assert_array_equal(sims, np.concatenate([s["similarities"] for s in shards]))
    assert rows.dtype == np.int32 and sims.dtype == np.float32 and rows.shape == (250, 3)


def test_missing_shard_or_incomplete_manifest_is_one_line(folder):
    manifest = json.loads((folder / teacher.MANIFEST).read_text())
    os.remove(folder / manifest["shards"][1]["file"])
    with pytest.raises(InputError, match=r"triplets-00001-of-00003.npz: teacher shard missing") as error:
        read_shards(str(folder))
    assert "\n" not in str(error.value)
    manifest["complete"] = False
    (folder / teacher.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="no complete teacher triplets"):
        read_shards(str(folder))
    (folder / teacher.MANIFEST).write_text("{")
    with pytest.raises(InputError, match="no complete teacher triplets"):
        read_shards(str(folder))


def test_a_name_outside_the_image_set_is_one_line(folder):
    (folder / "names.txt").write_text("\n".join(sorted((folder / "names.txt").read_text().split())[1:]) + "\n")
    with pytest.raises(InputError, match="is not in names.txt"):
        read_shards(str(folder))
