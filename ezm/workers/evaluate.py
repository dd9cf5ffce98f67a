"""Evaluation: every task plays a few episodes with the search, Gumbel noise off.

As in EfficientZero-V2's evaluation, the root candidates are not widened: they come from
N(mu, search.eval_root_widen * sigma), eval_root_widen 1 by default; acting and reanalyze
keep search.root_widen for the widened ones. Unlike the release, search.eval_root_uniform of
the K candidates are uniform over the action box: the policy is trained towards the widened,
exploring proposal and rarely proposes small actions, which the model's values prefer under
dm_control's control costs (docs/results.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ezm.config import Config
from ezm.model import WorldModel
from ezm.search import search
from ezm.tasks.multitask_env import MultiTaskEnv, StepResult
from ezm.tasks.task import Task


@dataclass(frozen=True)
class EvalResult:
    tasks: tuple[Task, ...]  # the evaluated tasks
    returns: tuple[tuple[float, ...], ...]  # episode returns of every task
    env_steps: int  # env steps per task of training behind this evaluation

    def mean_return(self, index: int) -> float:
        return float(np.mean(self.returns[index]))

    def rows(self) -> list[dict]:
        return [{"task": t.name, "return": self.mean_return(i),
                 "normalized_score": t.normalized_score(self.mean_return(i)),
                 "episodes": len(self.returns[i])} for i, t in enumerate(self.tasks)]

    def mean_normalized_score(self) -> float:
        return float(np.mean([row["normalized_score"] for row in self.rows()]))

    def table(self) -> str:
        width = max(len(t.name) for t in self.tasks) + 2
        lines = [f"{'task':<{width}}{'return':>10}{'normalised':>12}{'episodes':>10}"]
        for row in self.rows():
            lines.append(f"{row['task']:<{width}}{row['return']:>10.1f}{row['normalized_score']:>12.3f}"
                         f"{row['episodes']:>10d}")
        lines.append(f"{'mean':<{width}}{'':>10}{self.mean_normalized_score():>12.3f}")
        return "\n".join(lines)


Act = Callable[[torch.Tensor, np.ndarray], torch.Tensor]  # (obs [E, O], counted [E] bool) -> action [E, A]
Observe = Callable[[StepResult, np.ndarray], None]  # (the step's result, counted [E] bool)


class Evaluator:
    """Holds one evaluation environment: `episodes` copies of every task, one episode each."""

    def __init__(self, tasks: list[Task], cfg: Config, episodes: int, seed: int):
        self.env = MultiTaskEnv(tasks, copies=episodes, seed=seed, action_repeat=cfg.env.action_repeat)
        self.cfg = cfg
        self.search_cfg = cfg.search.for_evaluation()
        self.episodes = episodes
        self.device = torch.device(cfg.device)
        self.task = torch.tensor(self.env.task_ids, device=self.device)  # [E]
        self.action_mask = torch.as_tensor(self.env.action_mask, device=self.device)  # [E, A]

    def searcher(self, model: WorldModel, generator: torch.Generator) -> Act:
        """The evaluation actor: the search without noise, root candidates by eval_root_widen and eval_root_uniform."""
        def act(obs: torch.Tensor, counted: np.ndarray) -> torch.Tensor:
            return search(model, obs, self.task, self.action_mask, self.search_cfg, self.cfg.decision_discount,
                          generator, add_noise=False).action
        return act

    @torch.no_grad()
    def run(self, model: WorldModel, generator: torch.Generator, env_steps: int = 0,
            act: Act | None = None, observe: Observe | None = None) -> EvalResult:
        """One episode in every row, acting by the search without noise, or by `act` if given;
        `observe` sees every step's result. Both learn which rows the step counts for (rows
        whose episode has ended keep stepping, uncounted), e.g. to gather statistics."""
        model.eval()
        act = act or self.searcher(model, generator)
        obs = self.env.reset()
        total = np.zeros(self.env.num_envs)  # [E]
        running = np.ones(self.env.num_envs, dtype=bool)  # [E] episode not yet over
        while running.any():
            action = act(torch.as_tensor(obs, device=self.device), running.copy())
            result = self.env.step(action.cpu().numpy())
            total += result.reward * running
            if observe is not None:
                observe(result, running.copy())
            done = result.terminated | result.truncated  # [E]
            running &= ~done
            # rows past their counted episode keep playing (the batch steps together), uncounted
            obs = self.env.reset_rows(np.flatnonzero(done)) if done.any() else result.obs
        per_task = total.reshape(len(self.env.tasks), self.episodes)
        return EvalResult(tuple(self.env.tasks), tuple(tuple(r) for r in per_task.tolist()), env_steps)

    def close(self) -> None:
        self.env.close()


def evaluate_checkpoint(path: str | Path, episodes: int | None = None,
                        video_dir: Path | None = None) -> EvalResult:
    """Play evaluation episodes with the model of a checkpoint file or run directory; with
    `video_dir`, also write a GIF of every task's first episode there (same returns)."""
    from ezm.workers.run import load_for_eval
    from ezm.workers.video import VideoRecorder

    cfg, model, tasks, env_steps = load_for_eval(Path(path))
    evaluator = Evaluator(tasks, cfg, episodes or cfg.train.eval_episodes, seed=cfg.seed + 10_000)
    generator = torch.Generator(device=cfg.device).manual_seed(cfg.seed + 10_000)
    recorder = VideoRecorder(evaluator.env) if video_dir is not None else None
    try:
        result = evaluator.run(model, generator, env_steps, observe=recorder.observe if recorder else None)
        if recorder is not None:
            recorder.write(video_dir, env_steps)
        return result
    finally:
        evaluator.close()
