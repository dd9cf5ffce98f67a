"""Weights through the object store: put once per broadcast, loaded by an actor only when new.

The learner puts a model's state (as host arrays) with `Broadcast.put`; actors receive the
reference in a one-item list (`box`), which Ray passes on unresolved, with its version (the
learner's update count at the put), and fetch it only when the version differs from the one
they hold.
"""
from __future__ import annotations

import ray
import torch

from ezm.distributed.wire import state_from_wire, state_to_wire


class Broadcast:
    def __init__(self) -> None:
        self.version = -1  # learner updates when the weights were put (-1: none yet)
        self.box: list[ray.ObjectRef] = []  # [the reference of the weights]

    def put(self, model: torch.nn.Module, version: int) -> None:
        self.box, self.version = [ray.put(state_to_wire(model.state_dict()))], version  # copied into the store now


def receive(model: torch.nn.Module, box: list[ray.ObjectRef], version: int, held: int) -> int:
    """Load the weights of `box` into `model` unless it holds that `version` already; returns
    the version it holds now."""
    if version != held:
        model.load_state_dict(state_from_wire(ray.get(box[0])))
    return version
