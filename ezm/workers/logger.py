"""Run logs: JSON lines of metrics, CSV of evaluations and episodes, TensorBoard events.

A resumed run continues its logs from its checkpoint: the rows a killed process wrote after
its last checkpoint are dropped (and hidden in TensorBoard), so every env step is logged once.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Callable

from torch.utils.tensorboard import SummaryWriter

from ezm.workers.evaluate import EvalResult


class RunLogger:
    def __init__(self, run_dir: Path, since: int = 0):
        """Append to the logs of `run_dir`, which keep their rows up to env step `since`."""
        self.eval_path = run_dir / "eval.csv"
        self.episodes_path = run_dir / "episodes.csv"
        metrics_path = run_dir / "metrics.jsonl"
        keep_rows_until(metrics_path, since, lambda line: json.loads(line)["env_steps"], header=False)
        keep_rows_until(self.eval_path, since, _csv_env_steps, header=True)
        keep_rows_until(self.episodes_path, since, _csv_env_steps, header=True)
        self.metrics = metrics_path.open("a")
        self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"), purge_step=since + 1 if since else None)

    def _append_csv(self, path: Path, header: list[str], rows: list[list]) -> None:
        new = not path.exists()
        with path.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(header)
            writer.writerows(rows)

    def log_metrics(self, env_steps: int, values: dict[str, float]) -> None:
        self.metrics.write(json.dumps({"env_steps": env_steps, **values}) + "\n")
        self.metrics.flush()
        for key, value in values.items():
            self.tensorboard.add_scalar(key, value, env_steps)

    def log_episodes(self, env_steps: int, episodes: list[tuple[str, float]]) -> None:
        self._append_csv(self.episodes_path, ["env_steps", "task", "return"],
                         [[env_steps, task, ret] for task, ret in episodes])

    def log_eval(self, result: EvalResult) -> None:
        rows = result.rows()
        self._append_csv(self.eval_path, ["env_steps", "task", "return", "normalized_score"],
                         [[result.env_steps, r["task"], r["return"], r["normalized_score"]] for r in rows])
        for r in rows:
            self.tensorboard.add_scalar(f"eval_return/{r['task']}", r["return"], result.env_steps)
            self.tensorboard.add_scalar(f"eval_score/{r['task']}", r["normalized_score"], result.env_steps)
        self.tensorboard.add_scalar("eval_score/mean", result.mean_normalized_score(), result.env_steps)
        self.tensorboard.flush()

    def close(self) -> None:
        self.metrics.close()
        self.tensorboard.close()


def _csv_env_steps(line: str) -> int:
    return int(line.split(",", 1)[0])


def keep_rows_until(path: Path, env_steps: int, step_of: Callable[[str], int], header: bool) -> None:
    """Drop the rows of log `path` after `env_steps` (`step_of` reads a line's env step), and a
    last line cut short by a kill; the header line, if any, stays."""
    if not path.exists():
        return
    with path.open(newline="") as f:  # as written: the CSV rows end in \r\n
        text = f.read()
    lines = [line for line in text.splitlines(keepends=True) if line.endswith("\n")]
    kept = lines[:1] if header else []
    kept += [line for line in lines[len(kept):] if step_of(line) <= env_steps]
    if "".join(kept) != text:
        staging = path.with_name(f".{path.name}.tmp")
        with staging.open("w", newline="") as f:
            f.write("".join(kept))
        os.replace(staging, path)
