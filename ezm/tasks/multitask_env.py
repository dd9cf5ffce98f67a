"""Every copy of every task stepped as one batch: padded observations, masked actions.

Rows are task-major: row = task_id * copies + copy. Observations are zero-padded to the
largest task's size O; actions live in [-1, 1]^A for the largest action size A, and each row
cuts them to its task's size and rescales them to the task's bounds before stepping, so
masked dims never reach an environment. Rows whose episode ended stay ended until
`reset_rows`; stepping them again is refused. Every simulator step of an action repeat is
checked for NaN or inf (EnvironmentNaNError names the task, copy and episode step).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ezm.tasks import registry
from ezm.tasks.task import EnvironmentNaNError, Task


@dataclass(frozen=True)
class StepResult:
    obs: np.ndarray  # [E, O] float32, observation after the step (the final one where an episode ended)
    reward: np.ndarray  # [E] float32, reward summed over the action repeat
    terminated: np.ndarray  # [E] bool, a true terminal state was reached (no bootstrapping)
    truncated: np.ndarray  # [E] bool, the time limit was reached
    task_ids: np.ndarray  # [E] int64, the task of every row


def action_masks(tasks: list[Task]) -> np.ndarray:
    """[T, A] float32, 1 on each task's valid action dims; A is the largest action size."""
    mask = np.zeros((len(tasks), max(t.action_size for t in tasks)), np.float32)
    for task_id, t in enumerate(tasks):
        mask[task_id, : t.action_size] = 1.0
    return mask


