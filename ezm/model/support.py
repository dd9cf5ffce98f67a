"""Categorical reward and value: the h-transform and a two-hot support on its grid.

A scalar x is squashed by h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps x, placed two-hot on
`bins` points spaced evenly on [h(low), h(high)], and read back as the inverse h of the
softmax expectation over that grid. Negative values are kept: nothing is clipped at 0.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

EPS = 0.001  # the linear term of h, which makes h invertible in closed form


def h(x: Tensor) -> Tensor:
    """The value transform of MuZero: sign(x)(sqrt(|x| + 1) - 1) + eps x."""
    return torch.sign(x) * (torch.sqrt(x.abs() + 1) - 1) + EPS * x


def h_inverse(y: Tensor) -> Tensor:
    """Closed-form inverse of `h`."""
    root = (torch.sqrt(1 + 4 * EPS * (y.abs() + 1 + EPS)) - 1) / (2 * EPS)
    return torch.sign(y) * (root.square() - 1)


class Support(nn.Module):
    """`bins` points spaced evenly on [h(low), h(high)]; two-hot targets and decoding."""

    def __init__(self, low: float, high: float, bins: int):
        super().__init__()
        if not low < high or bins < 2:
            raise ValueError(f"a support needs low < high and at least 2 bins, got {low}, {high}, {bins}")
        self.low, self.high, self.bins = low, high, bins
        ends = h(torch.tensor([low, high], dtype=torch.float64))
        grid = torch.linspace(ends[0].item(), ends[1].item(), bins)  # [bins] in h-space
        self.register_buffer("grid", grid, persistent=False)

    def two_hot(self, x: Tensor) -> Tensor:
        """Targets [..., bins] for scalars x [...]; values outside [low, high] go to the ends."""
        grid = self.grid.to(x.dtype)
        step = grid[1] - grid[0]
        position = (h(x).clamp(grid[0], grid[-1]) - grid[0]) / step  # [...] in [0, bins - 1]
        lower = position.floor().clamp(max=self.bins - 2)  # [...] index of the lower bin
        upper_weight = (position - lower).clamp(0, 1).unsqueeze(-1)  # [..., 1]
        lower_index = lower.long().unsqueeze(-1)  # [..., 1]
        target = torch.zeros(*x.shape, self.bins, dtype=x.dtype, device=x.device)  # [..., bins]
        target.scatter_(-1, lower_index, 1 - upper_weight)
        target.scatter_(-1, lower_index + 1, upper_weight)
        return target

    def decode(self, logits: Tensor) -> Tensor:
        """Scalars [...] from logits [..., bins]: inverse h of the softmax expectation."""
        dtype = torch.promote_types(logits.dtype, torch.float32)  # no bf16 softmax
        expectation = (logits.to(dtype).softmax(-1) * self.grid.to(dtype)).sum(-1)  # [...]
        return h_inverse(expectation)

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}, bins={self.bins}"
