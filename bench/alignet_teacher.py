"""Teacher triplets at ImageNet scale versus a straightforward numpy implementation; prints JSON.

--images (1.28M, ImageNet's train set) images in --classes classes with --dims-wide teacher rows; --triplets
AligNet-format triplets (sampled by the three class rules, scored blockwise, odd one out last, written as
atomic .npz shards with a manifest) by alignment_jax.data.teacher.write_teacher_shards. The baseline samples
and scores one triplet at a time in a Python loop with numpy (rng.choice of classes and members, three dot
products), timed on --baseline triplets and scaled. Target (issue 24): >= 20x, no n x n matrix (peak memory).
"""

import argparse
import json
import os
import resource
import tempfile
import time

import numpy as np

from alignment_jax.data import teacher


def baseline(labels: np.ndarray, z: np.ndarray, n: int, proportions, seed: int = 0) -> np.ndarray:
    """One triplet at a time: pick the scheme, its classes and images, three dot products, reorder."""
    rng = np.random.default_rng(seed)
    members = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    classes = np.array(sorted(members))
    p = np.asarray(proportions) / np.sum(proportions)
    out = np.empty((n, 3), np.float32)
    for t in range(n):
        scheme = rng.choice(3, p=p)
        if scheme == 0:
            a, b, c = rng.choice(classes, 3, replace=False)
            i, j, k = rng.choice(members[a]), rng.choice(members[b]), rng.choice(members[c])
        elif scheme == 1:
            a, b = rng.choice(classes, 2, replace=False)
            (i, j), k = rng.choice(members[a], 2, replace=False), rng.choice(members[b])
        else:
            i, j, k = rng.choice(members[rng.choice(classes)], 3, replace=False)
        sims = np.array([z[i] @ z[j], z[i] @ z[k], z[j] @ z[k]])
        out[t] = sims[[[0, 1, 2], [1, 0, 2], [2, 0, 1]][int(np.argmax(sims))]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1_281_167)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--dims", type=int, default=128)
    parser.add_argument("--triplets", type=int, default=10_000_000)
    parser.add_argument("--shard_size", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=20_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    labels = rng.integers(0, args.classes, args.images)
    z = teacher.teacher_embedding(rng.normal(size=(args.images, args.dims)).astype(np.float32), None, "cosine")
    names = np.char.add(np.char.add("img_", np.char.zfill(np.arange(args.images).astype(str), 7)), ".JPEG")
    proportions = (1 / 3, 1 / 3, 1 / 3)
    teacher.triplet_similarities(z, np.array([[0, 1, 2]]))  # compile the one-block program (one shape for all)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        teacher.write_teacher_shards(
            folder, names, np.arange(args.images), labels, z, args.triplets, proportions, 0, args.shard_size, {},
            log=lambda line: None,
        )  # fmt: skip
        ours = time.perf_counter() - start
        size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    start = time.perf_counter()
    baseline(labels, z, args.baseline, proportions)
    base = (time.perf_counter() - start) / args.baseline
    ours_rate, base_rate = args.triplets / ours, 1 / base
    print(
        json.dumps(
            {
                "benchmark": "alignet_teacher",
                "n_images": args.images,
                "n_classes": args.classes,
                "dims": args.dims,
                "n_triplets": args.triplets,
                "seconds": round(ours, 1),
                "triplets_per_s": round(ours_rate),
                "baseline_numpy_loop_triplets_per_s": round(base_rate),
                "baseline_measured_on": args.baseline,
                "speedup": round(ours_rate / base_rate, 1),
                "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 2),
                "n_by_n_matrix_gb_avoided": round(4 * args.images**2 / 1e9),
                "written_gb": round(size / 1e9, 2),
                "target_speedup": 20,
                "cpu_count": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
