"""The linear operators of a network's affine maps: v -> W v + b on flat per-example vectors
(values (B, width); linear bounds (B, R, width), one row per bounded quantity), W never
materialised for bounds (`Affine.weight` of `advlab.exact.relu_network` forms it for the
solvers). The non-linear operators and their relaxations are in `advlab.exact.operators`.

Each owns what bound propagation asks of a linear map (the auto_LiRPA design, Xu et al. 2020,
"Automatic perturbation analysis for scalable certified robustness and beyond", Sec. 3):
`linear` (W v), `offset` (b), `transpose` (lam -> lam W, the backward CROWN step),
`magnitude` (|W| r, the interval step: centre c, radius r go to W c + b, |W| r).

- `Dense`: a matrix, dense or sparse COO (`compact` picks the layout).
- `Conv`: a 2-d convolution; its transpose is the transposed convolution of the rows reshaped
  to (B R, C, H, W); an average pool is a depthwise convolution.
- `Diagonal`: a per-element affine map (BatchNorm in eval mode, Normalize), folded into a
  neighbouring Dense or Conv where that costs nothing (`fuse`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

DENSE_LIMIT = 1 << 22  # matrices with more entries than this are kept sparse


@dataclass(frozen=True)
class Dense:
    """v -> W v + b on flat vectors; W (out, in) float64, dense or sparse (COO)."""

    weight: torch.Tensor
    bias: torch.Tensor

    @property
    def sparse(self) -> bool:
        return self.weight.layout != torch.strided

    @property
    def out_width(self) -> int:
        return self.weight.shape[0]

    def linear(self, v: torch.Tensor) -> torch.Tensor:
        """v (M, in) -> W v (M, out)."""
        return torch.sparse.mm(self.weight, v.T).T if self.sparse else v @ self.weight.T

    def offset(self) -> torch.Tensor:
        return self.bias

    def transpose(self, lam: torch.Tensor) -> torch.Tensor:
        """lam (M, out) -> lam W (M, in)."""
        return torch.sparse.mm(self.weight.T, lam.T).T if self.sparse else lam @ self.weight

    def magnitude(self, r: torch.Tensor) -> torch.Tensor:
        return torch.sparse.mm(self.weight.abs(), r.T).T if self.sparse else r @ self.weight.abs().T

    def then(self, outer: Dense) -> Dense:
        """outer(self(v)) as one matrix."""
        if not self.sparse and not outer.sparse:
            weight = outer.weight @ self.weight
        elif outer.sparse:
            weight = torch.sparse.mm(outer.weight, self.weight)
        else:
            weight = torch.sparse.mm(self.weight.T, outer.weight.T).T
        return Dense(compact(weight), outer.linear(self.bias.unsqueeze(0))[0] + outer.bias)


@dataclass(frozen=True)
class Diagonal:
    """v -> s * v + t elementwise on flat vectors (Normalize, BatchNorm in eval mode, ONNX Add/Mul);
    `shape`: the per-example shape, so that a neighbouring Conv can absorb it per channel."""

    scale: torch.Tensor
    shift: torch.Tensor
    shape: tuple[int, ...]

    @property
    def out_width(self) -> int:
        return self.scale.shape[0]

    def linear(self, v: torch.Tensor) -> torch.Tensor:
        return v * self.scale

    def offset(self) -> torch.Tensor:
        return self.shift

    def transpose(self, lam: torch.Tensor) -> torch.Tensor:
        return lam * self.scale

    def magnitude(self, r: torch.Tensor) -> torch.Tensor:
        return r * self.scale.abs()

    def per_channel(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(scale, shift) per channel (C,) when both are constant over each (C, H, W) channel."""
        if len(self.shape) != 3:
            return None
        s, t = self.scale.reshape(self.shape), self.shift.reshape(self.shape)
        s0, t0 = s[:, :1, :1], t[:, :1, :1]
        return (s0.flatten(), t0.flatten()) if bool((s == s0).all() and (t == t0).all()) else None


@dataclass(frozen=True)
class Conv:
    """A 2-d convolution (zero padding) on (C, H, W) inputs, flattened: W v + b with W the
    convolution, applied as one; its transpose is the transposed convolution."""

    weight: torch.Tensor  # (C_out, C_in / groups, kh, kw)
    bias: torch.Tensor  # (C_out,)
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]

    @property
    def out_width(self) -> int:
        return math.prod(self.out_shape)

    def _conv(self, v: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(v.reshape(-1, *self.in_shape), weight, None, self.stride, self.padding, self.dilation, self.groups)
        return out.reshape(v.shape[0], -1)

    def linear(self, v: torch.Tensor) -> torch.Tensor:
        return self._conv(v, self.weight)

    def offset(self) -> torch.Tensor:
        return self.bias.view(-1, 1, 1).expand(self.out_shape).reshape(-1)

    def transpose(self, lam: torch.Tensor) -> torch.Tensor:
        """lam (M, out) -> lam W (M, in): the transposed convolution of the rows as (M, C, H, W).
        Computed by the convolution's input-gradient kernel (`conv2d_input`), which equals
        `conv_transpose2d` with the output padding that restores the input's size bit for bit
        and runs 2-3x faster in float64 on CPU."""
        out = torch.nn.grad.conv2d_input((lam.shape[0], *self.in_shape), self.weight, lam.reshape(-1, *self.out_shape),
                                         self.stride, self.padding, self.dilation, self.groups)
        return out.reshape(lam.shape[0], -1)

    def magnitude(self, r: torch.Tensor) -> torch.Tensor:
        return self._conv(r, self.weight.abs())

    def scaled(self, diagonal: Diagonal) -> Conv | None:
        """diagonal(self(v)) as one convolution, when the diagonal is per channel."""
        channel = diagonal.per_channel()
        if channel is None:
            return None
        s, t = channel
        return Conv(self.weight * s.view(-1, 1, 1, 1), self.bias * s + t, self.stride, self.padding, self.dilation,
                    self.groups, self.in_shape, self.out_shape)


Linear = Dense | Diagonal | Conv


def fuse(inner: Linear, outer: Linear) -> Linear | None:
    """outer(inner(v)) as one operator where that costs nothing (BatchNorm into its convolution,
    Normalize into a dense layer, dense into dense); None otherwise."""
    if isinstance(inner, Diagonal) and isinstance(outer, Diagonal):
        return Diagonal(inner.scale * outer.scale, inner.shift * outer.scale + outer.shift, inner.shape)
    if isinstance(inner, Conv) and isinstance(outer, Diagonal):
        return inner.scaled(outer)
    if isinstance(inner, Dense) and isinstance(outer, Dense):
        return inner.then(outer)
    if isinstance(inner, Diagonal) and isinstance(outer, Dense) and not outer.sparse:
        return Dense(outer.weight * inner.scale, outer.linear(inner.shift.unsqueeze(0))[0] + outer.bias)
    if isinstance(inner, Dense) and isinstance(outer, Diagonal) and not inner.sparse:
        return Dense(inner.weight * outer.scale.unsqueeze(1), inner.bias * outer.scale + outer.shift)
    return None


def compact(weight: torch.Tensor) -> torch.Tensor:
    """Dense when small or mostly non-zero, sparse COO otherwise."""
    if weight.layout == torch.strided:
        if weight.numel() <= DENSE_LIMIT or bool((weight != 0).float().mean() > 0.25):
            return weight
        return weight.to_sparse().coalesce()
    weight = weight.coalesce()
    if weight.numel() <= DENSE_LIMIT or weight._nnz() > 0.25 * weight.numel():
        return weight.to_dense()
    return weight
