"""A killed run resumes from its checkpoint and finishes; foreign or broken checkpoints are refused."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ezm import config as C
from ezm.learning.checkpoint import CheckpointError
from ezm.tasks import registry
from ezm.workers.evaluate import EvalResult
from ezm.workers.logger import RunLogger
from ezm.workers.run import new_run_dir
from ezm.workers.trainer import Trainer, resume, train

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


def _logged_steps(folder: Path) -> list[int]:
    """The env steps of the complete lines of metrics.jsonl in the run directory under `folder`."""
    paths = list(folder.glob("*/metrics.jsonl"))
    lines = paths[0].read_text().split("\n")[:-1] if paths else []  # the last piece may be cut short
    return [json.loads(line)["env_steps"] for line in lines]


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_checkpoint_and_finishes(tmp_path):
    proc = _ezm("train", *SMALL, "train.eval_interval=600", f"train.run_dir={tmp_path}")
    deadline = time.time() + 600  # only bounds a failure: a free 2-core machine takes seconds
    killed_at = 0
    while time.time() < deadline and proc.poll() is None:
        logged = _logged_steps(tmp_path)
        if logged and logged[-1] in (1200, 2000):  # logged after the checkpoint at 800 or 1600
            proc.send_signal(signal.SIGKILL)
            killed_at = logged[-1]
            break
        time.sleep(0.2)
    proc.wait()
    assert killed_at, f"the run ended before it could be killed: {proc.communicate()[1][-2000:]}"
    (run_dir,) = tmp_path.iterdir()
    assert _logged_steps(tmp_path)[-1] == killed_at  # rows the resumed run writes again
    done = _ezm("train", "--resume", str(run_dir))
    out, err = done.communicate(timeout=400)
    assert done.returncode == 0, err
    assert "cartpole-balance" in out and str(run_dir) in out
    metrics = _metrics(run_dir)
    # every env step logged once, the schedule and the clock of a run that never stopped
    assert [m["env_steps"] for m in metrics] == list(range(400, 2401, 400))
    for key in ("updates", "time"):  # the update counter and the clock came back from the checkpoint
        values = [m[key] for m in metrics]
        assert values == sorted(values) and values[-1] > values[0], key
    evals = [line.split(",")[0] for line in (run_dir / "eval.csv").read_text().strip().splitlines()[1:]]
    assert evals == ["600", "1200", "1800", "2400"]

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

    def schedule(trainer):
        return trainer.next_log, trainer.next_eval, trainer.next_checkpoint, trainer.elapsed_s

    first.next_log, first.next_eval, first.next_checkpoint, first.elapsed_s = 1200, 1800, 1600, 12.5
    second.load_state_dict(first.state_dict())
    assert schedule(second) == (1200, 1800, 1600, 12.5)
    old = first.state_dict()  # as written before the schedule and the clock were kept
    old["counters"] = {"env_steps": 1000, "owed_updates": 0.0}
    second.load_state_dict(old)  # the schedule of a run that never stopped (intervals 400, 100000, 800)
    assert schedule(second) == (1200, 100000, 1600, 0.0)


def test_a_resumed_log_keeps_the_rows_up_to_its_checkpoint(tmp_path):
    task = registry.task("cartpole-balance")
    logger = RunLogger(tmp_path)
    for step in (400, 800, 1200):
        logger.log_metrics(step, {"loss": step / 100})
        logger.log_episodes(step, [("cartpole-balance", 1.0)])
        logger.log_eval(EvalResult((task,), ((float(step),),), step))
    logger.close()
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"env_steps": 1600, "lo')  # cut short by a kill
    resumed = RunLogger(tmp_path, since=800)
    resumed.log_metrics(1200, {"loss": 0.0})
    resumed.close()
    assert [m["env_steps"] for m in _metrics(tmp_path)] == [400, 800, 1200]
    assert _metrics(tmp_path)[-1]["loss"] == 0.0
    for name in ("episodes.csv", "eval.csv"):
        with (tmp_path / name).open(newline="") as f:
            lines = f.read().split("\r\n")
        assert lines[0].startswith("env_steps,task,") and [line[:4] for line in lines[1:]] == ["400,", "800,", ""]


def _contents(run_dir: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(run_dir)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_resuming_a_finished_run_says_so_and_changes_nothing(tmp_path):
    cfg = C.build("quickstart", overrides=[a for a in SMALL if "=" in a] + [
        "env.suite=cartpole-balance", "train.env_steps_per_task=80", "learn.warmup_steps=40",
        f"train.run_dir={tmp_path}"])
    run_dir = train(cfg).run_dir
    before = _contents(run_dir)
    done = _ezm("train", "--resume", str(run_dir))
    out, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    assert out.splitlines() == [f"ezm: run {run_dir.resolve()} is finished (80 env steps per task, its budget); "
                                f"nothing to resume (evaluate it with: ezm eval {run_dir.resolve()})"]
    assert _contents(run_dir) == before


def test_resume_names_the_fields_a_run_started_without(tmp_path, capsys):
    cfg = C.build("quickstart", overrides=[a for a in SMALL if "=" in a] + [
        "env.suite=cartpole-balance", "train.env_steps_per_task=80", "learn.warmup_steps=40",
        f"train.run_dir={tmp_path}"])
    Trainer(cfg, tmp_path).save()  # a checkpoint at 0 env steps
    written = C.to_dict(cfg)
    del written["search"]["eval_root_uniform"], written["system"]  # as a run of an older ezm wrote it
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(written))
    resume(tmp_path)
    err = capsys.readouterr().err
    assert "take their defaults" in err and "search.eval_root_uniform=0.25" in err and "system.lockstep=False" in err


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
