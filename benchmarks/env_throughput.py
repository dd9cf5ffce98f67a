"""Steps/s of MultiTaskEnv against a plain loop over the same raw dm_control environments.

    python benchmarks/env_throughput.py [--steps 200] [--repeats 41]

Both sides step the same 12 dm_control environments (`dmc-walker` x 4 copies, action repeat 1;
the raw side calls `Environment.step` on the layer's own simulators) with the same pre-drawn
random actions and reset an environment when its episode ends. Other processes share the
machine, so runs are short and interleaved (order swapped every repeat): `overhead_ratio` is
the median over repeats of the ratio of adjacent runs (wall time) minus 1; the ratios of the
median wall times and of the median CPU times are reported beside it, and the layer's own work
is timed alone over environments that do no simulation.
Writes benchmarks/results/env_throughput.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from _meta import meta
from ezm.tasks.multitask_env import MultiTaskEnv
from ezm.tasks.registry import resolve

SUITE, COPIES = "dmc-walker", 4
OUT = Path(__file__).parent / "results" / "env_throughput.json"


def run_layer(env: MultiTaskEnv, actions: np.ndarray) -> tuple[float, float]:
    """(wall seconds, CPU seconds) for len(actions) batched steps."""
    env.reset()
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in actions:
        result = env.step(batch)
        ended = np.flatnonzero(result.terminated | result.truncated)
        if len(ended):
            env.reset_rows(ended)
    return time.perf_counter() - wall, time.process_time() - cpu


def run_raw(envs: list, actions: np.ndarray) -> tuple[float, float]:
    """The same steps as a Python loop over the raw dm_control environments."""
    for env in envs:
        env.reset()
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in actions:
        for env, action in zip(envs, batch):
            if env.step(action).last():
                env.reset()
    return time.perf_counter() - wall, time.process_time() - cpu


class _ConstantEnv:
    """A RawEnv that does no simulation: stepping the layer over it times the layer's own work."""

    def __init__(self, obs_size: int):
        self.obs = np.zeros(obs_size)  # [obs_size]

    def reset(self, seed: int) -> np.ndarray:
        return self.obs

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]:
        return self.obs, 0.0, False, False

    def close(self) -> None:
        pass


def layer_own_seconds(layer: MultiTaskEnv, actions: np.ndarray) -> float:
    """CPU seconds of the layer's bookkeeping alone for len(actions) batched steps."""
    real = list(layer.raw_envs)
    layer.raw_envs[:] = [_ConstantEnv(layer.obs_size) for _ in real]  # in place: the list the layer steps
    layer.reset()
    cpu = time.process_time()
    for batch in actions:
        layer.step(batch)
    seconds = time.process_time() - cpu
    layer.raw_envs[:] = real
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="batched steps per measurement")
    parser.add_argument("--repeats", type=int, default=41, help="measurements of each side")
    args = parser.parse_args()

    layer = MultiTaskEnv(resolve(SUITE), copies=COPIES, seed=0)
    raw = [env.env for env in layer.raw_envs]  # the same 12 dm_control Environments, stepped directly
    actions = np.random.default_rng(0).uniform(-1, 1, (args.steps, layer.num_envs, layer.action_size))
    run_layer(layer, actions[:50]), run_raw(raw, actions[:50])  # warm up caches and allocators
    times = {"layer": [], "raw": []}  # side -> [(wall, cpu)] per repeat
    for repeat in range(args.repeats):
        order = ("layer", "raw") if repeat % 2 == 0 else ("raw", "layer")
        for side in order:
            times[side].append(run_layer(layer, actions) if side == "layer" else run_raw(raw, actions))
    own = statistics.median(layer_own_seconds(layer, actions) for _ in range(args.repeats))
    layer.close()

    env_steps = args.steps * layer.num_envs
    wall = {side: statistics.median(t[0] for t in runs) for side, runs in times.items()}
    cpu = {side: statistics.median(t[1] for t in runs) for side, runs in times.items()}
    result = {
        **meta(),
        "command": "python benchmarks/env_throughput.py " + f"--steps {args.steps} --repeats {args.repeats}",
        "config": {"suite": SUITE, "copies_per_task": COPIES, "num_envs": layer.num_envs, "action_repeat": 1,
                   "batched_steps": args.steps, "repeats": args.repeats, "actions": "uniform in [-1, 1], seed 0"},
        "layer_steps_per_s": env_steps / wall["layer"],  # environment steps per wall second, median
        "raw_steps_per_s": env_steps / wall["raw"],
        "overhead_ratio": statistics.median(  # median over repeats of layer / raw - 1 (adjacent runs, wall time)
            l[0] / r[0] - 1 for l, r in zip(times["layer"], times["raw"])),
        "overhead_ratio_of_medians": wall["layer"] / wall["raw"] - 1,  # median wall times, layer / raw - 1
        "overhead_ratio_cpu": cpu["layer"] / cpu["raw"] - 1,  # median process CPU time (less sensitive to load)
        "layer_own_us_per_env_step": 1e6 * own / env_steps,  # the layer's bookkeeping without simulation (CPU)
        "raw_cpu_us_per_env_step": 1e6 * cpu["raw"] / env_steps,  # a raw dm_control step (CPU)
        "wall_s": {side: [t[0] for t in runs] for side, runs in times.items()},
        "cpu_s": {side: [t[1] for t in runs] for side, runs in times.items()},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"layer {result['layer_steps_per_s']:.0f} steps/s, raw {result['raw_steps_per_s']:.0f} steps/s, "
          f"overhead {100 * result['overhead_ratio']:.1f}% (of medians {100 * result['overhead_ratio_of_medians']:.1f}%, "
          f"CPU time {100 * result['overhead_ratio_cpu']:.1f}%); layer's own work "
          f"{result['layer_own_us_per_env_step']:.1f} us vs {result['raw_cpu_us_per_env_step']:.0f} us per raw step")


if __name__ == "__main__":
    main()
