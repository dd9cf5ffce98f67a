"""Proof of learning: one multi-task EZ-M model trained on a DMC suite, with its curves.

    python benchmarks/learn_dmc.py --suite dmc-cartpole --threads 1
    python benchmarks/learn_dmc.py --suite dmc-cartpole --threads 1 --tag mixed learn.value_target=mixed

Writes benchmarks/results/learn_dmc[_TAG].json shaped as {"machine", "commit", "config",
"suite", "env_steps_per_task", "wall_clock_s", "env_steps_per_s", "updates_per_s",
"final_eval": {task: return}, "final_eval_many" (the final model over --final-episodes
episodes, see final_eval.py), "curve": [{"env_steps", "task", "return"}, ...]} and a PNG of
the evaluation curves beside it. The run directory (logs, checkpoint) is kept under --runs.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

import torch
from _meta import REPO, meta
from final_eval import many_episodes

from ezm import config as config_lib
from ezm.workers.trainer import train

# the benchmark adds only its budget and evaluation settings to the preset: what it measures is
# what `ezm train --preset dmc` runs. The budget per task is the suite's comparison point.
BUDGETS = {"dmc-cartpole": 50_000, "dmc-walker": 100_000}
DEFAULTS = [
    "train.eval_interval=5000",
    "train.eval_episodes=4",
    "train.checkpoint_interval=10000",
    "train.progress=false",
]


def read_curve(run_dir: Path) -> list[dict]:
    with (run_dir / "eval.csv").open() as f:
        return [{"env_steps": int(row["env_steps"]), "task": row["task"], "return": float(row["return"])}
                for row in csv.DictReader(f)]


def plot(curve: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for task in sorted({p["task"] for p in curve}):
        points = [p for p in curve if p["task"] == task]
        ax.plot([p["env_steps"] for p in points], [p["return"] for p in points], marker="o", label=task)
    ax.set_xlabel("environment steps per task")
    ax.set_ylabel("evaluation return")
    ax.set_ylim(0, 1000)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="dmc-cartpole")
    parser.add_argument("--preset", default="dmc")
    parser.add_argument("--steps", type=int, default=None,
                        help="env steps per task (default: the suite's in BUDGETS, else the preset's)")
    parser.add_argument("--tag", default="", help="suffix of the output files")
    parser.add_argument("--runs", default=str(REPO / "benchmarks" / "runs"), help="parent of the run directory")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--final-episodes", type=int, default=32,
                        help="episodes per task of the final model's second, larger evaluation (0: none)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. learn.replay_ratio=0.2")
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    if args.threads:
        torch.set_num_threads(args.threads)

    steps = args.steps or BUDGETS.get(args.suite)
    budget = [f"train.env_steps_per_task={steps}"] if steps else []
    overrides = DEFAULTS + budget + [f"env.suite={args.suite}", f"train.run_dir={args.runs}"] + args.overrides
    cfg = config_lib.build(args.preset, None, overrides)
    provenance = meta()
    result = train(cfg)

    curve = read_curve(result.run_dir)
    metrics = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").open()]
    steps = cfg.train.env_steps_per_task
    tasks = len(result.final_eval.tasks)
    out = {
        **provenance,
        "config": config_lib.to_dict(cfg),
        "preset": args.preset,
        "torch_threads": torch.get_num_threads(),
        "suite": args.suite,
        "run_dir": str(result.run_dir),
        "env_steps_per_task": steps,
        "wall_clock_s": result.wall_clock_s,
        "env_steps_per_s": steps * tasks / result.wall_clock_s,
        "updates": result.updates,
        "updates_per_s": result.updates / result.wall_clock_s,
        "final_eval": {row["task"]: row["return"] for row in result.final_eval.rows()},
        "final_normalized_score": result.final_eval.mean_normalized_score(),
        "final_eval_many": many_episodes(result.run_dir, args.final_episodes) if args.final_episodes else None,
        "curve": curve,
        "losses": [{k: v for k, v in m.items() if k.startswith("loss/") or k == "env_steps"} for m in metrics],
    }
    name = f"learn_dmc{'_' + args.tag if args.tag else ''}"
    results = REPO / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(out, indent=1))
    plot(curve, results / f"{name}.png", f"EZ-M on {args.suite} ({args.preset} preset, one model)")
    print(result.report())
    print(f"wrote {results / name}.json and .png")


if __name__ == "__main__":
    main()
