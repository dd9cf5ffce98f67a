"""Gradient similarity between tasks (paper Fig. 3): the cosine between two tasks' loss
gradients, per module group, on per-task sub-batches of one sampled batch and its targets.

`measure` takes the batch the learner is about to update on and builds the learner's own
targets for it, on copies of the online and target models (so BatchNorm statistics, the task
embedding's in-place max-norm renormalisation and the observation statistics of the learner
stay untouched), with a fork of the reanalyze generator and the global random state restored
afterwards: training draws and computes exactly what it would without the measurement.

Shapes: B rows of the batch, B_t rows of task t, G flattened parameters of a group.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ezm.config import Config, ConfigError
from ezm.learning.learner import Learner
from ezm.learning.losses import compute_losses
from ezm.learning.targets import Targets, reanalyze
from ezm.model import WorldModel
from ezm.replay.buffer import Batch

GROUPS = {  # module group -> the WorldModel submodules it holds (the task embedding is in none)
    "representation": ("representation",),
    "dynamics": ("dynamics",),
    "reward": ("action_encoder", "reward"),
    "value_policy": ("value_policy",),
}
PAIR_SEPARATOR = "~"


def check_pairs(pairs: tuple[str, ...], task_names: list[str]) -> list[tuple[int, int]]:
    """Task ids of every "taskA~taskB" pair; a name outside the run's tasks is a ConfigError."""
    ids = []
    for pair in pairs:
        names = pair.split(PAIR_SEPARATOR)
        unknown = [n for n in names if n not in task_names]
        if unknown:
            raise ConfigError(f"learn.grad_similarity_pairs: {', '.join(map(repr, unknown))} in {pair!r} "
                              f"is not a task of this run ({', '.join(task_names)})")
        ids.append((task_names.index(names[0]), task_names.index(names[1])))
    return ids


def _rows(batch: Batch, targets: Targets, rows: torch.Tensor) -> tuple[Batch, Targets]:
    """The sub-batch and sub-targets of `rows` [B_t] (indices into the batch)."""
    return Batch(*(t[rows] for t in batch)), Targets(*(t[rows] for t in targets))


def task_gradients(model: WorldModel, batch: Batch, targets: Targets, cfg: Config, num_tasks: int,
                   task: int) -> dict[str, torch.Tensor] | None:
    """The gradient [G] of every group of the loss of `task`'s rows alone (None with < 2 rows,
    which BatchNorm in train mode cannot take)."""
    rows = torch.nonzero(batch.task == task).squeeze(1)  # [B_t]
    if rows.numel() < 2:
        return None
    params = {name: [p for module in modules for p in getattr(model, module).parameters()]
              for name, modules in GROUPS.items()}
    flat = [p for group in params.values() for p in group]
    loss = compute_losses(model, *_rows(batch, targets, rows), cfg, num_tasks).total
    grads = iter(torch.autograd.grad(loss, flat, allow_unused=True))
    return {name: torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                             for p, g in zip(group, grads)])
            for name, group in params.items()}


def similarities(model: WorldModel, batch: Batch, targets: Targets, cfg: Config, num_tasks: int,
                 pairs: list[tuple[int, int]], labels: list[str]) -> dict[str, float]:
    """`grad_cos/<group>/<label>` for every pair of task ids (NaN where a task has < 2 rows)."""
    needed = sorted({t for pair in pairs for t in pair})
    grads = {t: task_gradients(model, batch, targets, cfg, num_tasks, t) for t in needed}
    out = {}
    for (a, b), label in zip(pairs, labels):
        for group in GROUPS:
            if grads[a] is None or grads[b] is None:
                out[f"grad_cos/{group}/{label}"] = float("nan")
            else:
                out[f"grad_cos/{group}/{label}"] = float(F.cosine_similarity(grads[a][group], grads[b][group], dim=0))
    return out


def measure(learner: Learner, batch: Batch, generator: torch.Generator, env_step: int,
            pairs: list[tuple[int, int]], labels: list[str]) -> dict[str, float]:
    """The similarities on `batch` with the targets `learner.update(batch, generator, env_step)`
    is about to build, leaving the learner, `generator` and the global random state as they were."""
    cfg = learner.cfg
    device = torch.device(cfg.device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], device_type=device.type):
        probe = copy.copy(learner)  # the learner's settings, with copies of all an update changes
        probe.model, probe.target_model = copy.deepcopy(learner.model), copy.deepcopy(learner.target_model)
        probe.variance_range = copy.deepcopy(learner.variance_range)
        forked = torch.Generator(device=device)
        forked.set_state(generator.get_state())
        probe.observe(batch)  # the steps of Learner.update before its optimiser step
        targets = reanalyze(probe.target_model, batch, cfg, probe.variance_range, forked, probe.updates, env_step)
        probe.model.train()
        return similarities(probe.model, batch, targets, cfg, learner.num_tasks, pairs, labels)
