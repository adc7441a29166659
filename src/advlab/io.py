"""Atomic writes: a file appears complete under its final name, or not at all.

Every write goes to a temporary file `.NAME.PID.RANDOM.tmp` beside the target, is flushed to
disk and renamed into place. The file gets the mode a plain `open()` would give it (0666 minus
the user's umask, not mkstemp's 0600). Temporary files are removed when the write fails, at
interpreter exit (`atexit`) for writes cut short by a signal that Python handles, and, for a
process killed outright (SIGKILL), by the next write into the same folder: a temporary file
whose process is gone is stale. `write_files_atomic` writes several files as one: either all
new versions appear, or (when any write fails) the old ones stay.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

_TEMP = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$")
_LIVE: set[Path] = set()  # temporary files this process is writing right now


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. a process of another user
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete advlab temporary files in `folder` left by processes that no longer run."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            match = _TEMP.match(entry.name)
            path = Path(entry.path)
            if not match or path in _LIVE:
                continue
            pid = int(match.group(1))
            if pid == os.getpid() or not _alive(pid):  # our pid, not ours: an earlier process had it
                with contextlib.suppress(OSError):
                    os.unlink(path)
                    removed.append(path)
    return removed


@atexit.register
def _remove_live_temporaries() -> None:
    for path in list(_LIVE):
        with contextlib.suppress(OSError):
            os.unlink(path)


def _create_temporary(path: Path) -> tuple[int, Path]:
    """An exclusive new temporary file beside `path`; mode 0666 minus the umask, as open() gives."""
    while True:
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        _LIVE.add(tmp)
        return fd, tmp


def _discard(tmp: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    _LIVE.discard(tmp)


@contextlib.contextmanager
def _temporary(path: Path) -> Iterator[tuple[BinaryIO, Path]]:
    """A temporary file beside `path`, written, flushed and fsynced; removed if the block fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle, tmp
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        _discard(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a temporary file beside `path` for binary writing; rename it into place on success."""
    path = Path(path)
    with _temporary(path) as (handle, tmp):
        yield handle
    try:
        os.replace(tmp, path)
    finally:
        _discard(tmp)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path) as handle:
        handle.write(data)


def write_files_atomic(files: Mapping[str | os.PathLike[str], bytes]) -> None:
    """Write several files so that either all the new versions appear or none does.

    All contents are written to temporary files first (a failure there changes nothing); the old
    versions are then moved aside, the new ones renamed in, and the old ones deleted. Should a
    rename fail, the new files placed so far are removed and the old versions put back.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for target, data in files.items():
            target = Path(target)
            with _temporary(target) as (handle, tmp):
                handle.write(data)
            staged.append((target, tmp))
        _swap_in(staged)
    finally:
        for _, tmp in staged:
            _discard(tmp)


def _swap_in(staged: list[tuple[Path, Path]]) -> None:
    backups: list[tuple[Path, Path]] = []
    placed: list[Path] = []
    try:
        for target, _ in staged:
            if target.exists():
                fd, backup = _create_temporary(target)
                os.close(fd)
                os.replace(target, backup)
                backups.append((target, backup))
        for target, tmp in staged:
            os.replace(tmp, target)
            placed.append(target)
    except BaseException:
        for target in placed:
            with contextlib.suppress(OSError):
                os.unlink(target)
        for target, backup in backups:
            with contextlib.suppress(OSError):
                os.replace(backup, target)
        raise
    finally:
        for _, backup in backups:
            _discard(backup)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def npz_bytes(**arrays: np.ndarray) -> bytes:
    """A compressed .npz of named arrays, in memory."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode("utf-8")


def write_npz_atomic(path: str | os.PathLike[str], **arrays: np.ndarray) -> None:
    """A compressed .npz of named arrays."""
    write_bytes_atomic(path, npz_bytes(**arrays))


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    write_bytes_atomic(path, json_bytes(obj))
