"""An experiment's report: tables (Markdown and CSV) and figures (PNG) in `<stem>/report/`.

- `<stem>-scores.md`, `<stem>-scores.csv`: per variant and task, the final return and
  normalised score (mean and 95% t-interval over the finished seeds); for HumanoidBench tasks
  the paper's Tables 1-2 returns beside them (`reference/humanoidbench_paper_tables.csv`).
- `<stem>-curves.png`: evaluation return against env steps, per task, a band per variant.
- `<stem>-ablation.png` (a grid of several variants): normalised score per task and variant.
- `<stem>-scaling.png`, `<stem>-scaling.csv` (kind scaling): normalised score of every task
  by the number of tasks trained together, at the same per-task budget.
- `<stem>-grad_similarity.png` (runs with learn.grad_similarity_interval > 0): the cosine
  similarity of task pairs' gradients per module group over training.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from ezm.experiments import plots
from ezm.experiments.results import MEAN, Cell, RunResult, final_table, read_experiment, t_interval
from ezm.experiments.spec import Experiment, task_names

REFERENCE = Path(__file__).parent / "reference" / "humanoidbench_paper_tables.csv"
PAPER_METHODS = ("EZ-M", "TD-MPC2", "BRC", "BRC-ST", "DreamerV3", "MHSAC")  # columns of the reference


def paper_reference() -> dict[str, dict[str, float]]:
    """task -> {"random", "success", method: return at 1M steps} of the paper's Tables 1-2."""
    with REFERENCE.open(newline="") as f:
        return {row["task"]: {k: float(v) for k, v in row.items() if k not in ("suite", "task") and v != ""}
                for row in csv.DictReader(f)}


def _fmt(value: float, digits: int) -> str:
    return "" if not math.isfinite(value) else f"{value:.{digits}f}"


def _score_rows(experiment: Experiment, results: list[RunResult]) -> list[dict]:
    """One row per variant and task (and each variant's mean), with the paper's columns."""
    reference = paper_reference()
    rows = []
    for variant in experiment.variants:
        table = final_table(results, variant)
        for task, cell in table.items():
            ret, ret_ci = cell.ret()
            score, score_ci = cell.score()
            row = {"variant": variant, "task": task, "seeds": len(cell.scores), "return": ret,
                   "return_ci95": ret_ci, "normalized_score": score, "normalized_score_ci95": score_ci}
            paper = reference.get(task)
            if paper is not None:  # a HumanoidBench task
                row.update({f"paper_{method}": paper.get(method, math.nan) for method in PAPER_METHODS})
                row["paper_EZ-M_normalized"] = (paper["EZ-M"] - paper["random"]) / (paper["success"] - paper["random"])
            rows.append(row)
    return rows


SCORE_COLUMNS = ("variant", "task", "seeds", "return", "return_ci95", "normalized_score", "normalized_score_ci95")


