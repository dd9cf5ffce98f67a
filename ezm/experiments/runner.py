"""Run an experiment's grid one run after another, resuming where a killed one stopped.

Each run has a fixed directory, so a rerun of the same file finds its runs: a finished one
is skipped, one with a checkpoint is resumed (`ezm.workers.trainer.resume`), one without
starts again from nothing. A run directory written with another config than the file gives
now is refused (restore the file or remove that directory). Each run takes its config's
arrangement (`system.backend`: this process or the Ray pipeline); runs do not overlap here
(`ezm.distributed.experiments` runs them side by side as Ray tasks).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ezm import config as config_lib
from ezm.experiments.spec import Experiment, ExperimentError, Run
from ezm.workers.run import CHECKPOINT_FILE, CONFIG_FILE, read_config
from ezm.workers.stop import Interrupted
from ezm.workers.trainer import RunFinished, checked_tasks, resume, trainer_class


class ExperimentInterrupted(Interrupted):
    """A stop signal ended the experiment after its running runs wrote their checkpoints."""

    def __init__(self, signum: int, run_dir: Path, env_steps: int, what: str, command: str):
        self.signum, self.run_dir, self.env_steps = signum, run_dir, env_steps
        Exception.__init__(self, f"{what}; continue the experiment with: {command}")


def _changed_keys(stored: dict, wanted: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(stored) | set(wanted)):
        a, b = stored.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def _check_same_config(run: Run, experiment: Experiment) -> None:
    changed = _changed_keys(config_lib.to_dict(read_config(run.run_dir)), config_lib.to_dict(run.cfg))
    if changed:
        raise ExperimentError(f"run directory {run.run_dir} was written with another config than "
                              f"{experiment.path} gives now (differs in {', '.join(changed)}); restore the "
                              "file or remove that run directory")


def run_one(run: Run, experiment: Experiment) -> str:
    """Bring one run to its budget; returns what happened ("finished already", "resumed", "started")."""
    origin = f"experiment {experiment.path}, run {run.name}"
    if (run.run_dir / CONFIG_FILE).exists():
        _check_same_config(run, experiment)
        if (run.run_dir / CHECKPOINT_FILE).exists():
            try:
                resume(run.run_dir, origin=origin)
            except RunFinished:
                return "finished already"
            return "resumed"
    else:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        config_lib.save(run.cfg, run.run_dir / CONFIG_FILE)
    trainer_class(run.cfg)(run.cfg, run.run_dir).run(origin)  # a run killed before its first checkpoint starts again
    return "started"


def check_runs(experiment: Experiment) -> None:
    """Refuse, before any run starts, a grid with a run whose tasks or settings cannot be used."""
    for run in experiment.runs:
        try:
            checked_tasks(config_lib.validate(run.cfg))
        except config_lib.ConfigError as err:
            raise ExperimentError(f"experiment file {str(experiment.path)!r}: run {run.name}: {err}") from None


def run_all(experiment: Experiment, say: Callable[[str], None] = print) -> None:
    """Every run of the grid, in order; a stop signal ends the experiment after the current
    step of the current run (ExperimentInterrupted), and a rerun continues from there."""
    check_runs(experiment)
    total = len(experiment.runs)
    for i, run in enumerate(experiment.runs, 1):
        say(f"ezm experiment {experiment.name}: run {i}/{total} {run.name} ({run.run_dir})")
        try:
            outcome = run_one(run, experiment)
        except Interrupted as stop:
            raise ExperimentInterrupted(stop.signum, stop.run_dir, stop.env_steps,
                                        f"{stop.args[0].split(';')[0]} in run {run.name}",
                                        f"ezm experiment run {experiment.path}") from None
        say(f"ezm experiment {experiment.name}: run {run.name} {outcome}")
