"""Extraction across devices and processes: 8 devices vs 1, two jax.distributed processes vs one,
and a run killed mid-way then resumed. Each runs `extract_worker.py` in a fresh interpreter."""

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
from extract_testlib import SIZE, extract_folder, reference_features, write_images

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "extract_worker.py")


def _env(devices: int) -> dict[str, str]:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _worker(*args: str, devices: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, WORKER, *args], env=_env(devices), stdout=subprocess.PIPE, text=True)


def _wait(process: subprocess.Popen, timeout: float = 120) -> None:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output


def test_eight_devices_equal_one(tmp_path):
    """24 images on 8 devices: batch 8 divides the count, 16 does not, 5 is rounded up to 8; shards of 10."""
    images = str(tmp_path / "images")
    write_images(images, 24)
    _wait(_worker("sharded", str(tmp_path), images, devices=8))
    results = np.load(tmp_path / "sharded.npz")
    expected = reference_features(images)
    for batch_size in (8, 16, 5):
        eight, one = results[f"b{batch_size}_d8"], results[f"b{batch_size}_d1"]
        assert eight.shape == (24, 8)
        np.testing.assert_allclose(eight, one, atol=1e-5, err_msg=f"batch {batch_size}")
        np.testing.assert_allclose(eight, expected, atol=1e-5, err_msg=f"batch {batch_size}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(tmp_path):
    """Two processes with 2 CPU devices each (gloo collectives); each decodes only its rows; process 0 alone
    writes the decoded-image cache (its own rows)."""
    images = str(tmp_path / "images")
    write_images(images, 21)
    port = str(_free_port())
    workers = [_worker("multihost", str(tmp_path), images, port, str(i), devices=2) for i in range(2)]
    for worker in workers:
        _wait(worker)
    single = extract_folder(images, str(tmp_path / "single"), batch_size=6).features
    for i in range(2):
        np.testing.assert_allclose(np.load(tmp_path / f"features_{i}.npy"), single, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "store" / "features.npy"), single, atol=1e-5)
    decoded = [set(np.load(tmp_path / f"decoded_{i}.npy").tolist()) for i in range(2)]
    assert not decoded[0] & decoded[1] and decoded[0] | decoded[1] == set(range(21))

    from alignment_jax.extract.decode import Decoding
    from alignment_jax.extract.image_cache import open_image_cache
    from alignment_jax.extract.sources import folder_source

    cache = open_image_cache(str(tmp_path / "decoded"), folder_source(images), Decoding.resize(SIZE), create=False)
    assert set(np.flatnonzero(cache.cached).tolist()) == decoded[0]


def test_an_undecodable_image_on_one_process_stops_both(tmp_path):
    """Image 4 falls in process 1's rows of the first batch (batch 6 over 2 x 2 devices): process 1 names
    the file, process 0 stops too instead of waiting in the next batch's collectives."""
    images = str(tmp_path / "images")
    paths = write_images(images, 12)
    with open(paths[4], "wb") as f:
        f.write(b"not a jpeg")
    port = str(_free_port())
    workers = [_worker("multihost_bad", str(tmp_path), images, port, str(i), devices=2) for i in range(2)]
    for worker in workers:
        _wait(worker, timeout=90)
    assert "img_004.jpg: cannot decode image" in (tmp_path / "error_1.txt").read_text()
    assert "another process could not decode an image" in (tmp_path / "error_0.txt").read_text()


def test_killed_run_resumes_without_redoing_or_missing_an_image(tmp_path):
    images = str(tmp_path / "images")
    write_images(images, 20)
    shards = tmp_path / "store" / "shards"
    worker = _worker("slow", str(tmp_path), images, devices=1)  # 0.1 s per image, shards of 4
    deadline = time.time() + 60
    while len(list(shards.glob("0*.npy")) if shards.exists() else []) < 2:
        assert worker.poll() is None, "the slow run ended before it could be killed"
        assert time.time() < deadline, "no shard written in time"
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    finished = sorted(int(p.stem) for p in shards.glob("0*.npy"))
    assert 2 <= len(finished) < 5
    done_before = {i for s in finished for i in range(4 * s, 4 * s + 4)}

    from alignment_jax.extract.sources import folder_source

    source = folder_source(images)
    decoded: list[int] = []

    def logged_refs(indices):
        decoded.extend(indices)
        return source.refs(indices)

    logged = dataclasses.replace(source, refs=logged_refs)
    resumed = extract_folder(images, str(tmp_path / "store"), batch_size=2, shard_size=4, source=logged)
    assert sorted(decoded) == sorted(set(range(20)) - done_before)  # each missing image once, no finished one
    assert resumed.computed == 20 - len(done_before)
    np.testing.assert_allclose(resumed.features, reference_features(images), atol=1e-5)
