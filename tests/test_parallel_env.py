"""ParallelMultiTaskEnv on real environments: the same results as the in-process MultiTaskEnv,
seed streams, errors in and deaths of workers, shutdown, the config field and a training run.

The NaN environment is a real gymnasium.Env in tests/parallel_nan_env.py; parent and workers
build it as a custom `module:EnvId` task, which imports that module."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from ezm import config as C
from ezm.learning.checkpoint import load_checkpoint
from ezm.tasks.multitask_env import MultiTaskEnv
from ezm.tasks.parallel_env import ParallelMultiTaskEnv, SimulationWorkerError, WorkerTraceback, make_env
from ezm.tasks.registry import resolve
from ezm.tasks.task import EnvironmentNaNError
from ezm.workers.run import CHECKPOINT_FILE
from ezm.workers.trainer import train

NAN_TASKS = "parallel_nan_env:ezmtest/ParallelFinite-v0,parallel_nan_env:ezmtest/ParallelNaN-v0"


def _running(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _assert_same(a, b):
    for name in ("obs", "reward", "terminated", "truncated", "task_ids"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_parallel_steps_give_the_serial_results_bit_for_bit():
    """Two tasks of different sizes in 8 rows over 3 workers (the middle one holds rows of
    both tasks); 300 decisions of 4 simulator steps reach the 1000-step time limit, and rows
    are also reset at other times."""
    tasks = resolve("cartpole-balance,walker-walk")
    serial = MultiTaskEnv(tasks, copies=4, seed=7, action_repeat=4)
    parallel = ParallelMultiTaskEnv(tasks, copies=4, seed=7, action_repeat=4, workers=3)
    assert parallel._bounds == [(0, 2), (2, 5), (5, 8)]
    for name in ("num_envs", "obs_size", "action_size", "copies", "action_repeat"):
        assert getattr(parallel, name) == getattr(serial, name)
    for name in ("task_ids", "task_action_mask", "action_mask"):
        np.testing.assert_array_equal(getattr(parallel, name), getattr(serial, name))
    np.testing.assert_array_equal(parallel.reset(), serial.reset())
    rng = np.random.default_rng(0)
    ends = 0
    for step in range(300):
        actions = rng.uniform(-1.5, 1.5, (8, 6))  # beyond [-1, 1]: clipped alike
        result = parallel.step(actions)
        _assert_same(result, serial.step(actions))
        np.testing.assert_array_equal(parallel.episode_steps, serial.episode_steps)
        done = np.flatnonzero(result.terminated | result.truncated)
        ends += done.size
        rows = np.union1d(done, [1, 3, 6]) if step % 70 == 69 else done
        if rows.size:
            np.testing.assert_array_equal(parallel.reset_rows(rows), serial.reset_rows(rows))
    assert ends == 5  # the 5 rows never reset by hand hit the time limit (1000 simulator steps) at decision 250
    parallel.close()
    serial.close()


def test_seed_state_round_trip_continues_the_streams():
    tasks = resolve("cartpole-balance,walker-walk")
    serial = MultiTaskEnv(tasks, copies=2, seed=3)
    first = ParallelMultiTaskEnv(tasks, copies=2, seed=3, workers=2)
    np.testing.assert_array_equal(first.reset(), serial.reset())
    first.reset_rows(np.array([0, 3]))
    state = first.seed_state()
    assert len(state) == 4 and state != serial.seed_state()
    serial.set_seed_state(state)  # the states are the serial env's: checkpoints move between the two
    second = ParallelMultiTaskEnv(tasks, copies=2, seed=99, workers=2)
    second.set_seed_state(state)
    assert second.seed_state() == state
    expected = first.reset()
    np.testing.assert_array_equal(second.reset(), expected)
    np.testing.assert_array_equal(serial.reset(), expected)
    with pytest.raises(ValueError, match="expected 4 seed states, got 3"):
        second.set_seed_state(state[:3])
    for env in (serial, first, second):
        env.close()


def test_an_error_in_a_worker_reaches_the_parent_as_itself():
    env = ParallelMultiTaskEnv(resolve(NAN_TASKS), copies=2, seed=0, workers=2)  # worker 1: the NaN task
    env.reset()
    env.step(np.zeros((4, 1)))
    with pytest.raises(EnvironmentNaNError, match="ParallelNaN-v0' copy 0 returned NaN or inf at episode step 2$") as err:
        env.step(np.zeros((4, 1)))
    assert isinstance(err.value.__cause__, WorkerTraceback)
    assert "simulation worker 1 (rows 2-3)" in str(err.value.__cause__)
    env.reset()  # the workers still answer in step
    assert env.step(np.zeros((4, 1))).reward.tolist() == [1.0, 1.0, 1.0, 1.0]
    env.close()


def test_a_dead_worker_is_named_and_signals_to_the_group_are_ignored():
    env = ParallelMultiTaskEnv(resolve("cartpole-balance"), copies=4, seed=0, workers=2)
    env.reset()
    for pid in env.worker_pids:  # what Ctrl-C or a batch system's SIGTERM sends to every process of the group
        os.kill(pid, signal.SIGINT)
        os.kill(pid, signal.SIGTERM)
    env.step(np.zeros((4, 1)))
    pid = env.worker_pids[1]
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(SimulationWorkerError, match=rf"simulation worker 1 \(rows 2-3, pid {pid}\) was killed by signal 9"):
        env.step(np.zeros((4, 1)))
    with pytest.raises(SimulationWorkerError, match="worker 1 is gone"):
        env.step(np.zeros((4, 1)))
    env.close()
    assert not any(_running(p) for p in env.worker_pids)


def test_close_collection_and_a_dead_parent_leave_no_workers():
    env = ParallelMultiTaskEnv(resolve("cartpole-balance"), copies=2, seed=0, workers=2)
    pids = env.worker_pids
    assert all(_running(p) for p in pids)
    env.close()
    env.close()  # a second close changes nothing
    assert not any(_running(p) for p in pids)

    env = ParallelMultiTaskEnv(resolve("cartpole-balance"), copies=2, seed=0, workers=2)
    pids = env.worker_pids
    del env  # dropped without close
    assert not any(_running(p) for p in pids)

    for ending in ("raise SystemExit(3)", "os.kill(os.getpid(), 9)"):  # exit hooks with the env open; none at all
        code = ("import os; from ezm.tasks.parallel_env import ParallelMultiTaskEnv; from ezm.tasks.registry import resolve\n"
                "if __name__ == '__main__':\n"
                "    env = ParallelMultiTaskEnv(resolve('cartpole-balance'), copies=2, seed=0, workers=2)\n"
                f"    print(*env.worker_pids, flush=True)\n    {ending}\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        pids = [int(p) for p in out.stdout.split()]
        assert len(pids) == 2 and out.returncode in (3, -9)
        deadline = time.time() + 10
        while any(_running(p) for p in pids) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(_running(p) for p in pids), ending


def test_worker_count_is_checked():
    tasks = resolve("cartpole-balance")
    with pytest.raises(ValueError, match=r"workers must lie in \[1, 2\].*got 3"):
        ParallelMultiTaskEnv(tasks, copies=2, seed=0, workers=3)
    with pytest.raises(C.ConfigError, match="env.sim_workers must be an integer >= 0, got -1"):
        C.build(overrides=["env.sim_workers=-1"])
    cfg = C.build(overrides=["env.suite=cartpole-balance,walker-walk", "env.copies_per_task=2", "env.sim_workers=5"])
    with pytest.raises(C.ConfigError, match=r"env.sim_workers must be <= .*\(2 tasks x 2 copies = 4\).*got 5"):
        C.validate_tasks(cfg, 2)
    C.validate_tasks(C.replace(cfg, env=C.replace(cfg.env, sim_workers=4)), 2)


def test_make_env_picks_the_arrangement():
    tasks, env = resolve("cartpole-balance"), C.EnvConfig(copies_per_task=2, action_repeat=2)
    serial = make_env(tasks, env, seed=0)
    parallel = make_env(tasks, C.replace(env, sim_workers=2), seed=0)
    assert type(serial) is MultiTaskEnv and type(parallel) is ParallelMultiTaskEnv
    assert len(parallel.worker_pids) == 2 and parallel.action_repeat == serial.action_repeat == 2
    serial.close()
    parallel.close()


def _same(a, b) -> bool:
    """Whether two checkpoint values (nested dicts and lists of tensors and numbers) are equal."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):  # NaN (a range not yet seen) equals NaN
        return torch.equal(a, b) or (a.is_floating_point() and torch.allclose(a, b, rtol=0, atol=0, equal_nan=True))
    return a == b


