"""Building blocks of the world model: all MLPs (spec section 2)."""
from __future__ import annotations

from torch import Tensor, nn


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
