"""Counter-based random numbers keyed per root, in plain tensor ops.

Every random draw of a search is a hash of (root key, stream, position), so a root's draws do
not depend on which other roots share its batch, nor on the device: a batch of B roots gives
the results of B single-root searches with the same keys, on CPU and CUDA alike.

Values are unsigned 32-bit integers held in int64; every multiplier is below 2**31, so no
product overflows int64.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

_MASK = 0xFFFFFFFF
_GOLDEN = 0x9E3779B1  # odd 32-bit constant spreading consecutive counters and streams


def _mix(x: Tensor) -> Tensor:
    """A 32-bit avalanche hash (xorshift-multiply rounds) on int64-held unsigned values."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK
    x = x ^ (x >> 15)
    x = (x * 0x2C1B3C6D) & _MASK
    x = x ^ (x >> 16)
    x = (x * 0x297A2D39) & _MASK
    return x ^ (x >> 15)


def keys_from(generator: torch.Generator, batch: int, device: torch.device) -> Tensor:
    """[B] int64 root keys in [0, 2**32) drawn from `generator`, moved to `device`."""
    keys = torch.randint(0, 2**32, (batch,), generator=generator, device=generator.device)  # [B]
    return keys.to(device)


def uniform(keys: Tensor, stream: int, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """[B, *shape] uniforms in the open interval (0, 1), 24 bits each."""
    count = math.prod(shape)
    seed = _mix(_mix(keys & _MASK) ^ ((stream * _GOLDEN) & _MASK))  # [B]
    counter = torch.arange(count, device=keys.device, dtype=torch.int64)  # [n]
    bits = _mix(seed[:, None] ^ _mix((counter * _GOLDEN) & _MASK))  # [B, n]
    return ((bits >> 8).to(dtype) + 0.5).mul_(2.0**-24).reshape(keys.shape[0], *shape)


def normal(keys: Tensor, stream: int, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """[B, *shape] standard normals (Box-Muller on two uniforms)."""
    u = uniform(keys, stream, (*shape, 2), dtype)  # [B, *shape, 2]
    radius = torch.sqrt(-2.0 * torch.log(u[..., 0]))
    return radius * torch.cos((2.0 * math.pi) * u[..., 1])


def gumbel(keys: Tensor, stream: int, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """[B, *shape] standard Gumbel(0, 1) draws."""
    return -torch.log(-torch.log(uniform(keys, stream, shape, dtype)))
