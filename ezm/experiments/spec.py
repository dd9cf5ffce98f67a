"""Experiment files: a grid of runs (variants x seeds) as data.

An experiment file (YAML) names a suite, a budget, seeds, a preset, overrides for every run
and the variants of the grid:

    kind: grid                  # grid (default): every variant on the suite's tasks
    preset: dmc                 # a config preset (default dmc)
    suite: dmc-cartpole         # a suite or a comma-separated task list
    budget: 50000               # train.env_steps_per_task of every run
    seeds: [0, 1, 2]
    overrides: [train.eval_interval=5000]   # applied to every run
    variants:                   # name -> its overrides
      full: []
      no-pathcons: [learn.path_consistency=false]

With `kind: scaling` the variants are task subsets (name -> tasks, a comma string or a list)
run at the same per-task budget; without `variants` they are every task of the suite alone
and all together. Every run lives in `<dir>/<stem>/runs/<variant>-s<seed>` beside the file,
the report in `<dir>/<stem>/report/`. A file that cannot be used is refused with an
`ExperimentError` naming the problem, before any run starts (unknown keys and wrong types
when the file is read; values no run can use, e.g. a device this machine lacks, when running,
so that any machine can report on the runs).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ezm import config as config_lib
from ezm.tasks.registry import SUITES

KINDS = ("grid", "scaling")
KEYS = ("name", "kind", "preset", "suite", "budget", "seeds", "overrides", "variants")
VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # usable as a folder name


class ExperimentError(config_lib.ConfigError):
    """An experiment file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Run:
    variant: str  # the variant's name
    seed: int
    cfg: config_lib.Config  # the run's full config
    run_dir: Path  # where the run writes (deterministic: a rerun finds it)

    @property
    def name(self) -> str:
        return f"{self.variant}-s{self.seed}"


@dataclass(frozen=True)
class Experiment:
    path: Path  # the experiment file
    name: str  # a title for reports (default: the file's stem)
    kind: str  # "grid" or "scaling"
    suite: str  # the suite of the grid (scaling: every task of any variant)
    budget: int  # env steps per task of every run
    seeds: tuple[int, ...]
    variants: tuple[str, ...]  # in the file's order
    runs: tuple[Run, ...]  # variant-major, then seed

    @property
    def folder(self) -> Path:
        return self.path.parent / self.path.stem

    @property
    def report_dir(self) -> Path:
        return self.folder / "report"


def task_names(spec: str) -> list[str]:
    """The task names of a suite or comma-separated list, in order (no simulator is built)."""
    parts = [part.strip() for part in spec.split(",") if part.strip()]
    return [name for part in parts for name in SUITES.get(part, (part,))]


def _overrides(where: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and "=" in v for v in value):
        raise ExperimentError(f"{where}: expected a list of section.field=value strings, got {value!r}")
    return value


def _tasks(where: str, value: Any) -> str:
    if isinstance(value, str):
        names = task_names(value)
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        names = [name for v in value for name in task_names(v)]
    else:
        names = []
    if not names:
        raise ExperimentError(f"{where}: expected tasks (a comma string or a list of names), got {value!r}")
    return ",".join(names)


def _variants(data: dict, kind: str, suite: str) -> dict[str, list[str]]:
    """Variant name -> the overrides it adds (a scaling variant's are its env.suite)."""
    variants = data.get("variants")
    if variants is None and kind == "scaling":
        names = task_names(suite)
        return {"all": [f"env.suite={suite}"], **{f"alone-{n}": [f"env.suite={n}"] for n in names}}
    if not isinstance(variants, dict) or not variants:
        raise ExperimentError(f"variants: expected a mapping of variant names to "
                              f"{'task lists' if kind == 'scaling' else 'override lists'}, got {variants!r}")
    out = {}
    for name, value in variants.items():
        if not isinstance(name, str) or not VARIANT_NAME.match(name):
            raise ExperimentError(f"variants: {name!r} is not a usable name (letters, digits, '_', '.', '-')")
        if kind == "scaling":
            out[name] = [f"env.suite={_tasks(f'variants.{name}', value)}"]
        else:
            out[name] = _overrides(f"variants.{name}", value)
    return out


def _seeds(value: Any) -> tuple[int, ...]:
    if (not isinstance(value, list) or not value or len(set(value)) != len(value)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)):
        raise ExperimentError(f"seeds: expected a list of distinct whole numbers >= 0, got {value!r}")
    return tuple(value)


def _budget(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ExperimentError(f"budget: expected env steps per task, a whole number >= 1, got {value!r}")
    return value


def parse(path: Path, data: Any) -> Experiment:
    """The experiment of file `path` holding `data` (its parsed YAML)."""
    if not isinstance(data, dict):
        raise ExperimentError(f"expected a mapping of {', '.join(KEYS)}, got {data!r}")
    unknown = [k for k in data if k not in KEYS]
    if unknown:
        raise ExperimentError(f"unknown key(s) {', '.join(map(repr, unknown))}; the keys are {', '.join(KEYS)}")
    kind = data.get("kind", "grid")
    if kind not in KINDS:
        raise ExperimentError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if "suite" not in data:
        raise ExperimentError("suite: missing (a suite or a comma-separated task list)")
    suite = _tasks("suite", data["suite"])
    budget, seeds = _budget(data.get("budget")), _seeds(data.get("seeds"))
    base = _overrides("overrides", data.get("overrides"))
    variants = _variants(data, kind, suite)
    preset = data.get("preset", "dmc")
    folder = path.parent / path.stem / "runs"
    runs = []
    for variant, extra in variants.items():
        for seed in seeds:
            overrides = [f"env.suite={suite}", f"train.env_steps_per_task={budget}", *base, *extra, f"seed={seed}"]
            try:  # keys and types now; values this machine cannot run (a device) when running
                cfg = config_lib.merge(config_lib.preset(str(preset)), config_lib.parse_overrides(overrides))
            except config_lib.ConfigError as err:
                raise ExperimentError(f"variant {variant!r}: {err}") from None
            runs.append(Run(variant, seed, cfg, folder / f"{variant}-s{seed}"))
    return Experiment(path, str(data.get("name", path.stem)), kind, suite, budget, seeds,
                      tuple(variants), tuple(runs))


def load(path: str | Path) -> Experiment:
    """Read and check an experiment file; every problem is an ExperimentError naming the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ExperimentError(f"experiment file {str(path)!r} does not exist") from None
    except yaml.YAMLError as err:
        problem = " ".join(str(err).split())
        raise ExperimentError(f"experiment file {str(path)!r}: not valid YAML: {problem}") from None
    try:
        return parse(path, data)
    except ExperimentError as err:
        raise ExperimentError(f"experiment file {str(path)!r}: {err}") from None
