"""A model read as a piecewise-linear network: affine maps with ReLUs and max-pools in between.

The exact tools (bounds, MILP) need the network as math, not as code. `relu_network` runs the
model once in float64 on probe inputs with hooks on its leaf modules, records the order in
which forward calls them and checks that each one is fed the previous one's output (up to a
reshape, such as `x.flatten(1)` written inside a forward): the model is then the chain

    z_0 = A_0 x,   h_i = g_i(z_{i-1}),   z_i = A_i h_i  (i = 1..L),   logits = z_L,

with A_i affine and g_i a ReLU or a max-pool. Each A_i is a chain of linear operators
(`advlab.exact.linear_operators`: Dense for Linear, Conv for Conv2d and AvgPool2d, Diagonal for
Normalize, BatchNorm in eval mode and ONNX Elementwise layers; Flatten, Reshape, Identity and
Dropout are no operator at all), neighbours fused where that is free (BatchNorm into its
convolution, Normalize into a dense layer), so that bounds apply a convolution and its
transpose and never form its matrix; the solvers get the matrix (`Affine.weight`, built from
basis vectors, sparse when large). A single-logit output z is read as the logits [0, z], as
every attack reads it. Nothing depends on a model's class, only on its layers; a layer of
another type, a BatchNorm in training mode, or a forward that is not a chain (skips,
functional activations), is an `UnsupportedModelError` naming it. The reading is checked
against the model's own forward on the probe inputs before it is returned.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import nn

from advlab.errors import InputError
from advlab.exact.linear_operators import DENSE_LIMIT, Conv, Dense, Diagonal, compact, fuse
from advlab.exact.linear_operators import Linear as LinearOp
from advlab.exact.operators import MaxPool, Nonlinear, Relu
from advlab.formats.onnx import Elementwise, Reshape
from advlab.models.layers import Normalize

__all__ = ["DENSE_LIMIT", "Affine", "MaxPool", "Nonlinear", "Relu", "ReluNetwork", "UnsupportedModelError", "relu_network"]

PROBES = 3  # random inputs the reading is checked on
PROBE_TOL = 1e-9  # relative agreement required between the reading and the model's forward


class UnsupportedModelError(InputError):
    """The model has a layer (or a forward) the exact tools cannot read."""


@dataclass(frozen=True)
class Affine:
    """v -> W v + b on flat vectors as a chain of linear operators (`advlab.exact.linear_operators`),
    applied one after the other: W is never formed for bounds; `weight` forms it (for the
    solvers) from the images of basis vectors, sparse when large."""

    ops: tuple[LinearOp, ...]
    width: int  # input width

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """v (..., in) -> (..., out)."""
        flat = v.reshape(-1, v.shape[-1])
        for op in self.ops:
            flat = op.linear(flat) + op.offset()
        return flat.reshape(*v.shape[:-1], flat.shape[-1])

    def back(self, lam: torch.Tensor) -> torch.Tensor:
        """lam (..., out) -> lam @ W (..., in), each operator transposed in turn."""
        flat = lam.reshape(-1, lam.shape[-1])
        for op in reversed(self.ops):
            flat = op.transpose(flat)
        return flat.reshape(*lam.shape[:-1], self.width)

    def interval(self, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bounds of W v + b for v in [lower, upper] (B, in): centre and radius through each operator."""
        centre, radius = (upper + lower) / 2, (upper - lower) / 2
        for op in self.ops:
            centre, radius = op.linear(centre) + op.offset(), op.magnitude(radius)
        return centre - radius, centre + radius

    @property
    def widest(self) -> int:
        """The widest value inside the chain (memory budgets)."""
        return max([self.width] + [op.out_width for op in self.ops])

    @cached_property
    def bias(self) -> torch.Tensor:
        return self(torch.zeros(self.width, dtype=torch.float64))

    @cached_property
    def weight(self) -> torch.Tensor:
        """W (out, in), dense or sparse COO."""
        if len(self.ops) == 1 and isinstance(self.ops[0], Dense):
            return self.ops[0].weight
        if not self.ops:
            return _diagonal(torch.ones(self.width, dtype=torch.float64))
        out_n = self.bias.shape[0]
        chunk = max(1, (1 << 22) // max(out_n, 1))
        columns, dense = [], self.width * out_n <= DENSE_LIMIT
        for start in range(0, self.width, chunk):
            stop = min(self.width, start + chunk)
            eye = torch.zeros(stop - start, self.width, dtype=torch.float64)
            eye[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
            block = self._linear(eye).T
            columns.append(block if dense else block.to_sparse())
        return compact(torch.cat(columns, dim=1))

    def _linear(self, v: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            v = op.linear(v)
        return v

    @property
    def sparse(self) -> bool:
        return self.weight.layout != torch.strided

    def then(self, outer: Affine) -> Affine:
        """The composition outer(self(v)), neighbouring operators fused where that is free."""
        ops = list(self.ops)
        for op in outer.ops:
            fused = fuse(ops[-1], op) if ops else None
            if fused is None:
                ops.append(op)
            else:
                ops[-1] = fused
        return Affine(tuple(ops), self.width)

    def dense(self) -> torch.Tensor:
        return self.weight.to_dense() if self.sparse else self.weight


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
            zs.append(a(g(zs[-1])))
        return zs

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.pre_activations(x)[-1]


# ---- layers to operators ---------------------------------------------------------------------------
def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _basis_images(shape: tuple[int, ...], start: int, stop: int) -> torch.Tensor:
    n = math.prod(shape)
    eye = torch.zeros(stop - start, n, dtype=torch.float64)
    eye[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
    return eye.reshape(-1, *shape)


def _linear_map(shape: tuple[int, ...], apply_layer) -> torch.Tensor:
    """The matrix of a linear (bias-free) map on inputs of `shape`, one basis vector per column,
    in chunks; sparse when large."""
    n = math.prod(shape)
    out_n = apply_layer(torch.zeros(1, *shape, dtype=torch.float64)).numel()
    chunk = max(1, (1 << 22) // max(out_n, 1))
    columns, dense = [], n * out_n <= DENSE_LIMIT
    for start in range(0, n, chunk):
        block = apply_layer(_basis_images(shape, start, min(n, start + chunk))).reshape(-1, out_n).T
        columns.append(block if dense else block.to_sparse())
    return compact(torch.cat(columns, dim=1))


def _conv(layer: nn.Conv2d, shape: tuple[int, ...], name: str) -> Conv:
    if len(shape) != 3:
        raise UnsupportedModelError(f"layer {name!r}: Conv2d on inputs of shape {shape}: expected (C, H, W)")
    if layer.padding_mode != "zeros" or isinstance(layer.padding, str) and layer.padding != "valid":
        raise UnsupportedModelError(f"layer {name!r}: Conv2d with padding {layer.padding!r} / mode {layer.padding_mode!r}; "
                                    "the exact tools read numeric zero padding")
    padding = (0, 0) if isinstance(layer.padding, str) else _pair(layer.padding)
    out_shape = tuple(layer(torch.zeros(1, *shape, dtype=torch.float64)).shape[1:])
    bias = layer.bias.detach().double() if layer.bias is not None else torch.zeros(out_shape[0], dtype=torch.float64)
    return Conv(layer.weight.detach().double(), bias, _pair(layer.stride), padding, _pair(layer.dilation), layer.groups,
                shape, out_shape)


def _avg_pool(layer: nn.AvgPool2d, shape: tuple[int, ...]) -> Conv | Dense:
    """A depthwise convolution with weights 1/k where it is one (no ceil mode, padding counted);
    the exact matrix otherwise."""
    out_shape = tuple(layer(torch.zeros(1, *shape, dtype=torch.float64)).shape[1:])
    padding = _pair(layer.padding)
    if len(shape) == 3 and not layer.ceil_mode and layer.divisor_override is None and (layer.count_include_pad or padding == (0, 0)):
        kh, kw = _pair(layer.kernel_size)
        weight = torch.full((shape[0], 1, kh, kw), 1.0 / (kh * kw), dtype=torch.float64)
        return Conv(weight, torch.zeros(shape[0], dtype=torch.float64), _pair(layer.stride or layer.kernel_size), padding,
                    (1, 1), shape[0], shape, out_shape)
    return Dense(_linear_map(shape, layer), torch.zeros(math.prod(out_shape), dtype=torch.float64))


def _batch_norm(layer: nn.modules.batchnorm._BatchNorm, shape: tuple[int, ...], name: str) -> Diagonal:
    """(x - mean) / sqrt(var + eps) * gamma + beta with the running statistics, per channel."""
    if layer.running_mean is None or layer.running_var is None:
        raise UnsupportedModelError(f"layer {name!r}: {type(layer).__name__} without running statistics")
    scale = 1.0 / torch.sqrt(layer.running_var.double() + layer.eps)
    if layer.weight is not None:
        scale = scale * layer.weight.detach().double()
    shift = -layer.running_mean.double() * scale
    if layer.bias is not None:
        shift = shift + layer.bias.detach().double()
    view = (-1,) + (1,) * (len(shape) - 1)
    ones = torch.ones(shape, dtype=torch.float64)
    return Diagonal((scale.view(view) * ones).reshape(-1), (shift.view(view) * ones).reshape(-1), shape)


def _operator(layer: nn.Module, shape: tuple[int, ...], name: str) -> LinearOp | None:
    """The exact linear operator of a layer on per-example inputs of `shape` (None: identity)."""
    if isinstance(layer, (nn.Flatten, nn.Identity, nn.Dropout, Reshape)):
        return None
    ones = torch.ones(1, *shape, dtype=torch.float64)
    if isinstance(layer, Elementwise):
        scale, shift = layer.scale_shift(shape)
        return Diagonal(scale, shift, shape)
    if isinstance(layer, Normalize):
        scale = (ones / layer.std.double()).expand_as(ones).reshape(-1)
        shift = (-layer.mean.double() / layer.std.double() * ones).reshape(-1)
        return Diagonal(scale, shift, shape)
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        return _batch_norm(layer, shape, name)
    if isinstance(layer, nn.Linear):
        if len(shape) != 1:  # applied along the last axis: a block-diagonal map
            weight = _linear_map(shape, lambda v: F.linear(v, layer.weight))
            bias = layer.bias.expand(*shape[:-1], -1).reshape(-1) if layer.bias is not None else None
        else:
            weight, bias = layer.weight.detach(), layer.bias
        bias = torch.zeros(weight.shape[0], dtype=torch.float64) if bias is None else bias.detach().reshape(-1)
        return Dense(compact(weight.double()), bias.double())
    if isinstance(layer, nn.Conv2d):
        return _conv(layer, shape, name)
    if isinstance(layer, nn.AvgPool2d):
        return _avg_pool(layer, shape)
    return None


def _max_pool(layer: nn.MaxPool2d, shape: tuple[int, ...]) -> MaxPool:
    """The input indices in each window of a MaxPool2d on (C, H, W) inputs."""
    if len(shape) != 3:
        raise UnsupportedModelError(f"MaxPool2d on inputs of shape {shape}: expected (C, H, W)")
    (kh, kw), (sh, sw) = _pair(layer.kernel_size), _pair(layer.stride or layer.kernel_size)
    (ph, pw), (dh, dw) = _pair(layer.padding), _pair(layer.dilation)
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


def check_fixed(model: nn.Module) -> None:
    """Refuse a BatchNorm in training mode: it normalises by the batch's statistics, so the
    model is not one fixed function of each input."""
    for name, layer in model.named_modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.training:
            raise UnsupportedModelError(f"layer {name!r} is a {type(layer).__name__} in training mode (batch "
                                        "statistics, not a fixed map): call model.eval() first")


LINEAR_LAYERS = (nn.Linear, nn.Conv2d, nn.AvgPool2d, nn.modules.batchnorm._BatchNorm, Normalize, nn.Flatten,
                 nn.Identity, nn.Dropout, Elementwise, Reshape)


def relu_network(model: nn.Module, input_shape: tuple[int, ...], *, bounds: tuple[float, float] = (0.0, 1.0)) -> ReluNetwork:
    """Read `model` (on per-example inputs of `input_shape`) as a ReluNetwork in float64."""
    with torch.no_grad():
        return _read(model, tuple(input_shape), bounds)


def _read(model: nn.Module, input_shape: tuple[int, ...], bounds: tuple[float, float]) -> ReluNetwork:
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_fixed(model)
    model64 = copy.deepcopy(model).cpu().double().eval()
    gen = torch.Generator().manual_seed(0)
    probe = bounds[0] + (bounds[1] - bounds[0]) * torch.rand(PROBES, *input_shape, generator=gen, dtype=torch.float64)
    calls, output = _calls(model64, probe)
    if not isinstance(output, torch.Tensor):
        raise UnsupportedModelError(f"the model returns a {type(output).__name__}, not a tensor of logits")
    ops: list[LinearOp | Nonlinear] = []
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
        elif isinstance(layer, LINEAR_LAYERS):
            op = _operator(layer, shape, name)
            if op is not None:
                ops.append(op)
        else:
            raise UnsupportedModelError(
                f"layer {name!r} is a {type(layer).__name__}; the exact tools read Linear, Conv2d, AvgPool2d, "
                "MaxPool2d, BatchNorm (eval mode), ReLU, Flatten, Normalize, Identity, Dropout and ONNX "
                "Elementwise/Reshape layers"
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


def _canonical(ops: list[LinearOp | Nonlinear], input_shape: tuple[int, ...]) -> ReluNetwork:
    """Chain consecutive linear operators into one Affine (fusing where free); put an identity
    between consecutive non-linearities and at both ends; map one logit z to [0, z]. The layers
    keep the model's order: a ReLU before a max-pool stays there (max_i relu(z_i) equals
    relu(max_i z_i), but their relaxations differ, and the ReLU-first one needs CROWN rows only
    for the unstable ReLUs, where the pool-first one needs them for every open window's inputs)."""
    affines: list[Affine] = []
    nonlinear: list[Nonlinear] = []
    width = math.prod(input_shape)
    pending = Affine((), width)
    for op in ops:
        if not isinstance(op, (Relu, MaxPool)):
            pending = pending.then(Affine((op,), width))
            width = op.out_width
            continue
        if isinstance(op, Relu) and nonlinear and isinstance(nonlinear[-1], Relu) and not pending.ops:
            continue  # relu(relu(z)) = relu(z)
        affines.append(pending)
        nonlinear.append(op)
        if isinstance(op, MaxPool):
            width = op.groups.shape[0]
        pending = Affine((), width)
    if width == 1:
        pending = pending.then(Affine((Dense(torch.tensor([[0.0], [1.0]], dtype=torch.float64),
                                             torch.zeros(2, dtype=torch.float64)),), 1))
    affines.append(pending)
    return ReluNetwork(tuple(affines), tuple(nonlinear), tuple(input_shape))


def _diagonal(values: torch.Tensor) -> torch.Tensor:
    n = len(values)
    if n * n <= DENSE_LIMIT:
        return torch.diag(values)
    index = torch.arange(n)
    return torch.sparse_coo_tensor(torch.stack([index, index]), values, (n, n), check_invariants=True).coalesce()
