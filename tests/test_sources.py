"""Image sources (THINGS layout, folder, list file, TFDS) and background decoding."""

import itertools
import os
import time

import numpy as np
import pytest
from extract_testlib import extract_folder, import_tfds, reference_features, write_images
from PIL import Image

from alignment_jax.errors import InputError
from alignment_jax.extract.decode import Decoding, decode_image, decoded_images
from alignment_jax.extract.sources import file_source, folder_source, tfds_source, things_source


def _save(path, color, size=(10, 8)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), color, np.uint8)).save(path)


def test_things_layout_file_or_first_file_of_folder(tmp_path):
    _save(tmp_path / "aardvark.jpg", 10)
    _save(tmp_path / "zebra" / "zebra_02s.png", 200)
    _save(tmp_path / "zebra" / "zebra_01b.png", 100)  # sorted first
    (tmp_path / "zebra" / ".DS_Store").write_text("x")
    source = things_source(str(tmp_path), ["zebra", "aardvark"])
    assert source.ids == ("zebra", "aardvark")
    assert source.names == (str(tmp_path / "zebra" / "zebra_01b.png"), str(tmp_path / "aardvark.jpg"))
    assert list(source.refs([1])) == [str(tmp_path / "aardvark.jpg")]


def test_things_layout_names_missing_objects(tmp_path):
    _save(tmp_path / "aardvark.jpg", 10)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(InputError, match=r"no image for 2 of 3 objects \(empty, yak\)"):
        things_source(str(tmp_path), ["aardvark", "empty", "yak"])


def test_folder_is_sorted_recursive_and_skips_non_images(tmp_path):
    for name in ("b.jpg", "a.png", "sub/c.jpg", "notes.txt", ".hidden.jpg"):
        if name.endswith(".txt") or name.startswith("."):
            (tmp_path / name).write_text("x")
        else:
            _save(tmp_path / name, 5)
    source = folder_source(str(tmp_path))
    assert source.ids == ("a.png", "b.jpg", "sub/c.jpg")
    assert source.description["kind"] == "folder" and source.description["n"] == 3


def test_list_file_keeps_its_order_and_names_a_missing_line(tmp_path):
    _save(tmp_path / "imgs" / "x.jpg", 1)
    _save(tmp_path / "imgs" / "y.jpg", 2)
    (tmp_path / "list.txt").write_text("imgs/y.jpg\n\nimgs/x.jpg\n")
    source = folder_source(list_file=str(tmp_path / "list.txt"))
    assert source.ids == ("imgs/y.jpg", "imgs/x.jpg")
    (tmp_path / "bad.txt").write_text("imgs/x.jpg\nimgs/nope.jpg\n")
    with pytest.raises(InputError, match=r"bad.txt: line 2 names 'imgs/nope.jpg'"):
        folder_source(list_file=str(tmp_path / "bad.txt"))


