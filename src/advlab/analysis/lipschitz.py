"""Upper Lipschitz bounds of a network, layer by layer (Szegedy et al. 2013, Sec. 4.3).

For a chain of layers f = phi_K o ... o phi_1, ||f(x + r) - f(x)|| <= (prod_k L_k) ||r|| where
L_k bounds the Lipschitz constant of layer k in L2:

- fully connected W x + b: the operator norm ||W||_2 (largest singular value);
- convolution: by the 2D DFT a stride-1 convolution with circular padding on an N x N grid is
  block diagonal, one C_out x C_in block W_hat(xi) per frequency xi, so its norm is
  max_xi ||W_hat(xi)||_2. A zero-padded input of size N embeds isometrically in that grid and
  the convolution's outputs are a restriction of the circular one, and a stride subsamples
  them, so the same number bounds every padding and stride (the paper's per-frequency bound);
  groups give a block-diagonal operator, bounded by the largest block;
- ReLU, tanh: 1; sigmoid: 1/4 (its largest slope); flatten, identity, dropout (at test time): 1;
- max pooling: sqrt(m), m the most windows that share an input pixel (1 without overlap). The
  paper calls max-pooling contractive (bound 1); that holds only for non-overlapping windows. With
  overlap, one pixel can move the maximum of m windows: x = 0, r = t e_i with pixel i in m windows
  changes m outputs by t, so ||f(x + r) - f(x)|| = sqrt(m) ||r|| and sqrt(m) is attained;
- `Normalize` (x - mean) / std: 1 / min(std);
- contrast normalization phi(x) = x / (eps + ||x||^2)^gamma (the paper's Sec. 4.3):
  eps^(-gamma) for gamma in [0, 1] (`contrast_normalization_bound`). Its Jacobian
  g(s) I + 2 g'(s) x x^T, s = ||x||^2, g(s) = (eps + s)^(-gamma), is symmetric with eigenvalues
  g(s) and (eps + (1 - 2 gamma) s) / (eps + s)^(gamma + 1), both at most (eps + s)^(-gamma) <=
  eps^(-gamma) in absolute value, with equality at x = 0.

The bound of the network is their product. `layer_bounds` finds the layers by running the
model once and checking that each parameterised or elementwise layer feeds the next.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from advlab.errors import InputError
from advlab.models.inference import frozen_eval
from advlab.models.layers import Normalize, as_multiclass_logits

UNIT_LIPSCHITZ = (nn.ReLU, nn.Tanh, nn.Flatten, nn.Identity, nn.Dropout)


def linear_bound(layer: nn.Linear) -> float:
    """||W||_2, the largest singular value of the weight matrix."""
    return float(torch.linalg.matrix_norm(layer.weight.detach().double(), ord=2))


def conv2d_bound(conv: nn.Conv2d, input_size: tuple[int, int]) -> float:
    """max over DFT frequencies of ||W_hat(xi)||_2 on the zero-padded input grid (see module doc)."""
    if conv.padding_mode not in ("zeros", "circular"):
        raise InputError(f"conv2d_bound supports zero or circular padding, got {conv.padding_mode!r}")
    weight = conv.weight.detach().double()
    dilation = conv.dilation
    if dilation != (1, 1):  # the dilated kernel, written out
        out_c, in_c, kh, kw = weight.shape
        dilated = weight.new_zeros(out_c, in_c, (kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1)
        dilated[:, :, :: dilation[0], :: dilation[1]] = weight
        weight = dilated
    kernel = tuple(weight.shape[-2:])
    if conv.padding == "valid":
        total = (0, 0)
    elif conv.padding == "same":
        total = tuple(k - 1 for k in kernel)
    else:
        total = tuple(2 * p for p in conv.padding)
    if conv.padding_mode == "circular":  # outputs are some of the circular convolution's on the input grid
        if any(t > k - 1 or k > n for t, k, n in zip(total, kernel, input_size)):
            raise InputError("conv2d_bound: circular padding needs 2 * padding < kernel size <= input size")
        grid = tuple(input_size)
    else:
        grid = tuple(max(n + t, k) for n, t, k in zip(input_size, total, kernel))
    spectrum = torch.fft.fft2(weight, s=grid)  # (C_out, C_in / groups, N_h, N_w)
    blocks = spectrum.permute(2, 3, 0, 1)
    per_group = blocks.reshape(*grid, conv.groups, -1, blocks.shape[-1])  # (N_h, N_w, groups, out/g, in/g)
    return float(torch.linalg.matrix_norm(per_group, ord=2).max())


def maxpool_bound(pool: nn.MaxPool2d) -> float:
    """sqrt(m), m = ceil(k_h / s_h) * ceil(k_w / s_w) windows at most share an input pixel."""
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    (kh, kw), (sh, sw) = pair(pool.kernel_size), pair(pool.stride or pool.kernel_size)
    if pair(pool.dilation) != (1, 1):
        raise InputError("maxpool_bound supports dilation 1 only")
    return math.sqrt(math.ceil(kh / sh) * math.ceil(kw / sw))


def contrast_normalization_bound(eps: float, gamma: float) -> float:
    """eps^(-gamma): the L2 Lipschitz constant of x -> x / (eps + ||x||^2)^gamma for gamma in [0, 1]
    (see the module docstring; the paper states it for gamma in [0.5, 1])."""
    if not eps > 0 or not 0 <= gamma <= 1:
        raise InputError(f"contrast normalization bound needs eps > 0 and gamma in [0, 1], got {eps}, {gamma}")
    return eps ** (-gamma)


def power_iteration(
    operator: Callable[[torch.Tensor], torch.Tensor], input_shape: tuple[int, ...], *, steps: int = 200, seed: int = 0
) -> float:
    """Estimate the largest singular value of a linear `operator` (a lower bound that converges
    to it): iterate v <- A^T A v / ||A^T A v||, with A^T from autograd."""
    v = torch.randn(input_shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    v = v / v.norm()
    sigma = 0.0
    for _ in range(steps):
        x = v.detach().requires_grad_(True)
        with torch.enable_grad():
            out = operator(x)
            (back,) = torch.autograd.grad(out, x, grad_outputs=out.detach())  # A^T A v
        sigma = float(out.detach().norm())
        v = back / back.norm().clamp_min(1e-300)
    return sigma


@dataclass
class LayerBound:
    name: str  # the layer's path in the model
    kind: str  # its class name
    bound: float


def _bound(module: nn.Module, input_shape: torch.Size) -> float:
    if isinstance(module, nn.Linear):
        return linear_bound(module)
    if isinstance(module, nn.Conv2d):
        return conv2d_bound(module, tuple(input_shape[-2:]))
    if isinstance(module, nn.Sigmoid):
        return 0.25
    if isinstance(module, UNIT_LIPSCHITZ):
        return 1.0
    if isinstance(module, nn.MaxPool2d):
        return maxpool_bound(module)
    if isinstance(module, Normalize):
        return float(1.0 / module.std.min())
    raise InputError(f"no Lipschitz bound for layer type {type(module).__name__}")


def layer_bounds(model: nn.Module, example: torch.Tensor) -> list[LayerBound]:
    """Per-layer upper Lipschitz bounds (L2) of `model`, traced on `example` (a batch).

    The layers are the leaf modules the forward pass calls; each must take exactly the previous
    one's output (up to a reshape), the first the input and the last give the output, so the
    model is the chain whose bound is the product. Anything else raises InputError.
    """
    names = {module: name for name, module in model.named_modules()}
    calls: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if len(inputs) != 1:
            raise InputError(f"layer {names[module]} takes {len(inputs)} inputs; bounds need a chain of layers")
        calls.append((module, inputs[0].detach(), output.detach()))

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(record) for m in leaves]
    try:
        with frozen_eval(model), torch.no_grad():
            output = model(example)
    finally:
        for handle in handles:
            handle.remove()
    previous = example.detach()
    for module, given, produced in calls:
        if given.numel() != previous.numel() or not torch.equal(given.flatten(), previous.flatten()):
            raise InputError(f"layer {names[module]} does not take the previous layer's output; bounds need a chain of layers")
        previous = produced
    if not calls or not torch.equal(as_multiclass_logits(previous.flatten(1)), as_multiclass_logits(output.flatten(1))):
        raise InputError("the model's output is not its last layer's output; bounds need a chain of layers")
    return [LayerBound(names[m], type(m).__name__, _bound(m, given.shape)) for m, given, _ in calls]


def network_bound(bounds: list[LayerBound]) -> float:
    """The product of the layers' bounds: an upper Lipschitz bound of the whole chain."""
    return math.prod(b.bound for b in bounds)


@torch.no_grad()
def observed_ratio(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """||f(x') - f(x)||_2 / ||x' - x||_2 per example (f: the model's outputs); nan where x' = x."""
    with frozen_eval(model):
        change = (model(x_adv) - model(x)).flatten(1).double().norm(dim=1)
    step = (x_adv - x).flatten(1).double().norm(dim=1)
    return torch.where(step > 0, change / step.clamp_min(1e-300), torch.nan)
