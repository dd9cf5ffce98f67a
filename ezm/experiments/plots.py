"""The report's figures as PNG files (matplotlib, Agg backend: no display needed).

Bands and error bars are the 95% t-intervals over seeds of `results.py` (absent with one seed).
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402

from ezm.experiments.results import RunResult, curve, grad_curves  # noqa: E402


def _grid(panels: int, width: float = 4.0, height: float = 3.0):
    cols = min(panels, 3)
    rows = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[panels:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:panels])


def _band(ax, x: np.ndarray, mean: np.ndarray, width: np.ndarray, label: str) -> None:
    (line,) = ax.plot(x, mean, label=label, marker="." if len(x) < 20 else None)
    has_band = np.isfinite(width)
    if has_band.any():
        ax.fill_between(x[has_band], (mean - width)[has_band], (mean + width)[has_band],
                        color=line.get_color(), alpha=0.2, linewidth=0)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _label_panel(ax, title: str, ylabel: str) -> None:
    """Title, axes and grid of one panel of curves over env steps per task."""
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("env steps per task")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _finish_panels(fig, axes, path: Path, title: str) -> Path:
    """The legend (on the first panel) and the figure title, then the PNG."""
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def learning_curves(results: list[RunResult], variants: tuple[str, ...], path: Path, title: str) -> Path:
    """One panel per task: evaluation return against env steps per task, a line per variant."""
    tasks = list(dict.fromkeys(t for r in results for row in r.evals.values() for t in row))
    fig, axes = _grid(max(len(tasks), 1))
    for ax, task in zip(axes, tasks):
        for variant in variants:
            steps, mean, width = curve(results, variant, task)
            if len(steps):
                _band(ax, steps, mean, width, variant)
        _label_panel(ax, task, "return")
    return _finish_panels(fig, axes, path, f"{title}: evaluation return (mean, 95% CI over seeds)")


def grouped_bars(groups: list[str], series: dict[str, list[tuple[float, float]]], path: Path,
                 title: str, ylabel: str) -> Path:
    """Bars of (mean, CI half-width) for every series in every group (e.g. a task)."""
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(groups) * max(len(series), 1) ** 0.5), 4.0))
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(groups))
    for i, (label, cells) in enumerate(series.items()):
        mean = np.array([m for m, _ in cells])
        err = np.array([w for _, w in cells])
        ax.bar(x + (i - (len(series) - 1) / 2) * width, mean, width, label=label,
               yerr=np.where(np.isfinite(err), err, 0.0), capsize=3)
    ax.set_xticks(x, groups, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def grad_similarity(results: list[RunResult], path: Path, title: str) -> Path:
    """One panel per module group: cosine similarity against env steps, a line per task pair."""
    curves = grad_curves(results)
    groups = list(dict.fromkeys(group for _, group, _ in curves))
    variants = {variant for variant, _, _ in curves}
    fig, axes = _grid(len(groups))
    for ax, group in zip(axes, groups):
        for (variant, g, pair), (steps, mean, width) in curves.items():
            if g == group:
                _band(ax, steps, mean, width, pair if len(variants) == 1 else f"{variant}: {pair}")
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_ylim(-1.05, 1.05)  # a cosine (bands of few seeds reach past it)
        _label_panel(ax, group, "cosine similarity")
    return _finish_panels(fig, axes, path, f"{title}: per-task gradient similarity (mean, 95% CI over seeds)")
