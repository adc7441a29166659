"""Running a model for its answers: eval mode, no gradients, batch by batch, modes restored.

`logits` and `predict` are what every layer above uses to ask a model for its outputs; a
single-logit model z is read as logits [0, z] (`as_multiclass_logits`). `frozen_eval` is the
context attacks run in: eval mode and parameters frozen, each module's mode and each
parameter's `requires_grad` restored afterwards, even on error. On the CPU it also runs the
model on `fast.cpu_fast_path` inside: the same function, computed faster.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from advlab.models.fast import cpu_fast_path
from advlab.models.layers import as_multiclass_logits
from advlab.models.swap import swapped


@contextlib.contextmanager
def set_mode(model: nn.Module, training: bool) -> Iterator[None]:
    """Every module in the given mode inside; each module's own mode restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.train(training)
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


@contextlib.contextmanager
def frozen_eval(model: nn.Module) -> Iterator[None]:
    """Eval mode, no parameter gradients and the CPU fast path inside; every module's mode, each
    parameter's flag and tensor restored after."""
    with set_mode(model, False), swapped(model.parameters(), "requires_grad", lambda _: False), cpu_fast_path(model):
        yield


def model_device(model: nn.Module, default: torch.device | None = None) -> torch.device:
    """The device of the model's first parameter (`default`, else the CPU, for a parameterless model)."""
    param = next(iter(model.parameters()), None)
    if param is not None:
        return param.device
    return default if default is not None else torch.device("cpu")


@torch.no_grad()
def logits(model: nn.Module, x: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
    """The model's logits (N, C) in eval mode, computed on its device, returned on x's device."""
    device = model_device(model, x.device)
    with set_mode(model, False):
        parts = [
            as_multiclass_logits(model(x[i : i + batch_size].to(device))).to(x.device)
            for i in range(0, len(x), batch_size)
        ]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def predict(model: nn.Module, x: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
    """Predicted labels (N,) in eval mode, on x's device."""
    return logits(model, x, batch_size=batch_size).argmax(1)
