"""The command line shared by the scripts that study a trained model (a run directory or checkpoint).

They import it as `import _trained`, like `_meta`.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from _meta import REPO


def parser(doc: str, episodes: int, episodes_help: str = "evaluation episodes per task",
           seed: bool = True) -> argparse.ArgumentParser:
    """path, --episodes, --seed (unless seed=False), --threads and --tag; a script adds its own after."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="run directory or checkpoint file")
    parser.add_argument("--episodes", type=int, default=episodes, help=episodes_help)
    if seed:
        parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--tag", default="", help="suffix of the output file")
    return parser


def parse_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse, then render offscreen with EGL unless told otherwise and set the torch threads."""
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    torch.set_num_threads(args.threads)
    return args


def write_result(name: str, tag: str, out: dict) -> Path:
    """benchmarks/results/NAME[_TAG].json holding `out`; returns its path."""
    path = REPO / "benchmarks" / "results" / f"{name}{'_' + tag if tag else ''}.json"
    path.write_text(json.dumps(out, indent=1))
    return path
