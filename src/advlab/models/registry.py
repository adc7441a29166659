"""Model registry: a name maps to a builder, its default architecture and training settings.

`build_model(name, seed=...)` draws the initial weights from a generator seeded with `seed`
(torch's CPU generator, forked, so the caller's RNG state is left untouched): the same name,
architecture and seed give the same initial weights in every process.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from advlab.errors import InputError, UnknownNameError


MAX_WIDTH = 1 << 20  # largest integer an architecture may hold (a layer width, a count)
MAX_DEPTH = 64  # longest list of widths
MAX_PARAMETERS = 1 << 28  # largest model (1 GiB of float32) a checkpoint or a request may build


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    description: str
    architecture: dict[str, Any] = field(default_factory=dict)  # builder keyword defaults
    training: dict[str, Any] = field(default_factory=dict)  # defaults for TrainConfig
    fixed: bool = False  # the name states the architecture (mlp-20-20): a checkpoint may not differ


_REGISTRY: dict[str, ModelSpec] = {}


def register(
    name: str, *, description: str, training: dict[str, Any] | None = None, fixed: bool = False, **architecture: Any
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a builder under `name` with its default architecture keywords; `fixed`
    when the name itself states the architecture (then a checkpoint under it must match it)."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = ModelSpec(name, builder, description, dict(architecture), dict(training or {}), fixed)
        return builder

    return decorate


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownNameError(f"unknown model {name!r}; known models: {known}") from None


def build_model(name: str, *, seed: int = 0, **architecture: Any) -> nn.Module:
    """Build a registered model (on the CPU) with initial weights drawn from `seed`; keywords
    override its default architecture. Same as `torch.manual_seed(seed)` then the builder, but
    the global RNG is restored afterwards."""
    spec = get_spec(name)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"seed must be an integer, got {seed!r}")
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return spec.builder(**{**spec.architecture, **architecture})


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def _check_value(key: str, default: Any, value: Any) -> Any:
    """`value` typed like the registered `default`: an int, a float, a string or a list of ints."""
    where = f"architecture {key}={value!r}"
    if isinstance(value, bool) != isinstance(default, bool):
        raise InputError(f"{where}: expected {type(default).__name__}")
    if isinstance(default, bool):
        return value
    if isinstance(default, int):
        if not isinstance(value, int) or not 1 <= value <= MAX_WIDTH:
            raise InputError(f"{where}: expected an integer in 1..{MAX_WIDTH}")
        return value
    if isinstance(default, float):
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputError(f"{where}: expected a finite number")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str) or len(value) > 64:
            raise InputError(f"{where}: expected a short string")
        return value
    if isinstance(default, (tuple, list)):
        if not isinstance(value, (tuple, list)) or len(value) > MAX_DEPTH:
            raise InputError(f"{where}: expected a list of at most {MAX_DEPTH} integers")
        return [_check_value(key, 1, v) for v in value]
    raise InputError(f"{where}: cannot be set")  # pragma: no cover  (every registered default is one of the above)


def check_architecture(name: str, architecture: Any, *, stored: bool = False) -> dict[str, Any]:
    """The full keyword set for `name`'s builder, with `architecture` checked against the
    registered defaults' keys and types, before anything is built. `stored`: it comes from a
    checkpoint, so a model whose name states its architecture must have exactly that."""
    spec = get_spec(name)
    if not isinstance(architecture, dict):
        raise InputError(f"architecture of {name!r} must be a mapping of keywords, got {type(architecture).__name__}")
    unknown = sorted(set(architecture) - set(spec.architecture))
    if unknown:
        raise InputError(f"model {name!r} has no architecture keyword {unknown[0]!r}; it takes {', '.join(spec.architecture)}")
    checked = {k: _check_value(k, spec.architecture[k], v) for k, v in architecture.items()}
    full = {**spec.architecture, **checked}
    if stored and spec.fixed:
        differs = [k for k in checked if _jsonable(checked[k]) != _jsonable(spec.architecture[k])]
        if differs:
            k = differs[0]
            raise InputError(f"model {name!r} has {k}={_jsonable(spec.architecture[k])!r}, not {_jsonable(checked[k])!r}")
    return full


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def parameter_shapes(name: str, architecture: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The state_dict shapes of `build_model(name, **architecture)`, found without allocating
    (built on the meta device); refuses a model of more than MAX_PARAMETERS numbers."""
    spec = get_spec(name)
    try:
        with torch.device("meta"):
            model = spec.builder(**{**spec.architecture, **architecture})
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputError(f"cannot build {name!r} with {architecture}: {exc}") from None
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    size = sum(math.prod(shape) for shape in shapes.values())
    if size > MAX_PARAMETERS:
        raise InputError(f"{name!r} with {architecture} would hold {size:,} numbers (more than {MAX_PARAMETERS:,})")
    return shapes
