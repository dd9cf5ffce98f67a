"""Return of the uniform-random policy on the DMC suites (and Pendulum-v1).

    python benchmarks/random_returns.py [--episodes 10]

Actions are uniform in every task's bounds, one per simulator step (no action repeat), over
whole episodes. Writes benchmarks/results/random_returns.json (with machine and commit) and
the package table ezm/tasks/random_returns.json, which Gymnasium tasks use as their score 0
and `ezm tasks` shows.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _meta import meta
from ezm.tasks import random_policy, registry

SUITES = ("dmc-cartpole", "dmc-walker", "dmc-mixed")
EXTRA = ("Pendulum-v1",)  # Gymnasium tasks whose score 0 comes from this table
SEED = 0
OUT = Path(__file__).parent / "results" / "random_returns.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=10, help="episodes per task")
    args = parser.parse_args()

    names = list(dict.fromkeys([*(n for s in SUITES for n in registry.SUITES[s]), *EXTRA]))
    rows = {}  # name -> {"mean", "std", "returns"}
    for name in names:
        task = registry.task(name)
        env = registry.make(task)
        start = time.perf_counter()
        returns = random_policy.measure(env, task.action_low, task.action_high, args.episodes, SEED)
        env.close()
        rows[name] = {"mean": float(returns.mean()), "std": float(returns.std()), "returns": returns.tolist()}
        print(f"{name:28s} {returns.mean():9.2f} +- {returns.std():7.2f}  ({time.perf_counter() - start:.1f} s)")

    command = f"python benchmarks/random_returns.py --episodes {args.episodes}"
    table = {"command": command, "episodes": args.episodes, "seed": SEED, "policy": "uniform in the task's bounds",
             "tasks": {name: {"mean": row["mean"], "std": row["std"]} for name, row in rows.items()}}
    random_policy.TABLE.write_text(json.dumps(table, indent=2) + "\n")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({**meta(), **table, "tasks": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
