"""The Ray pipeline on a real local cluster: lockstep is the single process bit for bit, the
asynchronous mode keeps the replay ratio and logs staleness, killed actors are restarted,
a stopped Ray run resumes, and a cluster that cannot start is one clear error."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray")

from ezm import config as C  # noqa: E402
from ezm.learning.checkpoint import load_checkpoint  # noqa: E402
from ezm.workers.run import CHECKPOINT_FILE, new_run_dir  # noqa: E402
from ezm.workers.stop import Interrupted  # noqa: E402
from ezm.workers.trainer import resume, train, trainer_class  # noqa: E402

# one task, 2 copies: a decision earns replay_ratio * 2 = 1 update and adds 8 env steps, so
# 1200 env steps earn an update at every decision from the 400th step on, 101 of them, each
# one logged on its own line
TINY = ["env.suite=cartpole-balance", "env.copies_per_task=2", "train.env_steps_per_task=1200",
        "train.eval_interval=100000", "train.eval_episodes=1", "train.log_interval=8",
        "train.checkpoint_interval=100000", "train.progress=false", "learn.warmup_steps=400",
        "learn.batch_size=16", "learn.replay_ratio=0.5", "learn.target_update_interval=20",
        "model.hidden=16", "model.head_hidden=32", "search.simulations=2", "search.root_actions=4",
        "search.root_policy_samples=1", "learn.reanalyze_simulations=2"]
UPDATES = 101
VARYING = {"time", "updates_per_s"}  # wall-clock columns


@pytest.fixture(scope="module", autouse=True)
def cluster():
    torch.set_num_threads(1)  # as the actors run: the same arithmetic in every process
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


def _cfg(tmp_path: Path, *overrides: str) -> C.Config:
    return C.build("quickstart", overrides=[*TINY, f"train.run_dir={tmp_path}", *overrides])


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _equal(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):  # NaN where the other has NaN (a variance range of a task not seen)
        return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a.nan_to_num(7.5), b.nan_to_num(7.5))
    return a == b


def test_lockstep_reproduces_the_single_process_bit_for_bit(tmp_path):
    single = train(_cfg(tmp_path / "single"))
    lockstep = train(_cfg(tmp_path / "ray", "system.backend=ray", "system.lockstep=true"))
    assert single.updates == lockstep.updates == UPDATES
    a, b = _metrics(single.run_dir), _metrics(lockstep.run_dir)
    assert len(a) == len(b) == 1200 // 8
    for x, y in zip(a, b):  # every update's losses and diagnostics
        assert {k: v for k, v in x.items() if k not in VARYING} == {k: y[k] for k in x if k not in VARYING}
    assert b[-1]["staleness/acting_max"] == b[-1]["staleness/reanalyze_max"] == 0
    assert (single.run_dir / "eval.csv").read_text() == (lockstep.run_dir / "eval.csv").read_text()
    states = [load_checkpoint(r.run_dir / CHECKPOINT_FILE) for r in (single, lockstep)]
    for part in ("replay", "learner", "env_seeds", "rng"):  # the same replay rows, weights, optimiser, seeds
        assert _equal(states[0][part], states[1][part]), part


def test_async_keeps_the_replay_ratio_and_logs_staleness(tmp_path):
    result = train(_cfg(tmp_path, "system.backend=ray", "system.reanalyze_workers=2", "system.broadcast_interval=3"))
    assert result.updates == UPDATES  # every update the collection earned, none more
    rows = _metrics(result.run_dir)
    assert rows[-1]["env_steps"] == 1200
    learning = [r for r in rows if r["updates"] > 0]
    assert learning and all(0 <= r["staleness/acting"] <= r["staleness/acting_max"] for r in learning)
    assert all(0 <= r["staleness/reanalyze"] <= r["staleness/reanalyze_max"] for r in learning)
    assert max(r["staleness/acting_max"] for r in learning) >= 1  # weights broadcast every 3 updates
    assert all(r["faults/rollout"] == r["faults/reanalyze"] == 0 for r in rows)


def test_the_learner_reanalyzes_itself_rather_than_wait_for_a_full_queue(tmp_path):
    # replay ratio 2: a decision earns 4 updates, more than the one batch the queue holds
    result = train(_cfg(tmp_path, "system.backend=ray", "system.reanalyze_workers=1", "system.queue_size=1",
                        "learn.replay_ratio=2"))
    assert result.updates == 4 * UPDATES  # the updates taken here count against the same budget
    learning = [r for r in _metrics(result.run_dir) if r["updates"] > 0]
    shares = [r["pipeline/learner_reanalyze"] for r in learning]
    assert all(0 <= share <= 1 for share in shares)
    assert 0 < sum(shares) / len(shares) < 1  # both the learner and the worker computed targets


def _when(condition, action) -> threading.Thread:
    """Run `action` in a thread as soon as `condition()` holds (checked every 50 ms, for 300 s)."""
    def wait():
        deadline = time.time() + 300
        while time.time() < deadline and not condition():
            time.sleep(0.05)
        action()
    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread


def test_killed_actors_are_restarted_and_a_stopped_ray_run_resumes(tmp_path, capfd):
    cfg = _cfg(tmp_path, "system.backend=ray", "train.env_steps_per_task=1600", "train.checkpoint_interval=400")
    trainer = trainer_class(cfg)(cfg, new_run_dir(cfg))
    rollout_pid = ray.get(trainer.rollout_workers[0].pid.remote())
    reanalyze_pid = ray.get(trainer.reanalyze_workers[0].pid.remote())
    kills = [_when(lambda: trainer.learner.updates >= 20, lambda: os.kill(rollout_pid, signal.SIGKILL)),
             _when(lambda: trainer.learner.updates >= 40, lambda: os.kill(reanalyze_pid, signal.SIGKILL)),
             _when(lambda: trainer.learner.updates >= 80, lambda: os.kill(os.getpid(), signal.SIGINT))]
    with pytest.raises(Interrupted) as stopped:
        trainer.run()
    for thread in kills:
        thread.join()
    err = capfd.readouterr().err
    assert "rollout worker 0 died" in err and "reanalyze worker 0 died" in err
    rows = _metrics(trainer.run_dir)
    assert rows[-1]["faults/rollout"] >= 1 and rows[-1]["faults/reanalyze"] >= 1
    assert rows[-1]["updates"] > 40  # training went on after both kills
    assert 800 <= stopped.value.env_steps < 1600

    result = resume(trainer.run_dir)
    rows = _metrics(trainer.run_dir)
    assert [r["env_steps"] for r in rows] == list(range(8, 1601, 8))  # every step logged once
    assert result.updates == rows[-1]["updates"] == 151  # all the decisions from 400 to 1600 steps earned


def test_a_cluster_that_cannot_start_is_one_clear_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ezm.cli", "train", *TINY, f"train.run_dir={tmp_path}",
                           "system.backend=ray", "system.address=127.0.0.1:1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "ezm: error: system.address=127.0.0.1:1: no Ray cluster answers there (Connection refused); "
        "start one with `ray start --head` on that machine, or use system.address=local"]
    assert not any(tmp_path.iterdir())  # refused before a run directory exists
