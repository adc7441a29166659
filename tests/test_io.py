"""Atomic writes: the umask, temporaries removed (on failure, on SIGTERM, after a SIGKILL), and
several files written as one."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from advlab import io

SRC = str(Path(io.__file__).resolve().parents[1])


def _temporaries(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_files_get_0666_minus_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        io.write_bytes_atomic(tmp_path / "a.bin", b"x")
        io.write_files_atomic({tmp_path / "b.json": b"{}", tmp_path / "c.npz": b"y"})
    finally:
        os.umask(old)
    for name in ("a.bin", "b.json", "c.npz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), io.atomic_open(tmp_path / "f") as handle:
        handle.write(b"partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_write_files_atomic_replaces_all_or_none(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    io.write_files_atomic({a: b"old a", b: b"old b"})
    real = os.replace
    calls = []

    def fail_second_rename_in(src, dst):
        if ".tmp" in str(src) and not str(dst).endswith(".tmp"):
            calls.append(dst)
            if len(calls) == 2:
                raise OSError(5, "I/O error")
        return real(src, dst)

    monkeypatch.setattr(io.os, "replace", fail_second_rename_in)
    with pytest.raises(OSError):
        io.write_files_atomic({a: b"new a", b: b"new b"})
    assert (a.read_bytes(), b.read_bytes()) == (b"old a", b"old b")
    assert _temporaries(tmp_path) == []
    monkeypatch.setattr(io.os, "replace", real)
    io.write_files_atomic({a: b"new a", b: b"new b"})
    assert (a.read_bytes(), b.read_bytes()) == (b"new a", b"new b")


WRITER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from advlab import io
    {setup}
    with io.atomic_open(sys.argv[2]) as handle:
        handle.write(b"x" * 1_000_000)
        handle.flush()
        print("writing", flush=True)
        time.sleep(60)
    """
)


def _start_writer(target, setup=""):
    process = subprocess.Popen([sys.executable, "-c", WRITER.format(setup=setup), SRC, str(target)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing"
    return process


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    process = _start_writer(tmp_path / "checkpoint.safetensors")
    assert len(_temporaries(tmp_path)) == 1
    io.write_bytes_atomic(tmp_path / "other.json", b"{}")  # the writer still runs: its file stays
    assert len(_temporaries(tmp_path)) == 1
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len(_temporaries(tmp_path)) == 1  # SIGKILL cannot be caught
    io.write_bytes_atomic(tmp_path / "other.json", b"{}")
    assert _temporaries(tmp_path) == [] and not (tmp_path / "checkpoint.safetensors").exists()


def test_sigterm_under_the_cli_removes_the_temporary(tmp_path):
    setup = "from advlab.cli import checks\nsettings = checks.run_settings(1)\nsettings.__enter__()"
    process = _start_writer(tmp_path / "out.npz", setup)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    assert os.listdir(tmp_path) == []


def test_a_temporary_of_a_live_process_or_another_name_is_kept(tmp_path):
    other = tmp_path / "notes.123.tmp"  # not advlab's pattern
    other.write_text("mine")
    alive = tmp_path / f".x.{os.getppid()}.0123abcd.tmp"
    alive.write_text("a live process")
    io.write_bytes_atomic(tmp_path / "y", b"")
    assert other.exists() and alive.exists()
