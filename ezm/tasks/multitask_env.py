"""Every copy of every task stepped as one batch: padded observations, masked actions.

Rows are task-major: row = task_id * copies + copy. Observations are zero-padded to the
largest task's size O; actions live in [-1, 1]^A for the largest action size A, and each row
cuts them to its task's size and rescales them to the task's bounds before stepping, so
masked dims never reach an environment. Rows whose episode ended stay ended until
`reset_rows`; stepping them again is refused. Every simulator step of an action repeat is
checked for NaN or inf (EnvironmentNaNError names the task, copy and episode step).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ezm.tasks.row_envs import RowEnvs, RowState
from ezm.tasks.task import Task


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
    """Every row stepped in this process; ParallelMultiTaskEnv (parallel_env.py) steps the
    same rows in worker processes with the same results."""

    def __init__(self, tasks: list[Task], copies: int, seed: int, action_repeat: int = 1):
        self._set_layout(tasks, copies, action_repeat)
        self._rows = RowEnvs(self.tasks, copies, seed, action_repeat, 0, self.num_envs)  # every row
        self.raw_envs = self._rows.envs  # [E] one env per row
        self._use_state(self._rows.state)

    def _set_layout(self, tasks: list[Task], copies: int, action_repeat: int) -> None:
        """The rows, sizes, masks and action bounds of the batch, and its per-row flags."""
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
        self._ended = np.ones(self.num_envs, bool)  # [E] the row needs a reset before its next step
        self._scaled = np.zeros((self.num_envs, self.action_size))  # [E, A] actions in task bounds

    def _use_state(self, state: RowState) -> None:
        """Read results from `state`, whose arrays cover all E rows."""
        self._obs = state.obs  # [E, O] current observations, zero-padded
        self._reward = state.reward  # [E]
        self._terminated = state.terminated  # [E]
        self._truncated = state.truncated  # [E]
        self.episode_steps = state.episode_steps  # [E] simulator steps into the current episode

    def reset(self) -> np.ndarray:
        """Start a new episode in every row; returns obs [E, O]."""
        return self.reset_rows(np.arange(self.num_envs))

    def reset_rows(self, rows: np.ndarray) -> np.ndarray:
        """Start a new episode in `rows` only (each from the next seed of its stream); returns obs [E, O]."""
        rows = np.asarray(rows, dtype=np.int64)  # [k]
        if rows.size and not (0 <= rows.min() and rows.max() < self.num_envs):
            raise IndexError(f"rows must lie in [0, {self.num_envs}), got {rows.tolist()}")
        self._reset(rows)
        self._ended[rows] = False
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
        self._step(self._scaled)
        np.logical_or(self._terminated, self._truncated, out=self._ended)
        return StepResult(obs=self._obs.copy(), reward=self._reward.copy(), terminated=self._terminated.copy(),
                          truncated=self._truncated.copy(), task_ids=self.task_ids)

    def _reset(self, rows: np.ndarray) -> None:
        """Reset `rows` [k]: their observations land in _obs and their episode_steps become 0."""
        self._rows.reset(rows)

    def _step(self, scaled: np.ndarray) -> None:
        """Step every row with actions [E, A] in task bounds into _obs, _reward, _terminated,
        _truncated and episode_steps."""
        self._rows.step(scaled)

    def _seeds(self) -> list[dict]:
        """[E] every row's reset-seed stream state."""
        return self._rows.seed_state()

    def _set_seeds(self, states: list[dict]) -> None:
        """Continue every row's reset-seed stream from states [E]."""
        self._rows.set_seed_state(states)

    def seed_state(self) -> list[dict]:
        """The reset-seed stream of every row, as plain data (for checkpoints)."""
        return self._seeds()

    def set_seed_state(self, states: list[dict]) -> None:
        """Continue every row's reset-seed stream from `seed_state()`'s output."""
        if len(states) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} seed states, got {len(states)}")
        self._set_seeds(states)

    def close(self) -> None:
        self._rows.close()
