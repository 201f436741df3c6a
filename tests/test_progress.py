"""Progress: plain milestone lines where no terminal shows a bar, nothing when off."""

import io

import pytest

from alignment_jax import progress
from alignment_jax.errors import InputError


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_milestone_lines_at_quarters_not_too_often_and_at_the_end(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    out = io.StringIO()
    lines = progress.MilestoneLines(100, "extract", "img", initial=20, stream=out)
    for _ in range(80):  # 20 -> 100, one image per second: quarters at 25, 50, 75
        clock.now += 1.0
        lines.update(1)
    lines.set_postfix({"done": "3/3"})
    lines.close()
    lines.close()
    got = out.getvalue().splitlines()
    assert got == [  # none at 25: 5 s after the start
        "extract: 50/100 img, 30.0 s, 1.0 img/s",  # the rate leaves out the 20 done before
        "extract: 75/100 img, 55.0 s, 1.0 img/s",
        "extract: 100/100 img, 80.0 s, 1.0 img/s, done 3/3",
    ]


def test_a_short_loop_gets_one_line_and_a_long_quiet_one_a_line_every_few_minutes(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    out = io.StringIO()
    short = progress.MilestoneLines(40, "probe sweep", "epochs", stream=out)
    for _ in range(40):
        clock.now += 0.01
        short.update(1)
    short.close()
    assert out.getvalue().count("\n") == 1 and "40/40 epochs" in out.getvalue()
    out = io.StringIO()
    slow = progress.MilestoneLines(1000, "extract", "img", stream=out)
    for _ in range(9):  # under 1% of the total, one image a minute
        clock.now += 60.0
        slow.update(1)
    assert out.getvalue().splitlines() == [f"extract: 5/1000 img, {5 * 60.0:.1f} s, 0.017 img/s"]  # not 0.0


def test_modes(monkeypatch, capsys):
    monkeypatch.setattr(progress, "interactive", lambda: False)
    assert isinstance(progress.progress_bar(10, "x", "auto"), progress.MilestoneLines)
    assert isinstance(progress.progress_bar(10, "x", True), progress.MilestoneLines)
    off = progress.progress_bar(10, "x", False)
    off.update(10)
    off.close()
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(progress, "interactive", lambda: True)
    assert not isinstance(progress.progress_bar(10, "x", "auto"), progress.MilestoneLines)
    with pytest.raises(InputError, match="progress: 'loud' is not one of"):
        progress.check_mode("loud")
