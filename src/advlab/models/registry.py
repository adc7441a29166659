"""Model registry: a name maps to a builder, its default architecture and training settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from advlab.errors import UnknownNameError


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


def build_model(name: str, **architecture: Any) -> nn.Module:
    """Build a registered model; keywords override its default architecture."""
    spec = get_spec(name)
    return spec.builder(**{**spec.architecture, **architecture})


def model_names() -> list[str]:
    return sorted(_REGISTRY)
