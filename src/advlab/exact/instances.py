"""A VNN-COMP benchmark folder: instances.csv in, one verdict per instance out.

instances.csv has one instance per row, no header: `ONNX,VNNLIB,TIMEOUT` (paths relative to
the csv's folder, timeout in seconds). `read_instances` checks every row before any work.
`run_instances` decides them with `verify_property` (each within its own timeout: loading
the network and the property counts) and keeps the results in a CSV

    onnx,vnnlib,timeout,result,method,seconds,note

rewritten atomically after each instance, rows in the order of instances.csv. A run that is
stopped resumes: instances already in the results file are not decided again. `workers`
processes share the instances; every instance is decided from the same seed in whichever
process takes it, so the verdicts do not depend on the number of workers. A counterexample
is written beside the results as `<results stem>.cex/<row>.txt` in VNN-COMP's format.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import torch

from advlab.errors import AdvlabError, InputError
from advlab.exact.properties import Verdict, verify_property
from advlab.formats.onnx import load_onnx
from advlab.formats.vnnlib import format_counterexample, read_vnnlib
from advlab.io import write_bytes_atomic, write_text_atomic

COLUMNS = ("onnx", "vnnlib", "timeout", "result", "method", "seconds", "note")


@dataclass(frozen=True)
class Instance:
    row: int
    onnx: str  # as written in instances.csv
    vnnlib: str
    timeout: float
    folder: Path

    @property
    def key(self) -> tuple[str, str]:
        return self.onnx, self.vnnlib


def read_instances(path: str | os.PathLike[str]) -> list[Instance]:
    """The rows of instances.csv, each checked (three fields, files present, timeout > 0)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--instances {path}: no such file")
    folder = path.parent
    out = []
    for number, row in enumerate(csv.reader(io.StringIO(path.read_text())), start=1):
        if not row or all(not f.strip() for f in row):
            continue
        if len(row) != 3:
            raise InputError(f"{path}:{number}: expected ONNX,VNNLIB,TIMEOUT, got {len(row)} fields")
        onnx, vnnlib, timeout = (f.strip() for f in row)
        for name in (onnx, vnnlib):
            if not (folder / name).is_file():
                raise InputError(f"{path}:{number}: {name}: no such file (paths are relative to the csv's folder)")
        try:
            seconds = float(timeout)
        except ValueError:
            raise InputError(f"{path}:{number}: timeout {timeout!r} is not a number") from None
        if not math.isfinite(seconds) or seconds <= 0:
            raise InputError(f"{path}:{number}: timeout {timeout!r} must be a finite number > 0")
        out.append(Instance(len(out), onnx, vnnlib, seconds, folder))
    if not out:
        raise InputError(f"--instances {path}: no instances")
    return out


def result_file(verdict: Verdict) -> str:
    """VNN-COMP's result file: the verdict on the first line, then for sat the counterexample."""
    if verdict.status == "sat":
        return "sat\n" + format_counterexample(verdict.counterexample, verdict.outputs)
    return verdict.status + "\n"


def verify_files(onnx: str | os.PathLike[str], vnnlib: str | os.PathLike[str], timeout: float, *, seed: int = 0) -> Verdict:
    """Load the network and the property and decide it; `timeout` bounds all of it."""
    start = time.perf_counter()
    model = load_onnx(onnx)
    prop = read_vnnlib(vnnlib)
    left = timeout - (time.perf_counter() - start)
    if left <= 0:
        return Verdict("timeout", seconds=time.perf_counter() - start, notes=["loading used the whole budget"])
    verdict = verify_property(model, prop, timeout=left, seed=seed)
    verdict.seconds = time.perf_counter() - start
    return verdict


def _decide(instance: Instance, seed: int) -> tuple[Instance, Verdict]:
    torch.set_num_threads(1)
    try:
        verdict = verify_files(instance.folder / instance.onnx, instance.folder / instance.vnnlib, instance.timeout,
                               seed=seed)
    except AdvlabError as exc:  # a network or property advlab cannot read: that instance only
        verdict = Verdict("unknown", notes=[" ".join(str(exc).split())])
    return instance, verdict


def _read_results(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    if not path.is_file():
        return {}
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    if rows and set(rows[0]) != set(COLUMNS):
        raise InputError(f"--out {path}: exists and is not an advlab verify results file (columns {list(rows[0])})")
    return {(r["onnx"], r["vnnlib"]): r for r in rows}


def _write_results(path: Path, instances: list[Instance], done: dict[tuple[str, str], dict[str, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for instance in instances:
        if instance.key in done:
            writer.writerow(done[instance.key])
    write_text_atomic(path, buffer.getvalue())


def run_instances(
    instances: list[Instance], out: str | os.PathLike[str], *, workers: int = 1, seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[tuple[str, str], dict[str, str]]:
    """Decide every instance not yet in `out` (module docstring); returns all result rows by
    (onnx, vnnlib). `progress(done, total)` is called after each instance."""
    out = Path(out)
    done = _read_results(out)
    todo = [i for i in instances if i.key not in done]
    cex = out.with_suffix(".cex")

    def record(instance: Instance, verdict: Verdict) -> None:
        done[instance.key] = {"onnx": instance.onnx, "vnnlib": instance.vnnlib, "timeout": f"{instance.timeout:g}",
                              "result": verdict.status, "method": verdict.method, "seconds": f"{verdict.seconds:.3f}",
                              "note": "; ".join(verdict.notes)}
        if verdict.status == "sat":
            cex.mkdir(exist_ok=True)
            write_bytes_atomic(cex / f"{instance.row}.txt", result_file(verdict).encode())
        _write_results(out, instances, done)
        if progress is not None:
            progress(sum(i.key in done for i in instances), len(instances))

    if workers == 1 or len(todo) <= 1:
        for instance in todo:
            record(*_decide(instance, seed))
        return done
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_decide, instance, seed) for instance in todo]
        for future in as_completed(futures):
            record(*future.result())
    return done
