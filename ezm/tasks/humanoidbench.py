"""HumanoidBench tasks (Unitree H1), named `robot-task`: `h1-walk`, `h1hand-sit_hard`.

HumanoidBench is not on PyPI; docs/humanoidbench.md says how to install it. ezm runs it
unmodified on both its pinned stack (mujoco 3.1.6, gymnasium 0.29) and the current one
(mujoco 3.17, gymnasium 1.x), fixing three things from outside the package when it loads:
its `humanoid_bench.mjx.flax_to_torch` import (torch + jax, needed by none of these tasks)
is replaced by a stub, its copied dm_control indexer is made to skip MjModel/MjData fields
that newer MuJoCo removed or that are not numeric arrays, and environments are built with
`render_mode=None` so no OpenGL context is opened.

Episodes end in termination when the robot falls (a true terminal) or in truncation at the
1000-step TimeLimit. Scores are the paper's random and success returns (hb_scores.json).
"""
from __future__ import annotations

import functools
import importlib
import json
import sys
import types
from pathlib import Path

import numpy as np

from ezm.tasks.task import MissingPackageError, Task, UnknownTaskError

INSTALL = ("HumanoidBench tasks need the humanoid_bench package, which is not on PyPI: clone "
           "https://github.com/carlosferrazza/humanoid-bench and run `pip install --no-deps -e .` in it; "
           "see docs/humanoidbench.md")

_SCORES = json.loads((Path(__file__).parent / "hb_scores.json").read_text())["tasks"]  # name -> random, success
_ACTION_SIZE = {"h1": 19, "h1hand": 61}  # robot -> actuators
_HAND_OBS = 100  # h1hand's observation is h1's plus the two hands' qpos and qvel
_H1_OBS_SIZE = {  # task -> h1 observation size (qpos and qvel, objects included)
    **dict.fromkeys(("stand", "walk", "run", "stair", "crawl", "slide", "pole", "hurdle", "maze", "sit_simple"), 51),
    "sit_hard": 64,
    "balance_simple": 64,
    "balance_hard": 77,
    "reach": 57,
}


def _stub_flax_to_torch() -> types.ModuleType:
    stub = types.ModuleType("humanoid_bench.mjx.flax_to_torch", doc=(
        "Stands in for humanoid_bench.mjx.flax_to_torch, which imports torch and jax to load the "
        "low-level policies of HumanoidBench's hierarchical variants. `import humanoid_bench` imports it "
        "even though the flat tasks ezm runs never use it, so ezm puts this stub in its place to spare "
        "users a jax install."))

    class Unavailable:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("HumanoidBench's hierarchical policies are not available under ezm")

    stub.TorchModel = stub.TorchPolicy = Unavailable
    return stub


class _PresentFields:
    """A MuJoCo struct seen through HumanoidBench's indexer: absent or non-numeric fields read as None.

    The indexer reads every field its (older) size table lists and skips values that are not
    arrays; newer MuJoCo removed some of those fields (`flex_evpair`, `tex_rgb`, ...).
    """

    def __init__(self, struct):
        self._struct = struct

    def __getattr__(self, name: str):
        value = getattr(self._struct, name, None)
        if isinstance(value, np.ndarray) and value.dtype.kind not in "biuf":
            return None
        return value


@functools.cache
def _gymnasium():
    """Import humanoid_bench (registering its ids) with ezm's fixes; returns the gymnasium module."""
    sys.modules.setdefault("humanoid_bench.mjx.flax_to_torch", _stub_flax_to_torch())
    try:
        importlib.import_module("humanoid_bench")
    except ModuleNotFoundError as err:
        if err.name == "humanoid_bench":
            raise MissingPackageError(INSTALL) from None
        raise MissingPackageError(f"HumanoidBench is installed but cannot be imported: module {err.name!r} is "
                                  "missing; see docs/humanoidbench.md") from None
    dmc_index = importlib.import_module("humanoid_bench.dmc_deps.dmc_index")
    struct_indexer = dmc_index.struct_indexer
    dmc_index.struct_indexer = lambda struct, name, axes: struct_indexer(_PresentFields(struct), name, axes)
    return importlib.import_module("gymnasium")


def _split(name: str) -> tuple[str, str]:
    robot, _, task = name.partition("-")
    if name not in _SCORES:
        raise UnknownTaskError(f"{name!r} is not one of the HumanoidBench tasks ezm supports: {', '.join(_SCORES)}")
    return robot, task


class HumanoidBenchEnv:
    """One HumanoidBench environment behind the RawEnv protocol."""

    def __init__(self, name: str):
        _split(name)
        gymnasium = _gymnasium()
        # The env checker only warns (about float64 observations); TimeLimit stays.
        self.env = gymnasium.make(f"{name}-v0", render_mode=None, disable_env_checker=True)

    def reset(self, seed: int) -> np.ndarray:
        # sit_hard and reach draw their start from numpy's global RNG: seed it for the reset
        # and give the caller's global RNG state back afterwards.
        state = np.random.get_state()
        np.random.seed(seed)
        try:
            obs, _ = self.env.reset(seed=seed)
        finally:
            np.random.set_state(state)
        return np.asarray(obs, dtype=np.float64)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]:
        obs, reward, terminated, truncated, _ = self.env.step(action)
        return np.asarray(obs, dtype=np.float64), float(reward), bool(terminated), bool(truncated)

    def close(self) -> None:
        self.env.close()


@functools.cache
def task(name: str) -> Task:
    """The Task record of a HumanoidBench task (sizes from a table, so no simulator is built)."""
    robot, task_name = _split(name)
    spec = _gymnasium().spec(f"{name}-v0")
    obs_size = _H1_OBS_SIZE[task_name] + (_HAND_OBS if robot == "h1hand" else 0)
    action_size = _ACTION_SIZE[robot]
    return Task(
        name=name,
        source="humanoidbench",
        obs_size=obs_size,
        action_size=action_size,
        action_low=(-1.0,) * action_size,
        action_high=(1.0,) * action_size,
        episode_length=int(spec.max_episode_steps),
        score_low=_SCORES[name]["random"],
        score_high=_SCORES[name]["success"],
    )


def make(name: str) -> HumanoidBenchEnv:
    return HumanoidBenchEnv(name)
