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

from advlab.data.dataset import check_classes
from advlab.errors import AdvlabError, CheckpointError, InputError
from advlab.io import write_bytes_atomic
from advlab.models.registry import build_model, check_architecture, parameter_shapes

FORMAT = "advlab-checkpoint/1"
STATE_PREFIX = "@state/"  # not a valid module attribute path, so never a state_dict key


@dataclass
class Checkpoint:
    model: nn.Module
    model_name: str
    architecture: dict[str, Any]
    metadata: dict[str, Any]  # everything else: training config, data source, metrics

    @property
    def classes(self) -> list[int] | None:
        """The original labels the model was trained on (`train --classes`: label i is classes[i]), else None."""
        return (self.metadata.get("data") or {}).get("classes")

    @property
    def unfinished(self) -> str | None:
        """'epoch E of N' when the checkpoint is from a training run that has not finished, else None."""
        progress = self.metadata.get("progress") or {}
        return f"epoch {progress['epoch']} of {progress['epochs']}" if progress and not progress.get("complete", True) else None


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


OBJECT_FIELDS = ("data", "progress", "metrics", "training", "objective", "optimizer", "data_source")
MAX_HEADER = 100_000_000  # bytes of safetensors header (the format's own limit)


def _header(raw: bytes, path: Path) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """The JSON document and the tensors' declared shapes, read from the header alone."""
    if len(raw) < 8:
        raise CheckpointError(f"{path}: not a valid advlab checkpoint (only {len(raw)} bytes)")
    header_len = int.from_bytes(raw[:8], "little")
    if header_len > min(MAX_HEADER, len(raw) - 8):
        raise CheckpointError(f"{path}: not a valid advlab checkpoint (header of {header_len} bytes declared)")
    try:
        header = json.loads(raw[8 : 8 + header_len])
        document = json.loads(header["__metadata__"]["advlab"])
        shapes = {k: tuple(int(n) for n in v["shape"]) for k, v in header.items() if k != "__metadata__"}
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a valid advlab checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(document, dict):
        raise CheckpointError(f"{path}: not a valid advlab checkpoint (metadata is not a JSON object)")
    if document.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unknown checkpoint format {document.get('format')!r}")
    return document, shapes


def _read(path: Path) -> bytes:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    return path.read_bytes()


def _tensors(raw: bytes, path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_safetensors(raw)
    except (SafetensorError, ValueError, KeyError, TypeError, OverflowError) as exc:
        raise CheckpointError(f"{path}: not a valid advlab checkpoint ({type(exc).__name__}: {exc})") from None


def _parse(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    raw = _read(path)
    document, _ = _header(raw, path)
    return _tensors(raw, path), document


def check_document(document: dict[str, Any], shapes: dict[str, tuple[int, ...]], path: Path) -> tuple[str, dict[str, Any]]:
    """(model name, full architecture) of a checkpoint's header, checked against the registry's
    typed schema and the declared tensor shapes before any tensor is loaded or model built."""
    name = document.get("model")
    if not isinstance(name, str):
        raise CheckpointError(f"{path}: the header names no model (field 'model' is {name!r})")
    try:
        architecture = check_architecture(name, document.get("architecture", {}), stored=True)
        expected = parameter_shapes(name, architecture)
        data = document.get("data") or {}
        classes = data.get("classes") if isinstance(data, dict) else "?"
        if classes is not None:
            if not isinstance(classes, list):
                raise InputError(f"data.classes must be a list of class labels, got {classes!r}")
            check_classes(classes)
        for key in OBJECT_FIELDS:
            if document.get(key) is not None and not isinstance(document[key], dict):
                raise InputError(f"field {key!r} must be a JSON object, got {type(document[key]).__name__}")
        progress = document.get("progress") or {}
        for key in ("epoch", "epochs"):
            value = progress.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"progress.{key} must be an integer >= 0, got {value!r}")
    except AdvlabError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    stored = {k: v for k, v in shapes.items() if not k.startswith(STATE_PREFIX)}
    for key in sorted(set(expected) | set(stored)):
        if expected.get(key) != stored.get(key):
            raise CheckpointError(
                f"{path}: weights do not fit model {name!r} {architecture}: {key} has shape "
                f"{list(stored[key]) if key in stored else 'none'}, the model needs {list(expected[key]) if key in expected else 'none'}"
            )
    return name, architecture


def load_checkpoint(
    path: str | os.PathLike[str], *, expected_model: str | None = None, device: str | torch.device = "cpu"
) -> Checkpoint:
    """Rebuild the registered model named in the checkpoint and load its weights (strict).

    The header is checked first (registered model, architecture keywords and types, size
    limits, class list, every tensor's shape against the model's), so a bad or hostile header is
    refused before anything is allocated; only then are the tensors read and the model built."""
    path = Path(path)
    raw = _read(path)
    document, shapes = _header(raw, path)
    name, architecture = check_document(document, shapes, path)
    if expected_model is not None and name != expected_model:
        raise CheckpointError(f"{path}: checkpoint holds model {name!r}, expected {expected_model!r}")
    weights = {k: v for k, v in _tensors(raw, path).items() if not k.startswith(STATE_PREFIX)}
    for key, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: weight {key} holds NaN or inf; the model's outputs would be meaningless")
    model = build_model(name, **architecture)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(
            f"{path}: weights do not fit model {name!r} {architecture}: {' '.join(first[:2])}"
        ) from None
    model.to(device).eval()
    stored_architecture = dict(document.get("architecture", {}))
    metadata = {k: v for k, v in document.items() if k not in ("format", "model", "architecture")}
    return Checkpoint(model, name, stored_architecture, metadata)
