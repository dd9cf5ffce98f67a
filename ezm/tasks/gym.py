"""Gymnasium tasks with a continuous (Box) action space, named by their id (`Pendulum-v1`).

A custom environment is named `module:EnvId` (Gymnasium's convention, `mypkg.envs:MyEnv-v0`):
the module is imported first, which registers the id. The task keeps that whole name, so
every process that builds it (a resume, an evaluation) imports the module again.

Score bounds: 0 is the mean return of the uniform-random policy (from the packaged table,
or measured over 5 episodes when the id is not in it); 1 is the id's registered
`reward_threshold` (the return Gymnasium calls solved) or, where it has none, the value in
`SCORE_HIGH`. When neither exists, `score_high` is NaN and normalised scores are NaN rather
than invented.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib

import gymnasium
import numpy as np

from ezm.tasks import random_policy
from ezm.tasks.task import MissingPackageError, Task, TaskError, UnknownTaskError

SCORE_HIGH = {
    "Pendulum-v1": 0.0,  # every step's reward is <= 0, so 0 is the best return possible
}


class GymEnv:
    """One Gymnasium environment behind the RawEnv protocol."""

    def __init__(self, name: str):
        env_id = registered_id(name)
        try:
            self.env = gymnasium.make(env_id)  # the Gymnasium env with its TimeLimit wrapper
        except (ModuleNotFoundError, gymnasium.error.DependencyNotInstalled) as err:
            raise MissingPackageError(f"Gymnasium task {name!r} needs a package that is not installed "
                                      f"({err}); install it (e.g. pip install 'gymnasium[mujoco]')") from None
        action_space, obs_space = self.env.action_space, self.env.observation_space
        if not isinstance(action_space, gymnasium.spaces.Box):
            self.env.close()
            raise TaskError(f"{name!r} has a {type(action_space).__name__} action space; "
                            "ezm needs continuous (Box) actions")
        if not (np.isfinite(action_space.low).all() and np.isfinite(action_space.high).all()):
            self.env.close()
            raise TaskError(f"{name!r} has unbounded actions; ezm rescales [-1, 1] to finite bounds")
        if not isinstance(obs_space, gymnasium.spaces.Box):
            self.env.close()
            raise TaskError(f"{name!r} has a {type(obs_space).__name__} observation space; "
                            "ezm needs a Box observation")
        if self.env.spec.max_episode_steps is None:
            self.env.close()
            raise TaskError(f"{name!r} has no time limit; register it with max_episode_steps")
        self._action_dtype = action_space.dtype  # the dtype the env expects its actions in

    def reset(self, seed: int) -> np.ndarray:
        obs, _ = self.env.reset(seed=seed)
        return np.asarray(obs, dtype=np.float64).ravel()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]:
        obs, reward, terminated, truncated, _ = self.env.step(action.astype(self._action_dtype))
        return np.asarray(obs, dtype=np.float64).ravel(), float(reward), bool(terminated), bool(truncated)

    def close(self) -> None:
        self.env.close()


def registered_id(name: str) -> str:
    """The Gymnasium id of task `name`, after importing the module of a `module:EnvId` name."""
    module, _, env_id = name.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            raise UnknownTaskError(f"task {name!r}: cannot import module {module!r} ({err})") from None
        if env_id not in gymnasium.registry:
            raise UnknownTaskError(f"task {name!r}: module {module!r} registers no Gymnasium id {env_id!r}")
    elif env_id not in gymnasium.registry:
        raise UnknownTaskError(f"{name!r} is not a registered Gymnasium id")
    return env_id


@functools.lru_cache(maxsize=None)
def task(name: str) -> Task:
    """The Task record of a Gymnasium id (cached; may measure the random return once)."""
    env = GymEnv(name)
    space, spec = env.env.action_space, env.env.spec
    record = Task(
        name=name,
        source="gym",
        obs_size=int(np.prod(env.env.observation_space.shape)),
        action_size=int(np.prod(space.shape)),
        action_low=tuple(float(x) for x in space.low.ravel()),
        action_high=tuple(float(x) for x in space.high.ravel()),
        episode_length=int(spec.max_episode_steps),
        score_low=0.0,
        score_high=float(SCORE_HIGH.get(name, spec.reward_threshold if spec.reward_threshold is not None
                                        else np.nan)),
    )
    low = random_policy.table().get(name)
    if low is None:
        low = float(random_policy.measure(env, record.action_low, record.action_high, episodes=5, seed=0).mean())
    env.close()
    return dataclasses.replace(record, score_low=low)


def make(name: str) -> GymEnv:
    return GymEnv(name)
