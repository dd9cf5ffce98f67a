"""DeepMind Control Suite tasks, named `domain-task` (`walker-walk`, `ball_in_cup-catch`).

Observations are the suite's observation dict flattened in its own key order. An episode
ends in truncation at the time limit (a LAST step with discount 1) or in termination at a
true terminal state (a LAST step with discount 0). Scores are DMC's: return / 1000.
"""
from __future__ import annotations

import functools

import numpy as np
from dm_control import suite

from ezm.tasks.task import Task, UnknownTaskError

NAMES = tuple(f"{domain}-{task}" for domain, task in suite.ALL_TASKS)  # every suite task, as typed


def _split(name: str) -> tuple[str, str]:
    domain, _, task = name.partition("-")
    if (domain, task) not in suite.ALL_TASKS:
        raise UnknownTaskError(f"{name!r} is not a dm_control suite task")
    return domain, task


class DMCEnv:
    """One dm_control environment behind the RawEnv protocol."""

    def __init__(self, name: str):
        domain, task = _split(name)
        self.env = suite.load(domain, task, task_kwargs={"random": 0})  # the dm_control Environment
        spec = self.env.observation_spec()
        sizes = [int(np.prod(s.shape)) for s in spec.values()]
        self._slices = []  # (key, slice of the flat vector) in the suite's key order
        start = 0
        for key, size in zip(spec, sizes):
            self._slices.append((key, slice(start, start + size)))
            start += size
        self.obs_size = start  # length of the flat observation

    def _flatten(self, observation: dict) -> np.ndarray:
        flat = np.empty(self.obs_size)  # [obs_size]
        for key, part in self._slices:
            flat[part] = observation[key]
        return flat

    def reset(self, seed: int) -> np.ndarray:
        # The task draws every random choice of an episode from its RandomState: replacing it
        # makes the episode depend on `seed` alone, without rebuilding the simulator.
        self.env.task._random = np.random.RandomState(seed)
        return self._flatten(self.env.reset().observation)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]:
        step = self.env.step(action)
        last = step.last()
        terminated = last and step.discount == 0.0
        truncated = last and not terminated
        return self._flatten(step.observation), float(step.reward), terminated, truncated

    def close(self) -> None:
        self.env.close()


@functools.lru_cache(maxsize=None)
def task(name: str) -> Task:
    """The Task record of a suite task (the simulator is built once per name and cached)."""
    env = DMCEnv(name)
    spec = env.env.action_spec()
    record = Task(
        name=name,
        source="dmc",
        obs_size=env.obs_size,
        action_size=int(spec.shape[0]),
        action_low=tuple(float(x) for x in spec.minimum),
        action_high=tuple(float(x) for x in spec.maximum),
        episode_length=int(env.env._step_limit),
        score_low=0.0,
        score_high=1000.0,
    )
    env.close()
    return record


def make(name: str) -> DMCEnv:
    return DMCEnv(name)
