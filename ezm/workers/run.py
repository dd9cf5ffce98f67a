"""Run directories: where a run's config, checkpoints and logs live, and how to reopen them."""
from __future__ import annotations

import itertools
import time
from pathlib import Path

import torch

from ezm import config as config_lib
from ezm.learning.checkpoint import CheckpointError, checkpoint_config, load_checkpoint
from ezm.model import WorldModel
from ezm.tasks.multitask_env import action_masks
from ezm.tasks.registry import resolve
from ezm.tasks.task import Task

CONFIG_FILE = "config.yaml"
CHECKPOINT_FILE = "checkpoint.pt"


def new_run_dir(cfg: config_lib.Config) -> Path:
    name = cfg.env.suite.replace(",", "+").replace(":", "_")[:60]  # a folder name: no module:EnvId colon
    base = Path(cfg.train.run_dir) / f"{name}-s{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    for suffix in itertools.count():  # mkdir claims the name: runs started in the same second never share one
        run_dir = base.with_name(f"{base.name}-{suffix}") if suffix else base
        try:
            run_dir.mkdir(parents=True)
            break
        except FileExistsError:
            continue
    config_lib.save(cfg, run_dir / CONFIG_FILE)
    return run_dir


def read_config(run_dir: Path) -> config_lib.Config:
    path = run_dir / CONFIG_FILE
    if not path.exists():
        raise CheckpointError(f"{run_dir} is not an ezm run directory (no {CONFIG_FILE})")
    return config_lib.from_dict(config_lib.load_yaml(path))


def added_since(run_dir: Path) -> dict[str, object]:
    """Fields of today's config that the run's config file lacks (added to ezm after the run
    started), with the defaults they take when the run is resumed or evaluated."""
    return config_lib.absent_fields(config_lib.load_yaml(run_dir / CONFIG_FILE))


def build_model(cfg: config_lib.Config, tasks: list[Task], obs_size: int, action_size: int,
                task_action_mask) -> WorldModel:
    model = WorldModel(cfg.model, len(tasks), obs_size, action_size,
                       torch.as_tensor(task_action_mask, dtype=torch.float32))
    return model.to(cfg.device).eval()


def load_for_eval(path: Path) -> tuple[config_lib.Config, WorldModel, list[Task], int]:
    """Config, model (eval mode), tasks and env steps per task of a run dir or checkpoint file."""
    if path.is_dir():  # the checkpoint must belong to the directory's config, as on resume
        cfg = read_config(path)
        state = load_checkpoint(path / CHECKPOINT_FILE, config_lib.to_dict(cfg),
                                defaults=config_lib.to_dict(config_lib.Config()),
                                retired=config_lib.RETIRED)
    else:
        cfg = config_lib.from_dict(checkpoint_config(path))
        state = load_checkpoint(path)
    tasks = resolve(cfg.env.suite)
    mask = action_masks(tasks)  # [T, A]
    model = build_model(cfg, tasks, max(t.obs_size for t in tasks), mask.shape[1], mask)
    model.load_state_dict(state["learner"]["model"])
    return cfg, model, tasks, int(state["counters"]["env_steps"])
