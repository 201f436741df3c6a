"""The Levels metrics at the release's size; prints JSON.

30k triplets with 4-5 kept responses each (about 135k of the release's ~155k trials), p = 1,536 (e.g. a ViT-g
pre-logits layer), 30,000 images reused across triplets (--images 90000: each in one triplet): every metric of
alignment_jax/evaluation/levels.py for the three levels and `all`, the four temperature fits and the bootstrap
intervals (1,000 resamples) included. The target is under 5 s on a 2-core CPU. With --reader, also the time to
read and filter the same trials from release-format JSON-lines files (written to a temporary folder first).
"""

import argparse
import json
import os
import platform
import tempfile

import jax
import numpy as np
from common import best_of

from alignment_jax.data.levels import Levels, load_levels
from alignment_jax.evaluation.levels import levels_metrics


def synthetic_levels(n_triplets: int, n_images: int, rng: np.random.Generator) -> Levels:
    """Random triplets of distinct images with 4-5 responses each and random levels."""
    first = rng.integers(0, n_images, n_triplets)
    second = (first + rng.integers(1, n_images // 2, n_triplets)) % n_images
    third = (first + rng.integers(n_images // 2, n_images, n_triplets)) % n_images
    triplets = np.sort(np.stack([first, second, third], axis=1), axis=1).astype(np.int32)
    n = rng.integers(4, 6, n_triplets)
    counts = np.stack([rng.multinomial(k, [0.6, 0.25, 0.15]) for k in n]).astype(np.int32)
    return Levels(
        images=tuple(f"n{i % 1000:08d}_{i}.JPEG" for i in range(n_images)),
        image_paths=(),
        triplets=triplets,
        counts=counts,
        mean_log_rt=rng.normal(0.5, 0.3, n_triplets),
        level=rng.integers(1, 4, n_triplets).astype(np.int8),
        dropped_trials={},
        dropped_triplets={},
        n_trials=int(n.sum()),
        source="synthetic",
    )


def write_release(folder: str, levels: Levels, rng: np.random.Generator) -> None:
    """The trials of `levels` as one release-format JSON-lines file."""
    with open(os.path.join(folder, "trials.json"), "w") as f:
        for row, counts in zip(levels.triplets, levels.counts, strict=True):
            names = [levels.images[i] for i in row]
            for column in np.repeat(np.arange(3), counts):
                trial = {
                    "subject_id": "s",
                    "rt": float(rng.uniform(500, 5000)),
                    **{f"image{k + 1}Path": f"imgs/{names[k]}" for k in range(3)},
                    "selected_image": f"imgs/{names[column]}",
                    "exp_trial_type": "exp_trial",
                }
                f.write(json.dumps(trial) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--triplets", type=int, default=30_000)
    parser.add_argument("--images", type=int, default=30_000)
    parser.add_argument("--dims", type=int, default=1536)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--reader", action="store_true", help="also time reading release-format trial files")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    levels = synthetic_levels(args.triplets, args.images, rng)
    features = rng.normal(size=(args.images, args.dims)).astype(np.float32)
    levels_metrics(features, levels, bootstrap=args.bootstrap)  # compile the similarity gathers
    seconds = best_of(lambda: levels_metrics(features, levels, bootstrap=args.bootstrap), 3)
    out = {
        "benchmark": "levels",
        "n_triplets": args.triplets,
        "n_responses": levels.n_responses,
        "n_images": args.images,
        "dims": args.dims,
        "bootstrap": args.bootstrap,
        "metrics_seconds": round(seconds, 3),
        "target_seconds": 5.0,
    }
    if args.reader:
        with tempfile.TemporaryDirectory() as folder:
            write_release(folder, levels, rng)
            out["reader_seconds"] = round(best_of(lambda: load_levels(folder, images=None), 1), 3)
    out.update(device=str(jax.devices()[0]), machine=f"{platform.machine()}, {os.cpu_count()} CPU(s)")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
