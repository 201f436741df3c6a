"""What the benchmarks share: the THINGS-scale planted world and its flags, and best-of-n timing."""

import argparse
import time
from collections.abc import Callable

from alignment_jax.data.synthetic import World, make_world


def add_world_flags(parser: argparse.ArgumentParser, **defaults: int) -> None:
    """--n_objects, --dims, --triplets, --concepts; THINGS scale (1,854 objects, p 768, 4.7M triplets,
    49 concepts) unless `defaults` say otherwise."""
    for name, default in {"n_objects": 1854, "dims": 768, "triplets": 4_700_000, "concepts": 49, **defaults}.items():
        parser.add_argument(f"--{name}", type=int, default=default)


def things_world(args: argparse.Namespace, n_local: int = 0) -> World:
    """A planted world of args' size: training triplets only (no test split, no repeated sets), with
    n_local local images (gLocal's)."""
    return make_world(
        n_objects=args.n_objects,
        n_concepts=args.concepts,
        n_dims=args.dims,
        n_train=args.triplets,
        n_test=0,
        n_repeated_sets=0,
        n_local=n_local,
        beta=1.0,
        seed=0,
    )


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """The shortest wall time of `repeats` calls of fn, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
