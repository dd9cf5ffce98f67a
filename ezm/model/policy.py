"""The policy distribution: a diagonal Gaussian over the task's valid action dims.

The policy head emits 2A raw numbers per state. The mean is tanh(raw mean), so it lies in
[-1, 1]; the log-std is mapped into [log_std_min, LOG_STD_MAX] by
log_std_min + (LOG_STD_MAX - log_std_min) (tanh(x) + 1) / 2 (TD-MPC2 style), and
std = exp(log-std). log_std_min is `ModelConfig.policy_log_std_min`: the release's -10, or a
floor such as log(0.1) (EfficientZero-V2's minimum std) that keeps the policy from collapsing
onto a point while it is trained towards single searched actions. The head starts at
`ModelConfig.policy_init_std` (see `raw_log_std`), wide enough for the early search to explore.

The search samples candidates from N(mean, std) (and a widened N(mean, 3 std) at the root),
clips them to [-0.999, 0.999] and zeroes the dims the task's mask marks invalid. The learner
scores such an action by the Gaussian density at the clipped action (no tanh Jacobian): the
clip only matters at the edges, where the mean is already near +-1.

Masked dims (a task with fewer action dims than the padded A) carry mean exactly 0 and std
exactly exp(LOG_STD_MIN): the narrowest std the head can express, so a sample there is 0 to
within 1e-4 even before the search zeroes it, and log-probabilities stay finite. `log_prob`
and `entropy` sum over valid dims only, so masked dims never reach a loss.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

LOG_STD_MIN = -10.0
LOG_STD_MAX = 2.0
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def gaussian(raw: Tensor, mask: Tensor, log_std_min: float = LOG_STD_MIN) -> tuple[Tensor, Tensor]:
    """(mean [B, A], std [B, A]) from the head's raw output [B, 2A] and a 0/1 mask [B, A]."""
    raw_mean, raw_log_std = raw.chunk(2, dim=-1)  # [B, A] each
    mask = mask.to(raw.dtype)
    mean = torch.tanh(raw_mean) * mask  # [B, A], exactly 0 on masked dims
    log_std = log_std_min + 0.5 * (LOG_STD_MAX - log_std_min) * (torch.tanh(raw_log_std) + 1)  # [B, A]
    log_std = log_std * mask + LOG_STD_MIN * (1 - mask)  # [B, A], LOG_STD_MIN on masked dims
    return mean, log_std.exp()


def raw_log_std(std: float, log_std_min: float = LOG_STD_MIN) -> float:
    """The raw head output that `gaussian` maps to `std` (inverse of the log-std mapping)."""
    log_std = math.log(std)
    if not log_std_min < log_std < LOG_STD_MAX:
        raise ValueError(f"std {std} is outside exp([{log_std_min}, {LOG_STD_MAX}])")
    return math.atanh((log_std - log_std_min) / (0.5 * (LOG_STD_MAX - log_std_min)) - 1)


def log_prob(mean: Tensor, std: Tensor, action: Tensor, mask: Tensor) -> Tensor:
    """log N(action; mean, std) summed over the valid dims: [B] from [B, A] inputs."""
    z = (action - mean) / std  # [B, A]
    per_dim = -0.5 * z.square() - std.log() - _LOG_SQRT_2PI  # [B, A]
    return (per_dim * mask.to(per_dim.dtype)).sum(-1)


def entropy(std: Tensor, mask: Tensor) -> Tensor:
    """Entropy of the Gaussian summed over the valid dims: [B] from std [B, A]."""
    per_dim = std.log() + 0.5 + _LOG_SQRT_2PI  # [B, A]
    return (per_dim * mask.to(per_dim.dtype)).sum(-1)
