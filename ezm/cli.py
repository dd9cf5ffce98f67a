"""`ezm` command line: thin parsing that builds a config and calls one function.

Nothing here imports torch before the arguments are parsed (so `ezm --help` answers at
once): the commands import what they need. Errors users can fix are one line and exit
code 2; EZM_DEBUG=1 or `ezm --debug` also prints their traceback.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import traceback
from pathlib import Path

from ezm import config as config_lib
from ezm.tasks.task import EnvironmentNaNError, TaskError
from ezm.workers.stop import Interrupted, StoppedAtOnce, exit_code


class UsageError(Exception):
    """A command-line mistake that is reported as one line."""


def _add_task_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--suite", help="named suite, e.g. dmc-cartpole, dmc-walker, dmc-mixed, hb-medium")
    group.add_argument("--tasks", help="comma-separated task list, e.g. walker-walk,cheetah-run")


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default=None, choices=sorted(config_lib.PRESETS),
                        help="named configuration (default: quickstart for train)")
    parser.add_argument("--config", default=None, help="YAML file of config fields")
    parser.add_argument("overrides", nargs="*", help="section.field=value, e.g. learn.lr=1e-4 seed=3")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ezm", description="EfficientZero-Multitask in PyTorch")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of an error too (as does EZM_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)

    tasks = sub.add_parser("tasks", help="show the tasks of a suite with padded sizes and masks")
    _add_task_args(tasks)

    train = sub.add_parser("train", help="train one multi-task model")
    _add_task_args(train)
    _add_config_args(train)
    train.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a stopped run")

    evaluate = sub.add_parser("eval", help="play evaluation episodes and print a per-task table")
    evaluate.add_argument("checkpoint", help="a checkpoint file or a run directory")
    evaluate.add_argument("--episodes", type=_positive_int, default=None,
                          help="episodes per task (default: the run's train.eval_episodes)")
    evaluate.add_argument("--video", action="store_true",
                          help="also write a GIF of every task's first evaluation episode to RUN_DIR/videos/")

    experiment = sub.add_parser("experiment", help="run an experiment file's grid of runs, or report on it")
    actions = experiment.add_subparsers(dest="action", required=True)
    run = actions.add_parser("run", help="run every run of the grid not finished yet (a killed one resumes), "
                                         "then write the report")
    run.add_argument("file", help="an experiment file (YAML), e.g. experiments/cpu/dmc_cartpole_ablations.yaml")
    run.add_argument("--parallel", type=_positive_int, default=1, metavar="N",
                     help="run N runs at once as Ray tasks (needs the ray extra; default 1: one after another here)")
    run.add_argument("--threads", type=_positive_int, default=1, metavar="T",
                     help="with --parallel: CPUs reserved and torch threads used by every run (default 1)")
    run.add_argument("--address", default="local",
                     help="with --parallel: the Ray cluster, as system.address (local, auto or HOST:PORT; "
                          "on a cluster the run directories must be on shared storage)")
    report = actions.add_parser("report", help="write the tables and figures of the runs so far to FILE's report folder")
    report.add_argument("file", help="an experiment file (YAML)")
    return parser


def _suite_spec(args: argparse.Namespace, default: str | None) -> str | None:
    return args.suite or args.tasks or default


def _overrides(args: argparse.Namespace) -> list[str]:
    """The command's overrides, with --suite or --tasks as env.suite (applied last)."""
    spec = _suite_spec(args, None)
    return [*args.overrides, *([f"env.suite={spec}"] if spec is not None else [])]


def _config(args: argparse.Namespace) -> config_lib.Config:
    return config_lib.build(args.preset or "quickstart", args.config, _overrides(args))


def _origin(args: argparse.Namespace) -> str:
    """Where a new run's config came from, for the start banner."""
    parts = [f"preset {args.preset or 'quickstart'}"]
    if args.config is not None:
        parts.append(f"file {args.config}")
    overrides = _overrides(args)
    parts.append(f"overrides {' '.join(overrides)}" if overrides else "no overrides")
    return ", ".join(parts)


def cmd_tasks(args: argparse.Namespace) -> None:
    from ezm.tasks.registry import describe, resolve

    spec = _suite_spec(args, None)
    if spec is None:
        raise UsageError("give --suite NAME or --tasks a,b,c")
    print(describe(resolve(spec)))


def cmd_train(args: argparse.Namespace) -> None:
    if args.resume is not None:
        if args.suite or args.tasks or args.preset or args.config or args.overrides:
            raise UsageError("--resume continues a run with the config stored in its directory; "
                             "give no suite, preset, config file or overrides with it")
        from ezm.workers.trainer import RunFinished, resume

        try:
            result = resume(args.resume, origin=f"{os.path.abspath(args.resume)}/config.yaml (resumed)")
        except RunFinished as finished:
            print(f"ezm: {finished}")
            return
    else:
        cfg = _config(args)
        from ezm.workers.trainer import train  # which refuses unusable tasks before anything is built

        result = train(cfg, origin=_origin(args))
    print(result.report())


def cmd_eval(args: argparse.Namespace) -> None:
    from ezm.workers.evaluate import evaluate_checkpoint

    path = Path(args.checkpoint)
    video_dir = (path if path.is_dir() else path.parent) / "videos" if args.video else None
    print(evaluate_checkpoint(path, episodes=args.episodes, video_dir=video_dir).table())
    if video_dir is not None:
        print(f"videos (a GIF per task, its first episode) written to {video_dir}")


def cmd_experiment(args: argparse.Namespace) -> None:
    from ezm.experiments import spec
    from ezm.experiments.report import write_report

    experiment = spec.load(args.file)
    if args.action == "run" and args.parallel > 1:
        try:
            from ezm.distributed.experiments import run_parallel
        except ImportError as err:
            if err.name != "ray":
                raise
            raise UsageError("--parallel runs the grid as Ray tasks and needs Ray, which is not installed: "
                             "pip install -e '.[ray]'") from None
        run_parallel(experiment, args.parallel, args.threads, args.address)
    elif args.action == "run":
        if args.threads != 1 or args.address != "local":
            raise UsageError("--threads and --address go with --parallel N (N > 1)")
        from ezm.experiments.runner import run_all

        run_all(experiment)
    for path in write_report(experiment):
        print(f"report: {path}")


COMMANDS = {"tasks": cmd_tasks, "train": cmd_train, "eval": cmd_eval, "experiment": cmd_experiment}


def _headless_rendering() -> None:
    """On a Linux machine without a display, render offscreen with EGL unless told otherwise
    (otherwise dm_control tries GLFW and warns on every start)."""
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "egl")


def _debug(args: argparse.Namespace) -> bool:
    return args.debug or os.environ.get("EZM_DEBUG", "") not in ("", "0")


def main(argv: list[str] | None = None) -> int:
    _headless_rendering()
    logging.getLogger("absl").setLevel(logging.ERROR)  # dm_control's deprecation notices on model load
    args = build_parser().parse_args(argv)
    from ezm.learning.checkpoint import CheckpointError  # imports torch: after parsing

    try:
        COMMANDS[args.command](args)
    except (TaskError, config_lib.ConfigError, CheckpointError, UsageError, EnvironmentNaNError) as err:
        if _debug(args):
            traceback.print_exc()
        print(f"ezm: error: {err}", file=sys.stderr)
        return 2
    except (Interrupted, StoppedAtOnce) as stop:
        print(f"ezm: {stop}", file=sys.stderr)
        return exit_code(stop.signum)
    except KeyboardInterrupt:  # Ctrl-C before training started: nothing to keep
        print("ezm: interrupted", file=sys.stderr)
        return exit_code(signal.SIGINT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
