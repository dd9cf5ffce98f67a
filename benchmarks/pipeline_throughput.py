"""Throughput of the arrangements of one training run: env steps/s and updates/s at one replay ratio.

    python benchmarks/pipeline_throughput.py                      # dmc-walker, the dmc preset
    python benchmarks/pipeline_throughput.py --suite hb-medium --tag hb
    python benchmarks/pipeline_throughput.py --preset paper --suite hb-medium --tag gpu device=cuda system.worker_gpus=0.1

Arrangements (every one a real `ezm train` of the same config and seed, in this process):
  single-1thread   the single process with one torch thread
  single-2threads  the single process with two torch threads
  parallel-sim     the single process (one thread) with env.sim_workers=2 simulation processes
  ray              the Ray pipeline (asynchronous): the learner here (one thread), one rollout and
                   two reanalyze actors (system.worker_threads each) on a local cluster, which
                   starts with this row (so it is not running during the others) and ends with the
                   script; reanalyze is the largest part of an update, and on 2 cores two
                   reanalyze actors beat one (with one, the learner computes many targets
                   itself: 1.60x against 1.74x on dmc-walker, docs/scale-out.md)
Each run collects its warm-up and then --measure env steps per task; the rates are those of
the logged rows after warm-up (evaluation off, the final one not counted). Writes
benchmarks/results/pipeline_throughput[_TAG].json shaped as {"machine", "commit", "time",
"config", "measure_env_steps", "rows": [{"arrangement", "suite", "replay_ratio",
"env_steps_per_s", "updates_per_s", "wall_clock_s"}, ...]}.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from _meta import REPO, meta

from ezm import config as config_lib
from ezm.workers.trainer import train

ARRANGEMENTS = {  # name -> (torch threads of this process, config overrides)
    "single-1thread": (1, []),
    "single-2threads": (2, []),
    "parallel-sim": (1, ["env.sim_workers=2"]),
    "ray": (1, ["system.backend=ray", "system.rollout_workers=1", "system.reanalyze_workers=2"]),
}


def rates(run_dir: Path, warmup: int) -> tuple[float, float]:
    """(env steps/s, updates/s) between the first logged row after warm-up and the last one."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    learning = [r for r in rows if r["env_steps"] > warmup]
    first, last = learning[0], learning[-1]
    seconds = last["time"] - first["time"]
    return (last["env_steps"] - first["env_steps"]) / seconds, (last["updates"] - first["updates"]) / seconds


def measure(name: str, cfg: config_lib.Config, runs: Path) -> dict:
    threads, overrides = ARRANGEMENTS[name]
    torch.set_num_threads(threads)
    cfg = config_lib.validate(config_lib.merge(cfg, config_lib.parse_overrides(
        [*overrides, f"train.run_dir={runs / name}"])))
    start = time.time()
    result = train(cfg)
    env_steps_per_s, updates_per_s = rates(result.run_dir, cfg.learn.warmup_steps)
    row = {"arrangement": name, "suite": cfg.env.suite, "replay_ratio": cfg.learn.replay_ratio,
           "env_steps_per_s": env_steps_per_s, "updates_per_s": updates_per_s,
           "wall_clock_s": time.time() - start}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="dmc-walker")
    parser.add_argument("--preset", default="dmc")
    parser.add_argument("--measure", type=int, default=1600, help="env steps per task measured after warm-up")
    parser.add_argument("--arrangements", default=",".join(ARRANGEMENTS), help="comma-separated, of " + ", ".join(ARRANGEMENTS))
    parser.add_argument("--tag", default="", help="suffix of the result file")
    parser.add_argument("overrides", nargs="*", help="section.field=value for every arrangement")
    args = parser.parse_args()
    base = config_lib.build(args.preset, overrides=[f"env.suite={args.suite}", *args.overrides])
    budget = base.learn.warmup_steps + args.measure
    cfg = config_lib.merge(base, {
        "train": {"env_steps_per_task": budget, "eval_interval": 10 * budget, "eval_episodes": 1,
                  "checkpoint_interval": 10 * budget, "progress": False,
                  "log_interval": base.env.action_repeat * base.env.copies_per_task}})  # a row every decision
    with tempfile.TemporaryDirectory() as runs:
        rows = [measure(name, cfg, Path(runs)) for name in args.arrangements.split(",")]
    out = REPO / "benchmarks" / "results" / f"pipeline_throughput{'_' + args.tag if args.tag else ''}.json"
    out.write_text(json.dumps({**meta(), "config": config_lib.to_dict(cfg), "measure_env_steps": args.measure,
                               "rows": rows}, indent=1) + "\n")
    single = next((r for r in rows if r["arrangement"] == "single-1thread"), None)
    for r in rows:
        ratio = f"{r['env_steps_per_s'] / single['env_steps_per_s']:.2f}x single-1thread" if single else ""
        print(f"{r['arrangement']:>16}: {r['env_steps_per_s']:7.1f} env steps/s, {r['updates_per_s']:6.2f} updates/s {ratio}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
