"""Stopping a run on a signal: SIGINT raises KeyboardInterrupt and SIGTERM raises Terminated in the main thread,
at once, and again at every later progress update, so that a stop cannot be lost.

It can be lost otherwise: Python runs a signal's handler wherever the main thread is, including inside a
__del__ method or a weakref callback during garbage collection, and an exception raised there is printed
("Exception ignored in ...") and dropped; the run would go on as if nothing had been asked.
"""

import contextlib
import signal
import threading
from collections.abc import Iterator


class Terminated(BaseException):
    """SIGTERM, raised where the program is, so a batch system's stop cleans up like Ctrl-C does."""


_STOPS = {signal.SIGINT: KeyboardInterrupt, signal.SIGTERM: Terminated}
_received: list[type[BaseException]] = []  # the stops asked for within `raising_on_signals`, in order


def _raise_stop(signum: int, frame) -> None:
    _received.append(_STOPS[signum])
    raise _STOPS[signum]()


@contextlib.contextmanager
def raising_on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise KeyboardInterrupt and Terminated, and `check()` raises them
    again; the previous handlers come back after it. Off the main thread (where Python cannot set handlers)
    nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    previous = {number: signal.signal(number, _raise_stop) for number in _STOPS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        _received.clear()


def check() -> None:
    """Raises the last stop a signal asked for within `raising_on_signals`, in the main thread; returns
    elsewhere and when none came."""
    if _received and threading.current_thread() is threading.main_thread():
        raise _received[-1]()
