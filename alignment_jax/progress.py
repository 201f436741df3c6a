"""Progress of the slow loops (extraction, the probe sweep): a bar on a terminal, a few plain lines elsewhere.

Modes (`config.progress`; a library function's `progress` argument also takes True = auto, False = off):
  auto   a tqdm bar when stderr is a terminal or the code runs in a notebook, else milestone lines
  bar    always a bar
  lines  plain milestone lines: at each quarter of the total (unless the last line is under QUIET_S old),
         at least one every LINE_EVERY_S seconds of a long loop, and one at the end, such as
         `extract: 150/300 img, 1.2 s, 125.0 img/s`; no carriage returns, so a log file or CI output
         holds a few lines per loop (a short loop: just the end line)
  off    nothing
Every mode writes to stderr, as tqdm does; the results printed on stdout stay apart. Every update checks
for a stop that a signal asked for (alignment_jax/stopping.py): the slow loops are where a lost one shows.
"""

import sys
import time
from typing import Any

from tqdm.auto import tqdm

from alignment_jax import stopping
from alignment_jax.errors import InputError

MODES = ("auto", "bar", "lines", "off")
QUIET_S = 10.0
LINE_EVERY_S = 300.0


def check_mode(mode: str | bool) -> str:
    """The mode named by `mode` (True = auto, False = off); InputError for anything else."""
    if mode is True or mode is False:
        return "auto" if mode else "off"
    if mode not in MODES:
        raise InputError(f"progress: {mode!r} is not one of {MODES} (auto: a bar on a terminal, plain lines elsewhere)")
    return mode


def interactive() -> bool:
    """Whether a bar reads well here: stderr is a terminal, or this is a Jupyter kernel."""
    stream = sys.stderr
    if stream is not None and hasattr(stream, "isatty") and stream.isatty():
        return True
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def progress_bar(total: int, desc: str, mode: str | bool = "auto", unit: str = "it", initial: int = 0) -> Any:
    """An object with tqdm's `update(n)`, `set_postfix(dict)` and `close()`, reporting as `mode` says.

    total: the count at which the loop is complete; initial: the count already done before (a resumed
    extraction), left out of the rate."""
    mode = check_mode(mode)
    if mode == "auto":
        mode = "bar" if interactive() else "lines"
    if mode == "bar":
        return _Bar(total=total, initial=initial, desc=desc, unit=unit, smoothing=0.1)
    if mode == "lines":
        return MilestoneLines(total, desc, unit, initial)
    return _Bar(total=total, disable=True)


class _Bar(tqdm):
    """tqdm whose updates check for a stop (stopping.check)."""

    def update(self, n: float = 1) -> bool | None:
        stopping.check()
        return super().update(n)


class MilestoneLines:
    """Plain progress lines (`desc: count/total unit, seconds, rate unit/s, postfix`) on stderr: at each
    quarter of `total` at least QUIET_S after the previous line (or the start), after LINE_EVERY_S seconds
    without a line, and once at `close()`."""

    def __init__(self, total: int, desc: str, unit: str = "it", initial: int = 0, stream: Any = None):
        self.total, self.desc, self.unit, self.initial = total, desc, unit, initial
        self.count = initial
        self.postfix: dict[str, Any] = {}
        self.stream = stream
        self.start = self.last_line = time.perf_counter()
        self.next_quarter = self._quarter_after(initial)
        self.closed = False

    def _quarter_after(self, count: int) -> int:
        """The first quarter mark of `total` above `count` (total + 1 when there is none: the end line says it)."""
        for quarter in (1, 2, 3):
            mark = -(-self.total * quarter // 4)
            if mark > count:
                return mark
        return self.total + 1

    def update(self, n: int = 1) -> None:
        stopping.check()
        self.count += n
        now = time.perf_counter()
        quiet = now - self.last_line
        if (self.count >= self.next_quarter and quiet >= QUIET_S) or quiet >= LINE_EVERY_S:
            self._line(now)
        if self.count >= self.next_quarter:
            self.next_quarter = self._quarter_after(self.count)

    def set_postfix(self, postfix: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.postfix = {**(postfix or {}), **kwargs}

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._line(time.perf_counter())

    def _line(self, now: float) -> None:
        self.last_line = now
        seconds = now - self.start
        rate = (self.count - self.initial) / seconds if seconds > 0 else 0.0
        shown = f"{rate:.1f}" if rate >= 1 or rate == 0 else f"{rate:.2g}"  # 0.017 img/s, not 0.0
        parts = [f"{self.desc}: {self.count}/{self.total} {self.unit}", f"{seconds:.1f} s", f"{shown} {self.unit}/s"]
        parts += [f"{k} {v}" for k, v in self.postfix.items()]
        print(", ".join(parts), file=self.stream or sys.stderr, flush=True)
