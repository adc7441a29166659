"""The CPU fast path attacks run a model on: the same function, computed faster.

Attacks spend nearly all their time in forward and backward passes with respect to the input,
with the weights frozen. On the CPU two things make those passes of a convolutional model slow,
and `cpu_fast_path(model)` (entered by `frozen_eval`) fixes both for the duration of an attack,
restoring the model exactly afterwards:

- **Layout.** oneDNN's convolutions and max-pooling run several times faster on channels-last
  activations, which a convolution returns when its kernel is channels-last
  (`channels_last_weights`). MNIST CNN, 80 images, one thread: forward 3 ms instead of 9 ms.
- **Input gradients of few-channel convolutions.** oneDNN computes the gradient with respect
  to a 1-3 channel input (the first layer of an image model) slowly: 4-8 ms for the MNIST
  CNN's first layer, whose forward takes 0.6 ms. `column_input_gradients` computes it as the
  adjoint of im2col instead: one matrix product W^T g gives, per kernel offset, each output
  position's contribution, and kh * kw shifted additions scatter them onto the input (2 ms).

Both change only float rounding (gradients agree with autograd's to about 1e-6 relative). GPU
models and other dtypes are left alone. `ADVLAB_CPU_FAST_PATH=0` in the environment turns the fast
path off (for a model whose own code needs contiguous kernels, e.g. calls `.view` on one).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from advlab.models.swap import swapped

FEW_CHANNELS = 4  # convolutions with at most this many input channels get the column input gradient


@contextlib.contextmanager
def cpu_fast_path(model: nn.Module) -> Iterator[None]:
    """Channels-last kernels and column input gradients inside (CPU float32 only; nothing with
    ADVLAB_CPU_FAST_PATH=0); restored after."""
    if os.environ.get("ADVLAB_CPU_FAST_PATH", "1") == "0":
        yield
        return
    with channels_last_weights(model), column_input_gradients(model):
        yield


def _fast(p: torch.Tensor) -> bool:
    return p.device.type == "cpu" and p.dtype == torch.float32  # what was measured


@contextlib.contextmanager
def channels_last_weights(model: nn.Module) -> Iterator[None]:
    """CPU 4-D floating parameters (convolution kernels) stored channels-last inside; each
    parameter's own tensor restored after."""
    kernels = [p for p in model.parameters() if p.dim() == 4 and _fast(p)]
    # `to`, not `contiguous`: a one-channel kernel needs the channels-last strides too
    with swapped(kernels, "data", lambda data: data.to(memory_format=torch.channels_last)):
        yield


@contextlib.contextmanager
def column_input_gradients(model: nn.Module) -> Iterator[None]:
    """Every plain CPU Conv2d with at most FEW_CHANNELS input channels (groups 1, zero padding
    given as numbers) computes its input gradient by `_ColumnConv2d` inside; its forward is
    restored after (hooks the user registered keep running: `__call__` still wraps it)."""
    convs = [m for m in model.modules() if type(m) is nn.Conv2d and m.groups == 1 and m.in_channels <= FEW_CHANNELS
             and m.padding_mode == "zeros" and not isinstance(m.padding, str) and _fast(m.weight)
             and "forward" not in vars(m)]  # not when an enclosing fast path (or the user) already replaced it
    for conv in convs:
        conv.forward = _column_forward(conv)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for conv in convs:
            del conv.forward


def _column_forward(conv: nn.Conv2d) -> Any:
    def forward(x: torch.Tensor) -> torch.Tensor:
        if conv.weight.requires_grad or x.dim() != 4:  # weights being trained: autograd's own backward
            return nn.Conv2d.forward(conv, x)
        return _ColumnConv2d.apply(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation)
    return forward


class _ColumnConv2d(torch.autograd.Function):
    """conv2d(x, W, b) whose backward gives the input gradient only (the weights are frozen):
    cols = W^T g (one row per kernel offset (c, i, j), one column per output position), then
    grad_x[:, c, s*p + d*i, s*q + d*j] += cols[(c, i, j), (p, q)] for each offset, and the padding cut off."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, int],
                padding: tuple[int, int], dilation: tuple[int, int]) -> torch.Tensor:
        ctx.save_for_backward(weight)
        ctx.geometry = (x.shape, stride, padding, dilation)
        return F.conv2d(x, weight, bias, stride, padding, dilation)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (weight,) = ctx.saved_tensors
        (n, c, h, w), (sh, sw), (ph, pw), (dh, dw) = ctx.geometry
        out_channels, _, kh, kw = weight.shape
        ho, wo = grad.shape[2:]
        # (n, o, ho*wo) as a view of the channels-last gradient's memory: the product reads it transposed, no copy
        g = grad.permute(0, 2, 3, 1).reshape(n, ho * wo, out_channels).transpose(1, 2)
        cols = torch.matmul(weight.reshape(out_channels, c * kh * kw).t(), g).view(n, c, kh, kw, ho, wo)
        padded = grad.new_zeros(n, c, h + 2 * ph, w + 2 * pw)
        for i in range(kh):
            for j in range(kw):
                top, left = i * dh, j * dw
                padded[:, :, top : top + sh * (ho - 1) + 1 : sh, left : left + sw * (wo - 1) + 1 : sw] += cols[:, :, i, j]
        return padded[:, :, ph : ph + h, pw : pw + w], None, None, None, None, None
