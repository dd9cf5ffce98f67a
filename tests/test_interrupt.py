"""SIGINT and SIGTERM stop a real `ezm train` after its current step with a checkpoint and the
resume command; a second signal stops it at once."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ezm.learning.checkpoint import load_checkpoint
from ezm.workers.stop import StopRequests, StoppedAtOnce

BUDGET = 1200  # env steps per task
SMALL = ["--suite", "cartpole-balance", "--preset", "quickstart", "env.copies_per_task=2",
         f"train.env_steps_per_task={BUDGET}", "train.checkpoint_interval=100000", "train.eval_interval=100000",
         "train.eval_episodes=1", "train.log_interval=400", "train.progress=false", "learn.warmup_steps=400",
         "learn.batch_size=32", "search.simulations=4", "search.root_actions=4", "search.root_policy_samples=1",
         "learn.reanalyze_simulations=4"]


def _ezm(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "ezm.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _train_until_the_first_log_line(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """A running `ezm train` past its warm-up (its first metrics line is written) and its run dir."""
    proc = _ezm("train", *SMALL, f"train.run_dir={tmp_path}")
    deadline = time.time() + 120  # only bounds a failure: a free 2-core machine takes seconds
    while time.time() < deadline and proc.poll() is None:
        metrics = list(tmp_path.glob("*/metrics.jsonl"))
        if metrics and metrics[0].read_text().strip():
            return proc, metrics[0].parent
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"no log line before the run ended or timed out: {proc.communicate()[1][-2000:]}")


def _stopped_at(run_dir: Path) -> int:
    return int(load_checkpoint(run_dir / "checkpoint.pt")["counters"]["env_steps"])


def test_sigint_writes_a_checkpoint_and_names_the_resume_command(tmp_path):
    proc, run_dir = _train_until_the_first_log_line(tmp_path)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("ezm: stopped by SIGINT at ") and last.endswith(f"ezm train --resume {run_dir.resolve()}")
    for banner in (f"ezm train: run directory {run_dir.resolve()}", "cartpole-balance: obs 5, action 1",
                   "config: preset quickstart, overrides env.copies_per_task=2", "device cpu, 1 torch thread(s)"):
        assert banner in out  # the start banner
    stopped_at = _stopped_at(run_dir)
    assert 400 <= stopped_at < BUDGET and f"at {stopped_at} env steps per task" in last

    resumed = _ezm("train", "--resume", str(run_dir))
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"from {stopped_at} to {BUDGET} env steps per task" in out
    assert _stopped_at(run_dir) == BUDGET


def test_sigterm_stops_with_exit_code_143_and_a_checkpoint(tmp_path):
    proc, run_dir = _train_until_the_first_log_line(tmp_path)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM" in err and f"ezm train --resume {run_dir.resolve()}" in err
    assert 400 <= _stopped_at(run_dir) < BUDGET


def test_a_first_signal_is_recorded_and_a_second_stops_at_once():
    previous = signal.getsignal(signal.SIGINT)
    with StopRequests() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)  # Python runs the handler at its next check
        assert stop.signum == signal.SIGTERM  # recorded, the process goes on
        with pytest.raises(StoppedAtOnce, match="stopped at once by a second SIGINT"):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1.0)
    assert signal.getsignal(signal.SIGINT) is previous  # handlers are given back
