"""Replay: ring lanes of states per environment row, prioritised sequence sampling per task."""
from ezm.replay.buffer import Batch, Replay

__all__ = ["Batch", "Replay"]
