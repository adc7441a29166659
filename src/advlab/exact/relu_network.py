"""A model read as a piecewise-linear network: affine maps with ReLUs and max-pools in between.

The exact tools (bounds, MILP) need the network as math, not as code. `relu_network` runs the
model once in float64 on probe inputs with hooks on its leaf modules, records the order in
which forward calls them and checks that each one is fed the previous one's output (up to a
reshape, such as `x.flatten(1)` written inside a forward): the model is then the chain

    z_0 = A_0 x,   h_i = g_i(z_{i-1}),   z_i = A_i h_i  (i = 1..L),   logits = z_L,

with A_i affine (consecutive affine layers composed into one) and g_i a ReLU or a max-pool.
Affine layers: Linear, Conv2d (its matrix built exactly by applying the convolution without
bias to basis vectors, sparse when large), AvgPool2d, Flatten, advlab's Normalize, Identity
and Dropout (eval mode). A single-logit output z is read as the logits [0, z], as every
attack reads it. Nothing depends on a model's class, only on its layers; a layer of another
type, or a forward that is not a chain (skips, functional activations), is an
`UnsupportedModelError` naming it. The reading is checked against the model's own forward
on the probe inputs before it is returned.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from advlab.errors import InputError
from advlab.formats.onnx import Elementwise, Reshape
from advlab.models.layers import Normalize

DENSE_LIMIT = 1 << 22  # affine matrices with more entries than this are kept sparse
PROBES = 3  # random inputs the reading is checked on
PROBE_TOL = 1e-9  # relative agreement required between the reading and the model's forward


class UnsupportedModelError(InputError):
    """The model has a layer (or a forward) the exact tools cannot read."""


@dataclass(frozen=True)
class Affine:
    """v -> W v + b; W (out, in) float64, dense or sparse (COO)."""

    weight: torch.Tensor
    bias: torch.Tensor

    @property
    def sparse(self) -> bool:
        return self.weight.layout != torch.strided

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """v (..., in) -> (..., out)."""
        flat = v.reshape(-1, v.shape[-1])
        out = torch.sparse.mm(self.weight, flat.T).T if self.sparse else flat @ self.weight.T
        return (out + self.bias).reshape(*v.shape[:-1], self.bias.shape[0])

    def back(self, lam: torch.Tensor) -> torch.Tensor:
        """lam (..., out) -> lam @ W (..., in)."""
        flat = lam.reshape(-1, lam.shape[-1])
        out = torch.sparse.mm(self.weight.T, flat.T).T if self.sparse else flat @ self.weight
        return out.reshape(*lam.shape[:-1], self.weight.shape[1])

    def abs(self) -> Affine:
        return Affine(self.weight.abs(), torch.zeros_like(self.bias))

    def then(self, outer: Affine) -> Affine:
        """The composition outer(self(v))."""
        if not self.sparse and not outer.sparse:
            weight = outer.weight @ self.weight
        elif outer.sparse:
            weight = torch.sparse.mm(outer.weight, self.weight)
        else:
            weight = torch.sparse.mm(self.weight.T, outer.weight.T).T
        return Affine(_compact(weight), outer(self.bias))

    def dense(self) -> torch.Tensor:
        return self.weight.to_dense() if self.sparse else self.weight


@dataclass(frozen=True)
class Relu:
    """h = max(z, 0) elementwise."""


@dataclass(frozen=True)
class MaxPool:
    """h_o = max over the inputs in groups[o] (int64 (out, k), -1 pads short windows)."""

    groups: torch.Tensor

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return _group_max(z, self.groups)


Nonlinear = Relu | MaxPool


@dataclass(frozen=True)
class ReluNetwork:
    """z_0 = A_0 x, z_i = A_i g_i(z_{i-1}); `affines` has one more entry than `nonlinear`."""

    affines: tuple[Affine, ...]
    nonlinear: tuple[Nonlinear, ...]
    input_shape: tuple[int, ...]

    @property
    def num_classes(self) -> int:
        return self.affines[-1].bias.shape[0]

    def pre_activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[z_0, ..., z_L] for a batch x of shape (N, n) (float64)."""
        zs = [self.affines[0](x)]
        for g, a in zip(self.nonlinear, self.affines[1:]):
            zs.append(a(apply(g, zs[-1])))
        return zs

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.pre_activations(x)[-1]


