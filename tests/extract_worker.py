"""Subprocess side of the extraction tests (run as a script; XLA_FLAGS comes from the caller).

python extract_worker.py sharded OUT IMAGES           8-device vs 1-device features -> OUT/sharded.npz
python extract_worker.py multihost OUT IMAGES PORT ID one of two jax.distributed processes
python extract_worker.py multihost_bad OUT IMAGES PORT ID  the same, an image undecodable: OUT/error_ID.txt
python extract_worker.py slow OUT IMAGES              slow extraction into OUT/store (to be killed)
"""

import dataclasses
import os
import sys
import time

import jax
import numpy as np
from extract_testlib import extract_folder  # beside this script, so on sys.path

from alignment_jax.errors import InputError
from alignment_jax.extract.extractor import data_mesh
from alignment_jax.extract.sources import folder_source


def sharded(out: str, images: str) -> None:
    assert jax.device_count() == 8, jax.devices()
    results = {}
    for batch_size in (8, 16, 5):
        for n_devices in (8, 1):
            store = os.path.join(out, f"store_{batch_size}_{n_devices}")
            mesh = data_mesh(jax.devices()[:n_devices])
            result = extract_folder(images, store, batch_size, shard_size=10, mesh=mesh)
            results[f"b{batch_size}_d{n_devices}"] = result.features
    np.savez(os.path.join(out, "sharded.npz"), **results)


def _initialize(port: str, process_id: str) -> None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=int(process_id))
    assert jax.process_count() == 2 and jax.device_count() == 4, jax.devices()


def multihost_bad(out: str, images: str, port: str, process_id: str) -> None:
    _initialize(port, process_id)
    try:
        extract_folder(images, os.path.join(out, "store"), batch_size=6, shard_size=10)
    except InputError as e:
        with open(os.path.join(out, f"error_{process_id}.txt"), "w") as f:
            f.write(str(e))
    jax.distributed.shutdown()


def multihost(out: str, images: str, port: str, process_id: str) -> None:
    _initialize(port, process_id)
    source = folder_source(images)
    decoded = []

    def logged_refs(indices):
        decoded.extend(indices)
        return source.refs(indices)

    logged = dataclasses.replace(source, refs=logged_refs)
    result = extract_folder(
        images, os.path.join(out, "store"), batch_size=6, shard_size=10, source=logged,
        image_cache=os.path.join(out, "decoded"),
    )  # fmt: skip
    np.save(os.path.join(out, f"features_{process_id}.npy"), result.features)
    np.save(os.path.join(out, f"decoded_{process_id}.npy"), np.array(decoded, np.int64))
    jax.distributed.shutdown()


def slow(out: str, images: str) -> None:
    source = folder_source(images)

    def slow_refs(indices):
        for ref in source.refs(indices):
            time.sleep(0.1)
            yield ref

    slowed = dataclasses.replace(source, refs=slow_refs)
    extract_folder(images, os.path.join(out, "store"), batch_size=2, shard_size=4, source=slowed)


if __name__ == "__main__":
    {"sharded": sharded, "multihost": multihost, "multihost_bad": multihost_bad, "slow": slow}[sys.argv[1]](
        *sys.argv[2:]
    )
