"""The task record and the protocol every task source's environment follows."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Task:
    name: str  # the name users type: "walker-walk", "Pendulum-v1", "h1-walk"
    source: str  # "dmc", "gym" or "humanoidbench"
    obs_size: int  # length of the flat observation vector
    action_size: int  # number of action dimensions
    action_low: tuple[float, ...]  # lower bound of every action dimension
    action_high: tuple[float, ...]  # upper bound of every action dimension
    episode_length: int  # simulator steps before the time-limit truncation
    score_low: float  # return that normalises to 0 (random policy; 0 for DMC)
    score_high: float  # return that normalises to 1 (success; 1000 for DMC)

    def normalized_score(self, episode_return: float) -> float:
        return (episode_return - self.score_low) / (self.score_high - self.score_low)


class RawEnv(Protocol):
    """One environment of one task, as a source builds it (no padding, no batching)."""

    def reset(self, seed: int) -> np.ndarray:
        """Start an episode from `seed`; returns the flat observation [obs_size]."""

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]:
        """Apply one action in the task's bounds [action_size] for one simulator step.

        Returns (observation [obs_size], reward, terminated, truncated): `terminated` is a
        true terminal state (no bootstrapping); `truncated` is the time limit.
        """

    def close(self) -> None:
        """Release the simulator."""


class TaskError(ValueError):
    """A task or suite that cannot be used; the message is meant for the user as is."""


class UnknownTaskError(TaskError):
    """A task or suite name that no source knows; the message suggests the closest names."""


class MissingPackageError(TaskError):
    """A task whose source package is not installed; the message says how to install it."""


class EnvironmentNaNError(RuntimeError):
    """An environment returned NaN or inf; the message names the task, copy and step."""
