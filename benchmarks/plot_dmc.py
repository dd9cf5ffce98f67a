"""Learning curves of ezm runs on a DMC suite against published single-task results.

    python benchmarks/plot_dmc.py --suite dmc-walker benchmarks/results/learn_dmc_walker_s*.json

One panel per task: every run's evaluation curve (`learn_dmc.py` JSON; the seed in the legend),
their mean, and the mean over seeds of TD-MPC2, SAC and DreamerV3 (benchmarks/reference/) at the
published steps up to the runs' budget. Writes benchmarks/results/curves_SUITE[_TAG].png and a
JSON of the plotted points beside it (machine and commit recorded).
"""
from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

from _meta import REPO, meta

REFERENCE = REPO / "benchmarks" / "reference" / "published_dmc"
METHODS = ("tdmpc2", "sac", "dreamerv3")


def published(task: str, max_step: int) -> dict[str, list[tuple[int, float]]]:
    """{method: [(step, mean return over seeds)]} at the published steps <= max_step."""
    out = {}
    for method in METHODS:
        path = REFERENCE / method / f"{task.replace('_', '-')}.csv"
        if not path.exists():
            continue
        by_step = defaultdict(list)
        with path.open() as f:
            for row in csv.DictReader(f):
                if int(row["step"]) <= max_step:
                    by_step[int(row["step"])].append(float(row["reward"]))
        out[method] = [(step, sum(v) / len(v)) for step, v in sorted(by_step.items())]
    return out


def runs(paths: list[Path]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """{task: {run label: [(env steps, return)]}} from learn_dmc.py JSON files."""
    out: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(dict)
    for path in paths:
        data = json.loads(path.read_text())
        label = f"{path.stem.removeprefix('learn_dmc_')} (seed {data['config']['seed']})"
        for point in data["curve"]:
            out[point["task"]].setdefault(label, []).append((point["env_steps"], point["return"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", required=True, help="name used in the output file")
    parser.add_argument("--tag", default="", help="suffix of the output files")
    parser.add_argument("results", nargs="+", type=Path, help="learn_dmc.py JSON files")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = runs(args.results)
    tasks = sorted(curves)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.8), squeeze=False)
    plotted = {}
    for ax, task in zip(axes[0], tasks):
        max_step = max(step for points in curves[task].values() for step, _ in points)
        for label, points in sorted(curves[task].items()):
            ax.plot(*zip(*points), alpha=0.45, lw=1, label=label)
        steps = sorted({s for points in curves[task].values() for s, _ in points})
        mean = [(s, sum(r for p in curves[task].values() for t, r in p if t == s)
                 / sum(1 for p in curves[task].values() for t, _ in p if t == s)) for s in steps]
        ax.plot(*zip(*mean), color="black", lw=2, label="ezm, mean of runs")
        reference = published(task, max(max_step, 100_000))
        for method, points in reference.items():
            ax.plot(*zip(*points), marker="s", ls="none", label=f"{method} (published)")
        plotted[task] = {"runs": curves[task], "mean": mean, "published": reference}
        ax.set_title(task)
        ax.set_xlabel("environment steps per task")
        ax.set_ylim(0, 1000)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("evaluation return")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    name = f"curves_{args.suite}{'_' + args.tag if args.tag else ''}"
    results = REPO / "benchmarks" / "results"
    fig.savefig(results / f"{name}.png", dpi=110)
    (results / f"{name}.json").write_text(json.dumps({**meta(), "inputs": [str(p) for p in args.results],
                                                      "tasks": plotted}, indent=1))
    print(f"wrote {results / name}.png and .json")


if __name__ == "__main__":
    main()
