"""The probe sweep over several devices and processes gives the single-device numbers: 8 simulated CPU devices,
and two jax.distributed processes of 2 devices each. Each run is `sweep_worker.py` in a fresh interpreter."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sweep_worker.py")
SWEEP_EXACT = ("epochs", "best_epoch", "failed")
SWEEP_CLOSE = ("val_cross_entropy", "val_accuracy")
# the global sweep, the gLocal sweep (with its local term), the probe's choice and refit
EXACT = (*SWEEP_EXACT, *(f"glocal_{name}" for name in SWEEP_EXACT), "best_lambda", "refit_epochs")
CLOSE = (
    *SWEEP_CLOSE,
    *(f"glocal_{name}" for name in (*SWEEP_CLOSE, "val_local")),
    "cv_accuracy_folds",
    "cv_cross_entropy",
)
# parameters: to 1e-5 (a pool of another size is another program, whose float rounding may differ in the last bits)
PARAMETERS = ("weights", "glocal_weights", "glocal_bias", "transform")


def _worker(*args: str, devices: int) -> subprocess.Popen:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    return subprocess.Popen(
        [sys.executable, WORKER, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _wait(process: subprocess.Popen, timeout: float = 120) -> None:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def one_device(tmp_path_factory) -> dict[str, np.ndarray]:
    out = tmp_path_factory.mktemp("one_device")
    _wait(_worker("alone", str(out), "one", devices=1))
    return dict(np.load(out / "one.npz"))


def _assert_same(result: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    for name in EXACT:
        np.testing.assert_array_equal(result[name], expected[name], err_msg=name)
    for name in CLOSE:
        np.testing.assert_allclose(result[name], expected[name], rtol=0, atol=1e-6, err_msg=name)
    for name in PARAMETERS:
        np.testing.assert_allclose(result[name], expected[name], rtol=0, atol=1e-5, err_msg=name)


def test_eight_devices_equal_one(one_device, tmp_path):
    _wait(_worker("alone", str(tmp_path), "eight", devices=8))
    eight = dict(np.load(tmp_path / "eight.npz"))
    assert (eight["sweep_devices"], one_device["sweep_devices"]) == (8, 1)
    assert one_device["sweep_slots"] < 10  # of 10 configurations per fold: slots were refilled
    assert eight["sweep_shrunk"]
    _assert_same(eight, one_device)


def test_two_processes_equal_one(one_device, tmp_path):
    """Two processes of 2 CPU devices each (gloo collectives): both hold the single-device outcome."""
    port = str(_free_port())
    workers = [_worker("distributed", str(tmp_path), port, str(i), devices=2) for i in range(2)]
    for worker in workers:
        _wait(worker)
    for i in range(2):
        result = dict(np.load(tmp_path / f"process_{i}.npz"))
        assert result["sweep_devices"] == 4  # the sweep's state spanned both processes' devices
        assert result["sweep_slots"] < 10  # refilled
        assert result["sweep_shrunk"]  # both processes shrank the pool when process 0's timings said so
        _assert_same(result, one_device)