class MultiTaskEnv:
    def __init__(self, tasks: list[Task], copies: int, seed: int, action_repeat: int = 1):
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"every task may appear once, got {names}")
        if copies < 1 or action_repeat < 1:
            raise ValueError(f"copies and action_repeat must be >= 1, got {copies} and {action_repeat}")
        self.tasks = list(tasks)  # task id -> Task
        self.copies = copies  # environment copies of every task
        self.action_repeat = action_repeat  # simulator steps per action
        self.num_envs = len(tasks) * copies  # E
        self.obs_size = max(t.obs_size for t in tasks)  # O
        self.task_action_mask = action_masks(tasks)  # [T, A]
        self.action_size = self.task_action_mask.shape[1]  # A, the largest action size
        self.task_ids = np.repeat(np.arange(len(tasks), dtype=np.int64), copies)  # [E]
        self.task_ids.flags.writeable = False
        self._scale = np.zeros((self.num_envs, self.action_size))  # [E, A] half-width of the bounds, 0 off the mask
        self._offset = np.zeros((self.num_envs, self.action_size))  # [E, A] centre of the bounds, 0 off the mask
        for task_id, t in enumerate(tasks):
            low, high = np.asarray(t.action_low), np.asarray(t.action_high)
            rows = slice(task_id * copies, (task_id + 1) * copies)
            self._scale[rows, : t.action_size] = (high - low) / 2
            self._offset[rows, : t.action_size] = (high + low) / 2
        self.action_mask = self.task_action_mask[self.task_ids]  # [E, A]
        self.episode_steps = np.zeros(self.num_envs, np.int64)  # [E] simulator steps into the current episode

        self.raw_envs = [registry.make(self.tasks[task_id]) for task_id in self.task_ids]  # [E] one env per row
        self._obs_sizes = [self.tasks[task_id].obs_size for task_id in self.task_ids]  # [E]
        self._rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(self.num_envs)]  # [E] reset-seed streams
        self._obs = np.zeros((self.num_envs, self.obs_size), np.float32)  # [E, O] current observations, zero-padded
        self._reward = np.zeros(self.num_envs, np.float32)  # [E]
        self._terminated = np.zeros(self.num_envs, bool)  # [E]
        self._truncated = np.zeros(self.num_envs, bool)  # [E]
        self._ended = np.ones(self.num_envs, bool)  # [E] the row needs a reset before its next step
        self._scaled = np.zeros((self.num_envs, self.action_size))  # [E, A] actions in task bounds
        self._row_actions = [self._scaled[row, : self.tasks[task_id].action_size]
                             for row, task_id in enumerate(self.task_ids)]  # [E] views of the valid dims

    def reset(self) -> np.ndarray:
        """Start a new episode in every row; returns obs [E, O]."""
        return self.reset_rows(np.arange(self.num_envs))

    def reset_rows(self, rows: np.ndarray) -> np.ndarray:
        """Start a new episode in `rows` only (each from the next seed of its stream); returns obs [E, O]."""
        for row in rows:
            obs = self.raw_envs[row].reset(seed=int(self._rngs[row].integers(2**31 - 1)))
            self._obs[row, : self._obs_sizes[row]] = obs
            self.episode_steps[row] = 0
            self._ended[row] = False
        self._check_finite(self._obs[rows], np.zeros(len(rows)), np.asarray(rows))
        return self._obs.copy()

    def step(self, actions: np.ndarray) -> StepResult:
        """Apply actions [E, A] in [-1, 1] for up to `action_repeat` simulator steps in every row."""
        if actions.shape != (self.num_envs, self.action_size):
            raise ValueError(f"actions must be [{self.num_envs}, {self.action_size}], got {list(actions.shape)}")
        if self._ended.any():
            raise RuntimeError(f"rows {np.flatnonzero(self._ended).tolist()} have no running episode; "
                               "call reset() or reset_rows() first")
        np.clip(actions, -1.0, 1.0, out=self._scaled)
        np.multiply(self._scaled, self._scale, out=self._scaled)
        np.add(self._scaled, self._offset, out=self._scaled)
        for row, env in enumerate(self.raw_envs):
            action = self._row_actions[row].copy()  # a copy: an env may keep the array it was given
            total = 0.0
            for _ in range(self.action_repeat):
                obs, reward, terminated, truncated = env.step(action)
                self.episode_steps[row] += 1
                if not (math.isfinite(reward) and np.isfinite(obs).all()):  # every simulator step of the repeat
                    raise self._nan_error(row)
                total += reward
                if terminated or truncated:
                    break
            self._obs[row, : self._obs_sizes[row]] = obs
            self._reward[row] = total
            self._terminated[row] = terminated
            self._truncated[row] = truncated
        np.logical_or(self._terminated, self._truncated, out=self._ended)
        return StepResult(obs=self._obs.copy(), reward=self._reward.copy(), terminated=self._terminated.copy(),
                          truncated=self._truncated.copy(), task_ids=self.task_ids)

    def _check_finite(self, obs: np.ndarray, reward: np.ndarray, rows: np.ndarray) -> None:
        """Raise EnvironmentNaNError naming the first row of `rows` with a NaN or inf (after resets)."""
        if np.isfinite(obs).all() and np.isfinite(reward).all():
            return
        finite = np.isfinite(obs).all(axis=1) & np.isfinite(reward)  # [len(rows)]
        raise self._nan_error(int(rows[np.flatnonzero(~finite)[0]]))

    def _nan_error(self, row: int) -> EnvironmentNaNError:
        task = self.tasks[self.task_ids[row]]
        return EnvironmentNaNError(f"task {task.name!r} copy {row % self.copies} returned NaN or inf "
                                   f"at episode step {self.episode_steps[row]}")

    def seed_state(self) -> list[dict]:
        """The reset-seed stream of every row, as plain data (for checkpoints)."""
        return [rng.bit_generator.state for rng in self._rngs]

    def set_seed_state(self, states: list[dict]) -> None:
        """Continue every row's reset-seed stream from `seed_state()`'s output."""
        if len(states) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} seed states, got {len(states)}")
        for rng, state in zip(self._rngs, states):
            rng.bit_generator.state = state

    def close(self) -> None:
        for env in self.raw_envs:
            env.close()
