"""The whole command line across two jax.distributed processes on localhost (2 simulated CPU devices each) that
share one workdir: the demo's results.json and transform files equal those of a run in one process."""

import json
import math
import os
import re
import socket
import subprocess
import sys
import time

import numpy as np

from alignment_jax import workdir
from alignment_jax.provenance import file_digest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = ("-m", "alignment_jax.probe", "--config=configs/demo.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start(workdir, log, *flags: str, **variables: str) -> subprocess.Popen:
    """The demo as a command line; its stdout and stderr go to the file `log` (no pipe to fill up)."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, *DEMO, f"--workdir={workdir}", *flags], cwd=ROOT,
            env=dict(os.environ, JAX_PLATFORMS="cpu", **variables), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _two_processes(workdir, logs: list) -> list[subprocess.Popen]:
    """The demo in two jax.distributed processes of 2 CPU devices each, as docs/distributed.md starts them."""
    devices = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2".strip()
    address = f"localhost:{_free_port()}"
    return [
        _start(workdir, log, "--distributed", XLA_FLAGS=devices, JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
               JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i))
        for i, log in enumerate(logs)
    ]  # fmt: skip


def _finish(processes: list[subprocess.Popen], logs: list, status: int = 0, timeout: float = 300) -> None:
    """Waits for every process to exit with `status`; when one exits otherwise or the time is up, kills the others
    (they would wait for it in collectives) and fails with every log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(p.poll() is None for p in processes):
        if any(p.poll() not in (None, status) for p in processes):
            break
        time.sleep(0.2)
    for p in processes:
        if p.poll() is None:
            p.kill()
            p.wait()
    output = "\n".join(
        f"--- {log.name} (exit {p.returncode}):\n{log.read_text()}" for p, log in zip(processes, logs, strict=True)
    )
    assert all(p.returncode == status for p in processes), output


def _leaves(value, workdir: str, path: str = "") -> dict:
    """{path: value} of every number and string in results.json, the workdir's path in a string as WORKDIR and
    the key that ends the name of a feature store or image cache (it covers the image files' times) as KEY;
    timings and provenance (digests of files equal to 1e-6, not bit for bit) left out."""
    if isinstance(value, dict):
        items = [(k, v) for k, v in value.items() if k not in ("seconds", "images_per_s", "provenance")]
    elif isinstance(value, list):
        items = list(enumerate(value))
    elif isinstance(value, str):
        return {path: re.sub(r"-[0-9a-f]{10,}(?=/|$)", "-KEY", value.replace(workdir, "WORKDIR"))}
    else:
        return {path: value}
    return {k: v for key, item in items for k, v in _leaves(item, workdir, f"{path}/{key}").items()}


def test_two_processes_in_one_workdir_equal_one_process(tmp_path, monkeypatch):
    """Then a rerun in one process finds the two processes' workdir finished: it keeps every stage."""
    shared, alone = tmp_path / "shared", tmp_path / "alone"
    monkeypatch.setenv("ALIGNMENT_JAX_CACHE", str(tmp_path / "cache"))  # the two processes decode the images
    logs = [tmp_path / f"process_{i}.log" for i in range(2)]
    processes = _two_processes(shared, logs)
    _finish(processes, logs)
    assert "results:" in logs[0].read_text() and "results:" not in logs[1].read_text()  # process 0 prints
    assert (shared / "report.md").is_file()  # process 0 alone wrote it
    _finish([_start(alone, tmp_path / "alone.log")], [tmp_path / "alone.log"])

    recorded = json.loads((shared / "results.json").read_text())
    results = [_leaves(recorded, str(shared)), _leaves(json.loads((alone / "results.json").read_text()), str(alone))]
    assert results[0].keys() == results[1].keys()
    assert results[0]["/probe/best_lambda"] == results[1]["/probe/best_lambda"]
    for key, expected in results[1].items():
        value = results[0][key]
        if isinstance(expected, float) and isinstance(value, float):
            assert math.isclose(value, expected, rel_tol=0, abs_tol=1e-6), (key, value, expected)
        else:
            assert value == expected, key
    transforms = sorted(p.relative_to(alone) for p in alone.rglob("transform.npz"))
    assert len(transforms) > 1  # the probe's and each layer's
    assert transforms == sorted(p.relative_to(shared) for p in shared.rglob("transform.npz"))
    for name in transforms:
        with np.load(shared / name) as two, np.load(alone / name) as one:
            for key in one:  # parameters to 1e-5 (docs/distributed.md)
                np.testing.assert_allclose(two[key], one[key], rtol=0, atol=1e-5, err_msg=f"{name}: {key}")
    # both processes wrote transform.npz: its bytes are the ones results.json records
    assert recorded["provenance"]["probe"]["output:transform.npz"] == file_digest(str(shared / "transform.npz"))
    assert not [p for p in shared.rglob("*") if ".aj-tmp" in p.name]

    _finish([_start(shared, tmp_path / "rerun.log")], [tmp_path / "rerun.log"])
    rerun = (tmp_path / "rerun.log").read_text()
    assert "extract: reused" in rerun and "probe: inputs and settings unchanged" in rerun, rerun
    assert not (shared / "previous").exists(), rerun


def test_a_workdir_another_run_holds_stops_both_processes(tmp_path):
    logs = [tmp_path / f"process_{i}.log" for i in range(2)]
    (tmp_path / "run").mkdir()
    with workdir.Lock(str(tmp_path / "run")):
        _finish(_two_processes(tmp_path / "run", logs), logs, status=2)
    assert "another run is writing there" in logs[0].read_text()
    assert "process 0 could not lock it" in logs[1].read_text()
