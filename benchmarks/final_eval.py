"""A trained model's returns over many evaluation episodes, every episode's return kept.

    python benchmarks/final_eval.py RUN_DIR_OR_CHECKPOINT --episodes 32 --tag evalw1_s0

A run's own evaluations play a few episodes (learn_dmc: 4 per task, always from the same
starts), which can sit several standard errors from the model's mean over many starts (793
on learn_dmc_evalw1_s0's own 4 swingup episodes, 801.8 ± 1.2 over 32). This plays
`--episodes` fresh episodes per task (search without noise, the run's own config) and reports
the mean, the standard error and every return. learn_dmc.py calls it on its final model.

Writes benchmarks/results/final_eval[_TAG].json.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import _trained
from _meta import meta

from ezm.workers.evaluate import evaluate_checkpoint


def many_episodes(path: Path, episodes: int) -> dict:
    """{"episodes", "env_steps", "tasks": {task: {"mean", "stderr", "returns"}}} of a run dir or checkpoint."""
    result = evaluate_checkpoint(path, episodes=episodes)
    tasks = {}
    for task, returns in zip(result.tasks, result.returns):
        returns = np.asarray(returns)
        tasks[task.name] = {"mean": float(returns.mean()),
                            "stderr": float(returns.std(ddof=1) / np.sqrt(len(returns))) if len(returns) > 1 else 0.0,
                            "returns": returns.round(2).tolist()}
    return {"episodes": episodes, "env_steps": result.env_steps, "tasks": tasks}


def main() -> None:
    args = _trained.parse_args(_trained.parser(__doc__, episodes=32, seed=False))

    out = {**meta(), "path": str(args.path), **many_episodes(Path(args.path), args.episodes)}
    path = _trained.write_result("final_eval", args.tag, out)
    for task, row in out["tasks"].items():
        print(f"{task:<28}{row['mean']:>9.1f} ± {row['stderr']:.1f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
