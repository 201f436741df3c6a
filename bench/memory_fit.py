"""Device memory on an accelerator: the extraction batch that alignment_jax/extract/memory.py picks, and a
probe sweep too big for the device. Prints JSON.

1. For ViTs of several sizes (random weights): the estimated activation bytes per image against XLA's own
   memory analysis of the compiled forward pass (the baseline; ratio = estimate / XLA), and the batch that
   `fit_batch` picks for an absurd request, run once for real (it must fit: no RESOURCE_EXHAUSTED).
2. The command line on a probe sweep whose configurations cannot fit (50 lambdas x 3 folds of a 6144 x 6144
   transform): it must end in one line naming the probe settings, exit status 2, not a crash.

    python bench/memory_fit.py [--variants B/16,L/16] [--request 1000000] [--skip_probe]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from alignment_jax.extract import memory
from alignment_jax.models.registry import load_model


def extraction(variant: str, image_size: int, request: int) -> dict:
    model = load_model(variant, image_size=image_size)
    per_image = memory.bytes_per_image(model.module, image_size)
    params = memory.parameter_bytes(model.params)
    forward = jax.jit(lambda p, x: model.module.apply({"params": p}, x)[1]["pre_logits"])
    probe_batch = 32
    example = jax.ShapeDtypeStruct((probe_batch, image_size, image_size, 3), jnp.float32)
    analysis = forward.lower(model.params, example).compile().memory_analysis()
    xla_per_image = analysis.temp_size_in_bytes / probe_batch if analysis is not None else None
    free = memory.free_bytes()
    batch, note = memory.fit_batch(request, per_image, params, len(jax.devices()), free, variant)
    images = jnp.zeros((batch, image_size, image_size, 3), jnp.float32)
    start = time.perf_counter()
    try:
        jax.block_until_ready(forward(model.params, images))
        ran, error = True, ""
    except Exception as e:  # the point of the check: report, do not crash
        ran, error = False, str(e).splitlines()[0][:300]
    stats = jax.devices()[0].memory_stats() or {}
    return {
        "variant": variant,
        "image_size": image_size,
        "estimate_bytes_per_image": per_image,
        "xla_temp_bytes_per_image": xla_per_image,
        "ratio_estimate_over_xla": per_image / xla_per_image if xla_per_image else None,
        "free_bytes": free,
        "chosen_batch": batch,
        "note": note,
        "ran": ran,
        "error": error,
        "seconds": time.perf_counter() - start,
        "peak_bytes_in_use": stats.get("peak_bytes_in_use"),
    }


def probe_out_of_memory(folder: str) -> dict:
    rng = np.random.default_rng(0)
    n, p = 3000, 6144
    np.save(os.path.join(folder, "features.npy"), rng.normal(size=(n, p)).astype(np.float32))
    first = rng.integers(0, n, 20000)
    triplets = np.stack([first, (first + 1) % n, (first + 2) % n], axis=1)
    np.save(os.path.join(folder, "train.npy"), triplets)
    lambdas = "(" + ",".join(f"{10.0**-k:g}" for k in np.linspace(1, 5, 50)) + ")"
    command = [
        sys.executable, "-m", "alignment_jax.probe", "--config=configs/features.py", "--config.stages=probe",
        f"--config.features={folder}/features.npy", f"--config.things.train={folder}/train.npy",
        f"--config.probe.lambdas={lambdas}", "--config.probe.folds=3", f"--workdir={folder}/run",
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=400)
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return {
        "exit_status": done.returncode,
        "last_stderr_line": lines[-1] if lines else "",
        "traceback": "Traceback" in done.stderr,
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", default="B/16,L/16")
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--request", type=int, default=1_000_000, help="the batch asked for")
    parser.add_argument("--skip_probe", action="store_true")
    args = parser.parse_args()
    out = {"devices": [str(d) for d in jax.devices()]}
    out["extraction"] = [extraction(v, args.image_size, args.request) for v in args.variants.split(",")]
    if not args.skip_probe:
        with tempfile.TemporaryDirectory() as folder:
            out["probe_out_of_memory"] = probe_out_of_memory(folder)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
