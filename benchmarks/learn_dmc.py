"""Proof of learning: one multi-task EZ-M model trained on a DMC suite, with its curves.

    python benchmarks/learn_dmc.py --suite dmc-cartpole --threads 1
    python benchmarks/learn_dmc.py --suite dmc-cartpole --threads 1 --tag mixed learn.value_target=mixed

Writes benchmarks/results/learn_dmc[_TAG].json shaped as {"machine", "commit", "config",
"suite", "env_steps_per_task", "wall_clock_s", "env_steps_per_s", "updates_per_s",
"final_eval": {task: return}, "final_eval_many" (the final model over --final-episodes
episodes, see final_eval.py), "curve": [{"env_steps", "task", "return"}, ...]} and a PNG of
the evaluation curves beside it. The run directory (logs, checkpoint) is kept under --runs.
A run longer than a session is continued with `--resume RUN_DIR` (its wall clock sums every
part); `--record RUN_DIR` writes the figures of a run as it stands.
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
from ezm.workers.run import read_config
from ezm.workers.stop import Interrupted, exit_code
from ezm.workers.trainer import RunFinished, resume, train

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


def figures(run_dir: Path, cfg: config_lib.Config, preset: str | None, final_episodes: int) -> dict:
    """The JSON of a run directory as it stands. The wall clock and update count are those of its
    last log line, whose `time` sums every process that ran it (a run split by --resume); a run
    stopped before its budget is marked `finished: false` and gets no many-episode evaluation."""
    curve = read_curve(run_dir)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    last_step = max(point["env_steps"] for point in curve)
    final = {point["task"]: point["return"] for point in curve if point["env_steps"] == last_step}
    with (run_dir / "eval.csv").open() as f:
        scores = [float(row["normalized_score"]) for row in csv.DictReader(f) if int(row["env_steps"]) == last_step]
    steps, wall, updates = cfg.train.env_steps_per_task, metrics[-1]["time"], metrics[-1]["updates"]
    finished = last_step >= steps
    return {
        "config": config_lib.to_dict(cfg),
        "preset": preset,
        "torch_threads": torch.get_num_threads(),
        "suite": cfg.env.suite,
        "run_dir": str(run_dir),
        "env_steps_per_task": steps,
        "finished": finished,
        "last_eval_env_steps": last_step,
        "wall_clock_s": wall,
        "env_steps_per_s": metrics[-1]["env_steps"] * len(final) / wall,
        "updates": updates,
        "updates_per_s": updates / wall,
        "final_eval": final,
        "final_normalized_score": sum(scores) / len(scores),
        "final_eval_many": many_episodes(run_dir, final_episodes) if finished and final_episodes else None,
        "curve": curve,
        "losses": [{k: v for k, v in m.items() if k.startswith("loss/") or k == "env_steps"} for m in metrics],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="dmc-cartpole")
    parser.add_argument("--preset", default=None,
                        help="preset of a new run (default: dmc); with --resume or --record, the preset the run "
                             "was started with, stored as its label (null when not given: the config is stored in full)")
    parser.add_argument("--steps", type=int, default=None,
                        help="env steps per task (default: the suite's in BUDGETS, else the preset's)")
    parser.add_argument("--tag", default="", help="suffix of the output files")
    parser.add_argument("--runs", default=str(REPO / "benchmarks" / "runs"), help="parent of the run directory")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--final-episodes", type=int, default=32,
                        help="episodes per task of the final model's second, larger evaluation (0: none)")
    parser.add_argument("--resume", metavar="RUN_DIR", default=None,
                        help="continue a run of this script that stopped (a session's end, a kill) and write its figures")
    parser.add_argument("--record", metavar="RUN_DIR", default=None,
                        help="write the figures of a run as it stands, without training (an unfinished one is marked so)")
    parser.add_argument("--note", default=None, help="a remark stored in the JSON (e.g. which code ran a recorded run)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. learn.replay_ratio=0.2")
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    if args.threads:
        torch.set_num_threads(args.threads)

    provenance = meta()
    if args.resume or args.record:
        run_dir = Path(args.resume or args.record)
        cfg = read_config(run_dir)
        if args.resume:
            try:
                resume(run_dir)
            except RunFinished:
                pass
    else:
        steps = args.steps or BUDGETS.get(args.suite)
        budget = [f"train.env_steps_per_task={steps}"] if steps else []
        overrides = DEFAULTS + budget + [f"env.suite={args.suite}", f"train.run_dir={args.runs}"] + args.overrides
        args.preset = args.preset or "dmc"
        cfg = config_lib.build(args.preset, None, overrides)
        run_dir = train(cfg).run_dir

    out = {**provenance, **({"note": args.note} if args.note else {}),
           **figures(run_dir, cfg, args.preset, args.final_episodes)}
    name = f"learn_dmc{'_' + args.tag if args.tag else ''}"
    results = REPO / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(out, indent=1))
    plot(out["curve"], results / f"{name}.png", f"EZ-M on {cfg.env.suite} ({args.preset + ' preset, ' if args.preset else ''}one model)")
    print("\n".join(f"{task:<28}{ret:>9.1f}" for task, ret in out["final_eval"].items()))
    print(f"wrote {results / name}.json and .png")


if __name__ == "__main__":
    try:
        main()
    except Interrupted as stop:  # a checkpoint is written: the figures come when the run is continued
        print(f"learn_dmc: stopped at {stop.env_steps} env steps per task, checkpoint written; continue with: "
              f"python benchmarks/learn_dmc.py --resume {stop.run_dir}")
        raise SystemExit(exit_code(stop.signum))
