"""A real gymnasium.Env whose reward turns NaN at a chosen step, registered on import.

The parallel-env tests name it as a custom `module:EnvId` task, so every simulation worker
imports this small module (and not the test module with its heavier imports) to build it."""
import gymnasium
import numpy as np


class NaNAtEnv(gymnasium.Env):
    """Observation [step, 0]; reward 1, or NaN at step `nan_at`."""

    def __init__(self, nan_at=2):
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.nan_at = nan_at

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t, 0.0], np.float32), np.nan if self.t == self.nan_at else 1.0, False, False, {}


gymnasium.register(id="ezmtest/ParallelNaN-v0", entry_point=NaNAtEnv, max_episode_steps=6)
gymnasium.register(id="ezmtest/ParallelFinite-v0", entry_point=NaNAtEnv, kwargs={"nan_at": -1}, max_episode_steps=6)
