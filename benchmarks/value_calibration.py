"""Does the value head know what the policy earns? Predicted values against realised returns.

    python benchmarks/value_calibration.py RUN_DIR_OR_CHECKPOINT --episodes 4 --tag s1

Plays evaluation episodes (search without noise) with a trained model and, at every decision
of the first half of each episode, compares the model's value of the state (the mean over its
heads) with the discounted return the episode then realised. The return is bootstrapped at a
time-limit truncation with the model's own value of the final state, and cut at a true
termination; in the first half of a 250-decision episode that tail weighs at most
discount^125 (0.28 at 0.99), so a value far below the return is an underestimate, not an
artefact of the tail. A ratio value / return near 1 is a calibrated value.

Writes benchmarks/results/value_calibration[_TAG].json: per task the mean value, the mean
realised return, their ratio and the episode return.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import _trained
from _meta import REPO, meta

from ezm import config as config_lib
from ezm.search import search_from_root
from ezm.tasks.multitask_env import StepResult
from ezm.workers.evaluate import Evaluator
from ezm.workers.run import load_for_eval


def discounted_returns(reward: np.ndarray, discount: float) -> np.ndarray:
    """[L, E] discounted sum of the rewards [L, E] from every decision on."""
    steps = np.arange(reward.shape[0])  # [L]
    ahead = np.triu(discount ** (steps[None, :] - steps[:, None]).clip(min=0))  # [L, L] discount^(k - t), k >= t
    return ahead @ reward


def main() -> None:
    args = _trained.parse_args(_trained.parser(__doc__, episodes=4))

    cfg, model, tasks, env_steps = load_for_eval(Path(args.path))
    evaluator = Evaluator(tasks, cfg, args.episodes, seed=args.seed)
    generator = torch.Generator(device=cfg.device).manual_seed(args.seed)
    values, rewards, counted_steps = [], [], []  # per decision: [E] each
    tail = np.zeros(evaluator.env.num_envs)  # [E] value after each counted episode's last decision

    def act(obs: torch.Tensor, counted: np.ndarray) -> torch.Tensor:
        root = model.initial(obs, evaluator.task)
        values.append(root.values.mean(-1).cpu().numpy())
        counted_steps.append(counted)
        return search_from_root(model, root, evaluator.task, evaluator.action_mask, cfg.search, cfg.decision_discount,
                                generator, add_noise=False).action

    def observe(result: StepResult, counted: np.ndarray) -> None:
        rewards.append(result.reward * counted)
        truncated = counted & result.truncated & ~result.terminated  # [E] bootstrap from the final state
        if truncated.any():
            final = model.initial(torch.as_tensor(result.obs, device=evaluator.device), evaluator.task)
            tail[truncated] = final.values.mean(-1).cpu().numpy()[truncated]

    result = evaluator.run(model, generator, env_steps, act=act, observe=observe)
    evaluator.close()

    counted = np.array(counted_steps)  # [L, E]
    length = counted.sum(0)  # [E] decisions of every counted episode
    reward = np.array(rewards)  # [L, E], zero after each episode
    # move each row's tail to just after its own last decision: fold discount * tail into that reward
    last = length - 1
    reward[last, np.arange(reward.shape[1])] += cfg.decision_discount * tail
    returns = discounted_returns(reward, cfg.decision_discount)  # [L, E]
    first_half = counted & (np.arange(counted.shape[0])[:, None] < (length[None, :] + 1) // 2)  # [L, E]
    value = np.array(values)  # [L, E]
    by_task = {}
    for i, t in enumerate(tasks):
        rows = evaluator.env.task_ids == i
        v, g = value[:, rows][first_half[:, rows]], returns[:, rows][first_half[:, rows]]
        by_task[t.name] = {"value": float(v.mean()), "realised_return": float(g.mean()),
                           "ratio": float(v.mean() / g.mean()) if g.mean() != 0 else None,
                           "episode_return": result.mean_return(i), "decisions": int(v.size)}
        print(f"{t.name:<26}value {v.mean():8.1f}  realised {g.mean():8.1f}  "
              f"episode return {result.mean_return(i):7.1f}", flush=True)

    out = {**meta(), "config": config_lib.to_dict(cfg), "checkpoint": str(args.path), "env_steps_per_task": env_steps,
           "episodes": args.episodes, "seed": args.seed, "tasks": by_task}
    results = REPO / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"value_calibration{'_' + args.tag if args.tag else ''}.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