def apply(g: Nonlinear, z: torch.Tensor) -> torch.Tensor:
    return z.clamp_min(0.0) if isinstance(g, Relu) else g(z)


def _group_max(values: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """values (..., in) -> (..., out): the max over each group (padding -1 ignored)."""
    picked = values[..., groups.clamp_min(0)]
    return picked.masked_fill(groups < 0, -math.inf).amax(-1)


def _compact(weight: torch.Tensor) -> torch.Tensor:
    """Dense when small or mostly non-zero, sparse COO otherwise."""
    if weight.layout == torch.strided:
        if weight.numel() <= DENSE_LIMIT or bool((weight != 0).float().mean() > 0.25):
            return weight
        return weight.to_sparse().coalesce()
    weight = weight.coalesce()
    if weight.numel() <= DENSE_LIMIT or weight._nnz() > 0.25 * weight.numel():
        return weight.to_dense()
    return weight


# ---- layers to affine maps ------------------------------------------------------------------------
def _basis_images(shape: tuple[int, ...], start: int, stop: int) -> torch.Tensor:
    n = math.prod(shape)
    eye = torch.zeros(stop - start, n, dtype=torch.float64)
    eye[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
    return eye.reshape(-1, *shape)


def _linear_map(layer: nn.Module, shape: tuple[int, ...], apply_layer) -> torch.Tensor:
    """The matrix of a linear (bias-free) map on inputs of `shape`, one basis vector per column,
    in chunks; sparse when large."""
    n = math.prod(shape)
    out_n = apply_layer(torch.zeros(1, *shape, dtype=torch.float64)).numel()
    chunk = max(1, (1 << 22) // max(out_n, 1))
    columns, dense = [], n * out_n <= DENSE_LIMIT
    for start in range(0, n, chunk):
        block = apply_layer(_basis_images(shape, start, min(n, start + chunk))).reshape(-1, out_n).T
        columns.append(block if dense else block.to_sparse())
    weight = torch.cat(columns, dim=1)
    return _compact(weight)


def _affine(layer: nn.Module, shape: tuple[int, ...]) -> Affine | None:
    """The exact affine map of a layer on per-example inputs of `shape` (None: identity)."""
    if isinstance(layer, (nn.Flatten, nn.Identity, nn.Dropout, Reshape)):
        return None
    if isinstance(layer, Elementwise):
        scale, shift = layer.scale_shift(shape)
        return Affine(_diagonal(scale), shift)
    if isinstance(layer, nn.Linear):
        if len(shape) != 1:  # applied along the last axis: a block-diagonal map
            weight = _linear_map(layer, shape, lambda v: F.linear(v, layer.weight))
            bias = layer.bias.expand(*shape[:-1], -1).reshape(-1) if layer.bias is not None else None
        else:
            weight, bias = layer.weight.detach(), layer.bias
        bias = torch.zeros(weight.shape[0], dtype=torch.float64) if bias is None else bias.detach().reshape(-1)
        return Affine(_compact(weight.double()), bias.double())
    if isinstance(layer, nn.Conv2d):
        weight = _linear_map(layer, shape, lambda v: layer._conv_forward(v, layer.weight, None))
        out_shape = layer(torch.zeros(1, *shape, dtype=torch.float64)).shape[1:]
        bias = torch.zeros(out_shape, dtype=torch.float64)
        if layer.bias is not None:
            bias = bias + layer.bias.detach().view(-1, *[1] * (len(out_shape) - 1))
        return Affine(weight, bias.reshape(-1))
    if isinstance(layer, nn.AvgPool2d):
        return Affine(_linear_map(layer, shape, layer), torch.zeros(layer(torch.zeros(1, *shape)).numel(), dtype=torch.float64))
    if isinstance(layer, Normalize):
        ones = torch.ones(1, *shape, dtype=torch.float64)
        scale = (ones / layer.std.double()).expand_as(ones).reshape(-1)
        shift = (-layer.mean.double() / layer.std.double() * ones).reshape(-1)
        return Affine(_diagonal(scale), shift)
    return None


def _max_pool(layer: nn.MaxPool2d, shape: tuple[int, ...]) -> MaxPool:
    """The input indices in each window of a MaxPool2d on (C, H, W) inputs."""
    if len(shape) != 3:
        raise UnsupportedModelError(f"MaxPool2d on inputs of shape {shape}: expected (C, H, W)")
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    (kh, kw), (sh, sw) = pair(layer.kernel_size), pair(layer.stride or layer.kernel_size)
    (ph, pw), (dh, dw) = pair(layer.padding), pair(layer.dilation)
    channels, height, width = shape
    out_h, out_w = layer(torch.zeros(1, *shape)).shape[-2:]
    rows = (torch.arange(out_h) * sh - ph)[:, None] + torch.arange(kh) * dh  # (out_h, kh)
    cols = (torch.arange(out_w) * sw - pw)[:, None] + torch.arange(kw) * dw  # (out_w, kw)
    r = rows[:, None, :, None].expand(out_h, out_w, kh, kw)
    c = cols[None, :, None, :].expand(out_h, out_w, kh, kw)
    valid = (r >= 0) & (r < height) & (c >= 0) & (c < width)
    spatial = torch.where(valid, r * width + c, -1).reshape(out_h * out_w, kh * kw)
    offsets = (torch.arange(channels) * height * width)[:, None, None]
    groups = torch.where(spatial >= 0, spatial + offsets, -1).reshape(-1, kh * kw)
    return MaxPool(groups)


# ---- reading a model ------------------------------------------------------------------------------
def _calls(model: nn.Module, x: torch.Tensor) -> tuple[list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]], torch.Tensor]:
    """(name, leaf module, input, output) in the order forward calls the leaves, and the output."""
    names = {module: name for name, module in model.named_modules()}
    calls: list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]] = []
    inputs: dict[nn.Module, torch.Tensor] = {}

    def pre(module: nn.Module, args: tuple) -> None:
        inputs[module] = args[0].detach().clone() if args and isinstance(args[0], torch.Tensor) else None

    def post(module: nn.Module, args: tuple, output: object) -> None:
        out = output.detach().clone() if isinstance(output, torch.Tensor) else None
        calls.append((names[module] or type(module).__name__, module, inputs.pop(module, None), out))

    leaves = [m for m in model.modules() if not any(True for _ in m.children())] or [model]
    handles = [h for m in leaves for h in (m.register_forward_pre_hook(pre), m.register_forward_hook(post))]
    try:
        with torch.no_grad():
            output = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return calls, output


