"""How much device memory an extraction batch needs, and the largest batch that fits.

A ViT forward pass without gradients keeps, per image, the tokens of one block at a time: the residual
stream, its LayerNorm, q, k, v and the attention output (6 T D floats), the MLP's hidden activations
before and after the GELU (2 T M) and the attention logits and probabilities (2 H T^2), plus the image
itself (uint8 and float32 copies of S^2 x 3). With T tokens, width D, MLP width M, H heads, side S:

    bytes per image  ~ 4 (6 T D + 2 T M + 2 H T^2) + 5 S^2 x 3,     counted twice for XLA's buffers,

and every device holds all parameters. The free memory is the device's own count (GPU, TPU) or the host's
available memory (the CPU backend).
"""

import math
import os
from typing import Any

import jax

from alignment_jax.errors import InputError

SAFETY = 2.0  # XLA's temporaries and fragmentation: count each activation twice
USABLE = 0.9  # of the free memory


def bytes_per_image(module: Any, image_size: int) -> float:
    """Activation bytes of one image in a forward pass of a VisionTransformer `module` at `image_size`."""
    if hasattr(module, "bytes_per_image"):  # models that are no ViT give their own estimate
        return module.bytes_per_image(image_size)
    patch = module.patch_size[0]
    tokens = (image_size // patch) ** 2 + 1
    width, heads = module.width, module.num_heads
    mlp = module.mlp_dim or 4 * width
    activations = 4.0 * (6 * tokens * width + 2 * tokens * mlp + 2 * heads * tokens**2)
    return SAFETY * (activations + 5.0 * image_size * image_size * 3)


def parameter_bytes(params: Any) -> int:
    return sum(int(x.size) * x.dtype.itemsize for x in jax.tree.leaves(params))


def free_bytes(device: Any = None) -> float | None:
    """Free memory of `device` (default: the first local device): its own count, or for the CPU backend
    the host's available memory; None when unknown."""
    device = device or jax.local_devices()[0]
    try:
        stats = device.memory_stats()
    except Exception:  # backends without memory statistics
        stats = None
    if stats and stats.get("bytes_limit"):
        return float(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    if device.platform == "cpu":
        return _host_available()
    return None


def _host_available() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def fit_batch(
    batch_size: int, per_image: float, params: float, n_devices: int, free: float | None, model: str
) -> tuple[int, str]:
    """The batch to use and, when it is smaller than `batch_size`, a line saying why.

    The batch is split over `n_devices`; each device needs `params` bytes plus `per_image` per image of its
    share. Too big a batch is halved until it fits; a model that does not fit even one image per device
    is an InputError naming what to change.
    """
    if free is None:
        return batch_size, ""
    budget = USABLE * free
    need = lambda batch: params + math.ceil(batch / n_devices) * per_image
    if need(n_devices) > budget:
        raise InputError(
            f"model {model}: needs about {_gib(need(n_devices))} of device memory for its parameters and one image "
            f"per device, {_gib(free)} is free; use model.dtype=bfloat16, a smaller model.image_size or model, "
            "or more devices"
        )
    if need(batch_size) <= budget:
        return batch_size, ""
    batch = batch_size
    while batch > n_devices and need(batch) > budget:
        batch = max(n_devices, batch // 2)
    return batch, (
        f"extract: images.batch_size={batch_size} needs about {_gib(need(batch_size))} of device memory, "
        f"{_gib(free)} is free: extracting with batches of {batch} (set images.batch_size to choose)"
    )


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"
