"""Tensors between processes as numpy arrays, which Ray's object store moves without pickling
their data (a batch pickled as torch tensors costs the learner about 8 ms a call).

`to_wire` turns a tuple of tensors (a Batch, Targets) or a state dict into arrays on the host;
`from_wire` copies them back into tensors on a device (arrays from the store are read-only).
"""
from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T", bound=tuple)


def to_wire(tensors: T) -> tuple[np.ndarray, ...]:
    return tuple(t.detach().cpu().numpy() for t in tensors)


def from_wire(cls: type[T], arrays: tuple[np.ndarray, ...], device: torch.device | str) -> T:
    return cls(*(torch.tensor(a, device=device) for a in arrays))


def state_to_wire(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {name: t.detach().cpu().numpy() for name, t in state.items()}


def state_from_wire(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {name: torch.tensor(a) for name, a in arrays.items()}
