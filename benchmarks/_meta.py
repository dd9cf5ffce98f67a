"""The provenance block every benchmark JSON carries: machine, commit and time.

Benchmarks run as scripts (`python benchmarks/NAME.py`), so they import it as `from _meta import meta`.
"""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """Platform, CPU, core count and library versions of this machine."""
    return {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def commit() -> dict:
    """HEAD of the checkout, whether tracked files differ from it, and which. A copy of the tree
    without its git folder (a remote machine's) takes the commit from EZM_COMMIT, if set."""
    try:
        changed = _git("diff", "--name-only", "HEAD").splitlines()
    except (OSError, subprocess.CalledProcessError):
        return {"sha": os.environ.get("EZM_COMMIT"), "dirty": None, "dirty_paths": [], "git": False}
    return {"sha": _git("rev-parse", "HEAD"), "dirty": bool(changed), "dirty_paths": changed}


def meta() -> dict:
    """{"machine", "commit", "time"}: put this in every benchmark result."""
    return {
        "machine": machine(),
        "commit": commit(),
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
