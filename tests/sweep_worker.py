"""Subprocess side of tests/test_sweep_processes.py (run as a script; XLA_FLAGS comes from the caller).

python sweep_worker.py alone OUT NAME          the sweep and the probe on this process's devices -> OUT/NAME.npz
python sweep_worker.py distributed OUT PORT ID  the same as one of two jax.distributed processes -> OUT/process_ID.npz
"""

import dataclasses
import os
import sys

import jax
import numpy as np
from sweep_testlib import glocal_configurations, glocal_settings

from alignment_jax.data.splits import object_kfold_masks
from alignment_jax.data.synthetic import make_world
from alignment_jax.probing import glocal, memory, sweep
from alignment_jax.probing.cross_validation import ProbeSettings, run_probe
from alignment_jax.probing.sweep import Configurations, TrainSettings, stack_folds, train_configurations

LAMBDAS = (1e-1, 3e-2, 1e-2, 1e-3, 1e-4)
SEEN = {"devices": 0, "slots": 0, "shrunk": 0}  # the most devices the sweep's state spanned, the most slots per
# fold, whether the pool shrank


def _watched(epoch):
    def watched(state, *args, **kwargs):
        SEEN["devices"] = max(SEEN["devices"], len(state.done.sharding.device_set))
        SEEN["shrunk"] |= 0 < state.done.shape[1] < SEEN["slots"]
        SEEN["slots"] = max(SEEN["slots"], state.done.shape[1])
        return epoch(state, *args, **kwargs)

    return watched


sweep._sweep_epoch = _watched(sweep._sweep_epoch)
# shrinking the pool always pays on process 0 and never elsewhere: the processes must follow process 0's timings
sweep._Clock.pays = lambda self, slots, target, remaining_epochs: jax.process_index() == 0


def outcome() -> dict[str, np.ndarray]:
    """On a tiny planted world: a 3-fold sweep of 5 lambdas x 2 learning rates and a gLocal sweep of 4
    configurations, each two configurations per device and fold at a time (on fewer than 5 devices slots are
    refilled), and the probe's cross-validated choice."""
    world = make_world(n_objects=60, n_concepts=4, n_dims=12, n_train=6000, n_test=1500, n_local=300, seed=2)
    x = (world.features - world.features.mean()) / world.features.std()
    train, val = object_kfold_masks(world.train, 60, 3, seed=0)
    folds = stack_folds(x, world.train, train, val)
    settings = TrainSettings(epochs=40, min_epochs=3, patience=3)
    lrs = np.repeat(np.array([0.05, 0.2], np.float32), len(LAMBDAS))
    configs = Configurations.grid(np.tile(LAMBDAS, 2), lrs, settings.epochs)
    numbers = _sweep(folds, configs, settings)
    seen = {f"sweep_{name}": np.int32(count) for name, count in SEEN.items()}
    local = (world.local_features - world.features.mean()) / world.features.std()
    data = glocal.local_data(local[None, :250], local[None, 250:], 0.0, 1.0, 32)
    local_numbers = _sweep(folds, glocal_configurations(20), glocal_settings(20, local_batch_size=32), data)
    probe_settings = ProbeSettings(lambdas=LAMBDAS, epochs=40, min_epochs=3, patience=3)
    probe = run_probe(world.features, world.train, world.test, probe_settings, progress=False)
    return {
        **numbers,
        **{f"glocal_{name}": value for name, value in local_numbers.items()},
        "best_lambda": np.float32(probe.summary["best_lambda"]),
        "cv_accuracy_folds": np.array(probe.summary["cv_accuracy_folds"]),
        "cv_cross_entropy": np.float32(probe.summary["cv_cross_entropy"]),
        "refit_epochs": np.int32(probe.summary["refit_epochs"]),
        "transform": probe.transform.weights,
        **seen,
    }


def _sweep(folds, configs, settings, data=None) -> dict[str, np.ndarray]:
    """The outcome's arrays, with a memory budget of two configurations per device and fold."""
    per_config = memory.config_bytes(folds, folds.train_triplets.shape[1], data=data, local_batch_size=32)
    budget = memory.data_bytes(folds, data) + 2.5 * per_config * folds.n_folds
    result = train_configurations(folds, configs, settings, seed=1, progress=False, budget_bytes=budget, data=data)
    fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.name != "params"}
    return {**fields, **result.params}


def alone(out: str, name: str) -> None:
    np.savez(os.path.join(out, f"{name}.npz"), **outcome())


def distributed(out: str, port: str, process_id: str) -> None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=int(process_id))
    assert jax.process_count() == 2, jax.devices()
    np.savez(os.path.join(out, f"process_{process_id}.npz"), **outcome())
    jax.distributed.shutdown()


if __name__ == "__main__":
    {"alone": alone, "distributed": distributed}[sys.argv[1]](*sys.argv[2:])
