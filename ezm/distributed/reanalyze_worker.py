"""A reanalyze actor: the targets of sampled batches, searched with the target weights it was
last sent, by the single process's `reanalyze`."""
from __future__ import annotations

import os

import torch

from ezm.config import Config
from ezm.distributed.weights import receive
from ezm.distributed.wire import from_wire, to_wire
from ezm.learning.targets import VarianceRange, reanalyze
from ezm.replay.buffer import Batch
from ezm.tasks.multitask_env import action_masks
from ezm.tasks.registry import resolve
from ezm.workers.run import build_model


class ReanalyzeWorker:
    def __init__(self, cfg: Config, seed: int):
        torch.set_num_threads(cfg.system.worker_threads)
        self.cfg, self.device = cfg, torch.device(cfg.device)
        tasks = resolve(cfg.env.suite)
        mask = action_masks(tasks)  # [T, A]
        self.target_model = build_model(cfg, tasks, max(t.obs_size for t in tasks), mask.shape[1], mask)
        self.target_model.requires_grad_(False)
        self.variance_range = VarianceRange(len(tasks), self.device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.version = -1  # of the weights the target model holds

    def targets(self, box: list, version: int, batch: tuple, variance: dict, updates: int, env_step: int,
                generator_state: torch.Tensor | None = None) -> tuple[tuple, dict, torch.Tensor | None]:
        """Targets (`to_wire` arrays) of `batch` (`to_wire` arrays of a Batch) with the target
        weights `box` holds (`version`), starting from the learner's variance range `variance`;
        returns them with the range after them and, where `generator_state` was sent
        (lockstep), the generator's after."""
        self.version = receive(self.target_model, box, version, self.version)
        if generator_state is not None:
            self.generator.set_state(generator_state)
        self.variance_range.load_state_dict(variance)
        batch = from_wire(Batch, batch, self.device)
        targets = reanalyze(self.target_model, batch, self.cfg, self.variance_range, self.generator,
                            updates, env_step)
        return (to_wire(targets), self.variance_range.state_dict(),
                None if generator_state is None else self.generator.get_state())

    def pid(self) -> int:
        return os.getpid()
