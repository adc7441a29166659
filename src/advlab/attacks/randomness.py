"""Counter-based random numbers: a value is a pure function of (seed, example index, step, slot).

Attacks that draw fresh random numbers at every iteration (Square's windows and signs) cannot
slice one pre-drawn stream per call cheaply, and drawing per batch from a generator makes the
result depend on the batch size and the device. A counter-based generator (Salmon et al. 2011,
"Parallel random numbers: as easy as 1, 2, 3") hashes the coordinates instead: here SplitMix64's
finaliser (Steele, Lea & Flood 2014) applied to a linear combination of them. The same example
gets the same numbers whatever batch it sits in, on any device, in any process.

The base hands each batch's global example indices to `_perturb`.
"""

from __future__ import annotations

import torch



def _signed(value: int) -> int:
    """A 64-bit constant as the int64 with the same bits."""
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_MIX1 = _signed(0xBF58476D1CE4E5B9)
_MIX2 = _signed(0x94D049BB133111EB)
_KEYS = (_signed(0xD1B54A32D192ED03), _signed(0xABC98388FB8FAC03), _signed(0x8CB92BA72F3D8DD7), _signed(0xF1357AEA2E62A9C5))


def _shr(z: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 bits (torch's >> is arithmetic)."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def _mix(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser (int64 arithmetic wraps modulo 2^64)."""
    z = (z ^ _shr(z, 30)) * _MIX1
    z = (z ^ _shr(z, 27)) * _MIX2
    return z ^ _shr(z, 31)


def counter_uniform(seed: int, index: torch.Tensor, step: int, count: int, *, stream: int = 0) -> torch.Tensor:
    """(len(index), count) float64 uniform numbers in [0, 1), a pure function of
    (seed, stream, index, step, column); distinct streams serve distinct purposes."""
    slots = torch.arange(count, dtype=torch.int64, device=index.device)
    seed_t, stream_t, step_t = (torch.tensor(v, dtype=torch.int64, device=index.device) for v in (seed, stream, step))
    key = _mix(_mix(seed_t * _GOLDEN + stream_t * _KEYS[3]) + step_t * _KEYS[0])
    z = key + index.to(torch.int64).unsqueeze(1) * _KEYS[1] + slots.unsqueeze(0) * _KEYS[2]
    z = _mix(_mix(z))
    return _shr(z, 11).to(torch.float64) * 2.0**-53


def counter_randint(seed: int, index: torch.Tensor, step: int, count: int, high: int, *, stream: int = 0) -> torch.Tensor:
    """(len(index), count) integers uniform in 0..high-1."""
    return (counter_uniform(seed, index, step, count, stream=stream) * high).floor().long()


def counter_sign(seed: int, index: torch.Tensor, step: int, count: int, dtype: torch.dtype, *, stream: int = 0) -> torch.Tensor:
    """(len(index), count) values +-1 with equal probability."""
    return torch.where(counter_uniform(seed, index, step, count, stream=stream) < 0.5, -1.0, 1.0).to(dtype)