def _tiny_run(tmp_path, sim_workers):
    cfg = C.build("quickstart", overrides=[
        "env.suite=cartpole-balance", "env.copies_per_task=2", "env.action_repeat=8", f"env.sim_workers={sim_workers}",
        "train.env_steps_per_task=480", "train.eval_interval=100000", "train.eval_episodes=1", "train.log_interval=96",
        "train.checkpoint_interval=100000", "train.progress=false", f"train.run_dir={tmp_path / str(sim_workers)}",
        "learn.warmup_steps=160", "learn.batch_size=16", "search.simulations=2", "search.root_actions=2",
        "search.root_policy_samples=1", "learn.reanalyze_simulations=2"])
    run_dir = train(cfg).run_dir
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [{k: v for k, v in row.items() if k.startswith(("loss/", "grad_norm"))} for row in rows]
    return losses, load_checkpoint(run_dir / CHECKPOINT_FILE), (run_dir / "eval.csv").read_text()


@pytest.mark.slow
def test_training_with_simulation_workers_matches_the_single_process(tmp_path):
    """The same seed with env.sim_workers=2: the same losses, replay, weights, seed streams and evaluation."""
    losses, state, evaluation = _tiny_run(tmp_path, 0)
    parallel_losses, parallel_state, parallel_evaluation = _tiny_run(tmp_path, 2)
    assert sum(len(row) for row in losses) > 0 and parallel_losses == losses
    assert state["learner"]["updates"] > 0
    for part in ("replay", "learner", "env_seeds", "rng"):
        assert _same(state[part], parallel_state[part]), part
    assert parallel_evaluation == evaluation
