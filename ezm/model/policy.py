"""The policy distribution: a tanh-squashed diagonal Gaussian over the task's valid action dims.

An action is a = tanh(u) with u ~ N(loc, std) (TD-MPC2's and both EZ releases' squashed
Gaussian), so every sample lies in (-1, 1) and the policy can put its mass near a bound, as
bang-bang control wants, without pushing density past it. The policy head emits 2A raw numbers
per state: loc = 5 tanh(raw / 5) (a soft clamp, as EfficientZero-V2 does, so that atanh of the
searched actions, at most atanh(0.999) = 3.8, is always reachable); the log-std is mapped into
[log_std_min, LOG_STD_MAX] by log_std_min + (LOG_STD_MAX - log_std_min) (tanh(x) + 1) / 2
(TD-MPC2 style) and std = exp(log-std). log_std_min is `ModelConfig.policy_log_std_min`; the head
starts at `ModelConfig.policy_init_std` (see `raw_log_std`). The deterministic action is tanh(loc).

The search samples candidates tanh(loc + std * noise) (std widened by `root_widen` for most
root candidates), clips them to [-0.999, 0.999] and zeroes the dims the task's mask marks
invalid. `log_prob` scores such an action by the squashed density (with the tanh Jacobian);
`entropy` is the squashed distribution's, which, unlike the Gaussian's, is largest at a
moderate std and falls when the mass piles up at +-1, so an entropy bonus keeps actions spread
over the interval instead of widening the Gaussian without bound.

Masked dims (a task with fewer action dims than the padded A) carry loc exactly 0 and std
exactly exp(LOG_STD_MIN), so a sample there is 0 to within 1e-4 even before the search zeroes
it; `log_prob` and `entropy` sum over valid dims only, so masked dims never reach a loss.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

LOG_STD_MIN = -10.0
LOG_STD_MAX = 2.0
LOC_BOUND = 5.0  # |loc| < 5: tanh(5) = 0.9999
ACTION_BOUND = 0.999  # every action the search proposes lies in [-0.999, 0.999]
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_HERMITE_NODES = 8  # Gauss-Hermite nodes of the entropy's expectation over the Gaussian


def gaussian(raw: Tensor, mask: Tensor, log_std_min: float = LOG_STD_MIN) -> tuple[Tensor, Tensor]:
    """(loc [B, A], std [B, A]) of the pre-tanh Gaussian from the head's raw output [B, 2A] and a 0/1 mask [B, A]."""
    raw_loc, raw_log_std = raw.chunk(2, dim=-1)  # [B, A] each
    mask = mask.to(raw.dtype)
    loc = LOC_BOUND * torch.tanh(raw_loc / LOC_BOUND) * mask  # [B, A], exactly 0 on masked dims
    log_std = log_std_min + 0.5 * (LOG_STD_MAX - log_std_min) * (torch.tanh(raw_log_std) + 1)  # [B, A]
    log_std = log_std * mask + LOG_STD_MIN * (1 - mask)  # [B, A], LOG_STD_MIN on masked dims
    return loc, log_std.exp()


def raw_log_std(std: float, log_std_min: float = LOG_STD_MIN) -> float:
    """The raw head output that `gaussian` maps to `std` (inverse of the log-std mapping)."""
    log_std = math.log(std)
    if not log_std_min < log_std < LOG_STD_MAX:
        raise ValueError(f"std {std} is outside exp([{log_std_min}, {LOG_STD_MAX}])")
    return math.atanh((log_std - log_std_min) / (0.5 * (LOG_STD_MAX - log_std_min)) - 1)


def squash(u: Tensor) -> Tensor:
    """Actions tanh(u) clipped to [-0.999, 0.999]."""
    return torch.tanh(u).clamp(-ACTION_BOUND, ACTION_BOUND)


def _log_tanh_jacobian(u: Tensor) -> Tensor:
    """log(1 - tanh(u)^2), computed stably for large |u|."""
    return 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))


def log_prob(loc: Tensor, std: Tensor, action: Tensor, mask: Tensor) -> Tensor:
    """log density of the squashed Gaussian at `action` [B, A], summed over the valid dims: [B]."""
    u = torch.atanh(action.clamp(-ACTION_BOUND, ACTION_BOUND))  # [B, A]
    z = (u - loc) / std  # [B, A]
    per_dim = -0.5 * z.square() - std.log() - _LOG_SQRT_2PI - _log_tanh_jacobian(u)  # [B, A]
    return (per_dim * mask.to(per_dim.dtype)).sum(-1)


@functools.lru_cache(maxsize=None)
def _hermite(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """Nodes and weights [n] with E[f(z)] ~ sum w f(z) for z ~ N(0, 1) (probabilists' scaling),
    built once per dtype and device: `entropy` runs at every update."""
    nodes, weights = np.polynomial.hermite.hermgauss(_HERMITE_NODES)
    return (torch.tensor(nodes * math.sqrt(2.0), dtype=dtype, device=device),
            torch.tensor(weights / math.sqrt(math.pi), dtype=dtype, device=device))


def entropy(loc: Tensor, std: Tensor, mask: Tensor) -> Tensor:
    """Entropy of the squashed Gaussian summed over the valid dims: [B] from loc, std [B, A].

    H(tanh(u)) = H(u) + E[log(1 - tanh(u)^2)], the expectation by Gauss-Hermite quadrature
    (deterministic and differentiable in loc and std).
    """
    nodes, weights = _hermite(std.dtype, std.device)  # [n]
    u = loc[..., None] + std[..., None] * nodes  # [B, A, n]
    jacobian = (_log_tanh_jacobian(u) * weights).sum(-1)  # [B, A]
    per_dim = std.log() + 0.5 + _LOG_SQRT_2PI + jacobian  # [B, A]
    return (per_dim * mask.to(per_dim.dtype)).sum(-1)
