"""The learner: reanalyze a sampled batch, take one optimiser step, keep the target model."""
from __future__ import annotations

import contextlib
import copy
import math

import torch

from ezm.config import Config
from ezm.learning.losses import compute_losses
from ezm.learning.targets import Targets, VarianceRange, reanalyze
from ezm.model import WorldModel
from ezm.replay.buffer import Batch


def learning_rate(cfg: Config, env_step: int) -> float:
    """lr on a half cosine from `learn.lr` at step 0 to `lr * lr_final` at the run's last env step,
    rising linearly from 0 over the first `learn.lr_warmup` of the env steps after warm-up."""
    progress = min(env_step / cfg.train.env_steps_per_task, 1.0)
    final = cfg.learn.lr_final
    lr = cfg.learn.lr * (final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress)))
    ramp = cfg.learn.lr_warmup * max(cfg.train.env_steps_per_task - cfg.learn.warmup_steps, 1)
    if ramp > 0:
        lr *= min(max(env_step - cfg.learn.warmup_steps, 1) / ramp, 1.0)
    return lr


def per_task_mean(x: torch.Tensor, task: torch.Tensor, num_tasks: int) -> torch.Tensor:
    """[T] mean of the rows x [B] of each task [B] (NaN for a task without rows)."""
    rows = torch.bincount(task, minlength=num_tasks).to(x.dtype)  # [T]
    return torch.bincount(task, weights=x, minlength=num_tasks).to(x.dtype) / rows


def effective_sample_size(weight: torch.Tensor) -> torch.Tensor:
    """(sum w)^2 / sum w^2 of importance weights [B]: how many equally weighted rows they are worth."""
    return weight.sum().square() / weight.square().sum()


class Learner:
    def __init__(self, model: WorldModel, cfg: Config, num_tasks: int):
        self.cfg = cfg
        self.model = model  # online model, trained
        self.target_model = copy.deepcopy(model).eval()  # copied every target_update_interval updates
        self.target_model.requires_grad_(False)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learn.lr,
                                          weight_decay=cfg.learn.weight_decay, fused=True)  # one kernel for every tensor
        self.variance_range = VarianceRange(num_tasks, cfg.device)
        self.num_tasks = num_tasks
        self.updates = 0  # optimiser steps taken

    def _autocast(self):
        if self.cfg.learn.mixed_precision and torch.device(self.cfg.device).type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def update(self, batch: Batch, generator: torch.Generator, env_step: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One update on `batch` (already on the device): `observe`, reanalyze with the target
        model, `step`. The Ray pipeline runs the same three with reanalyze in another process."""
        self.observe(batch)
        targets = reanalyze(self.target_model, batch, self.cfg, self.variance_range, generator,
                            self.updates, env_step)
        return self.step(batch, targets, env_step)

    def observe(self, batch: Batch) -> None:
        """Fold the batch's observations into the online model's per-task statistics."""
        if self.model.obs_norm is not None:
            rows = batch.valid.flatten()  # [B*S]
            self.model.obs_norm.update(batch.obs.flatten(0, 1)[rows],
                                       batch.task[:, None].expand_as(batch.valid).flatten()[rows])

    def step(self, batch: Batch, targets: Targets, env_step: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One optimiser step on `batch` with its reanalyzed `targets`; returns metrics (0-d
        tensors, or [T] tensors for per-task diagnostics, named `.../task`) and new priorities [B]."""
        self.model.train()
        with self._autocast():
            out = compute_losses(self.model, batch, targets, self.cfg, self.num_tasks)
        self.optimizer.zero_grad(set_to_none=True)
        out.total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.learn.grad_clip, foreach=True)
        lr = learning_rate(self.cfg, env_step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.model.eval()
        self.updates += 1
        if self.updates % self.cfg.learn.target_update_interval == 0:
            self.target_model.load_state_dict(self.model.state_dict())
        metrics = {f"loss/{k}": v for k, v in out.parts.items()}  # 0-d tensors: no host sync per update
        value_0 = targets.value[:, 0]  # [B] the start row is always a state of its episode
        t, tasks = batch.task, self.num_tasks
        value_mean = per_task_mean(value_0, t, tasks)  # [T]
        metrics.update({
            "loss/total": out.total.detach(),
            "grad_norm": grad_norm.detach(),
            "lr": torch.tensor(lr),
            "target/value_mean": targets.value[targets.value_mask].mean(),
            "target/alpha_mean": targets.alpha[targets.value_mask].mean(),
            "replay/ess": effective_sample_size(batch.weight),
            "replay/weight_mean": batch.weight.mean(),
            "target/value_mean/task": value_mean,
            "target/value_std/task": (per_task_mean(value_0.square(), t, tasks) - value_mean.square()).clamp_min(0).sqrt(),
            "priority/batch_mean/task": per_task_mean(out.priority, t, tasks),
            "policy/std/task": per_task_mean(out.policy_std, t, tasks),
            "value/ensemble_std/task": per_task_mean(out.ensemble_std, t, tasks),
        })
        return metrics, out.priority

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "target_model": self.target_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "variance_range": self.variance_range.state_dict(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.target_model.load_state_dict(state["target_model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.variance_range.load_state_dict(state["variance_range"])
        self.updates = int(state["updates"])
