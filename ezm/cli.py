"""`ezm` command line: thin parsing that builds a config and calls one function."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from ezm import config as config_lib
from ezm.tasks.task import TaskError


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ezm", description="EfficientZero-Multitask in PyTorch")
    sub = parser.add_subparsers(dest="command", required=True)

    tasks = sub.add_parser("tasks", help="show the tasks of a suite with padded sizes and masks")
    _add_task_args(tasks)

    train = sub.add_parser("train", help="train one multi-task model")
    _add_task_args(train)
    _add_config_args(train)
    train.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a stopped run")

    evaluate = sub.add_parser("eval", help="play evaluation episodes and print a per-task table")
    evaluate.add_argument("checkpoint", help="a checkpoint file or a run directory")
    evaluate.add_argument("--episodes", type=int, default=None, help="episodes per task")
    return parser


def _suite_spec(args: argparse.Namespace, default: str | None) -> str | None:
    return args.suite or args.tasks or default


def _config(args: argparse.Namespace) -> config_lib.Config:
    overrides = list(args.overrides)
    spec = _suite_spec(args, None)
    if spec is not None:
        overrides.append(f"env.suite={spec}")
    return config_lib.build(args.preset or "quickstart", args.config, overrides)


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
        from ezm.workers.trainer import resume

        result = resume(args.resume)
    else:
        from ezm.tasks.registry import resolve

        cfg = _config(args)
        resolve(cfg.env.suite)  # unknown or uninstalled tasks fail here, before anything is built
        from ezm.workers.trainer import train

        result = train(cfg)
    print(result.report())


def cmd_eval(args: argparse.Namespace) -> None:
    from ezm.workers.evaluate import evaluate_checkpoint

    print(evaluate_checkpoint(args.checkpoint, episodes=args.episodes).table())


COMMANDS = {"tasks": cmd_tasks, "train": cmd_train, "eval": cmd_eval}


def _headless_rendering() -> None:
    """On a Linux machine without a display, render offscreen with EGL unless told otherwise
    (otherwise dm_control tries GLFW and warns on every start)."""
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "egl")


def main(argv: list[str] | None = None) -> int:
    _headless_rendering()
    logging.getLogger("absl").setLevel(logging.ERROR)  # dm_control's deprecation notices on model load
    from ezm.learning.checkpoint import CheckpointError

    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except (TaskError, config_lib.ConfigError, CheckpointError, UsageError) as err:
        print(f"ezm: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
