"""Evaluation: every task's episodes are counted once, whatever their lengths."""
import dataclasses

import pytest
import torch

from ezm import config as C
from ezm.tasks.registry import resolve
from ezm.workers.evaluate import Evaluator
from ezm.workers.run import build_model


def test_tasks_with_different_episode_lengths_are_each_counted_once():
    cfg = C.build("quickstart", overrides=["search.simulations=2", "search.root_actions=2",
                                           "search.root_policy_samples=1"])
    tasks = resolve("Pendulum-v1,cartpole-balance")  # 200-step episodes beside 1000-step ones
    evaluator = Evaluator(tasks, cfg, episodes=2, seed=0)
    model = build_model(cfg, tasks, evaluator.env.obs_size, evaluator.env.action_size,
                        evaluator.env.task_action_mask)
    result = evaluator.run(model, torch.Generator().manual_seed(0), env_steps=7)
    evaluator.close()
    assert [len(r) for r in result.returns] == [2, 2]
    pendulum, cartpole = result.returns
    assert all(-2000 < r < 0 for r in pendulum)  # one 200-step episode each, not five
    assert all(0 < r <= 1000 for r in cartpole)
    rows = result.rows()
    assert rows[1]["normalized_score"] == rows[1]["return"] / 1000
    assert "Pendulum-v1" in result.table() and result.env_steps == 7


def test_a_custom_actor_and_observer_see_every_step_and_which_rows_count():
    cfg = C.build("quickstart")  # action repeat 4: 50 decisions a Pendulum episode, 250 a cartpole one
    tasks = resolve("Pendulum-v1,cartpole-balance")
    evaluator = Evaluator(tasks, cfg, episodes=2, seed=0)
    counted_decisions = torch.zeros(evaluator.env.num_envs, dtype=torch.long)
    seen = []  # (rewards, counted) of every step

    def act(obs, counted):
        assert obs.shape == (4, evaluator.env.obs_size)
        counted_decisions.add_(torch.as_tensor(counted))
        return torch.zeros(4, evaluator.env.action_size)

    def observe(result, counted):
        seen.append((result.reward, counted))

    result = evaluator.run(model=torch.nn.Linear(1, 1), generator=torch.Generator(), act=act, observe=observe)
    evaluator.close()
    assert counted_decisions.tolist() == [50, 50, 250, 250]
    assert all(0 < r <= 1000 for r in result.returns[1])  # the search (which a Linear cannot serve) never ran
    observed = sum(reward * counted for reward, counted in seen)  # [E]
    assert observed.tolist() == pytest.approx([r for task in result.returns for r in task])
    assert len(seen) == 250 and seen[0][1] is not seen[1][1]  # a fresh mask every step, not one mutated array


@pytest.mark.parametrize("eval_widen, eval_uniform", [(1.0, 0.25), (3.0, 0.0)])
def test_evaluation_searches_with_its_own_root_candidates(eval_widen, eval_uniform):
    cfg = C.build("quickstart", overrides=[f"search.eval_root_widen={eval_widen}",
                                           f"search.eval_root_uniform={eval_uniform}"])
    evaluator = Evaluator(resolve("cartpole-balance"), cfg, episodes=1, seed=0)
    evaluator.close()
    assert cfg.search.root_widen == 3.0 and cfg.search.root_uniform == 0.0  # acting and reanalyze: the release's
    assert evaluator.search_cfg == dataclasses.replace(cfg.search, root_widen=eval_widen, root_uniform=eval_uniform)
