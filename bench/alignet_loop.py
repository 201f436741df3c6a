"""The AligNet loop on the demo's planted world, through the Python API; prints JSON.

teacher: the probe trained on the world's human triplets (the paper's global probe) -> labels triplets over
an UNLABELED pool of further images (world.local_features: no human data), classes from k-means clusters of
the teacher's rows -> student: a new probe trained with probe.objective=kl on those soft triplets alone
(never a human triplet) -> all three scored on the world's held-out human test triplets (THINGS' role).
Student and teacher see the same features here (a linear student); AligNet's students are other networks.
"""

import argparse
import json
import tempfile
import time

import numpy as np

from alignment_jax.config.base import base_config
from alignment_jax.data import teacher
from alignment_jax.data.alignet import load_alignet_triplets, soft_targets
from alignment_jax.data.synthetic import make_world
from alignment_jax.evaluation.kmeans import kmeans
from alignment_jax.evaluation.zero_shot import odd_one_out
from alignment_jax.probing.cross_validation import ProbeSettings, probe_scores, run_probe


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pool", type=int, default=3000)
    parser.add_argument("--triplets", type=int, default=100_000)
    parser.add_argument("--clusters", type=int, default=30)
    args = parser.parse_args()
    start = time.perf_counter()
    world = make_world(n_objects=300, n_concepts=10, n_dims=64, n_train=60_000, n_test=10_000, n_local=args.pool)
    probe = base_config().probe
    probe.lambdas = (1e-2, 1e-3)
    teacher_probe = run_probe(
        world.features, world.train, world.test, ProbeSettings.from_config(probe).for_width(64), progress=False
    )
    z = teacher.teacher_embedding(world.local_features, teacher_probe.transform, "dot")
    _, clusters = kmeans(z, args.clusters, seed=0)
    names = np.array([f"pool_{i:06d}.png" for i in range(args.pool)])
    with tempfile.TemporaryDirectory() as folder:
        teacher.write_teacher_shards(
            folder, names, np.arange(args.pool), clusters, z, args.triplets, (1 / 3, 1 / 3, 1 / 3), 0,
            args.triplets, {}, log=lambda line: None,
        )  # fmt: skip
        data = load_alignet_triplets(f"{folder}/{teacher.shard_name(0, 1)}")
    rows = np.searchsorted(names, data.names)  # the file's image set: the pool images its triplets use
    probe.objective, probe.taus = "kl", (0.5, 1.0, 2.0)
    student = run_probe(
        world.local_features[rows], data.triplets, None, ProbeSettings.from_config(probe).for_width(64), progress=False,
        targets=soft_targets(data.similarities),
    )  # fmt: skip
    zero_shot = odd_one_out(world.features, world.test, "dot", bootstrap=0).accuracy
    student_test = probe_scores(student.transform, world.features, world.test)[1]
    print(
        json.dumps(
            {
                "benchmark": "alignet_loop",
                "pool_images": args.pool,
                "teacher_triplets": args.triplets,
                "kmeans_clusters": args.clusters,
                "test_triplets": len(world.test),
                "zero_shot_test_accuracy": round(float(zero_shot), 4),
                "teacher_test_accuracy": round(teacher_probe.summary["test_accuracy"], 4),
                "student_test_accuracy": round(student_test, 4),
                "student_best_tau": student.summary["best_tau"],
                "student_cv_kl": round(student.summary["cv_divergence"], 4),
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
