"""A second run on the same shapes: wall time of the command line with the package's caches (JAX's
persistent compilation cache, the decoded-image cache) filled by a first run, versus the same second run
with both caches off. Each run is a fresh process in a fresh workdir, so it does all the work again
except what the caches hold. Prints JSON, one object per case.

    python bench/rerun.py                    # the demo, and a probe run on THINGS-like shapes
    python bench/rerun.py --case=probe --n_train=60000 --p=768

Cases: `demo` is configs/demo.py (world, extraction of 300 rendered images, zero-shot, probe, transfer,
concepts, report); `probe` is the world's planted features at n = 1,854 objects (p, n_train as given) with
the stages world, zero_shot and probe.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def command(case: str, args: argparse.Namespace) -> list[str]:
    if case == "demo":
        return ["--config=configs/demo.py"]
    return [
        "--config=configs/demo.py:features=True",
        "--config.stages=world,zero_shot,probe",
        "--config.world.n_objects=1854",
        f"--config.world.n_dims={args.p}",
        f"--config.world.n_train={args.n_train}",
        f"--config.world.n_test={args.n_train // 9}",
    ]


def timed_run(flags: list[str], workdir: str, cache: str) -> float:
    """Seconds of one `python -m alignment_jax.probe` process (interpreter and imports included)."""
    env = {**os.environ, "ALIGNMENT_JAX_CACHE": cache}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "alignment_jax.probe", *flags, f"--workdir={workdir}", "--config.progress=off"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"run failed ({' '.join(flags)}):\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="both", choices=["demo", "probe", "both"])
    parser.add_argument("--n_train", type=int, default=60_000, help="probe case: training triplets")
    parser.add_argument("--p", type=int, default=768, help="probe case: feature dimensions")
    args = parser.parse_args()
    for case in ("demo", "probe") if args.case == "both" else (args.case,):
        flags = command(case, args)
        with tempfile.TemporaryDirectory() as tmp:
            cache = os.path.join(tmp, "cache")
            first = timed_run(flags, os.path.join(tmp, "first"), cache)
            second = timed_run(flags, os.path.join(tmp, "second"), cache)
            off = ["--config.compilation_cache=off", "--config.images.cache=off"]
            uncached = timed_run(flags + off, os.path.join(tmp, "uncached"), cache)
            entries = len(os.listdir(os.path.join(cache, "jax")))
        result = {
            "benchmark": "rerun",
            "case": case,
            "first_s": round(first, 2),
            "second_s": round(second, 2),
            "second_without_caches_s": round(uncached, 2),
            "saved_s": round(uncached - second, 2),
            "ratio": round(second / uncached, 3),
            "compiled_programs_cached": entries,
            "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
            "cpu_cores": os.cpu_count(),
            "python": platform.python_version(),
            "jax": jax.__version__,
        }
        if case == "probe":
            result.update(n_objects=1854, p=args.p, n_train=args.n_train)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
