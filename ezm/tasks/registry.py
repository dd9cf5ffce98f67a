"""Names to Task records: suites, comma-separated task lists, and the source of every name.

Routing: `h1-*` and `h1hand-*` go to HumanoidBench, ids ending in `-v<digits>` and custom
`module:EnvId` names (which import the module that registers the id) to Gymnasium,
everything else to the DeepMind Control Suite.
"""
from __future__ import annotations

import difflib
import importlib
import re
from types import ModuleType

import gymnasium

from ezm.config import EnvConfig
from ezm.tasks import dmc, gym, random_policy
from ezm.tasks.task import MissingPackageError, RawEnv, Task, UnknownTaskError

_HB_MEDIUM = ("stand", "walk", "run", "stair", "crawl", "slide", "pole", "hurdle", "maze")
_HB_HARD = _HB_MEDIUM + ("sit_simple", "sit_hard", "balance_simple", "balance_hard", "reach")

SUITES = {  # suite name -> its tasks, in task-id order
    "dmc-cartpole": ("cartpole-balance", "cartpole-balance_sparse", "cartpole-swingup", "cartpole-swingup_sparse"),
    "dmc-walker": ("walker-stand", "walker-walk", "walker-run"),
    "dmc-mixed": ("cartpole-swingup", "walker-walk", "cheetah-run", "hopper-hop"),
    "hb-medium": tuple(f"h1-{name}" for name in _HB_MEDIUM),
    "hb-hard": tuple(f"h1hand-{name}" for name in _HB_HARD),
}

_GYM_ID = re.compile(r"^[\w/.:]+-v\d+$")  # Gymnasium ids: `Name-v1`, `ns/Name-v0`


def suite_names() -> list[str]:
    return list(SUITES)


def _humanoidbench() -> ModuleType:
    try:
        return importlib.import_module("ezm.tasks.humanoidbench")
    except ModuleNotFoundError as err:
        if err.name not in ("ezm.tasks.humanoidbench", "humanoid_bench"):
            raise
        raise MissingPackageError("HumanoidBench tasks need the humanoid_bench package and ezm's "
                                  f"HumanoidBench source (missing module {err.name!r}); see docs/humanoidbench.md") from None


def source(name: str) -> ModuleType:
    """The source module (with `task(name)` and `make(name)`) that owns `name`."""
    if name.startswith(("h1-", "h1hand-")):
        return _humanoidbench()
    if ":" in name or _GYM_ID.match(name):
        return gym
    return dmc


def _suggestions(name: str) -> str:
    known = [*dmc.NAMES, *SUITES, *(n for names in SUITES.values() for n in names), *gymnasium.registry]
    close = difflib.get_close_matches(name, sorted(set(known)), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else "; see the suites with `ezm tasks --suite NAME`"


def task(name: str) -> Task:
    """The Task record of one task name; an unknown name is refused with the closest names."""
    try:
        return source(name).task(name)
    except UnknownTaskError:
        if ":" in name:  # a custom `module:EnvId`: the source's message says which part failed
            raise
        raise UnknownTaskError(f"unknown task or suite {name!r}{_suggestions(name)}") from None


def make(task: Task) -> RawEnv:
    """A fresh environment of `task` from its source."""
    return source(task.name).make(task.name)


def resolve(spec: str) -> list[Task]:
    """Comma-separated suite and task names -> their Task records, in task-id order."""
    parts = [part.strip() for part in spec.split(",") if part.strip()]
    names = [name for part in parts for name in SUITES.get(part, (part,))]
    if not names:
        raise UnknownTaskError(f"no tasks in {spec!r}; give a suite ({', '.join(SUITES)}) or a list a,b,c")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UnknownTaskError(f"tasks listed twice in {spec!r}: {', '.join(repeated)}")
    return [task(name) for name in names]


def _mask(size: int, padded: int) -> str:
    return "1" * size + "0" * (padded - size)


def describe(tasks: list[Task], env: EnvConfig | None = None) -> str:
    """The `ezm tasks` table: sizes before and after padding, action masks, episode lengths."""
    obs_pad = max(t.obs_size for t in tasks)
    act_pad = max(t.action_size for t in tasks)
    randoms = random_policy.table()
    rows = [("id", "task", "source", "obs", "action", "mask", "episode", "random return")]
    for task_id, t in enumerate(tasks):
        random_return = randoms.get(t.name, None if t.source == "dmc" else t.score_low)
        rows.append((str(task_id), t.name, t.source, f"{t.obs_size} -> {obs_pad}", f"{t.action_size} -> {act_pad}",
                     _mask(t.action_size, act_pad), str(t.episode_length),
                     "-" if random_return is None else f"{random_return:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    header = f"{len(tasks)} tasks, observations padded to {obs_pad}, actions to {act_pad}"
    if env is not None:
        header += (f"; {env.copies_per_task} copies per task = {len(tasks) * env.copies_per_task} environments, "
                   f"action repeat {env.action_repeat} (episode = episode length / {env.action_repeat} decisions)")
    return "\n".join([header, *lines])
