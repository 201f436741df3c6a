"""A stop asked by a signal cannot be lost: if the exception its handler raised is swallowed (Python prints and
drops one raised inside a __del__), the next progress update raises it again; the CLI then exits 130 / 143."""

import os
import signal
import sys
import threading

import pytest

from alignment_jax import cli, stopping
from alignment_jax.progress import progress_bar

STOPS = [
    (signal.SIGINT, KeyboardInterrupt, 130, "interrupted"),
    (signal.SIGTERM, stopping.Terminated, 143, "terminated"),
]


class _SignalsInDel:
    """Sends `number` to this process from its __del__, where Python runs the handler and drops what it raises."""

    def __init__(self, number: int):
        self.number = number

    def __del__(self):
        os.kill(os.getpid(), self.number)
        sum(range(100))  # bytecodes after the kill: the handler runs here, inside __del__


def _swallowed_stop(number: int) -> list[type[BaseException]]:
    """A signal whose exception is raised, and lost, inside a __del__ (run as the object is freed): the types of
    the exceptions Python dropped (sys.unraisablehook)."""
    lost, hook = [], sys.unraisablehook
    sys.unraisablehook = lambda unraisable: lost.append(unraisable.exc_type)
    try:
        _SignalsInDel(number)  # freed at once: nothing refers to it
    finally:
        sys.unraisablehook = hook
    return lost


@pytest.mark.parametrize("mode", ["bar", "lines", "off"])
@pytest.mark.parametrize("number, raised", [stop[:2] for stop in STOPS])
def test_a_stop_swallowed_in_a_del_is_raised_again_at_the_next_progress_update(mode, number, raised):
    bar = progress_bar(10, "loop", mode)
    with stopping.raising_on_signals():
        assert _swallowed_stop(number) == [raised]  # it returns: the exception went nowhere
        with pytest.raises(raised):
            bar.update(1)
        with pytest.raises(raised):  # and at every one after
            bar.update(1)
    bar.close()


def test_outside_the_block_the_previous_handlers_are_back_and_updates_do_not_raise():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with stopping.raising_on_signals():
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(100))
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    bar = progress_bar(3, "loop", "lines")
    bar.update(1)  # the stop belonged to the block
    stopping.check()
    bar.close()


def test_other_threads_never_raise_a_stop():
    outcome = []
    with stopping.raising_on_signals():
        assert _swallowed_stop(signal.SIGINT) == [KeyboardInterrupt]
        worker = threading.Thread(target=lambda: outcome.append(stopping.check()))
        worker.start()
        worker.join()
        with pytest.raises(KeyboardInterrupt):
            stopping.check()
    assert outcome == [None]


@pytest.mark.parametrize("number, raised, status, word", STOPS)
def test_the_cli_exits_stopped_when_the_first_exception_was_lost(number, raised, status, word, tmp_path, capsys):
    updates = []

    def command(config, workdir_path):
        bar = progress_bar(1000, "loop", "lines")
        assert _swallowed_stop(number) == [raised]
        for _ in range(1000):
            bar.update(1)
            updates.append(1)
        return 0

    config = tmp_path / "config.py"
    config.write_text("import ml_collections\n\ndef get_config():\n    return ml_collections.ConfigDict()\n")
    assert cli.main(command, ["probe.py", f"--config={config}", f"--workdir={tmp_path / 'run'}"]) == status
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"{word}; rerun to resume" and updates == []
