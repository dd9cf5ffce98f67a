"""An experiment's runs side by side as Ray tasks (`ezm experiment run FILE --parallel N`).

Each unfinished run of the grid is one Ray task that brings it to its budget exactly as the
sequential runner does (`ezm.experiments.runner.run_one`: a finished run is skipped, one with
a checkpoint resumes), at most `parallel` at once, each reserving `threads` CPUs of the
cluster and computing with as many torch threads. A run's console output (its banner, its
progress and what libraries print) goes to RUN_DIR/console.log; the experiment prints one line
as each run starts and ends. On a cluster (`address` auto or HOST:PORT) the run directories
must be on storage every node shares.

A stop signal (Ctrl-C, SIGTERM) cancels every running task, which Ray delivers to the run as
SIGINT: each run stops after its current step with a checkpoint, as `ezm train` does, and the
same command continues the experiment. A second signal ends the tasks at once; their runs
keep their last checkpoints. Runs of the Ray pipeline (`system.backend=ray`) are refused here:
they spread over the cluster themselves, so they go one after another without --parallel.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Callable, Iterator

import ray
import torch

from ezm.config import SystemConfig
from ezm.distributed.cluster import ClusterError, connect
from ezm.experiments.runner import ExperimentInterrupted, check_runs, run_one
from ezm.experiments.spec import Experiment, ExperimentError, Run
from ezm.workers.stop import Interrupted, StopRequests

CONSOLE_FILE = "console.log"  # a run's banner and progress, in its run directory
WAIT_S = 0.5  # how often the driver looks for ended runs and stop signals


@contextlib.contextmanager
def _console(path: Path) -> Iterator[None]:
    """Standard output and error, Python's and the file descriptors' (what libraries and the
    stop handler write), appended to `path` while inside."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "a") as console:
        os.dup2(console.fileno(), 1)
        os.dup2(console.fileno(), 2)
        try:
            with contextlib.redirect_stdout(console), contextlib.redirect_stderr(console):
                yield
        finally:
            console.flush()
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)


def _bring_to_budget(run: Run, experiment: Experiment, threads: int) -> str:
    """One run, inside its Ray task: the sequential runner's `run_one`, its output to a file."""
    torch.set_num_threads(threads)
    run.run_dir.mkdir(parents=True, exist_ok=True)
    with _console(run.run_dir / CONSOLE_FILE):
        try:
            return run_one(run, experiment)
        except Interrupted as stop:  # the task's cancellation, delivered as SIGINT
            return f"stopped at {stop.env_steps} env steps per task, its checkpoint written"
        except Exception as err:  # ezm's errors do not all cross process boundaries: send the message
            raise RuntimeError(f"{type(err).__name__}: {err}") from None


def run_parallel(experiment: Experiment, parallel: int, threads: int = 1, address: str = "local",
                 say: Callable[[str], None] = print) -> None:
    """Every run of the grid, `parallel` at a time as Ray tasks on the cluster of `address`
    (as `system.address`). A stop signal or a failed run stops the running ones with their
    checkpoints and ends the experiment (ExperimentInterrupted, or the run's error)."""
    if parallel < 1 or threads < 1:
        raise ExperimentError(f"--parallel and --threads must be at least 1, got {parallel} and {threads}")
    check_runs(experiment)
    pipelines = [run.name for run in experiment.runs if run.cfg.system.backend == "ray"]
    if pipelines:
        raise ExperimentError(f"run(s) {', '.join(pipelines)} use system.backend=ray, which spreads one run "
                              "over the cluster; run this experiment without --parallel")
    connect(SystemConfig(address=address))
    have = ray.cluster_resources().get("CPU", 0.0)
    if threads > have:
        raise ClusterError(f"--threads {threads} reserves {threads} CPUs for every run; the Ray cluster has {have:g}")
    task = ray.remote(num_cpus=threads, max_retries=0)(_bring_to_budget)
    waiting, running = list(experiment.runs), {}  # running: task reference -> its run
    total, failure, stopping = len(waiting), None, False
    with StopRequests() as stop:
        try:
            while waiting or running:
                if (stop.signum is not None or failure is not None) and not stopping:
                    waiting, stopping = [], True
                    for ref in running:
                        ray.cancel(ref)  # the run's own SIGINT handler checkpoints and stops it
                while waiting and len(running) < parallel:
                    run = waiting.pop(0)
                    say(f"ezm experiment {experiment.name}: run {total - len(waiting)}/{total} {run.name} "
                        f"({run.run_dir}, its output in {CONSOLE_FILE})")
                    running[task.remote(run, experiment, threads)] = run
                ended, _ = ray.wait(list(running), num_returns=1, timeout=WAIT_S)
                for ref in ended:
                    run = running.pop(ref)
                    try:
                        say(f"ezm experiment {experiment.name}: run {run.name} {_outcome(ref)}")
                    except ExperimentError as err:
                        failure = failure or ExperimentError(f"run {run.name} failed: {err}")
        except BaseException:  # a second signal (StoppedAtOnce) or an error here: end the runs now
            for ref in running:
                ray.cancel(ref, force=True)
            raise
    if failure is not None:
        raise failure
    if stop.signum is not None:
        flags = f" --parallel {parallel}" + (f" --threads {threads}" if threads != 1 else "") + \
                (f" --address {address}" if address != "local" else "")
        raise ExperimentInterrupted(stop.signum, experiment.folder, 0,
                                    f"stopped by {signal.Signals(stop.signum).name}, every running run "
                                    "with a checkpoint", f"ezm experiment run {experiment.path}{flags}")


def _outcome(ref: ray.ObjectRef) -> str:
    """What happened to an ended run's task: its outcome, or how it stopped; a run that
    failed raises ExperimentError with its error."""
    try:
        return ray.get(ref)
    except ray.exceptions.TaskCancelledError:  # cancelled before it started or before its first step
        return "stopped (its last checkpoint, if any, is kept)"
    except ray.exceptions.RayTaskError as err:
        raise ExperimentError(str(err.cause or err).strip().splitlines()[-1]) from None
