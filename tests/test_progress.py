"""advlab.progress: a bar on a terminal or when forced, an ETA line every 30 s in a log, nothing when quiet."""

from __future__ import annotations

import io

import pytest
import tqdm.std as tqdm_std

from advlab import progress
from advlab.progress import EtaLines, eta_line, progress_bar, set_progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def auto_mode():
    set_progress("auto")
    yield
    set_progress("auto")


def _run(stream, steps=3, **kwargs):
    bar = progress_bar(steps, "work", file=stream, **kwargs)
    for _ in range(steps):
        bar.update(1)
    bar.close()
    return bar


def test_a_terminal_gets_a_bar():
    stream = Terminal()
    bar = _run(stream)
    assert not isinstance(bar, EtaLines)
    assert "work" in stream.getvalue() and "\r" in stream.getvalue()


def test_a_log_gets_no_bar_and_no_line_for_a_short_step():
    stream = io.StringIO()
    bar = _run(stream)
    assert isinstance(bar, EtaLines)
    assert stream.getvalue() == ""


def test_a_log_gets_one_plain_line_per_interval(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(tqdm_std, "time", lambda: clock[0])
    stream = io.StringIO()
    bar = progress_bar(100, "certify: crown bounds", file=stream, unit="batch")
    for _ in range(100):
        clock[0] += 1.0  # one step a second: lines at 30, 60 and 90 s
        bar.update(1)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines == [
        "certify: crown bounds: 30/100 batch (30%), elapsed 00:30, ETA 01:10",
        "certify: crown bounds: 60/100 batch (60%), elapsed 01:00, ETA 00:40",
        "certify: crown bounds: 90/100 batch (90%), elapsed 01:30, ETA 00:10",
    ]
    assert "\r" not in stream.getvalue() and "|" not in stream.getvalue()


def test_forced_draws_a_bar_in_a_log():
    set_progress("always")
    stream = io.StringIO()
    bar = _run(stream)
    assert not isinstance(bar, EtaLines) and "work" in stream.getvalue()


@pytest.mark.parametrize("quiet", ["mode", "caller"])
def test_quiet_writes_nothing_even_on_a_terminal(quiet):
    if quiet == "mode":
        set_progress("never")
    stream = Terminal()
    bar = progress_bar(3, "work", file=stream, enabled=quiet != "caller")
    assert bar.disable
    bar.update(3)
    bar.close()
    assert stream.getvalue() == ""


def test_iterating_yields_every_item():
    assert list(progress_bar(3, "x", iterable=iter("abc"), file=io.StringIO())) == ["a", "b", "c"]


def test_eta_line_without_total_or_progress():
    assert eta_line("milp", 4, None, 65.0, "image") == "milp: 4 image, elapsed 01:05"
    assert eta_line("milp", 0, 10, 31.0, "image") == "milp: 0/10 image (0%), elapsed 00:31, ETA ?"


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="progress mode"):
        set_progress("sometimes")
    assert progress.progress_mode() == "auto"
