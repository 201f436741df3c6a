"""Reading AligNet's 10M-triplet file (alignet_train.npz's size) into integer ids; prints JSON.

A file of --triplets rows over --images ImageNet-like names ('n01440764_10026.JPEG', numpy unicode, as
numpy.savez writes a list of str) is written member by member without holding it in memory, then read by
alignment_jax.data.alignet.load_alignet_triplets in a fresh process: its peak memory (max RSS) and seconds.
Targets (issue 24): under 4 GB and 60 s for 10M rows on 2 cores.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np


def image_names(n_images: int) -> np.ndarray:
    """n_images distinct names shaped like ImageNet's train files: 1000 synsets, numbered images."""
    synsets = np.char.add("n", np.char.zfill(np.arange(1000).astype(str), 8))
    number = np.arange(n_images)
    return np.char.add(np.char.add(np.char.add(synsets[number % 1000], "_"), (number // 1000).astype(str)), ".JPEG")


def write_member(archive: zipfile.ZipFile, key: str, shape: tuple, dtype: np.dtype, chunks) -> None:
    """One .npy member of an .npz, written chunk by chunk (ZIP64, stored)."""
    with archive.open(key + ".npy", "w", force_zip64=True) as f:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_2_0(f, header)
        for chunk in chunks:
            f.write(np.ascontiguousarray(chunk, dtype).tobytes())


def write_file(path: str, n_triplets: int, n_images: int, chunk: int = 1_000_000) -> None:
    names = image_names(n_images)
    rng = np.random.default_rng(0)
    rows = [min(chunk, n_triplets - s) for s in range(0, n_triplets, chunk)]

    def index_chunks():
        for r in rows:
            i = rng.integers(0, n_images, (r, 3))
            i[:, 1] = (i[:, 0] + 1 + rng.integers(0, n_images - 2, r)) % n_images
            i[:, 2] = np.where(
                (i[:, 2] == i[:, 0]) | (i[:, 2] == i[:, 1]), (np.maximum(i[:, 0], i[:, 1]) + 1) % n_images, i[:, 2]
            )
            bad = (i[:, 2] == i[:, 0]) | (i[:, 2] == i[:, 1])
            i[bad, 2] = (np.maximum(i[bad, 0], i[bad, 1]) + 2) % n_images
            yield i

    indices = list(index_chunks())  # (T, 3) int64: 240 MB for 10M rows
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        write_member(archive, "filenames", (n_triplets, 3), names.dtype, (names[i] for i in indices))
        sims = (rng.normal(size=(r, 3)).astype(np.float32) for r in rows)
        write_member(archive, "similarities", (n_triplets, 3), np.float32, sims)
        write_member(archive, "indices", (n_triplets, 3), np.int64, indices)


def load(path: str) -> None:
    from alignment_jax.data.alignet import load_alignet_triplets

    start = time.perf_counter()
    data = load_alignet_triplets(path)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "peak_bytes": peak, "n_images": data.n_images, "n_triplets": len(data)}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--triplets", type=int, default=10_000_000)
    parser.add_argument("--images", type=int, default=1_281_167)
    parser.add_argument("--load", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        return load(args.load)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "alignet_train.npz")
        start = time.perf_counter()
        write_file(path, args.triplets, args.images)
        written = time.perf_counter() - start
        env = {**os.environ, "JAX_PLATFORMS": "cpu"}
        out = subprocess.run(
            [sys.executable, __file__, "--load", path], capture_output=True, text=True, env=env, check=True
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            json.dumps(
                {
                    "benchmark": "alignet_load",
                    "n_triplets": args.triplets,
                    "n_images_distinct": result["n_images"],
                    "file_gb": round(os.path.getsize(path) / 1e9, 2),
                    "write_seconds": round(written, 1),
                    "load_seconds": round(result["seconds"], 1),
                    "load_peak_gb": round(result["peak_bytes"] / 1e9, 2),
                    "targets": {"load_seconds": 60, "load_peak_gb": 4},
                    "cpu_count": os.cpu_count(),
                }
            )
        )


if __name__ == "__main__":
    main()
