"""Reading a teacher folder for the student stage (10M triplets, AligNet's size); prints JSON.

A teacher folder of --triplets triplets over --images ImageNet-like names is written with the teacher stage's own
writer (alignment_jax.data.teacher.write_teacher_shards; random p = 8 teacher rows, 1,000 classes), then read in
two fresh processes: by alignment_jax.stages.student.read_shards (shard by shard into arrays allocated once) and
by the reading the student stage used before (a list of per-shard arrays, concatenated at the end). Each prints
its seconds, the peak of the read's own allocations (tracemalloc, on a second read: the imports left out) and
the process's max RSS.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np


def write_folder(folder: str, n_triplets: int, n_images: int, shard_size: int) -> None:
    from alignment_jax.data.teacher import write_teacher_shards

    synsets = np.char.add("n", np.char.zfill((np.arange(n_images) % 1000).astype(str), 8))
    names = np.char.add(np.char.add(synsets, "_"), np.char.add(np.arange(n_images).astype(str), ".JPEG"))
    order = np.argsort(names)
    names, labels = np.array(names[order].tolist()), (np.arange(n_images) % 1000)[order]  # as the stage's: narrowest
    z = np.random.default_rng(0).normal(size=(n_images, 8)).astype(np.float32)
    write_teacher_shards(folder, names, np.arange(n_images), labels, z, n_triplets, (0.5, 0.3, 0.2), 0, shard_size, {})
    with open(os.path.join(folder, "names.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(names) + "\n")


def concatenated(folder: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The student's reading before streaming: every shard's rows and similarities kept, then concatenated."""
    with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    with open(os.path.join(folder, "names.txt"), encoding="utf-8") as f:
        names = np.array(f.read().split("\n")[:-1])
    rows, sims = [], []
    for shard in manifest["shards"]:
        with np.load(os.path.join(folder, shard["file"])) as data:
            rows.append(np.searchsorted(names, data["filenames"]).astype(np.int32))
            sims.append(data["similarities"])
    return names, np.concatenate(rows), np.concatenate(sims)


def read(folder: str, how: str) -> None:
    from alignment_jax.stages.student import read_shards

    start = time.perf_counter()
    _, rows, _ = (read_shards if how == "streaming" else concatenated)(folder)
    seconds = time.perf_counter() - start
    tracemalloc.start()  # a second read, traced: numpy's allocations of this read alone, imports left out
    (read_shards if how == "streaming" else concatenated)(folder)
    traced = tracemalloc.get_traced_memory()[1]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "traced_bytes": traced, "peak_bytes": peak, "n_triplets": len(rows)}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--triplets", type=int, default=10_000_000)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--shard_size", type=int, default=1_000_000)
    parser.add_argument("--read", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.read:
        return read(*args.read)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        write_folder(folder, args.triplets, args.images, args.shard_size)
        written = time.perf_counter() - start
        env = {**os.environ, "JAX_PLATFORMS": "cpu"}
        results = {}
        for how in ("streaming", "concatenated"):
            out = subprocess.run(
                [sys.executable, __file__, "--read", folder, how], capture_output=True, text=True, env=env, check=True
            )
            results[how] = json.loads(out.stdout.strip().splitlines()[-1])
        gb = lambda r: round(r["traced_bytes"] / 1e9, 2)  # noqa: E731
        print(
            json.dumps(
                {
                    "benchmark": "alignet_student",
                    "n_triplets": args.triplets,
                    "n_images": args.images,
                    "n_shards": -(-args.triplets // args.shard_size),
                    "write_seconds": round(written, 1),
                    "read_seconds": round(results["streaming"]["seconds"], 1),
                    "read_peak_gb": gb(results["streaming"]),
                    "concatenated_read_seconds": round(results["concatenated"]["seconds"], 1),
                    "concatenated_read_peak_gb": gb(results["concatenated"]),
                    "memory_ratio": round(gb(results["concatenated"]) / max(gb(results["streaming"]), 1e-9), 2),
                    "time_ratio": round(results["concatenated"]["seconds"] / results["streaming"]["seconds"], 2),
                    "max_rss_gb": round(results["streaming"]["peak_bytes"] / 1e9, 2),
                    "concatenated_max_rss_gb": round(results["concatenated"]["peak_bytes"] / 1e9, 2),
                    "cpu_count": os.cpu_count(),
                }
            )
        )


if __name__ == "__main__":
    main()
