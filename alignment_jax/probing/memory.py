"""How much device memory a probe sweep needs, how much there is, and how many configurations fit at once.

A sweep holds, per device, the fold data (replicated: every configuration of a fold reads it) plus, per
configuration and fold, its training state and the temporaries of one step. In float32 words, with
n = rows of a fold's training side, n_v of its validation side, b = triplets per step, p = dims and
T_v = validation triplets (the formulation of each is chosen by probing/objective.py's cost model):

    state        (3 + s) p^2          params, best params, s optimizer slots (adam 2, sgd 1)
    step         4 p^2                gradient, update, new parameters and optimizer slots in flight
      matrix     2 n p + 3 n^2 + A b  Z and its gradient, S, its gradient and the scatter into it, per triplet A words
      objects    2 n p + 6 b p + A b  Z and its gradient, the three gathered rows of Z and their gradients
      rows       9 b p + A b          the gathered rows of X, their transforms and the gradients
    validation   n_v p + n_v^2 + A T_v  (matrix; the other formulations as in the step, without gradients)
    view         (n + n_v) p          the gathered rows of the configuration's layer (with several views)
    minibatches  3 T                  its own shuffle of the T training triplets (batch < T)

A = 8 words per triplet (its three similarities, their softmax and gradient); each fold's data adds
16 words per triplet (indices, weights, the minibatch order and the gathers shared by its configurations).

gLocal's local term (probing/glocal.py) adds, per configuration, for a batch of B local images (and Bv
validation images per batch) in p dims out of N training images:

    local step   L_p B p + L_b B^2 + N   its rows, their transform and unit rows, the B x B student and teacher
                                         matrices, the softmax temporaries and their gradients; its group's
                                         batch order (counted per configuration: a fold has at most S groups)
    local val    L_p Bv p + L_b Bv^2     one validation batch at a time, without gradients

and to the shared data the N x p training images and the validation images with their Bv x Bv teacher matrices.
The constants come from XLA's own buffer assignment of the compiled epoch, which the estimate exceeds by
1.1 to 1.6x over the shapes of tests/test_memory.py (it checks this). The training step and the
validation are not live at the same time: the larger counts. The sweep trains its configurations
in a pool of as many slots as fit (probing/sweep.py); a plan's `size` is that number per fold.
"""

import dataclasses
import glob
import os

import jax
import numpy as np

from alignment_jax.extract.memory import free_bytes
from alignment_jax.probing import objective

WORD = 4  # bytes of a float32 / int32
PER_TRIPLET = 8  # words per triplet and configuration in a step (see above)
SHARED_PER_TRIPLET = 16  # words per triplet of a fold, shared by its configurations (see above)
LOCAL_PER_ROW_DIM, LOCAL_PER_PAIR = 4, 6  # L_p, L_b: words per local row and dim, per local pair (see above)
OPTIMIZER_SLOTS = {"adam": 2, "adamw": 2, "sgd": 1}
USABLE = 0.7  # of the memory found free: the rest is left to XLA's fragmentation and the host's other work


@dataclasses.dataclass(frozen=True)
class ChunkPlan:
    """size: slots per fold, configurations that train at once on each fold (a multiple of the device
    count); n_chunks: how many rounds of that many the configurations need."""

    size: int
    n_chunks: int


def step_words(formulation: str, n_rows: int, n_triplets: int, dims: int, gradient: bool = True) -> float:
    """float32 words of one loss (+ gradient) evaluation of one configuration, beyond its parameters."""
    n, b, p = float(n_rows), float(n_triplets), float(dims)
    if formulation == "matrix":
        words = n * p + n * n + (n * p + 2 * n * n if gradient else 0)
    elif formulation == "objects":
        words = n * p + 3 * b * p + (n * p + 3 * b * p if gradient else 0)
    elif formulation == "rows":
        words = 6 * b * p + (3 * b * p if gradient else 0)
    else:
        raise ValueError(f"unknown formulation {formulation!r}; one of {objective.FORMULATIONS}")
    return words + PER_TRIPLET * b


def local_words(rows: int, dims: int, n_images: int = 0) -> float:
    """float32 words of the local term of one configuration for a batch of `rows` images (and the batch
    order over `n_images` training images; 0 for validation, whose batches are fixed)."""
    b, p = float(rows), float(dims)
    return LOCAL_PER_ROW_DIM * b * p + LOCAL_PER_PAIR * b * b + n_images


