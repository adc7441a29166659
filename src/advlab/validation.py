"""Argument checks, in one place: every public entry point validates through these.

Each check returns the normalised value (a float, an int, a long tensor) or raises an
`InputError` with a one-line message naming the argument. Nothing here imports above
`advlab.errors`, so every layer may use it.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch

from advlab.errors import InputError

Bounds = tuple[float, float]
NORMS = ("linf", "l2", "l1")  # every norm advlab knows; each solver or attack names the ones it supports


def check_bounds(bounds: Bounds) -> Bounds:
    """(low, high), finite, low < high."""
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise InputError(f"bounds must be two numbers (low, high), got {bounds!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise InputError(f"bounds must be finite with low < high, got {bounds}")
    return lo, hi


def check_number(name: str, value: Any) -> float:
    """A real number as float (a bool or a string is refused; 0-d tensors and arrays are fine)."""
    if isinstance(value, (bool, str, bytes)):
        raise InputError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        raise InputError(f"{name} must be a number, got {value!r}") from None


def check_positive(name: str, value: float) -> float:
    """A finite number > 0."""
    value = check_number(name, value)
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"{name} must be a finite number > 0, got {value}")
    return value


def check_nonnegative(name: str, value: float) -> float:
    """A finite number >= 0."""
    value = check_number(name, value)
    if not math.isfinite(value) or value < 0:
        raise InputError(f"{name} must be a finite number >= 0, got {value}")
    return value


def check_count(name: str, value: int, minimum: int = 1) -> int:
    """A true integer >= minimum: 2.5, True and "3" are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_norm(norm: str, supported: tuple[str, ...] = NORMS) -> str:
    """One of `supported` (a subset of NORMS)."""
    if not isinstance(norm, str) or norm not in supported:
        raise InputError(f"norm must be one of {', '.join(supported)}, got {norm!r}")
    return norm


def check_eps(eps: float, bounds: Bounds, *, norm: str = "linf") -> float:
    """eps must be finite and >= 0; under L-inf it cannot exceed the width of the box."""
    eps = check_nonnegative("eps", eps)
    width = bounds[1] - bounds[0]
    if norm == "linf" and eps > width:
        raise InputError(f"eps={eps} exceeds the width of the bounds {bounds} ({width})")
    return eps


def as_tensor(name: str, value: Any) -> torch.Tensor:
    """A tensor as is; anything array-like converted (numpy arrays share memory)."""
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputError(f"{name} must be a tensor or array: {exc}") from None


def check_labels(name: str, labels: Any, n: int, num_classes: int | None = None) -> torch.Tensor:
    """(n,) integer class labels (in 0..num_classes-1 when given), as a long tensor."""
    labels = as_tensor(name, labels)
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise InputError(f"{name} must hold integer class labels, got dtype {labels.dtype}")
    if labels.shape != (n,):
        raise InputError(f"{name} must have shape ({n},) to match x, got {tuple(labels.shape)}")
    labels = labels.long()
    if num_classes is not None and bool(((labels < 0) | (labels >= num_classes)).any()):
        raise InputError(f"{name} must lie in 0..{num_classes - 1}")
    return labels


def check_images(name: str, x: Any, bounds: Bounds) -> torch.Tensor:
    """A non-empty floating batch (N, ...) of finite values inside `bounds`."""
    x = as_tensor(name, x)
    if not x.dtype.is_floating_point:
        raise InputError(f"{name} must be a floating tensor (float32 or float64), got {x.dtype}")
    if x.ndim < 2 or x.shape[0] == 0:
        raise InputError(f"{name} must be a non-empty batch of shape (N, ...), got {tuple(x.shape)}")
    lo, hi = x.aminmax()  # NaN propagates into both, inf shows as an extreme
    lo, hi = float(lo), float(hi)
    if math.isnan(lo) or math.isnan(hi) or math.isinf(lo) or math.isinf(hi):
        raise InputError(f"{name} contains NaN or inf")
    if lo < bounds[0] or hi > bounds[1]:
        raise InputError(f"{name} has values in [{lo:.4g}, {hi:.4g}], outside the declared bounds {bounds}")
    return x
