"""Env steps/s of the in-process MultiTaskEnv against ParallelMultiTaskEnv (env.sim_workers).

    python benchmarks/parallel_sim_throughput.py [--sim-workers 2] [--action-repeat 4] [--steps 100] [--repeats 9]

Both sides step `dmc-walker` x 4 copies (12 rows; action repeat 4, the presets' `dmc` setting)
with the same pre-drawn random actions and reset the rows whose episode ended, as benchmarks/env_throughput.py does.
Runs are short and interleaved (order swapped every repeat) because other processes share
the machine: `speedup` is the median over repeats of the ratio of adjacent runs' wall times,
and the load average at the start and end is recorded beside it. The workers' start-up
(spawning processes that import dm_control and build their environments) is timed apart.
Writes benchmarks/results/parallel_sim_throughput.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
from _meta import meta
from env_throughput import COPIES, SUITE, run_layer
from ezm.tasks.multitask_env import MultiTaskEnv
from ezm.tasks.parallel_env import ParallelMultiTaskEnv
from ezm.tasks.registry import resolve

OUT = Path(__file__).parent / "results" / "parallel_sim_throughput.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim-workers", type=int, default=2, help="worker processes of the parallel side")
    parser.add_argument("--action-repeat", type=int, default=4, help="simulator steps per batched step")
    parser.add_argument("--steps", type=int, default=100, help="batched steps per measurement")
    parser.add_argument("--repeats", type=int, default=9, help="measurements of each side")
    args = parser.parse_args()

    load_start = os.getloadavg()
    tasks = resolve(SUITE)
    serial = MultiTaskEnv(tasks, copies=COPIES, seed=0, action_repeat=args.action_repeat)
    started = time.perf_counter()
    parallel = ParallelMultiTaskEnv(tasks, copies=COPIES, seed=0, action_repeat=args.action_repeat,
                                    workers=args.sim_workers)
    startup_s = time.perf_counter() - started
    actions = np.random.default_rng(0).uniform(-1, 1, (args.steps, serial.num_envs, serial.action_size))  # [S, E, A]
    sides = {"serial": serial, "parallel": parallel}
    for env in sides.values():
        run_layer(env, actions[:50])  # warm up caches and allocators
    wall = {side: [] for side in sides}  # side -> wall seconds of every repeat
    for repeat in range(args.repeats):
        for side in (("serial", "parallel") if repeat % 2 == 0 else ("parallel", "serial")):
            wall[side].append(run_layer(sides[side], actions)[0])
    started = time.perf_counter()
    parallel.close()
    close_s = time.perf_counter() - started
    serial.close()

    env_steps = args.steps * serial.num_envs * args.action_repeat  # simulator steps: no walker episode ends inside a repeat
    median = {side: statistics.median(times) for side, times in wall.items()}
    result = {
        **meta(),
        "command": ("python benchmarks/parallel_sim_throughput.py "
                    f"--sim-workers {args.sim_workers} --action-repeat {args.action_repeat} "
                    f"--steps {args.steps} --repeats {args.repeats}"),
        "config": {"suite": SUITE, "copies_per_task": COPIES, "num_envs": serial.num_envs,
                   "action_repeat": args.action_repeat,
                   "sim_workers": args.sim_workers, "batched_steps": args.steps, "repeats": args.repeats,
                   "actions": "uniform in [-1, 1], seed 0"},
        "load_average": {"start": load_start, "end": os.getloadavg()},  # (1, 5, 15 min): other processes' share
        "serial_steps_per_s": env_steps / median["serial"],  # environment steps per wall second, median
        "parallel_steps_per_s": env_steps / median["parallel"],
        "speedup": statistics.median(s / p for s, p in zip(wall["serial"], wall["parallel"])),  # adjacent runs
        "startup_s": startup_s,  # spawning the workers until every one has built its environments
        "close_s": close_s,
        "wall_s": wall,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"serial {result['serial_steps_per_s']:.0f} steps/s, {args.sim_workers} workers "
          f"{result['parallel_steps_per_s']:.0f} steps/s, speedup {result['speedup']:.2f}x "
          f"(start-up {startup_s:.1f} s, load average {load_start[0]:.1f})")


if __name__ == "__main__":
    main()
