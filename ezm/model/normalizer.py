"""Per-task running standardisation of observations, applied before the representation H.

Both releases standardise observations by a running mean and variance. With several tasks,
one padded observation index means a different quantity in every task, so the statistics are
kept per task: mean and variance [T, O], merged from each training batch's rows by the
parallel-variance formula (Chan et al.), so that they are the exact moments of every row the
learner has seen. Until a task has been seen its observations pass unchanged. Padded dims
(always 0) have variance 0 and stay 0. Standardised values are clipped to +-`clip`.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class ObservationNorm(nn.Module):
    def __init__(self, num_tasks: int, obs_size: int, eps: float = 1e-4, clip: float = 10.0):
        super().__init__()
        self.eps, self.clip = eps, clip
        kw = dict(dtype=torch.float64)
        self.register_buffer("count", torch.zeros(num_tasks, **kw))  # [T] rows seen
        self.register_buffer("mean", torch.zeros(num_tasks, obs_size, **kw))  # [T, O]
        self.register_buffer("var", torch.ones(num_tasks, obs_size, **kw))  # [T, O]

    def forward(self, obs: Tensor, task: Tensor) -> Tensor:
        """Standardised observations [B, O] of tasks [B]."""
        seen = (self.count[task] > 0)[:, None]  # [B, 1]
        mean = self.mean[task].to(obs.dtype)  # [B, O]
        scale = (self.var[task] + self.eps).rsqrt().to(obs.dtype)  # [B, O]
        return torch.where(seen, ((obs - mean) * scale).clamp(-self.clip, self.clip), obs)

    @torch.no_grad()
    def update(self, obs: Tensor, task: Tensor) -> None:
        """Fold the rows obs [N, O] of tasks [N] into the statistics."""
        x = obs.to(self.mean.dtype)
        n = torch.zeros_like(self.count).index_add_(0, task, torch.ones_like(x[:, 0]))  # [T]
        total = torch.zeros_like(self.mean).index_add_(0, task, x)  # [T, O]
        square = torch.zeros_like(self.mean).index_add_(0, task, x * x)  # [T, O]
        present = (n > 0)[:, None]  # [T, 1]
        n_safe = n.clamp_min(1)[:, None]  # [T, 1]
        batch_mean = total / n_safe  # [T, O]
        batch_var = (square / n_safe - batch_mean.square()).clamp_min(0)  # [T, O]
        count = self.count[:, None]  # [T, 1]
        merged = count + n[:, None]  # [T, 1]
        delta = batch_mean - self.mean
        mean = self.mean + delta * n[:, None] / merged.clamp_min(1)
        var = (self.var * count + batch_var * n[:, None] + delta.square() * count * n[:, None] / merged.clamp_min(1)
               ) / merged.clamp_min(1)
        self.mean.copy_(torch.where(present, mean, self.mean))
        self.var.copy_(torch.where(present, var, self.var))
        self.count.add_(n)
