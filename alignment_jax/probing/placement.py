"""Where a probe sweep's arrays live: the configuration slots over every device of every process.

One process or several (after `jax.distributed.initialize()`: a TPU slice, a SLURM GPU cluster), every
process runs the same host loop on the same host arrays (SPMD). The fold data is copied to every device;
the pool's slot axis (axis 1 of the (F, S, ...) state) is laid over a 1-D ("configs",) mesh of all devices,
so each device trains S / n_devices slots of every fold; and what the loop decides from (which
configurations stopped, their numbers and parameters) is read back as the same host copy on every process.
With one process these are plain device puts and reads.
"""

import functools

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "configs"


def configs_mesh() -> Mesh:
    """A 1-D mesh (AXIS,) over every device of every process."""
    devices = jax.devices()
    return jax.make_mesh((len(devices),), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)


def replicated(tree, mesh: Mesh):
    """Host arrays (the same on every process) -> a copy on every device of `mesh`."""
    return _put(tree, NamedSharding(mesh, P()))


def by_slot(tree, mesh: Mesh):
    """Arrays (F, S, ...), host (the same on every process) or device ones -> axis 1 split over `mesh`."""
    return _put(tree, NamedSharding(mesh, P(None, AXIS)))


def _put(tree, sharding: NamedSharding):
    if sharding.is_fully_addressable:  # one process
        return jax.device_put(tree, sharding)

    def put(leaf):
        if isinstance(leaf, jax.Array):
            return jax.device_put(leaf, sharding)  # no copy where it already lies so
        array = np.asarray(leaf)  # the same on every process (device_put would check that with a collective)
        return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])

    return jax.tree.map(put, tree)


def to_host(tree, mesh: Mesh):
    """Device arrays on `mesh` -> numpy copies of their whole values, on every process."""
    leaves, tree_def = jax.tree.flatten(tree)
    if all(leaf.is_fully_addressable for leaf in leaves):
        return jax.tree.unflatten(tree_def, [np.asarray(leaf) for leaf in leaves])
    whole = jax.device_put(leaves, NamedSharding(mesh, P()))
    return jax.tree.unflatten(tree_def, [np.asarray(leaf.addressable_data(0)) for leaf in whole])


def slots_to_host(tree, folds: np.ndarray, slots: np.ndarray, mesh: Mesh):
    """Leaves (F, S, ...) on `mesh` -> numpy (m, ...) of the slots (folds[i], slots[i]), i < m, on every
    process. Across processes only those rows travel (gathered by a program compiled for m rounded up to a
    power of two)."""
    if all(leaf.is_fully_addressable for leaf in jax.tree.leaves(tree)):
        return jax.tree.map(lambda leaf: np.asarray(leaf)[folds, slots], tree)
    count = len(folds)
    size = 1 << max(0, count - 1).bit_length()
    folds, slots = (np.pad(np.asarray(a, np.int32), (0, size - count)) for a in (folds, slots))
    rows = _take(tree, *replicated((folds, slots), mesh), NamedSharding(mesh, P()))
    return jax.tree.map(lambda leaf: leaf[:count], to_host(rows, mesh))


@functools.partial(jax.jit, static_argnums=3)
def _take(tree, folds, slots, sharding):
    return jax.lax.with_sharding_constraint(jax.tree.map(lambda leaf: leaf[folds, slots], tree), sharding)


def smallest(value: int) -> int:
    """The smallest of every process's `value` (on every process)."""
    if jax.process_count() == 1:
        return value
    return int(np.asarray(multihost_utils.process_allgather(np.int64(value))).min())


def process_zero(flag: bool) -> bool:
    """Process 0's `flag` on every process (a decision from timings, which differ between processes)."""
    if jax.process_count() == 1:
        return flag
    return bool(np.asarray(multihost_utils.broadcast_one_to_all(np.bool_(flag))))