def _same_values(a: torch.Tensor | None, b: torch.Tensor) -> bool:
    return a is not None and a.shape[0] == b.shape[0] and a.numel() == b.numel() and torch.equal(a.reshape(-1), b.reshape(-1))


def relu_network(model: nn.Module, input_shape: tuple[int, ...], *, bounds: tuple[float, float] = (0.0, 1.0)) -> ReluNetwork:
    """Read `model` (on per-example inputs of `input_shape`) as a ReluNetwork in float64."""
    with torch.no_grad():
        return _read(model, tuple(input_shape), bounds)


def _read(model: nn.Module, input_shape: tuple[int, ...], bounds: tuple[float, float]) -> ReluNetwork:
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    model64 = copy.deepcopy(model).cpu().double().eval()
    gen = torch.Generator().manual_seed(0)
    probe = bounds[0] + (bounds[1] - bounds[0]) * torch.rand(PROBES, *input_shape, generator=gen, dtype=torch.float64)
    calls, output = _calls(model64, probe)
    if not isinstance(output, torch.Tensor):
        raise UnsupportedModelError(f"the model returns a {type(output).__name__}, not a tensor of logits")
    ops: list[Affine | Nonlinear] = []
    current = probe
    for name, layer, given, out in calls:
        if not _same_values(given, current) or out is None:
            raise UnsupportedModelError(
                f"the model's forward is not a chain of its layers: the input of layer {name!r} "
                f"({type(layer).__name__}) is not the output of the layer called before it"
            )
        shape = tuple(given.shape[1:])
        if isinstance(layer, nn.ReLU):
            ops.append(Relu())
        elif isinstance(layer, nn.MaxPool2d):
            if layer.return_indices:
                raise UnsupportedModelError(f"layer {name!r}: MaxPool2d with return_indices")
            ops.append(_max_pool(layer, shape))
        elif isinstance(layer, (nn.Linear, nn.Conv2d, nn.AvgPool2d, Normalize, nn.Flatten, nn.Identity, nn.Dropout,
                                Elementwise, Reshape)):
            affine = _affine(layer, shape)
            if affine is not None:
                ops.append(affine)
        else:
            raise UnsupportedModelError(
                f"layer {name!r} is a {type(layer).__name__}; the exact tools read Linear, Conv2d, AvgPool2d, "
                "MaxPool2d, ReLU, Flatten, Normalize, Identity, Dropout and ONNX Elementwise/Reshape layers"
            )
        current = out
    if not _same_values(output, current):
        raise UnsupportedModelError("the model's forward is not a chain of its layers: its output is not its last layer's")
    net = _canonical(ops, input_shape)
    logits = output.reshape(PROBES, -1)
    if logits.shape[1] == 1:
        logits = torch.cat([torch.zeros_like(logits), logits], 1)
    mine = net.logits(probe.reshape(PROBES, -1))
    scale = 1.0 + logits.abs().max()
    if mine.shape != logits.shape or float((mine - logits).abs().max()) > PROBE_TOL * scale:
        raise UnsupportedModelError("the network read from the model's layers does not reproduce its forward pass")
    return net


