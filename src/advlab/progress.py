"""Every progress display of advlab is made here, so that one rule decides what a user sees:

- on a terminal (stderr is a TTY), or when forced (`set_progress("always")`, the CLI's
  --progress): a tqdm bar with rate and ETA;
- in a log or a pipe: no bar, but one plain line `DESC: N/TOTAL (P%), elapsed M:SS, ETA M:SS`
  every `ETA_INTERVAL` seconds (nothing for a step that ends sooner);
- nothing at all when quiet (`set_progress("never")`, the CLI's -q or --no-progress), or when
  the caller passes `enabled=False` (an API function's `progress=False`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TextIO

from tqdm.auto import tqdm as terminal_tqdm
from tqdm.std import tqdm

MODES = ("auto", "always", "never")
ETA_INTERVAL = 30.0  # seconds between two ETA lines in a log
_mode = "auto"


def set_progress(mode: str) -> None:
    """auto (bars on a terminal, ETA lines in a log), always (bars even in a log) or never."""
    global _mode
    if mode not in MODES:
        raise ValueError(f"progress mode must be one of {MODES}, got {mode!r}")
    _mode = mode


def progress_mode() -> str:
    return _mode


def _clock(seconds: float) -> str:
    return tqdm.format_interval(seconds)


def eta_line(desc: str, n: float, total: float | None, elapsed: float, unit: str) -> str:
    """One log line: done / total, elapsed time and the ETA at the mean rate so far (n / elapsed)."""
    if not total:
        return f"{desc}: {n:g} {unit}, elapsed {_clock(elapsed)}"
    remaining = (total - n) * elapsed / n if n else float("nan")
    eta = _clock(remaining) if n else "?"
    return f"{desc}: {n:g}/{total:g} {unit} ({100 * n / total:.0f}%), elapsed {_clock(elapsed)}, ETA {eta}"


class EtaLines(tqdm):
    """A tqdm that, instead of redrawing a bar, writes `eta_line` once every `interval` seconds."""

    def __init__(self, *args: Any, interval: float = ETA_INTERVAL, **kwargs: Any) -> None:
        self.interval, self.last_line = interval, 0.0
        super().__init__(*args, mininterval=interval, leave=False, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg is not None:  # tqdm clearing its line (on close): nothing to clear in a log
            return False
        state = self.format_dict
        if state["elapsed"] - self.last_line < self.interval:
            return True
        self.last_line = state["elapsed"]
        self.fp.write(eta_line(self.desc.rstrip(": ") or "progress", state["n"], state["total"], state["elapsed"], self.unit) + "\n")
        self.fp.flush()
        return True


def progress_bar(total: int | None, desc: str, *, enabled: bool = True, unit: str = "img",
                 iterable: Iterable[Any] | None = None, file: TextIO | None = None) -> tqdm:
    """A progress display for `total` steps (or over `iterable`), by the rule of the module docstring."""
    stream = sys.stderr if file is None else file
    if not enabled or _mode == "never":
        return tqdm(iterable, total=total, disable=True)
    if _mode == "always" or (hasattr(stream, "isatty") and stream.isatty()):
        return terminal_tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True, file=stream)
    return EtaLines(iterable, total=total, desc=desc, unit=unit, file=stream)
