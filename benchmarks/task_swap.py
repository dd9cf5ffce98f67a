"""Which task embedding plays each task best: a trained model's returns with the embeddings swapped.

    python benchmarks/task_swap.py RUN_DIR_OR_CHECKPOINT --episodes 8 --tag s1

Every task's environment is played (search without noise, as in evaluation) once with each
task's embedding in turn: entry [i][j] of the matrix is the mean return on task i when the
model is told it plays task j. Tasks that share dynamics and reward (cartpole-balance and
-swingup, say) show whether the model learned one behaviour or two, and whether a task's own
embedding is its best. Observations and action masks stay those of the environment's task,
so only pairs whose observation and action sizes match are played; the others are null.

Writes benchmarks/results/task_swap[_TAG].json with the matrix, the tasks and the checkpoint.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import _trained
from _meta import REPO, meta

from ezm import config as config_lib
from ezm.search import search
from ezm.workers.evaluate import Evaluator
from ezm.workers.run import load_for_eval


def main() -> None:
    args = _trained.parse_args(_trained.parser(__doc__, episodes=4, episodes_help="evaluation episodes per task and embedding"))

    cfg, model, tasks, env_steps = load_for_eval(Path(args.path))
    shapes = [(t.obs_size, t.action_size) for t in tasks]
    matrix: list[list[float | None]] = [[None] * len(tasks) for _ in tasks]  # [played task][embedding]
    for j in range(len(tasks)):
        evaluator = Evaluator(tasks, cfg, args.episodes, seed=args.seed)  # the same starts for every embedding
        generator = torch.Generator(device=cfg.device).manual_seed(args.seed)
        rows = np.array([shapes[t] == shapes[j] for t in evaluator.env.task_ids])  # [E] rows that can take j
        told = torch.where(torch.as_tensor(rows, device=evaluator.device), j, evaluator.task)  # [E]

        def act(obs: torch.Tensor, counted: np.ndarray) -> torch.Tensor:
            return search(model, obs, told, evaluator.action_mask, cfg.search, cfg.decision_discount, generator,
                          add_noise=False).action

        result = evaluator.run(model, generator, env_steps, act=act)
        evaluator.close()
        for i in range(len(tasks)):
            if shapes[i] == shapes[j]:
                matrix[i][j] = result.mean_return(i)
        print(f"embedding of {tasks[j].name}: " + ", ".join(
            f"{tasks[i].name} {matrix[i][j]:.1f}" for i in range(len(tasks)) if matrix[i][j] is not None), flush=True)

    out = {**meta(), "config": config_lib.to_dict(cfg), "checkpoint": str(args.path), "env_steps_per_task": env_steps,
           "episodes": args.episodes, "seed": args.seed, "tasks": [t.name for t in tasks],
           "returns": matrix, "rows_are": "played task", "columns_are": "task embedding"}
    results = REPO / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"task_swap{'_' + args.tag if args.tag else ''}.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
