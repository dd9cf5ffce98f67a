"""The raw environments of a contiguous range of rows of a multi-task batch, stepped in turn.

Rows are task-major (row = task_id * copies + copy) over all E rows; a RowEnvs holds rows
[start, stop) and numbers them locally from 0. Every row resets from the next seed of its
own stream, and the E streams derive from the run's seed alone (`reset_streams`), so a row
gives the same episodes whichever RowEnvs or process holds it. Every simulator step of an
action repeat is checked for NaN or inf (EnvironmentNaNError names the task, copy and
episode step).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ezm.tasks import registry
from ezm.tasks.task import EnvironmentNaNError, Task


def reset_streams(seed: int, num_envs: int) -> list[np.random.Generator]:
    """[E] the reset-seed stream of every row of a batch of `num_envs` rows."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(num_envs)]


@dataclass(frozen=True)
class RowState:
    """What resetting and stepping rows writes, one entry per row (arrays of their own, or
    views of a batch's arrays or of memory shared between processes)."""

    obs: np.ndarray  # [n, O] float32, current observations, zero-padded
    reward: np.ndarray  # [n] float32, reward summed over the last action repeat
    terminated: np.ndarray  # [n] bool, a true terminal state was reached
    truncated: np.ndarray  # [n] bool, the time limit was reached
    episode_steps: np.ndarray  # [n] int64, simulator steps into the current episode

    @classmethod
    def zeros(cls, num_rows: int, obs_size: int) -> RowState:
        return cls(obs=np.zeros((num_rows, obs_size), np.float32), reward=np.zeros(num_rows, np.float32),
                   terminated=np.zeros(num_rows, bool), truncated=np.zeros(num_rows, bool),
                   episode_steps=np.zeros(num_rows, np.int64))

    def rows(self, start: int, stop: int) -> RowState:
        """Views of rows [start, stop)."""
        return RowState(self.obs[start:stop], self.reward[start:stop], self.terminated[start:stop],
                        self.truncated[start:stop], self.episode_steps[start:stop])


class RowEnvs:
    """The environments of batch rows [start, stop), writing their results into `state` (given
    by the caller, e.g. views of shared memory, or arrays of its own)."""

    def __init__(self, tasks: list[Task], copies: int, seed: int, action_repeat: int, start: int, stop: int,
                 state: RowState | None = None):
        self.tasks = list(tasks)  # task id -> Task, of the whole batch
        self.copies = copies  # environment copies of every task
        self.action_repeat = action_repeat  # simulator steps per action
        self.start = start  # the batch row of local row 0
        self.task_ids = np.arange(start, stop, dtype=np.int64) // copies  # [n] task of every local row
        num_rows = stop - start  # n
        self._obs_sizes = [self.tasks[task_id].obs_size for task_id in self.task_ids]  # [n]
        self._action_sizes = [self.tasks[task_id].action_size for task_id in self.task_ids]  # [n]
        self._rngs = reset_streams(seed, len(self.tasks) * copies)[start:stop]  # [n]
        self.state = state or RowState.zeros(num_rows, max(t.obs_size for t in self.tasks))  # where results land
        self.envs = [registry.make(self.tasks[task_id]) for task_id in self.task_ids]  # [n] one env per row

    def reset(self, rows: np.ndarray) -> None:
        """Start a new episode in local `rows` [k], each from the next seed of its stream."""
        for row in rows:
            obs = self.envs[row].reset(seed=int(self._rngs[row].integers(2**31 - 1)))
            self.state.obs[row, : self._obs_sizes[row]] = obs
            self.state.episode_steps[row] = 0
        finite = np.isfinite(self.state.obs[rows]).all(axis=1)  # [k]
        if not finite.all():
            raise self._nan_error(int(rows[np.flatnonzero(~finite)[0]]))

    def step(self, actions: np.ndarray) -> None:
        """Apply actions [n, A] (in the tasks' bounds, cut to each row's size) for up to
        `action_repeat` simulator steps in every row; results land in `state`."""
        state = self.state
        for row, env in enumerate(self.envs):
            action = actions[row, : self._action_sizes[row]].copy()  # a copy: an env may keep the array it was given
            total = 0.0
            for _ in range(self.action_repeat):
                obs, reward, terminated, truncated = env.step(action)
                state.episode_steps[row] += 1
                if not (math.isfinite(reward) and np.isfinite(obs).all()):  # every simulator step of the repeat
                    raise self._nan_error(row)
                total += reward
                if terminated or truncated:
                    break
            state.obs[row, : self._obs_sizes[row]] = obs
            state.reward[row] = total
            state.terminated[row] = terminated
            state.truncated[row] = truncated

    def _nan_error(self, row: int) -> EnvironmentNaNError:
        task = self.tasks[self.task_ids[row]]
        return EnvironmentNaNError(f"task {task.name!r} copy {(self.start + row) % self.copies} returned NaN "
                                   f"or inf at episode step {self.state.episode_steps[row]}")

    def seed_state(self) -> list[dict]:
        """[n] the reset-seed stream of every row, as plain data."""
        return [rng.bit_generator.state for rng in self._rngs]

    def set_seed_state(self, states: list[dict]) -> None:
        """Continue every row's reset-seed stream from `seed_state()`'s output."""
        for rng, state in zip(self._rngs, states):
            rng.bit_generator.state = state

    def close(self) -> None:
        for env in self.envs:
            env.close()
