"""A rollout actor: C copies of every task, acting through the single process's `Rollout`
with the weights it was last sent, its transitions shipped to the learner's replay.

Rows are local and task-major (row = task * C + copy); the learner maps them to its replay's
rows. A worker is built with the reset-seed streams of its rows in the single process, so
its episodes start from the same seeds as there.
"""
from __future__ import annotations

import dataclasses
import os
from typing import NamedTuple

import torch

from ezm.config import Config
from ezm.distributed.weights import receive
from ezm.replay.buffer import Replay
from ezm.tasks.multitask_env import action_masks
from ezm.tasks.parallel_env import make_env
from ezm.tasks.registry import resolve
from ezm.workers.rollout import Rollout
from ezm.workers.run import build_model


class Transitions:
    """The replay writes of `Rollout.step` (it takes this for a replay), kept in order and
    written to the learner's replay by `write`."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, dict]] = []  # ("add" | "add_final", arguments)

    def add(self, **row) -> None:
        self.writes.append(("add", row))

    def add_final(self, rows: torch.Tensor, final_obs: torch.Tensor, env_step: int) -> None:
        self.writes.append(("add_final", dict(rows=rows, final_obs=final_obs, env_step=env_step)))

    def write(self, replay: Replay, rows: torch.Tensor) -> None:
        """Apply the writes to `replay`, whose rows [R] the worker's local rows are."""
        for kind, args in self.writes:
            if kind == "add":
                replay.add(**args, rows=rows)
            else:
                replay.add_final(rows[args["rows"]], args["final_obs"], args["env_step"])


class StepOut(NamedTuple):
    transitions: Transitions  # the step's replay writes
    finished: list[tuple[int, float]]  # (task id, return) of the episodes it ended
    version: int  # version of the weights it acted with
    generator_state: torch.Tensor | None  # the acting generator after the step, when its state was sent


class RolloutWorker:
    def __init__(self, cfg: Config, copies: int, env_seeds: list[dict], seed: int):
        torch.set_num_threads(cfg.system.worker_threads)
        self.cfg = cfg
        tasks = resolve(cfg.env.suite)
        self.env = make_env(tasks, dataclasses.replace(cfg.env, copies_per_task=copies), seed=cfg.seed)
        self.env.set_seed_state(env_seeds)
        mask = action_masks(tasks)  # [T, A]
        self.model = build_model(cfg, tasks, max(t.obs_size for t in tasks), mask.shape[1], mask)
        self.rollout = Rollout(self.env, cfg)  # resets every row from the streams just set
        self.generator = torch.Generator(device=torch.device(cfg.device)).manual_seed(seed)
        self.version = -1  # of the weights the model holds

    def step(self, box: list, version: int, env_step: int, generator_state: torch.Tensor | None = None) -> StepOut:
        """One decision in every row with the weights `box` holds (`version`); with
        `generator_state` the acting generator continues from it (lockstep)."""
        self.version = receive(self.model, box, version, self.version)
        if generator_state is not None:
            self.generator.set_state(generator_state)
        transitions = Transitions()
        self.rollout.step(self.model, transitions, self.generator, env_step)
        return StepOut(transitions, self.rollout.drain_finished(), self.version,
                       None if generator_state is None else self.generator.get_state())

    def seed_state(self) -> list[dict]:
        return self.env.seed_state()

    def restart(self, env_seeds: list[dict], seed: int) -> None:
        """Fresh episodes from the reset-seed streams `env_seeds` and acting noise from `seed` (a resume)."""
        self.env.set_seed_state(env_seeds)
        self.rollout.restart()
        self.generator.manual_seed(seed)

    def pid(self) -> int:
        return os.getpid()
