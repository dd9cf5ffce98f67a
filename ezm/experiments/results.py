"""What an experiment's run directories hold, aggregated over seeds with 95% confidence intervals.

Read from each run's `eval.csv` (env steps, task, mean return and normalised score of every
evaluation) and `metrics.jsonl` (the `grad_cos/<group>/<pair>` rows); never from a model.
Intervals are Student-t intervals over seeds: mean +- t(0.975, n - 1) * s / sqrt(n), with s
the sample standard deviation (NaN with one seed).
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from ezm.experiments.spec import Experiment, Run

GRAD_PREFIX = "grad_cos/"


def t_interval(values: np.ndarray) -> tuple[float, float]:
    """(mean, half-width of the 95% t-interval) of values [n] (half-width NaN for n < 2)."""
    n = len(values)
    mean = float(np.mean(values)) if n else math.nan
    if n < 2:
        return mean, math.nan
    return mean, float(stats.t.ppf(0.975, n - 1) * np.std(values, ddof=1) / math.sqrt(n))


@dataclass(frozen=True)
class RunResult:
    run: Run
    evals: dict[int, dict[str, tuple[float, float]]]  # env steps -> task -> (return, normalised score)
    grad_cos: dict[str, list[tuple[int, float]]]  # "group/pair" -> [(env steps, cosine)]

    @property
    def finished(self) -> bool:
        """The run's last evaluation is at its budget (the final one)."""
        return bool(self.evals) and max(self.evals) >= self.run.cfg.train.env_steps_per_task

    @property
    def final(self) -> dict[str, tuple[float, float]]:
        return self.evals[max(self.evals)]


def _evals(path: Path) -> dict[int, dict[str, tuple[float, float]]]:
    evals: dict[int, dict[str, tuple[float, float]]] = {}
    if path.exists():
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                evals.setdefault(int(row["env_steps"]), {})[row["task"]] = (
                    float(row["return"]), float(row["normalized_score"]))
    return evals


def _grad_cos(path: Path) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if GRAD_PREFIX not in line:
                continue
            row = json.loads(line)
            for key, value in row.items():
                if key.startswith(GRAD_PREFIX):
                    series.setdefault(key[len(GRAD_PREFIX):], []).append((int(row["env_steps"]), float(value)))
    return series


def read_run(run: Run) -> RunResult:
    return RunResult(run, _evals(run.run_dir / "eval.csv"), _grad_cos(run.run_dir / "metrics.jsonl"))


def read_experiment(experiment: Experiment) -> list[RunResult]:
    return [read_run(run) for run in experiment.runs]


@dataclass(frozen=True)
class Cell:
    """One task of one variant at the end of training, over its finished seeds."""

    returns: np.ndarray  # [n] final mean return of each seed
    scores: np.ndarray  # [n] final normalised score of each seed

    def ret(self) -> tuple[float, float]:
        return t_interval(self.returns)

    def score(self) -> tuple[float, float]:
        return t_interval(self.scores)


MEAN = "mean"  # the row of a variant's mean normalised score over its tasks (per seed, then over seeds)


def final_table(results: list[RunResult], variant: str) -> dict[str, Cell]:
    """task -> Cell of the finished runs of `variant`, plus MEAN (scores only)."""
    finished = [r for r in results if r.run.variant == variant and r.finished]
    if not finished:
        return {}
    tasks = list(finished[0].final)
    table = {t: Cell(np.array([r.final[t][0] for r in finished]), np.array([r.final[t][1] for r in finished]))
             for t in tasks}
    per_seed = np.array([np.mean([r.final[t][1] for t in tasks]) for r in finished])  # [n]
    table[MEAN] = Cell(np.full(len(finished), math.nan), per_seed)
    return table


def curve(results: list[RunResult], variant: str, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(env steps [S], mean return [S], CI half-width [S]) of `task` under `variant`, over the
    seeds evaluated at each step."""
    steps = sorted({s for r in results if r.run.variant == variant for s, row in r.evals.items() if task in row})
    means, widths = [], []
    for s in steps:
        mean, width = t_interval(np.array([r.evals[s][task][0] for r in results
                                           if r.run.variant == variant and task in r.evals.get(s, {})]))
        means.append(mean)
        widths.append(width)
    return np.array(steps), np.array(means), np.array(widths)


def grad_curves(results: list[RunResult]) -> dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(variant, group, pair) -> (env steps [S], mean cosine [S], CI half-width [S]) over seeds."""
    keys = list(dict.fromkeys((r.run.variant, *k.split("/", 1)) for r in results for k in r.grad_cos))  # as logged
    out = {}
    for variant, group, pair in keys:
        by_step: dict[int, list[float]] = {}  # env step -> one value per seed
        for r in results:
            if r.run.variant == variant:
                per_step: dict[int, list[float]] = {}  # a seed's measurements at one env step
                for step, value in r.grad_cos.get(f"{group}/{pair}", []):
                    per_step.setdefault(step, []).append(value)
                for step, values in per_step.items():
                    by_step.setdefault(step, []).append(float(np.nanmean(values)))
        steps = sorted(by_step)
        intervals = [t_interval(np.array(by_step[s])) for s in steps]
        out[(variant, group, pair)] = (np.array(steps), np.array([m for m, _ in intervals]),
                                       np.array([w for _, w in intervals]))
    return out
