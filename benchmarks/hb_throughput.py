"""Steps/s of HumanoidBench through MultiTaskEnv against the raw gymnasium environment.

    python benchmarks/hb_throughput.py [--steps 2000] [--repeats 7]

Needs HumanoidBench (docs/humanoidbench.md). For h1-walk and h1hand-walk, one environment a
side: the layer (`MultiTaskEnv([task], copies=1)`, seeded resets) and the environment as
`gymnasium.make` gives it (`render_mode=None`, no env checker, as the layer builds it; reset
without a seed), stepped with the same pre-drawn random actions, each reset when its episode
ends (random actions fall within a few dozen steps, so resets are part of the cost).
Measurements are interleaved (ABAB..., order swapped every repeat) and medians compared, on
wall and on process CPU time, as other processes share the machine. Writes benchmarks/results/hb_throughput.json.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import statistics
import time
from pathlib import Path

import gymnasium
import mujoco
import numpy as np

from _meta import meta
from ezm.tasks import humanoidbench
from ezm.tasks.multitask_env import MultiTaskEnv
from ezm.tasks.registry import resolve

TASKS = ("h1-walk", "h1hand-walk")
OUT = Path(__file__).parent / "results" / "hb_throughput.json"


def run_layer(env: MultiTaskEnv, actions: np.ndarray) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, episode ends) for len(actions) steps; actions [steps, 1, A]."""
    env.reset()
    ends = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in actions:
        result = env.step(batch)
        ended = np.flatnonzero(result.terminated | result.truncated)
        if len(ended):
            ends += 1
            env.reset_rows(ended)
    return time.perf_counter() - wall, time.process_time() - cpu, ends


def run_raw(env, actions: np.ndarray) -> tuple[float, float, int]:
    """The same steps on the gymnasium environment; actions [steps, 1, A]."""
    env.reset(seed=0)
    ends = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in actions:
        _, _, terminated, truncated, _ = env.step(batch[0])
        if terminated or truncated:
            ends += 1
            env.reset()
    return time.perf_counter() - wall, time.process_time() - cpu, ends


def measure(name: str, steps: int, repeats: int) -> dict:
    layer = MultiTaskEnv(resolve(name), copies=1, seed=0)
    raw = humanoidbench.make(name).env  # the gymnasium env (TimeLimit included), without ezm's wrapper
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, 1, layer.action_size))  # [steps, 1, A]
    run_layer(layer, actions[:50])  # warm up
    run_raw(raw, actions[:50])
    runs = {"layer": [], "raw": []}  # side -> [(wall s, CPU s, episode ends)] per repeat
    for repeat in range(repeats):
        for side in ("layer", "raw") if repeat % 2 == 0 else ("raw", "layer"):
            runs[side].append(run_layer(layer, actions) if side == "layer" else run_raw(raw, actions))
    layer.close()
    raw.close()
    wall = {side: statistics.median(w for w, _, _ in r) for side, r in runs.items()}
    cpu = {side: statistics.median(c for _, c, _ in r) for side, r in runs.items()}
    return {
        "layer_steps_per_s": steps / wall["layer"],  # per wall second, median over repeats
        "raw_steps_per_s": steps / wall["raw"],
        "layer_steps_per_cpu_s": steps / cpu["layer"],  # per process CPU second (less sensitive to load)
        "raw_steps_per_cpu_s": steps / cpu["raw"],
        "overhead_ratio": wall["layer"] / wall["raw"] - 1,  # median wall time, layer / raw - 1
        "overhead_ratio_cpu": cpu["layer"] / cpu["raw"] - 1,  # the same on CPU time
        "wall_s": {side: [w for w, _, _ in r] for side, r in runs.items()},
        "cpu_s": {side: [c for _, c, _ in r] for side, r in runs.items()},
        "episode_ends": {side: [e for _, _, e in r] for side, r in runs.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="environment steps per measurement")
    parser.add_argument("--repeats", type=int, default=7, help="measurements of each side")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    results = {name: measure(name, args.steps, args.repeats) for name in TASKS}
    report = {
        **meta(),
        "command": f"python benchmarks/hb_throughput.py --steps {args.steps} --repeats {args.repeats}",
        "config": {"tasks": list(TASKS), "copies_per_task": 1, "action_repeat": 1, "steps": args.steps,
                   "repeats": args.repeats, "actions": "uniform in [-1, 1], seed 0",
                   "stack": {"mujoco": mujoco.__version__, "gymnasium": gymnasium.__version__,
                             "dm_control": importlib.metadata.version("dm_control")}},
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},  # other processes share the cores
        "tasks": results,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    for name, r in results.items():
        print(f"{name}: layer {r['layer_steps_per_s']:.0f} steps/s, raw {r['raw_steps_per_s']:.0f} steps/s, "
              f"overhead {100 * r['overhead_ratio']:.1f}% (CPU time {100 * r['overhead_ratio_cpu']:.1f}%)")


if __name__ == "__main__":
    main()
