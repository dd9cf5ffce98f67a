"""torch's own tanh-squashed Gaussian, the reference the policy's density is tested against."""
import torch


def squashed(loc: torch.Tensor, std: torch.Tensor) -> torch.distributions.TransformedDistribution:
    """tanh(u), u ~ N(loc, std), elementwise."""
    tanh = torch.distributions.transforms.TanhTransform(cache_size=1)
    return torch.distributions.TransformedDistribution(torch.distributions.Normal(loc, std), [tanh])