def _canonical(ops: list[Affine | Nonlinear], input_shape: tuple[int, ...]) -> ReluNetwork:
    """Compose consecutive affine maps; put an identity between consecutive non-linearities and
    at both ends; pool before a ReLU rather than after it; map one logit z to [0, z]."""
    for i in range(len(ops) - 1):  # max_i relu(z_i) = relu(max_i z_i): pool first, fewer ReLUs
        if isinstance(ops[i], Relu) and isinstance(ops[i + 1], MaxPool):
            ops[i], ops[i + 1] = ops[i + 1], ops[i]
    affines: list[Affine] = []
    nonlinear: list[Nonlinear] = []
    width = math.prod(input_shape)
    pending: Affine | None = None
    for op in ops:
        if isinstance(op, Affine):
            pending = op if pending is None else pending.then(op)
            width = op.bias.shape[0]
            continue
        if isinstance(op, Relu) and nonlinear and isinstance(nonlinear[-1], Relu) and pending is None:
            continue  # relu(relu(z)) = relu(z)
        affines.append(pending if pending is not None else _identity(width))
        nonlinear.append(op)
        if isinstance(op, MaxPool):
            width = op.groups.shape[0]
        pending = None
    last = pending if pending is not None else _identity(width)
    if last.bias.shape[0] == 1:
        last = last.then(Affine(torch.tensor([[0.0], [1.0]], dtype=torch.float64), torch.zeros(2, dtype=torch.float64)))
    affines.append(last)
    return ReluNetwork(tuple(affines), tuple(nonlinear), tuple(input_shape))


def _identity(n: int) -> Affine:
    return Affine(_diagonal(torch.ones(n, dtype=torch.float64)), torch.zeros(n, dtype=torch.float64))


def _diagonal(values: torch.Tensor) -> torch.Tensor:
    n = len(values)
    if n * n <= DENSE_LIMIT:
        return torch.diag(values)
    index = torch.arange(n)
    return torch.sparse_coo_tensor(torch.stack([index, index]), values, (n, n), check_invariants=True).coalesce()
