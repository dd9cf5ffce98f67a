"""Learning works: the full update (reanalyze, losses, optimiser) fits a fixed batch."""
import dataclasses

import torch

from ezm import config as C
from ezm.workers.trainer import Trainer


def _small_config(tmp_path, **learn):
    cfg = C.build("quickstart", overrides=[
        "env.suite=cartpole-balance,cartpole-swingup", "env.copies_per_task=2", "train.progress=false",
        f"train.run_dir={tmp_path}", "learn.batch_size=32", "search.simulations=4", "search.root_actions=4",
        "search.root_policy_samples=1", "learn.reanalyze_simulations=4"])
    return dataclasses.replace(cfg, learn=dataclasses.replace(cfg.learn, **learn))


def test_fitting_a_fixed_batch_drives_reward_and_value_losses_down(tmp_path):
    cfg = _small_config(tmp_path, target_update_interval=10_000, lr=3e-3)
    trainer = Trainer(cfg, tmp_path)
    for step in range(60):
        trainer.rollout.step(trainer.learner.model, trainer.replay, trainer.act_generator, step)
    learn = cfg.learn
    batch = trainer.replay.sample(learn.batch_size, learn.unroll, learn.td_steps, trainer.sample_generator)
    first = None
    for _ in range(150):
        generator = torch.Generator().manual_seed(0)  # same reanalyze draws every time: a fixed target
        metrics, _ = trainer.learner.update(batch, generator, env_step=0)
        first = first or metrics
    assert metrics["loss/reward"] < first["loss/reward"] / 4
    assert metrics["loss/value"] < first["loss/value"] / 4

