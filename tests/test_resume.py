"""A killed run resumes from its checkpoint and finishes; foreign or broken checkpoints are refused."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ezm import config as C
from ezm.learning.checkpoint import CheckpointError
from ezm.workers.run import new_run_dir
from ezm.workers.trainer import Trainer, resume

SMALL = ["--suite", "cartpole-balance", "--preset", "quickstart", "env.copies_per_task=2",
         "train.env_steps_per_task=2400", "train.checkpoint_interval=800", "train.eval_interval=100000",
         "train.eval_episodes=1", "train.log_interval=400", "train.progress=false", "learn.warmup_steps=400",
         "learn.batch_size=32", "search.simulations=4", "search.root_actions=4", "search.root_policy_samples=1",
         "learn.reanalyze_simulations=4"]


def _ezm(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "ezm.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_checkpoint_and_finishes(tmp_path):
    proc = _ezm("train", *SMALL, f"train.run_dir={tmp_path}")
    deadline = time.time() + 600  # only bounds a failure: a free 2-core machine takes seconds
    run_dirs: list[Path] = []
    while time.time() < deadline and proc.poll() is None:
        run_dirs = list(tmp_path.iterdir())
        if run_dirs and (run_dirs[0] / "checkpoint.pt").exists():
            break
        time.sleep(0.5)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()[1][-2000:]}"
    assert run_dirs and (run_dirs[0] / "checkpoint.pt").exists(), "no checkpoint was written in time"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_dir = run_dirs[0]
    killed_at = max(m["env_steps"] for m in _metrics(run_dir))
    assert killed_at < 2400

    done = _ezm("train", "--resume", str(run_dir))
    out, err = done.communicate(timeout=400)
    assert done.returncode == 0, err
    assert "cartpole-balance" in out and str(run_dir) in out
    resumed = [m for m in _metrics(run_dir) if m["env_steps"] > killed_at]
    assert resumed and resumed[-1]["env_steps"] == 2400
    assert resumed[0]["updates"] > 0  # the update counter came back from the checkpoint
    assert (run_dir / "eval.csv").read_text().strip().splitlines()[-1].startswith("2400,")

    out, err = _ezm("eval", str(run_dir), "--episodes", "1").communicate(timeout=300)
    assert "cartpole-balance" in out and "normalised" in out, err
    checkpoint = run_dir / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:-100])  # a truncated file
    broken = _ezm("eval", str(run_dir))
    out, err = broken.communicate(timeout=300)
    assert broken.returncode == 2 and "checkpoint" in err and "Traceback" not in err


def test_resume_restores_the_learner_replay_and_generators(tmp_path):
    cfg = C.build("quickstart", overrides=[a for a in SMALL if "=" in a] + [
        "env.suite=cartpole-balance", f"train.run_dir={tmp_path}"])
    first = Trainer(cfg, tmp_path)
    for step in range(30):
        first.rollout.step(first.learner.model, first.replay, first.act_generator, step)
    first.env_steps, first.owed_updates = 120, 2.0
    first._learn()
    first.save()
    second = Trainer(cfg, tmp_path)
    second.load()
    assert second.env_steps == 120 and second.learner.updates == first.learner.updates == 2
    for a, b in zip(first.learner.model.state_dict().values(), second.learner.model.state_dict().values()):
        assert (a == b).all()
    assert len(second.replay) == len(first.replay)
    assert (first.act_generator.get_state() == second.act_generator.get_state()).all()
    first.rollout.restart()  # resuming starts fresh episodes from the next seeds of every stream
    assert second.env.seed_state() == first.env.seed_state()


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path):
    cfg = C.build("quickstart", overrides=["env.suite=cartpole-balance", "env.copies_per_task=1",
                                           "train.progress=false", f"train.run_dir={tmp_path}"])
    Trainer(cfg, tmp_path).save()
    C.save(C.merge(cfg, {"model": {"hidden": 32}}), tmp_path / "config.yaml")
    with pytest.raises(CheckpointError, match="model.hidden"):
        resume(tmp_path)


def test_resume_of_a_directory_without_a_run_is_a_clean_error(tmp_path):
    with pytest.raises(CheckpointError, match="not an ezm run directory"):
        resume(tmp_path)


def test_runs_started_together_get_separate_directories(tmp_path):
    cfg = C.build("quickstart", overrides=[f"train.run_dir={tmp_path}"])
    dirs = [new_run_dir(cfg) for _ in range(3)]  # within a second or two: one name stem
    assert len(set(dirs)) == 3
    assert all((d / "config.yaml").exists() for d in dirs)
