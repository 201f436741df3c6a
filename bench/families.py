"""Extraction speed per model family: images/s of each model's compiled forward pass (its default layer,
pooled as extraction pools it) on uint8 images already in memory, beside today's ViT-B/16. Prints one JSON
line per model, then a table.

    python bench/families.py                                   # ViT-B/16, DINOv2-B/14 (+reg4), BiT-M R50x1, R101x1
    python bench/families.py --models=dinov2-l14,bit-m-r50x3 --dtype=bfloat16 --n=2048 --batch_size=256  # a GPU
    python bench/families.py --saved_model=/data/alignet/SigLIP-B-alignet   # an AligNet SavedModel too (TensorFlow)

Weights are random (speed does not depend on them; `checkpoint="random"`), except for a SavedModel, which
runs as released, in TensorFlow on the host (the pipeline calls it through jax.pure_callback).
"""

import argparse
import json
import platform
import time

import jax
import numpy as np

from alignment_jax.extract.extractor import fetch
from alignment_jax.extract.pipeline import extractor_of
from alignment_jax.models.registry import DTYPES, load_model

DEFAULT = "augreg-b16-i21k,dinov2-b14,dinov2-b14-reg4,bit-m-r50x1,bit-m-r101x1"


def rate(model, n: int, batch_size: int, dtype_note: str) -> dict:
    """images/s of the model's default layer through an Extractor over every device (compile excluded)."""
    layer = model.default_layer
    extractor = extractor_of(model, (layer,), batch_size, ("cls",))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (extractor.batch_size, model.image_size, model.image_size, 3), dtype=np.uint8)
    start = time.perf_counter()
    fetch(extractor(images))
    compile_s = time.perf_counter() - start
    batches = max(1, n // extractor.batch_size)
    start = time.perf_counter()
    previous = None
    for _ in range(batches):
        out = extractor(images)
        if previous is not None:
            fetch(previous)
        previous = out
    fetch(previous)
    seconds = time.perf_counter() - start
    return {
        "model": model.info["name"],
        "source": model.info["source"],
        "image_size": model.image_size,
        "layer": layer,
        "dim": extractor.dim,
        "dtype": dtype_note,
        "batch_size": extractor.batch_size,
        "images": batches * extractor.batch_size,
        "images_per_s": round(batches * extractor.batch_size / seconds, 1),
        "compile_s": round(compile_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=DEFAULT, help="comma-separated registry names")
    parser.add_argument("--saved_model", default="", help="also a SavedModel folder or .tar.gz (needs TensorFlow)")
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES))
    parser.add_argument("--n", type=int, default=128, help="images per model (whole batches)")
    parser.add_argument("--batch_size", type=int, default=32)
    args = parser.parse_args()
    rows = []
    for name in filter(None, (m.strip() for m in args.models.split(","))):
        model = load_model(name, "random", dtype=args.dtype)
        rows.append(rate(model, args.n, args.batch_size, args.dtype))
        print(json.dumps(rows[-1]), flush=True)
    if args.saved_model:
        model = load_model("saved_model", args.saved_model)
        rows.append(rate(model, args.n, args.batch_size, "float32 (TensorFlow)"))
        print(json.dumps(rows[-1]), flush=True)
    device = f"{jax.devices()[0].device_kind} x{jax.device_count()} ({platform.machine()})"
    print(f"\nimages/s on {device}, {args.dtype}, batch {args.batch_size}, random weights")
    print(f"{'model':<28} {'px':>4} {'dim':>6} {'images/s':>10} {'compile s':>10}")
    for r in rows:
        print(f"{r['model']:<28} {r['image_size']:>4} {r['dim']:>6} {r['images_per_s']:>10} {r['compile_s']:>10}")


if __name__ == "__main__":
    main()
