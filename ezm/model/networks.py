"""Building blocks of the world model: all MLPs (spec section 2)."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class ResidualBlock(nn.Module):
    """Pre-LayerNorm residual MLP block: x + Linear(ReLU(Linear(LayerNorm(x))))."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:  # [B, W] -> [B, W]
        return x + self.fc2(self.fc1(self.norm(x)).relu())


def residual_tower(width: int, blocks: int) -> nn.Sequential:
    """`blocks` residual blocks of one width ([B, W] -> [B, W]); no blocks is the identity."""
    return nn.Sequential(*(ResidualBlock(width) for _ in range(blocks)))


class FusedInput(nn.Module):
    """Mix a latent with side inputs: h + Linear(ReLU(Linear(LayerNorm([h, side])))).

    The first stage of the dynamics (side = action, task embedding) and of the reward path
    (side = encoded action, task embedding); the sum keeps the latent's residual stream.
    """

    def __init__(self, in_size: int, width: int):
        super().__init__()
        self.in_size = in_size
        self.norm = nn.LayerNorm(in_size)
        self.fc1 = nn.Linear(in_size, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, latent: Tensor, fused: Tensor) -> Tensor:  # [B, H], [B, in_size] -> [B, H]
        return latent + self.fc2(self.fc1(self.norm(fused)).relu())


def head(in_size: int, hidden: int, out_size: int, dropout: float = 0.0) -> nn.Sequential:
    """[Linear + (Dropout) + BatchNorm + ReLU] x 2 -> Linear: [B, in_size] -> [B, out_size].

    BatchNorm uses batch statistics in train mode (so a train-mode batch needs >= 2 rows and
    rows influence each other) and running statistics in eval mode.
    """
    layers: list[nn.Module] = []
    for size in (in_size, hidden):
        layers.append(nn.Linear(size, hidden))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.BatchNorm1d(hidden), nn.ReLU()]
    layers.append(nn.Linear(hidden, out_size))
    return nn.Sequential(*layers)


def norm_mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers through `sizes` with LayerNorm + ReLU between them (SimSiam projector
    and predictor); the last layer is plain Linear."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers += [nn.LayerNorm(sizes[i + 1]), nn.ReLU()]
    return nn.Sequential(*layers)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class ValueEnsemble(nn.Module):
    """V value heads over the same features, each `head(in_size, hidden, bins, dropout)`, held as
    one grouped MLP: [B, in_size] -> [B, V, bins].

    The first layers of the V heads are one Linear to V * hidden channels, the second and third
    batched matmuls over the head axis, and each BatchNorm normalises the V heads' channels side
    by side (per channel, so exactly as V separate BatchNorms). The same numbers as V separate
    heads in a fifth of the calls, which on a CPU are most of a small model's time.
    """

    def __init__(self, in_size: int, hidden: int, bins: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads, self.hidden = heads, hidden
        self.input = nn.Linear(in_size, heads * hidden)
        self.norm1 = nn.BatchNorm1d(heads * hidden)
        self.weight2 = nn.Parameter(torch.empty(heads, hidden, hidden))  # [V, in, out]
        self.bias2 = nn.Parameter(torch.empty(heads, 1, hidden))
        self.norm2 = nn.BatchNorm1d(heads * hidden)
        self.weight3 = nn.Parameter(torch.empty(heads, hidden, bins))  # [V, in, out]
        self.bias3 = nn.Parameter(torch.empty(heads, 1, bins))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        bound = hidden ** -0.5  # nn.Linear's default U(+-1/sqrt(fan_in)); layers 2 and 3 read `hidden`
        for parameter in (self.weight2, self.bias2, self.weight3, self.bias3):
            nn.init.uniform_(parameter, -bound, bound)

    def _split(self, x: Tensor) -> Tensor:  # [B, V * hidden] -> [V, B, hidden]
        return x.view(x.shape[0], self.heads, self.hidden).transpose(0, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Logits [B, V, bins] of every head for features x [B, in_size]."""
        h = self.norm1(self.dropout(self.input(x))).relu()  # [B, V * hidden]
        h = torch.baddbmm(self.bias2, self._split(h), self.weight2)  # [V, B, hidden]
        h = self.norm2(self.dropout(h.transpose(0, 1).flatten(1))).relu()  # [B, V * hidden]
        return torch.baddbmm(self.bias3, self._split(h), self.weight3).transpose(0, 1)  # [B, V, bins]

    def head(self, index: int, x: Tensor) -> Tensor:
        """Logits [R, bins] of head `index` alone for features x [R, in_size]; eval mode only
        (BatchNorm's running statistics, no dropout), where a head's rows need no other head."""
        if self.training:
            raise RuntimeError("ValueEnsemble.head evaluates one head in eval mode only")
        channels = slice(index * self.hidden, (index + 1) * self.hidden)
        h = F.linear(x, self.input.weight[channels], self.input.bias[channels])  # [R, hidden]
        h = _eval_norm(self.norm1, channels, h).relu()
        h = torch.addmm(self.bias2[index, 0], h, self.weight2[index])  # [R, hidden]
        h = _eval_norm(self.norm2, channels, h).relu()
        return torch.addmm(self.bias3[index, 0], h, self.weight3[index])  # [R, bins]


def _eval_norm(norm: nn.BatchNorm1d, channels: slice, x: Tensor) -> Tensor:
    """The eval-mode BatchNorm `norm` restricted to `channels`, on x [R, len(channels)]."""
    return F.batch_norm(x, norm.running_mean[channels], norm.running_var[channels],
                        norm.weight[channels], norm.bias[channels], training=False, eps=norm.eps)
