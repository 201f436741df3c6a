"""The fast protocol (full batch, object-level) against the paper's (batch 256, lr 1e-3) on a planted world;
prints JSON: cross-validated and held-out accuracy, best lambda, epochs and wall time of each, same run."""

import argparse
import json
import platform
import time

import jax

from alignment_jax.config.base import base_config
from alignment_jax.data.synthetic import make_world
from alignment_jax.probing.cross_validation import ProbeSettings, run_probe


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n_objects", type=int, default=500)
    parser.add_argument("--dims", type=int, default=128)
    parser.add_argument("--concepts", type=int, default=20)
    parser.add_argument("--triplets", type=int, default=150_000)
    args = parser.parse_args()
    world = make_world(
        n_objects=args.n_objects, n_concepts=args.concepts, n_dims=args.dims, n_train=args.triplets,
        n_test=args.triplets // 5, seed=0,
    )  # fmt: skip
    report = {"benchmark": "protocols", "n_objects": args.n_objects, "dims": args.dims, "triplets": args.triplets}
    for protocol in ("fast", "paper"):
        probe = base_config().probe
        probe.protocol = protocol
        probe.lambdas = (1e-2, 1e-3, 1e-4)
        settings = ProbeSettings.from_config(probe).for_width(args.dims)
        start = time.perf_counter()
        result = run_probe(world.features, world.train, world.test, settings, progress=False)
        seconds = time.perf_counter() - start
        summary = result.summary
        report[protocol] = {
            "cv_accuracy": round(summary["cv_accuracy"], 4),
            "test_accuracy": round(summary["test_accuracy"], 4),
            "best_lambda": summary["best_lambda"],
            "lr": summary["best_lr"],
            "batch_size": settings.train.batch_size or "full",
            "mean_epochs": round(sum(r["epochs"] for r in summary["sweep"]) / len(summary["sweep"]), 1),
            "seconds": round(seconds, 1),
        }
    report["fast_minus_paper_cv_accuracy"] = round(report["fast"]["cv_accuracy"] - report["paper"]["cv_accuracy"], 4)
    report["speedup"] = round(report["paper"]["seconds"] / report["fast"]["seconds"], 1)
    report["machine"] = f"{platform.machine()}, {jax.device_count()} x {jax.devices()[0].platform}"
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