def test_digest_changes_with_the_files(tmp_path):
    paths = write_images(str(tmp_path), 3)
    before = file_source(paths).description["digest"]
    Image.fromarray(np.zeros((50, 50, 3), np.uint8)).save(paths[1], quality=50)
    assert file_source(paths).description["digest"] != before
    same_size = file_source(paths).description["digest"]
    data = bytearray(open(paths[2], "rb").read())
    data[-3] ^= 0xFF  # other content, same size: seen through the modification time
    st = os.stat(paths[2])
    with open(paths[2], "wb") as f:
        f.write(bytes(data))
    os.utime(paths[2], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert file_source(paths).description["digest"] != same_size


def test_decode_resize_modes():
    image = np.zeros((20, 40, 3), np.uint8)  # wide: left half black, right half white
    image[:, 20:] = 255
    path_bytes = _encode_png(image)
    full = decode_image(path_bytes, "wide", Decoding.resize(8, "full"))
    crop = decode_image(path_bytes, "wide", Decoding.resize(8, "center_crop"))
    assert full.shape == crop.shape == (8, 8, 3)
    np.testing.assert_array_equal(full[:, :3], 0)  # squashed: both halves survive
    np.testing.assert_array_equal(full[:, 5:], 255)
    np.testing.assert_array_equal(crop[:, :3], 0)  # cropped centre: columns 10..29 of the original
    np.testing.assert_array_equal(crop[:, 5:], 255)
    gray = decode_image(_encode_png(np.full((8, 8), 7, np.uint8)), "gray", Decoding.resize(4))
    assert gray.shape == (4, 4, 3) and (gray == 7).all()


def _encode_png(array):
    import io

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_undecodable_file_is_named(tmp_path):
    paths = write_images(str(tmp_path), 4)
    with open(paths[2], "wb") as f:
        f.write(b"not a jpeg at all")
    images = decoded_images(file_source(paths), range(4), Decoding.resize(8), num_workers=3, ahead=4)
    assert next(images).shape == (8, 8, 3)
    with pytest.raises(InputError, match=r"img_002.jpg: cannot decode image"):
        list(images)


def test_background_decoding_keeps_the_order(tmp_path):
    """Workers finish out of order (later images decode faster); the output order is the input order."""
    n = 12
    paths = write_images(str(tmp_path), n)
    decoding = Decoding.resize(8)
    calls = itertools.count()

    def slow_fit(image):
        time.sleep(0.003 * (n - next(calls)))  # earlier calls sleep longer
        return decoding.fit(image)

    expected = [decode_image(p, p, decoding) for p in paths]
    slow = Decoding(8, slow_fit, decoding.record)
    indices = [0, 3, 4, 5, 9, 11]
    got = list(decoded_images(file_source(paths), indices, slow, num_workers=4, ahead=5))
    assert len(got) == len(indices)
    for i, image in zip(indices, got, strict=True):
        np.testing.assert_array_equal(image, expected[i])


def build_tfds_dataset(tfds, name: str, paths: list[str], data_dir: str):
    """A prepared TFDS dataset `name` (array_record files in data_dir) with features image (the files, as
    encoded) and name (obj<i>), example i = paths[i]; built with TFDS's own builder API, no TensorFlow."""

    class TinyImages(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = tfds.features.FeaturesDict({"image": tfds.features.Image(), "name": tfds.features.Text()})
            return tfds.core.DatasetInfo(builder=self, features=features, disable_shuffling=True)

        def _split_generators(self, dl_manager):
            return {"test": self._generate_examples()}

        def _generate_examples(self):
            for i, path in enumerate(paths):
                yield i, {"image": path, "name": f"obj{i}"}

    TinyImages.name = name
    builder = TinyImages(data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare()
    return builder


def test_tfds_source_matches_the_files(tmp_path):
    """Read through tfds.data_source (array_record), as CI does after installing the tfds extra."""
    tfds = import_tfds()
    paths = write_images(str(tmp_path / "imgs"), 5)
    builder = build_tfds_dataset(tfds, "tiny_extract_images", paths, str(tmp_path / "tfds"))
    by_name = tfds_source("tiny_extract_images", "test", data_dir=str(tmp_path / "tfds"), id_key="name")
    by_folder = tfds_source(str(builder.data_dir), "test")
    assert by_name.ids == tuple(f"obj{i}" for i in range(5))
    assert by_folder.ids == tuple(str(i) for i in range(5))
    assert by_name.names[3].endswith("/test[3]")
    decoding = Decoding.resize(8)
    got = list(decoded_images(by_folder, [1, 2, 4], decoding, num_workers=2))
    for i, image in zip([1, 2, 4], got, strict=True):
        np.testing.assert_array_equal(image, decode_image(paths[i], paths[i], decoding))
    cache = str(tmp_path / "decoded")
    through_pipeline = extract_folder(None, str(tmp_path / "store"), 2, shard_size=3, source=by_name, image_cache=cache)
    np.testing.assert_allclose(through_pipeline.features, reference_features(str(tmp_path / "imgs")), atol=1e-5)
    again = extract_folder(None, str(tmp_path / "store2"), 2, shard_size=3, source=by_name, image_cache=cache)
    assert again.from_cache == 5 and through_pipeline.from_cache == 0
    np.testing.assert_allclose(again.features, through_pipeline.features, atol=1e-6)
    with pytest.raises(InputError, match="no feature 'label'"):
        tfds_source("tiny_extract_images", "test", data_dir=str(tmp_path / "tfds"), image_key="label")
    with pytest.raises(InputError, match="cannot open split 'train'"):
        tfds_source("tiny_extract_images", "train", data_dir=str(tmp_path / "tfds"))


def test_tfds_subset_in_any_order_gives_alignets_images_by_their_indices(tmp_path):
    """AligNet's image set read from TFDS through the triplet files' `indices` (unsorted against the names)."""
    from alignment_jax.config.base import base_config
    from alignment_jax.data.alignet import load_alignet_pair
    from alignment_jax.extract.sources import subset_source
    from alignment_jax.stages import alignet_inputs

    tfds = import_tfds()
    paths = write_images(str(tmp_path / "imgs"), 5)
    builder = build_tfds_dataset(tfds, "tiny_alignet_images", paths, str(tmp_path / "tfds"))
    dataset = tfds_source(str(builder.data_dir), "test")
    decoding = Decoding.resize(8)
    subset = subset_source(dataset, [4, 1, 3], ["d", "a", "c"], kind="alignet")
    got = list(decoded_images(subset, [0, 1, 2], decoding, num_workers=1))
    for image, i in zip(got, [4, 1, 3], strict=True):
        np.testing.assert_array_equal(image, decode_image(paths[i], paths[i], decoding))
    with pytest.raises(InputError, match="has index 9, not in 0..4"):
        subset_source(dataset, [9], ["x"], kind="alignet")
    names = np.array(["n01_b.JPEG", "n01_a.JPEG", "n02_c.JPEG"])
    np.savez(
        tmp_path / "train.npz", filenames=names[None], similarities=np.array([[3.0, 1.0, 0.0]]),
        indices=np.array([[2, 0, 4]]),
    )  # fmt: skip
    train, test = load_alignet_pair(str(tmp_path / "train.npz"))
    config = base_config()
    config.alignet.images = "tfds:tiny_alignet_images:test"
    config.images.tfds_data_dir = str(tmp_path / "tfds")
    source = alignet_inputs.image_source(config, alignet_inputs.AlignetData(train, test))
    assert source.ids == ("n01_a.JPEG", "n01_b.JPEG", "n02_c.JPEG")  # the sorted names: feature rows
    got = list(decoded_images(source, [0, 1, 2], decoding, num_workers=1))
    for image, i in zip(got, [0, 2, 4], strict=True):  # n01_a -> 0, n01_b -> 2, n02_c -> 4
        np.testing.assert_array_equal(image, decode_image(paths[i], paths[i], decoding))
    config.alignet.images = "tfds:tiny_alignet_images"
    with pytest.raises(InputError, match="write tfds:NAME:SPLIT"):
        alignet_inputs.image_source(config, alignet_inputs.AlignetData(train, test))
