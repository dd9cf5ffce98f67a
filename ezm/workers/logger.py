"""Run logs: JSON lines of metrics, CSV of evaluations and episodes, TensorBoard events."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from ezm.workers.evaluate import EvalResult


class RunLogger:
    def __init__(self, run_dir: Path):
        self.metrics = (run_dir / "metrics.jsonl").open("a")
        self.eval_path = run_dir / "eval.csv"
        self.episodes_path = run_dir / "episodes.csv"
        self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"))

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
