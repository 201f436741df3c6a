"""Matmul precision: each model.dtype against a float64 run of the same computation, for extraction and for
the probe's loss and gradient, with the time each takes. Prints JSON.

    python bench/precision.py                       # S/16 at 224 px, THINGS-sized probe: about 70 s on an H100
    python bench/precision.py --variant=Ti/16 --batch=8 --n_objects=300 --dims=128 --triplets=20000   # CPU

Baseline in the same run: float32 inputs at JAX's default matmul precision, what `model.dtype=float32` ran
before it meant full float32 (TF32 on recent NVIDIA GPUs, one bfloat16 pass on TPUs; float32 on a CPU, where
every setting computes float32). Extraction: a random ViT's features (its default layer) for random images;
max_abs and rel_max = max |x - x64| / max |x64|, rel_rms = ||x - x64|| / ||x64||, and odd_one_out_flips: the
fraction of all triplets of the batch's images whose cosine odd-one-out decision differs from float64's.
Probe: the objective (triplet cross-entropy + lambda ||W||_F, matrix formulation) at a random W, loss and
gradient against float64, and seconds per loss + gradient.
"""

import argparse
import itertools
import json
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from alignment_jax.models.registry import DTYPES, load_model
from alignment_jax.models.vit import make_vit
from alignment_jax.probing import objective

BEFORE = "float32_at_jax_default"  # the baseline: float32 inputs, the device's default matmul precision


def errors(x: np.ndarray, reference: np.ndarray) -> dict:
    diff = np.abs(np.asarray(x, np.float64) - reference)
    return {
        "max_abs": float(diff.max()),
        "rel_max": float(diff.max() / np.abs(reference).max()),
        "rel_rms": float(np.linalg.norm(diff) / np.linalg.norm(reference)),
    }


def odd_one_out(features: np.ndarray) -> np.ndarray:
    """Cosine odd-one-out decision (0, 1, 2) for every triplet of rows, in float64."""
    x = np.asarray(features, np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = x @ x.T
    t = np.array(list(itertools.combinations(range(len(x)), 3)))
    pairs = np.stack([s[t[:, 1], t[:, 2]], s[t[:, 0], t[:, 2]], s[t[:, 0], t[:, 1]]], axis=1)  # pair without item k
    return pairs.argmax(axis=1)


def seconds(fn, *args, repeats: int) -> float:
    """Best wall time of `fn(*args)` (compiled first)."""
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


def extraction(args) -> dict:
    # scan=True: the blocks compile once (the same numbers as the loop layout)
    model = load_model(args.variant, image_size=args.image_size, pool_type="tok", scan=True, seed=0)
    layer = model.default_layer
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (args.timing_batch, args.image_size, args.image_size, 3), np.uint8)
    x = model.preprocess(images)  # errors on the first `batch` images, times on all of them
    options = {k: v for k, v in model.info["config"].items() if k not in ("dtype_mm", "matmul_precision")}
    options["patch_size"] = tuple(options["patch_size"])
    with jax.enable_x64(True):
        module = make_vit(args.variant, **options, dtype_mm="float64")
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), model.params)
        inputs = jnp.asarray(x[: args.batch], jnp.float64)
        reference = np.asarray(jax.jit(module.apply)({"params": params}, inputs)[1][layer])
    decisions = odd_one_out(reference)
    settings = {name: DTYPES[name] for name in DTYPES} | {BEFORE: ("float32", "bfloat16")}  # bfloat16 = DEFAULT
    out = {}
    for name, (dtype_mm, precision) in settings.items():
        module = make_vit(args.variant, **options, dtype_mm=dtype_mm, matmul_precision=precision)
        forward = jax.jit(lambda p, x, m=module: m.apply({"params": p}, x)[1][layer])
        features = np.asarray(forward(model.params, x), np.float64)[: args.batch]
        out[name] = errors(features, reference) | {
            "odd_one_out_flips": float(np.mean(odd_one_out(features) != decisions)),
            "images_per_s": args.timing_batch / seconds(forward, model.params, x, repeats=args.repeats),
        }
    config = {"variant": args.variant, "image_size": args.image_size, "batch": args.batch, "layer": layer}
    config["timing_batch"] = args.timing_batch
    return config | {"settings": out}


def probe(args) -> dict:
    rng = np.random.default_rng(2)
    n, p = args.n_objects, args.dims
    x = rng.standard_normal((n, p)).astype(np.float32)
    w = (rng.standard_normal((p, p)) / p).astype(np.float32)
    candidates = rng.integers(0, n, (2 * args.triplets + 100, 3))
    distinct = (candidates[:, 0] != candidates[:, 1]) & (candidates[:, 0] != candidates[:, 2])
    distinct &= candidates[:, 1] != candidates[:, 2]
    triplets = candidates[distinct][: args.triplets].astype(np.int32)
    weights = np.ones(args.triplets, np.float32)
    kw = dict(regularizer="frobenius", temperature=1.0, formulation="matrix")

    def value_and_grad(dtype):
        fn = jax.value_and_grad(lambda w, *a: objective.loss({"weights": w}, *a, **kw))
        inputs = [jnp.asarray(w, dtype), jnp.asarray(x, dtype), jnp.asarray(triplets), jnp.asarray(weights, dtype)]
        return jax.jit(fn), inputs

    with jax.enable_x64(True):
        fn, inputs = value_and_grad(jnp.float64)
        loss64, grad64 = (np.asarray(v) for v in fn(*inputs, jnp.float64(1e-3)))
    out = {}
    for name, precision in (("float32", objective.PRECISION), (BEFORE, None)):
        objective.PRECISION = precision  # read when the loss is traced; the package always uses HIGHEST
        try:
            fn, inputs = value_and_grad(jnp.float32)
            loss, grad = fn(*inputs, jnp.float32(1e-3))
            step = seconds(fn, *inputs, jnp.float32(1e-3), repeats=args.repeats)
        finally:
            objective.PRECISION = jax.lax.Precision.HIGHEST
        out[name] = {
            "loss_rel": float(abs(float(loss) - loss64) / abs(loss64)),
            "grad": errors(np.asarray(grad), grad64),
            "seconds_per_loss_and_gradient": step,
        }
    return {"n_objects": n, "dims": p, "triplets": args.triplets, "settings": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="S/16")
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32, help="images compared (odd-one-out over all their triplets)")
    parser.add_argument("--timing_batch", type=int, default=256, help="images per timed forward pass (>= batch)")
    parser.add_argument("--n_objects", type=int, default=1854)
    parser.add_argument("--dims", type=int, default=768)
    parser.add_argument("--triplets", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5, help="best of this many timings")
    args = parser.parse_args()
    result = {
        "device": f"{jax.devices()[0].device_kind} ({jax.default_backend()})",
        "jax": jax.__version__,
        "python": platform.python_version(),
    }
    for part, run in (("extraction", extraction), ("probe", probe)):
        start = time.perf_counter()
        result[part] = run(args) | {"bench_seconds": time.perf_counter() - start}  # compilations included
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
