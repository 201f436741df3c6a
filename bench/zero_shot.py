"""Zero-shot odd-one-out at THINGS scale versus a per-triplet numpy baseline; prints JSON.

n = 1854 objects, 4.7M triplets, p = 1408 (ViT-g width). The baseline gathers the three feature vectors
of every triplet; it is timed on a subset and scaled to all triplets. Also times the object-level
3-fold split of all triplets.
"""

import json
import platform

import jax
import numpy as np
from common import best_of

from alignment_jax.data.splits import object_kfold_masks
from alignment_jax.data.synthetic import random_triplets
from alignment_jax.evaluation.zero_shot import odd_one_out


def numpy_baseline(features: np.ndarray, triplets: np.ndarray) -> np.ndarray:
    """Cosine odd-one-out per triplet from gathered feature rows: (T,) bool correct."""
    x = features / np.linalg.norm(features, axis=1, keepdims=True)
    a, b, c = x[triplets[:, 0]], x[triplets[:, 1]], x[triplets[:, 2]]
    s_ab, s_ac, s_bc = (a * b).sum(1), (a * c).sum(1), (b * c).sum(1)
    return (s_ab > s_ac) & (s_ab > s_bc)


def main(n_objects: int = 1854, n_triplets: int = 4_700_000, dims: int = 1408, subset: int = 50_000) -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(n_objects, dims)).astype(np.float32)
    triplets = random_triplets(n_objects, n_triplets, rng).astype(np.int32)
    odd_one_out(features, triplets, bootstrap=0)  # compile
    ours = best_of(lambda: odd_one_out(features, triplets, bootstrap=1000), 3)
    baseline_subset = best_of(lambda: numpy_baseline(features, triplets[:subset]), 2)
    baseline = baseline_subset * n_triplets / subset
    ours_subset = odd_one_out(features, triplets[:subset], bootstrap=0).correct
    agree = np.mean(ours_subset == numpy_baseline(features, triplets[:subset]))
    split = best_of(lambda: object_kfold_masks(triplets, n_objects, 3, seed=0), 3)
    print(
        json.dumps(
            {
                "benchmark": "zero_shot",
                "n_objects": n_objects,
                "n_triplets": n_triplets,
                "dims": dims,
                "seconds": round(ours, 4),
                "baseline_numpy_per_triplet_seconds": round(baseline, 2),
                "baseline_measured_on": subset,
                "speedup": round(baseline / ours, 1),
                "agreement_with_baseline": float(agree),
                "object_3fold_split_seconds": round(split, 4),
                "device": str(jax.devices()[0]),
                "machine": f"{platform.machine()}, {jax.device_count()} device(s)",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
