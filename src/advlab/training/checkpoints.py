"""Checkpoints: one safetensors file whose header metadata carries a JSON document
(model name, architecture, training settings, data source, seed, clean metrics).

A checkpoint written during training also holds the training state (optimizer tensors, RNG
states) under names starting with `STATE_PREFIX`, so that a killed run resumes exactly;
`load_checkpoint` loads only the model's own tensors.

Loading parses only tensors and JSON, so it never executes code from the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from advlab.errors import CheckpointError
from advlab.io import write_bytes_atomic
from advlab.models.registry import build_model

FORMAT = "advlab-checkpoint/1"
STATE_PREFIX = "@state/"  # not a valid module attribute path, so never a state_dict key


@dataclass
class Checkpoint:
    model: nn.Module
    model_name: str
    architecture: dict[str, Any]
    metadata: dict[str, Any]  # everything else: training config, data source, metrics


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    model_name: str,
    architecture: dict[str, Any],
    metadata: dict[str, Any] | None = None,
    state: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write weights, metadata and optional training-state tensors to `path` atomically."""
    document = {
        "format": FORMAT,
        "model": model_name,
        "architecture": architecture,
        **(metadata or {}),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({STATE_PREFIX + k: v.detach().cpu().contiguous() for k, v in (state or {}).items()})
    write_bytes_atomic(path, save_safetensors(tensors, metadata={"advlab": json.dumps(document)}))


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON document stored in a checkpoint's header (no tensors are loaded)."""
    return _parse(Path(path))[1]


def read_state(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]]:
    """(model tensors, training-state tensors with the prefix removed, JSON document)."""
    tensors, document = _parse(Path(path))
    state = {k[len(STATE_PREFIX) :]: v for k, v in tensors.items() if k.startswith(STATE_PREFIX)}
    weights = {k: v for k, v in tensors.items() if not k.startswith(STATE_PREFIX)}
    return weights, state, document


def update_metadata(path: str | os.PathLike[str], extra: dict[str, Any]) -> None:
    """Add or replace top-level entries of a checkpoint's JSON document (tensors kept), atomically."""
    tensors, document = _parse(Path(path))
    document = {**document, **extra}
    write_bytes_atomic(path, save_safetensors(tensors, metadata={"advlab": json.dumps(document)}))


def _parse(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    raw = path.read_bytes()
    try:
        tensors = load_safetensors(raw)
        header_len = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + header_len])
        document = json.loads(header["__metadata__"]["advlab"])
    except (SafetensorError, ValueError, KeyError, TypeError, OverflowError) as exc:
        raise CheckpointError(f"{path}: not a valid advlab checkpoint ({type(exc).__name__}: {exc})") from None
    if document.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unknown checkpoint format {document.get('format')!r}")
    return tensors, document


def load_checkpoint(
    path: str | os.PathLike[str], *, expected_model: str | None = None, device: str | torch.device = "cpu"
) -> Checkpoint:
    """Rebuild the registered model named in the checkpoint and load its weights (strict)."""
    path = Path(path)
    tensors, _, document = read_state(path)
    name = document["model"]
    if expected_model is not None and name != expected_model:
        raise CheckpointError(f"{path}: checkpoint holds model {name!r}, expected {expected_model!r}")
    architecture = dict(document.get("architecture", {}))
    model = build_model(name, **architecture)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(
            f"{path}: weights do not fit model {name!r} {architecture}: {' '.join(first[:2])}"
        ) from None
    model.to(device).eval()
    metadata = {k: v for k, v in document.items() if k not in ("format", "model", "architecture")}
    return Checkpoint(model, name, architecture, metadata)
