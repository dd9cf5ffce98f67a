"""The uniform-random policy's return: the score that normalises to 0 where a source has no
fixed one (Gymnasium), and a reference column of `ezm tasks`.

The measured table is package data (`random_returns.json`, written by
`benchmarks/random_returns.py`); tasks missing from it are measured when first asked for.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from ezm.tasks.task import RawEnv

TABLE = Path(__file__).with_name("random_returns.json")  # {"command", "episodes", "seed", "tasks": {name: {"mean", "std"}}}


@functools.lru_cache(maxsize=1)
def table() -> dict[str, float]:
    """Mean random return per task name, from the packaged table ({} if it is absent)."""
    if not TABLE.exists():
        return {}
    return {name: row["mean"] for name, row in json.loads(TABLE.read_text())["tasks"].items()}


def measure(env: RawEnv, action_low: tuple[float, ...], action_high: tuple[float, ...],
            episodes: int, seed: int) -> np.ndarray:
    """Returns [episodes] of whole episodes with actions uniform in the task's bounds."""
    rng = np.random.default_rng(seed)
    low, high = np.asarray(action_low), np.asarray(action_high)
    returns = np.zeros(episodes)  # [episodes]
    for episode in range(episodes):
        env.reset(seed=int(rng.integers(2**31 - 1)))
        done = False
        while not done:
            _, reward, terminated, truncated = env.step(rng.uniform(low, high))
            returns[episode] += reward
            done = terminated or truncated
    return returns