def _write_csv(path: Path, rows: list[dict], columns: tuple[str, ...] = SCORE_COLUMNS) -> Path:
    columns = list(dict.fromkeys([*columns, *(k for row in rows for k in row)]))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, columns, restval="")
        writer.writeheader()
        writer.writerows([{k: ("" if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
                          for row in rows])
    return path


def _markdown(experiment: Experiment, results: list[RunResult], rows: list[dict]) -> str:
    finished = [r for r in results if r.finished]
    missing = [r.run.name for r in results if not r.finished]
    lines = [f"# {experiment.name}", "",
             f"Experiment file `{experiment.path.name}` ({experiment.kind}): suite `{experiment.suite}`, "
             f"{experiment.budget} env steps per task, seeds {', '.join(map(str, experiment.seeds))}; "
             f"{len(finished)} of {len(results)} runs finished"
             + (f" (not yet: {', '.join(missing)})." if missing else "."), "",
             "Final evaluation of each run (its `eval.csv` at the budget); mean over the finished seeds "
             "and the half-width of the 95% Student-t interval over seeds (blank with one seed). "
             "Normalised score: (return - random) / (success - random); `mean` averages it over the "
             "variant's tasks per seed.", ""]
    has_paper = any(math.isfinite(row.get("paper_EZ-M", math.nan)) for row in rows)
    if has_paper:
        lines += [f"Columns `paper ...`: returns at 1M env steps from the EZ-M paper's Tables 1-2 "
                  f"(arXiv 2603.01452; `ezm/experiments/reference/`).", ""]
    for variant in experiment.variants:
        own = [row for row in rows if row["variant"] == variant]
        lines += [f"## {variant}", ""]
        if not own:
            lines += ["No finished run yet.", ""]
            continue
        header = ["task", "seeds", "return", "± 95% CI", "normalised", "± 95% CI"]
        if has_paper:
            header += ["paper EZ-M normalised", *(f"paper {m}" for m in PAPER_METHODS)]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in own:
            cells = [row["task"], str(row["seeds"]), _fmt(row["return"], 1), _fmt(row["return_ci95"], 1),
                     _fmt(row["normalized_score"], 3), _fmt(row["normalized_score_ci95"], 3)]
            if has_paper:
                cells += [_fmt(row.get("paper_EZ-M_normalized", math.nan), 3),
                          *(_fmt(row.get(f"paper_{m}", math.nan), 1) for m in PAPER_METHODS)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def scaling_table(experiment: Experiment, results: list[RunResult]) -> dict[int, dict[str, tuple[float, float]]]:
    """Tasks trained together N -> task -> (mean, CI half-width) of the final normalised score
    over seeds, and MEAN over the tasks present at every N (per seed, then over seeds)."""
    sizes = {v: len(task_names(next(r.run.cfg.env.suite for r in results if r.run.variant == v)))
             for v in experiment.variants}
    per_seed: dict[int, dict[str, dict[int, list[float]]]] = {}  # N -> task -> seed -> scores
    for r in results:
        if r.finished:
            for task, (_, score) in r.final.items():
                seeds = per_seed.setdefault(sizes[r.run.variant], {}).setdefault(task, {})
                seeds.setdefault(r.run.seed, []).append(score)
    if not per_seed:
        return {}
    common = set.intersection(*(set(tasks) for tasks in per_seed.values()))
    table = {}
    for n in sorted(per_seed):
        by_task = {t: {s: float(np.mean(v)) for s, v in seeds.items()} for t, seeds in per_seed[n].items()}
        table[n] = {t: t_interval(np.array(list(seeds.values()))) for t, seeds in by_task.items()}
        shared = set.intersection(*(set(by_task[t]) for t in common)) if common else set()  # seeds of every common task
        means = [np.mean([by_task[t][s] for t in sorted(common)]) for s in sorted(shared)]  # [seeds]
        table[n][MEAN] = t_interval(np.array(means))
    return table


def _scaling(experiment: Experiment, results: list[RunResult], out: Path) -> list[Path]:
    table = scaling_table(experiment, results)
    if not table:
        return []
    tasks = [t for t in dict.fromkeys(t for cells in table.values() for t in cells) if t != MEAN] + [MEAN]
    stem = experiment.path.stem
    rows = [{"tasks_together": n, "task": t, "normalized_score": m, "normalized_score_ci95": w}
            for n, cells in table.items() for t, (m, w) in cells.items()]
    series = {(f"{n} tasks together" if n > 1 else "alone"): [table[n].get(t, (math.nan, math.nan)) for t in tasks]
              for n in table}
    columns = ("tasks_together", "task", "normalized_score", "normalized_score_ci95")
    return [_write_csv(out / f"{stem}-scaling.csv", rows, columns),
            plots.grouped_bars(tasks, series, out / f"{stem}-scaling.png",
                               f"{experiment.name}: task scaling at {experiment.budget} env steps per task",
                               "normalised score")]


def _ablation(experiment: Experiment, results: list[RunResult], out: Path) -> list[Path]:
    tables = {v: final_table(results, v) for v in experiment.variants}
    tables = {v: t for v, t in tables.items() if t}
    if len(tables) < 2:
        return []
    tasks = [t for t in dict.fromkeys(t for table in tables.values() for t in table) if t != MEAN] + [MEAN]
    empty = Cell(np.array([]), np.array([]))
    series = {v: [table.get(t, empty).score() for t in tasks] for v, table in tables.items()}
    return [plots.grouped_bars(tasks, series, out / f"{experiment.path.stem}-ablation.png",
                               f"{experiment.name}: final normalised score by variant", "normalised score")]


def write_report(experiment: Experiment) -> list[Path]:
    """Write every table and figure the run directories allow; returns the files written."""
    results = read_experiment(experiment)
    out = experiment.report_dir
    out.mkdir(parents=True, exist_ok=True)
    stem = experiment.path.stem
    rows = _score_rows(experiment, results)
    written = [_write_csv(out / f"{stem}-scores.csv", rows)]
    (out / f"{stem}-scores.md").write_text(_markdown(experiment, results, rows))
    written.append(out / f"{stem}-scores.md")
    if any(r.evals for r in results):
        written.append(plots.learning_curves(results, experiment.variants, out / f"{stem}-curves.png",
                                             experiment.name))
    bars = _scaling if experiment.kind == "scaling" else _ablation
    written += bars(experiment, results, out)
    if any(r.grad_cos for r in results):
        written.append(plots.grad_similarity(results, out / f"{stem}-grad_similarity.png", experiment.name))
    return written
