"""Keeping the memory that XLA:CPU frees inside the process, so a sweep does not fault its pages in every step.

XLA:CPU allocates a program's buffers afresh on every call (a THINGS-scale probe epoch: some 2 GB in blocks of
tens of MB) and frees them after it. glibc's malloc hands blocks that large back to the kernel (munmap, or
trimming the heap), so the next call faults every page in again; on this project's 2-core VM that was 29 s
of a probe sweep's 203 s of CPU time, spent in the kernel (docs/performance.md). `keep_freed_memory()` tells
malloc to serve every block from one heap that it never returns: freed pages stay mapped and are reused,
and the process's resident memory stays at its peak. It must run before the first JAX computation: the
threads XLA starts then keep the allocator arenas they made. The command lines call it first; in a notebook
call it before anything else (or set MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736
before Python starts).
"""

import ctypes
import ctypes.util
import os
import sys

OPT_OUT = "ALIGNMENT_JAX_KEEP_FREED_MEMORY"  # "0": leave malloc as it is
_USER_SETTINGS = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
# mallopt(3) parameters; a negative value wraps to the largest size_t (glibc's mallopt says so)
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_SETTINGS = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))


def keep_freed_memory() -> bool:
    """On Linux with glibc: one malloc arena, no block of its own mapping, the heap never trimmed; returns
    whether it was set. Left alone elsewhere, with ALIGNMENT_JAX_KEEP_FREED_MEMORY=0, or where the
    environment already sets malloc's behaviour (the variables in the module docstring, GLIBC_TUNABLES)."""
    if not sys.platform.startswith("linux") or os.environ.get(OPT_OUT) == "0":
        return False
    if any(name in os.environ for name in _USER_SETTINGS):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if not hasattr(libc, "gnu_get_libc_version"):  # musl and others: no mallopt of these parameters
        return False
    return all(libc.mallopt(parameter, value) == 1 for parameter, value in _SETTINGS)
