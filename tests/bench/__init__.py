"""Tests of the scripts in bench/ (not a package of advlab): `bench_script` loads one by name."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch

BENCH = Path(__file__).resolve().parents[2] / "bench"


def bench_script(name: str) -> ModuleType:
    """bench/NAME.py as a module, registered in sys.modules (its dataclasses look their module up)."""
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def vnnlib_box(x: torch.Tensor, eps: float, outputs: int, *, clip: bool) -> list[str]:
    """VNN-LIB lines declaring X_i and Y_j and bounding X to the L-inf ball of eps around x
    (intersected with [0, 1] when `clip`)."""
    lines = [f"(declare-const X_{i} Real)" for i in range(len(x))] + [f"(declare-const Y_{j} Real)" for j in range(outputs)]
    for i, v in enumerate(x.tolist()):
        high, low = (min(v + eps, 1.0), max(v - eps, 0.0)) if clip else (v + eps, v - eps)
        lines += [f"(assert (<= X_{i} {high!r}))", f"(assert (>= X_{i} {low!r}))"]
    return lines
