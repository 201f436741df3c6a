"""The decoded-image cache: pixels equal to decoding, reuse, a changed image decoded again, rows stamped only
after their pixels are on disk (a SIGKILL leaves no half-written row in use), readers that do not write."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from extract_testlib import SIZE, extract_folder, reference_features, write_images
from PIL import Image

from alignment_jax.errors import InputError
from alignment_jax.extract import decode
from alignment_jax.extract.decode import Decoding, decode_image
from alignment_jax.extract.image_cache import cached_images, open_image_cache
from alignment_jax.extract.sources import folder_source


@pytest.fixture()
def counted(monkeypatch):
    """The names of the images decoded (every call of decode_image), in call order."""
    names = []
    real = decode.decode_image
    monkeypatch.setattr(decode, "decode_image", lambda ref, name, d: names.append(name) or real(ref, name, d))
    return names


def _decoded(source, indices, decoding):
    return np.stack([decode_image(source.names[i], source.names[i], decoding) for i in indices])


def test_cached_pixels_equal_decoding_and_are_reused(tmp_path, counted):
    paths = write_images(str(tmp_path / "images"), 7)
    source, decoding = folder_source(str(tmp_path / "images")), Decoding.resize(12, "center_crop")
    cache = open_image_cache(str(tmp_path / "cache"), source, decoding)
    first = np.stack(list(cached_images(source, [1, 2, 5], decoding, cache, num_workers=2)))
    np.testing.assert_array_equal(first, _decoded(source, [1, 2, 5], decoding))
    assert sorted(counted) == [paths[1], paths[2], paths[5]]
    assert cache.cached.tolist() == [False, True, True, False, False, True, False]

    counted.clear()
    reopened = open_image_cache(str(tmp_path / "cache"), source, decoding)
    assert reopened.path == cache.path and reopened.cached.sum() == 3
    again = np.stack(list(cached_images(source, range(7), decoding, reopened, num_workers=2)))
    np.testing.assert_array_equal(again, _decoded(source, range(7), decoding))
    assert sorted(counted) == [paths[i] for i in (0, 3, 4, 6)]  # only the rows it did not hold
    record = json.loads(open(os.path.join(cache.path, "record.json")).read())
    assert record["shape"] == [7, 12, 12, 3] and record["key"]["decoding"]["resize"] == "center_crop"
    assert reopened.nbytes == 7 * 12 * 12 * 3 + 7 * 16
    assert os.path.getsize(os.path.join(cache.path, "pixels.npy")) >= 7 * 12 * 12 * 3

    other = open_image_cache(str(tmp_path / "cache"), source, Decoding.resize(12, "full"))
    assert other.path != cache.path and not other.cached.any()  # another decoding: another folder


def test_a_changed_image_is_decoded_again_and_the_features_follow_it(tmp_path, counted):
    images = str(tmp_path / "images")
    paths = write_images(images, 6)
    cache = str(tmp_path / "cache")
    extract_folder(images, str(tmp_path / "store1"), batch_size=4, image_cache=cache)
    assert len(counted) == 6
    counted.clear()
    Image.fromarray(np.full((20, 24, 3), 200, np.uint8)).save(paths[4], quality=95)  # replaced in place
    st = os.stat(paths[4])
    os.utime(paths[4], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    result = extract_folder(images, str(tmp_path / "store2"), batch_size=4, image_cache=cache)
    assert counted == [paths[4]] and result.from_cache == 5
    np.testing.assert_allclose(result.features, reference_features(images), atol=1e-5)


def test_a_reader_takes_no_rows_and_a_bad_record_is_an_error(tmp_path):
    write_images(str(tmp_path / "images"), 3)
    source, decoding = folder_source(str(tmp_path / "images")), Decoding.resize(SIZE)
    assert open_image_cache(str(tmp_path / "cache"), source, decoding, create=False) is None  # nothing to read
    writer = open_image_cache(str(tmp_path / "cache"), source, decoding)
    reader = open_image_cache(str(tmp_path / "cache"), source, decoding, create=False)
    list(cached_images(source, [0, 1, 2], decoding, reader))
    assert not open_image_cache(str(tmp_path / "cache"), source, decoding).cached.any()
    with open(os.path.join(writer.path, "record.json"), "w") as f:
        json.dump({"version": 1, "key": {"images": "other"}, "shape": [3, SIZE, SIZE, 3]}, f)
    with pytest.raises(InputError, match="decoded-image cache made another way"):
        open_image_cache(str(tmp_path / "cache"), source, decoding)


def test_a_killed_writer_leaves_only_complete_rows_in_use(tmp_path):
    """A process puts 4 rows and commits them, writes the pixels of 2 more but dies (SIGKILL) before stamping
    them: the next run uses the 4 and decodes the others again."""
    write_images(str(tmp_path / "images"), 8)
    script = textwrap.dedent(f"""
        import os, signal
        from alignment_jax.extract.decode import Decoding, decode_image
        from alignment_jax.extract.image_cache import open_image_cache
        from alignment_jax.extract.sources import folder_source
        source, decoding = folder_source({str(tmp_path / "images")!r}), Decoding.resize({SIZE})
        cache = open_image_cache({str(tmp_path / "cache")!r}, source, decoding)
        for i in range(6):
            cache.put(i, decode_image(source.names[i], source.names[i], decoding))
            if i == 3:
                cache.commit()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    source, decoding = folder_source(str(tmp_path / "images")), Decoding.resize(SIZE)
    cache = open_image_cache(str(tmp_path / "cache"), source, decoding)
    assert cache.cached.tolist() == [True] * 4 + [False] * 4
    np.testing.assert_array_equal(np.asarray(cache.pixels[:4]), _decoded(source, range(4), decoding))
