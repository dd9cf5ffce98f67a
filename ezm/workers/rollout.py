"""Rollout: every copy of every task acts through one batched search and writes to replay.

Balanced collection: all T tasks x N copies step together, so every task receives the same
number of environment steps.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from ezm.config import Config
from ezm.model import WorldModel
from ezm.replay.buffer import Replay
from ezm.search import search
from ezm.tasks.multitask_env import MultiTaskEnv


class Rollout:
    def __init__(self, env: MultiTaskEnv, cfg: Config):
        self.env = env
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        self.task = torch.tensor(env.task_ids, device=self.device)  # [E]
        self.action_mask = torch.as_tensor(env.action_mask, device=self.device)  # [E, A]
        self.obs = env.reset()  # [E, O] current observation of every row
        self.episode_return = np.zeros(env.num_envs)  # [E] running return of the open episodes
        self.finished: list[tuple[int, float]] = []  # (task id, return) of episodes ended since last drain
        self.reward_warned = False  # the out-of-support warning is given once per rollout

    def restart(self) -> None:
        """Begin fresh episodes in every row (after a resume, open episodes cannot be restored)."""
        self.obs = self.env.reset()
        self.episode_return[:] = 0.0

    @torch.no_grad()
    def step(self, model: WorldModel, replay: Replay, generator: torch.Generator, env_step: int) -> None:
        """One decision in every row: search, step all environments, store the transitions."""
        obs = torch.from_numpy(self.obs.copy())  # [E, O] (the env may reuse its arrays)
        out = search(model, obs.to(self.device), self.task, self.action_mask, self.cfg.search, self.cfg.decision_discount,
                     generator, add_noise=True)
        action = out.action.cpu()  # [E, A]
        result = self.env.step(action.numpy())
        self._check_reward_support(result.reward)
        replay.add(obs=obs, action=action,
                   reward=torch.as_tensor(result.reward), terminal=torch.as_tensor(result.terminated),
                   root_value=out.root_value.cpu(), policy=out.improved_policy.cpu(),
                   candidates=out.candidates.cpu(), env_step=env_step)
        self.episode_return += result.reward
        done = np.flatnonzero(result.terminated | result.truncated)
        if done.size:
            replay.add_final(torch.as_tensor(done), torch.as_tensor(result.obs[done]), env_step)
            self.finished.extend(zip(self.env.task_ids[done].tolist(), self.episode_return[done].tolist()))
            self.episode_return[done] = 0.0
            self.obs = self.env.reset_rows(done)
        else:
            self.obs = result.obs

    def _check_reward_support(self, reward: np.ndarray) -> None:
        """Warn once when a reward [E] lies outside the model's reward support (its loss clips it)."""
        if self.reward_warned:
            return
        low, high = self.cfg.model.reward_range
        outside = np.flatnonzero((reward < low) | (reward > high))
        if not outside.size:
            return
        self.reward_warned = True
        row, repeat = int(outside[0]), self.cfg.env.action_repeat
        task = self.env.tasks[self.env.task_ids[row]].name
        warnings.warn(f"{task}: reward {reward[row]:.4g} of one decision lies outside model.reward_range "
                      f"[{low:g}, {high:g}] and is clipped in the reward loss; a decision sums the rewards of "
                      f"env.action_repeat={repeat} simulator steps, so widen model.reward_range (and "
                      f"model.value_range with it)", stacklevel=2)

    def drain_finished(self) -> list[tuple[int, float]]:
        finished, self.finished = self.finished, []
        return finished
