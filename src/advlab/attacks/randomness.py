"""Counter-based random numbers: a value is a pure function of (seed, example index, draw, slot).

Drawing per batch from a generator makes an attack's result depend on the batch size, the device
and the number of processes. A counter-based generator (Salmon et al. 2011, "Parallel random
numbers: as easy as 1, 2, 3") hashes the coordinates instead, here with splitmix64 (Steele, Lea
& Flood 2014) on int64 tensors (wrapping multiplication, logical shifts), on the CPU. Random
starts (`geometry.random_start`), random targets, and the per-iteration draws of APGD, FAB and
Square all come from `counter_uniform`; `stream` separates draws that serve different purposes
within one step.
"""

from __future__ import annotations

import torch

_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as a signed 64-bit integer
_M1 = -4658895280553007687  # 0xBF58476D1CE4E5B9
_M2 = -7723592293110705685  # 0x94D049BB133111EB
_STREAM_SHIFT = 32  # draw numbers stay below 2**32, so (draw, stream) -> draw + stream << 32 is one-to-one


def _srl(z: torch.Tensor, k: int) -> torch.Tensor:
    return (z >> k) & ((1 << (64 - k)) - 1)


def _mix(z: torch.Tensor) -> torch.Tensor:
    z = (z ^ _srl(z, 30)) * _M1
    z = (z ^ _srl(z, 27)) * _M2
    return z ^ _srl(z, 31)


def _signed(value: int) -> int:
    value %= 1 << 64
    return value - (1 << 64) if value >= 1 << 63 else value


def counter_uniform(seed: int, indices: torch.Tensor, draw: int, n: int, *, stream: int = 0,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """(N, n) float64 uniforms in (0, 1): number j of example `indices[i]` in draw `draw` is
    splitmix64 output j + 1 of a stream keyed by (seed, index, draw, stream). Computed on the
    CPU (the same bits on every device), no state; returned on `device` (default: the CPU)."""
    return counter_uniform_draws(seed, indices, range(draw, draw + 1), n, stream=stream, device=device)[:, 0]


def counter_uniform_draws(seed: int, indices: torch.Tensor, draws: range, n: int, *, stream: int = 0,
                          device: torch.device | str | None = None) -> torch.Tensor:
    """(N, len(draws), n): `counter_uniform` for every draw of `draws` at once (the same numbers,
    one vectorised pass: an attack that draws at every iteration fetches a block of iterations)."""
    key = _mix(torch.tensor(_signed((seed + 1) * _GOLDEN), dtype=torch.int64))
    key = _mix(key + indices.to(device="cpu", dtype=torch.int64) * _GOLDEN)
    offsets = (torch.arange(draws.start, draws.stop, dtype=torch.int64) + ((stream << _STREAM_SHIFT) + 1)) * _GOLDEN
    key = _mix(key.unsqueeze(1) + offsets)  # int64 arithmetic wraps modulo 2**64, as _signed does
    counters = torch.arange(1, n + 1, dtype=torch.int64) * _GOLDEN
    bits = _srl(_mix(key.unsqueeze(2) + counters), 11)  # the top 53 bits
    return ((bits.double() + 0.5) * 2.0**-53).to(device or "cpu")


def counter_sign(seed: int, indices: torch.Tensor, draw: int, n: int, dtype: torch.dtype, *, stream: int = 0,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """(N, n) values +-1 with equal probability."""
    return torch.where(counter_uniform(seed, indices, draw, n, stream=stream) < 0.5, -1.0, 1.0).to(device or "cpu", dtype)
