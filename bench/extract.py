"""Feature extraction: images/s from JPEG files on disk (the whole pipeline: threads decode and resize,
the sharded model runs, shards are written), from the decoded-image cache (the same pipeline reading the
pixels a first run decoded), and of the same compiled model on uint8 arrays already in memory. Prints
JSON; `ratio` (JPEGs / memory) and `cache_ratio` (cache / memory) near 1 mean the input keeps the model
busy. Also the cache's size on disk and the first, cache-filling run's images/s.

    python bench/extract.py --variant=Ti/16 --n=256 --jpeg_size=800
    python bench/extract.py --variant=B/16 --dtype=bfloat16 --n=2048 --batch_size=256   # on a GPU

The JPEGs are smooth synthetic photos-like images (THINGS images are about 800 x 800); the model has
random weights (speed does not depend on them). The cache is read right after it was written, so from
the operating system's page cache where memory allows (as in a sweep, whose models run one after another).
"""

import argparse
import json
import os
import platform
import tempfile
import time

import jax
import numpy as np
from PIL import Image

from alignment_jax.config.base import base_config
from alignment_jax.extract.decode import decode_image
from alignment_jax.extract.extractor import fetch
from alignment_jax.extract.image_cache import open_image_cache
from alignment_jax.extract.pipeline import extract, model_extractor
from alignment_jax.extract.sources import folder_source
from alignment_jax.models.registry import DTYPES


def write_jpegs(folder: str, n: int, size: int, seed: int = 0) -> None:
    """n JPEGs (quality 90): upsampled low-resolution colour noise plus fine grain, like a photo."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        coarse = Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
        grain = rng.normal(0, 8, (size, size, 3))
        image = np.clip(np.asarray(coarse, np.float32) + grain, 0, 255).astype(np.uint8)
        Image.fromarray(image).save(os.path.join(folder, f"{i:05d}.jpg"), quality=90)


def in_memory_rate(extractor, images: np.ndarray) -> float:
    """images/s of the compiled model alone on decoded uint8 images (n, S, S, 3); like the pipeline,
    one batch is dispatched while the previous one is fetched."""
    batch = extractor.batch_size
    n = len(images) // batch * batch
    fetch(extractor(images[:batch]))  # compile
    start = time.perf_counter()
    previous = None
    for i in range(0, n, batch):
        out = extractor(images[i : i + batch])
        if previous is not None:
            fetch(previous)
        previous = out
    fetch(previous)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="Ti/16")
    parser.add_argument("--layer", default="pre_logits")
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES))
    parser.add_argument("--n", type=int, default=256, help="images")
    parser.add_argument("--jpeg_size", type=int, default=800)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--num_workers", type=int, default=0, help="decoding threads (0 = one per core)")
    parser.add_argument("--prefetch", type=int, default=2)
    parser.add_argument("--jpeg_draft", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timings of each")
    args = parser.parse_args()

    config = base_config()
    config.model.variant = args.variant
    config.model.layer = args.layer
    config.model.dtype = args.dtype
    config.images.batch_size = args.batch_size
    config.images.jpeg_draft = args.jpeg_draft
    extractor, decoding, keys = model_extractor(config)
    (key,) = keys.values()
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "jpegs")
        os.makedirs(folder)
        write_jpegs(folder, args.n, args.jpeg_size)
        source = folder_source(folder)
        decoded = np.stack([decode_image(p, p, decoding) for p in source.names])
        cache_root = os.path.join(tmp, "decoded")

        def pipeline_rate(store: str, image_cache: str = "") -> float:
            result = extract(
                source,
                extractor,
                decoding,
                os.path.join(tmp, store),
                {**key, "images": source.description},
                shard_size=1024,
                num_workers=args.num_workers,
                prefetch=args.prefetch,
                progress=False,
                image_cache=image_cache,
            )
            assert result.from_cache == (args.n if image_cache and store != "filling" else 0), result.from_cache
            return result.images_per_s

        filling = pipeline_rate("filling", cache_root)  # the first model: decodes into the cache
        cache = open_image_cache(cache_root, source, decoding, create=False)
        memory = disk = cached = 0.0
        for repeat in range(args.repeats):  # alternating, so that a busy moment hits all three
            memory = max(memory, in_memory_rate(extractor, decoded))
            disk = max(disk, pipeline_rate(f"store{repeat}"))
            cached = max(cached, pipeline_rate(f"cached{repeat}", cache_root))
        pixels = os.stat(os.path.join(cache.path, "pixels.npy"))
    print(
        json.dumps(
            {
                "benchmark": "extract",
                "variant": args.variant,
                "layer": args.layer,
                "image_size": extractor.image_shape[0],
                "dtype": args.dtype,
                "n_images": args.n,
                "jpeg_size": args.jpeg_size,
                "jpeg_draft": args.jpeg_draft,
                "batch_size": extractor.batch_size,
                "num_workers": args.num_workers or os.cpu_count(),
                "in_memory_images_per_s": round(memory, 2),
                "jpeg_on_disk_images_per_s": round(disk, 2),
                "ratio": round(disk / memory, 3),
                "from_cache_images_per_s": round(cached, 2),
                "cache_ratio": round(cached / memory, 3),
                "filling_cache_images_per_s": round(filling, 2),
                "cache_bytes": cache.nbytes,
                "cache_bytes_on_disk": pixels.st_blocks * 512,
                "cache_bytes_per_image": cache.nbytes // args.n,
                "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
                "cpu_cores": os.cpu_count(),
                "python": platform.python_version(),
                "jax": jax.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
