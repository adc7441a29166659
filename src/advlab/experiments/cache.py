"""A stage cache for long experiments: one folder, one atomic file per finished stage.

A stage whose entry exists is read instead of recomputed, so a killed run resumes where it
stopped. Entries are JSON documents (`json_stage`, `read_json`) or files the caller writes at
`path(...)` (checkpoints, attack results). An entry that cannot be read (cut short by a kill
before writes were atomic, or damaged since) is recomputed with a `CacheWarning` naming it
(`corrupt`), never a traceback.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from advlab.io import write_json_atomic

T = TypeVar("T")


class CacheWarning(UserWarning):
    """A cache entry could not be read and is being recomputed."""


class StageCache:
    """Files under `root`; every write is atomic."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def corrupt(self, path: Path, error: Exception) -> None:
        """Warn that `path` is unreadable and remove it, so that it is recomputed."""
        warnings.warn(f"cache entry {path} is unreadable ({type(error).__name__}: {error}); recomputing it", CacheWarning, stacklevel=3)
        path.unlink(missing_ok=True)

    def json_stage(
        self, name: str, compute: Callable[[], T], encode: Callable[[T], Any], decode: Callable[[Any], T]
    ) -> tuple[T, float]:
        """(value, seconds spent computing it now: 0.0 when read from `stages/<name>.json`)."""
        path = self.path("stages", f"{name}.json")
        if path.is_file():
            try:
                return decode(json.loads(path.read_text())), 0.0
            except (ValueError, KeyError, TypeError) as error:
                self.corrupt(path, error)
        start = time.perf_counter()
        value = compute()
        write_json_atomic(path, encode(value))
        return value, time.perf_counter() - start

    def read_json(self, *parts: str) -> Any | None:
        """A JSON entry, or None when it is missing or unreadable (then removed)."""
        path = self.path(*parts)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except ValueError as error:
            self.corrupt(path, error)
            return None

    def write_json(self, value: Any, *parts: str) -> None:
        write_json_atomic(self.path(*parts), value)
