"""host_memory.keep_freed_memory: freed blocks stay mapped (no page faults when they are reused), and the
user's own malloc settings or the opt-out leave malloc alone."""

import os
import subprocess
import sys

import pytest

from alignment_jax import host_memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")

# allocates, touches and frees a 64 MB block four times; prints whether the setting applied and the most page
# faults that one of the later rounds took (a block handed back to the kernel faults all its 16k pages again)
REUSE = """
import ctypes, resource
from alignment_jax import host_memory
applied = host_memory.keep_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
size, faults = 64 << 20, []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, max(faults[1:]))
"""


def _reuse(env: dict[str, str]) -> tuple[bool, int]:
    clean = {k: v for k, v in os.environ.items() if k not in host_memory._USER_SETTINGS}
    command = [sys.executable, "-c", REUSE]
    out = subprocess.run(command, env={**clean, **env}, capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


def test_freed_blocks_are_reused_without_faulting_their_pages_in_again():
    applied, faults = _reuse({})
    if not applied:
        pytest.skip("not glibc: mallopt's parameters unknown")
    assert faults < 200, f"{faults} page faults reusing a freed 64 MB block (16,384 pages)"


def _huge_pages_always() -> bool:
    """Transparent huge pages for every mapping: a fresh 64 MB block then faults in 2 MB pages (a few dozen)."""
    path = "/sys/kernel/mm/transparent_hugepage/enabled"
    return os.path.exists(path) and "[always]" in open(path).read()


def test_opting_out_leaves_malloc_alone_and_freed_blocks_fault_again():
    if _huge_pages_always():
        pytest.skip("transparent huge pages [always]: a fresh block faults in a few 2 MB pages, not 16k")
    applied, faults = _reuse({host_memory.OPT_OUT: "0"})
    assert not applied
    assert faults > 4000, "the default malloc returns a 64 MB block to the kernel: its pages fault again"


def test_the_users_own_malloc_settings_win(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert host_memory.keep_freed_memory() is False


def test_the_command_lines_set_it_before_anything_runs(monkeypatch):
    from alignment_jax import cli

    calls = []
    monkeypatch.setattr(host_memory, "keep_freed_memory", lambda: calls.append("keep_freed_memory"))
    monkeypatch.setattr(cli, "main", lambda command, argv: calls.append("main") or 0)
    with pytest.raises(SystemExit):
        cli.run_app(lambda config, workdir: 0)
    assert calls == ["keep_freed_memory", "main"]
