"""Model registry: a name maps to a builder, its default architecture and training settings.

`build_model(name, seed=...)` draws the initial weights from a generator seeded with `seed`
(torch's CPU generator, forked, so the caller's RNG state is left untouched): the same name,
architecture and seed give the same initial weights in every process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from advlab.errors import InputError, UnknownNameError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    description: str
    architecture: dict[str, Any] = field(default_factory=dict)  # builder keyword defaults
    training: dict[str, Any] = field(default_factory=dict)  # defaults for TrainConfig


_REGISTRY: dict[str, ModelSpec] = {}


def register(
    name: str, *, description: str, training: dict[str, Any] | None = None, **architecture: Any
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a builder under `name` with its default architecture keywords."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = ModelSpec(name, builder, description, dict(architecture), dict(training or {}))
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