def config_bytes(
    folds, batch: int, optimizer: str = "adam", bias: bool = False, data=None, local_batch_size: int = 0
) -> float:
    """Device bytes of one configuration on one fold during an epoch of `folds` (a sweep.FoldData) with
    `batch` triplets per step; with `data` (glocal.LocalData) also gLocal's local term for batches of
    `local_batch_size` images."""
    _, n_views, n_train, p = folds.train_features.shape
    n_val, t_val = folds.val_features.shape[2], folds.val_triplets.shape[1]
    params = p * p + (p if bias else 0)
    state = (3 + OPTIMIZER_SLOTS.get(optimizer, 2)) * params + 4 * params
    train = step_words(objective.choose_formulation(n_train, batch, p), n_train, batch, p)
    val = step_words(objective.choose_formulation(n_val, t_val, p), n_val, t_val, p, gradient=False) if t_val else 0
    if data is not None:
        n_images = data.train.shape[1]
        train += local_words(min(local_batch_size, n_images), p, n_images)
        val += local_words(data.val_rows.shape[2], p) if t_val and data.val_rows.shape[1] else 0
    view = (n_train + n_val) * p if n_views > 1 else 0
    t_train = folds.train_triplets.shape[1]
    shuffle = 3 * t_train if batch < t_train else 0
    return WORD * (state + max(train, val) + view + shuffle)


def data_bytes(folds, data=None) -> float:
    """Device bytes of the fold data: features, triplets (int32) and weights of both sides, and the
    minibatch order of each fold; with `data` (glocal.LocalData) also the local images and teachers."""
    features = folds.train_features.size + folds.val_features.size
    triplets = folds.train_triplets.shape[0] * (folds.train_triplets.shape[1] + folds.val_triplets.shape[1])
    local = 0 if data is None else sum(int(np.prod(a.shape)) for a in data)
    return float(WORD * (features + SHARED_PER_TRIPLET * triplets + local))


def available_bytes(devices: list | None = None) -> float:
    """Bytes a sweep may use on each of `devices` (default: this process's): USABLE of the free device
    memory on accelerators (jax's memory_stats), of the available RAM shared by the devices on the CPU
    (extract/memory.py's `free_bytes`; the physical memory where the available is unknown)."""
    devices = devices if devices is not None else jax.local_devices()
    free = free_bytes(devices[0])
    if free is None:  # a backend that counts nothing: the physical RAM
        free = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return USABLE * free / (len(devices) if devices[0].platform == "cpu" else 1)  # the CPU devices share the RAM


def cache_bytes() -> float:
    """Size of the CPU's last-level cache (Linux sysfs), 0 where unknown."""
    sizes = {}
    for index in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*"):
        try:
            with open(os.path.join(index, "level"), encoding="ascii") as f:
                level = int(f.read())
            with open(os.path.join(index, "size"), encoding="ascii") as f:
                text = f.read().strip()
        except (OSError, ValueError):
            continue
        scale = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
        sizes[level] = float(text.rstrip("KMG")) * scale
    return sizes[max(sizes)] if sizes else 0.0


def cache_slots(per_config: float, n_folds: int, devices: list | None = None) -> int:
    """On the CPU, the slots per fold whose working set fits the last-level cache; 0 (no cap) on
    accelerators, where the cache is unknown, or where one configuration per fold does not fit anyway.

    Measured on the demo (n 200, p 64, 18k triplets per fold, 1.3 MB per configuration): 75 configurations
    at once took 1.7 ms per configuration and epoch, 21 at once (fitting the 32 MB cache) 1.0 ms."""
    devices = devices if devices is not None else jax.local_devices()
    if devices[0].platform != "cpu":
        return 0
    return int(cache_bytes() // (per_config * n_folds * len(devices)))


def plan_chunks(
    n_configs: int, n_folds: int, per_config: float, shared: float, budget: float, n_devices: int = 1
) -> ChunkPlan:
    """Equal chunks of the K axis (each trained on all n_folds folds, sharded over n_devices) that fit
    `budget` bytes per device: the fewest chunks, then the smallest chunk size that covers K with them
    (one compiled shape for all chunks; the last is padded). At least one configuration per device."""
    fits = int(max(0.0, budget - shared) // max(per_config * n_folds, 1.0))
    per_device = max(1, fits)
    n_chunks = -(-n_configs // (per_device * n_devices))
    per_device = -(-n_configs // (n_chunks * n_devices))
    return ChunkPlan(per_device * n_devices, n_chunks)
