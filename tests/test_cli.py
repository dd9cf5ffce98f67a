"""The `ezm` command: task tables, one-line errors without tracebacks."""
import importlib.util
import os
import subprocess
import sys

import pytest


def run(*args):
    return subprocess.run([sys.executable, "-m", "ezm.cli", *args], capture_output=True, text=True, timeout=300)


def test_tasks_shows_padded_sizes_and_masks():
    out = run("tasks", "--suite", "dmc-mixed")
    assert out.returncode == 0, out.stderr
    for name in ("cartpole-swingup", "walker-walk", "cheetah-run", "hopper-hop"):
        assert name in out.stdout
    assert "100000" in out.stdout  # cartpole's one valid action dim of six
    assert "111100" in out.stdout  # hopper's four of six


def test_misspelt_task_is_one_line_with_a_suggestion():
    out = run("tasks", "--tasks", "walker-wlak")
    assert out.returncode == 2
    assert "walker-walk" in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_unknown_suite_and_bad_override_fail_cleanly():
    out = run("train", "--suite", "dmc-cartpol")
    assert out.returncode == 2 and "dmc-cartpole" in out.stderr and "Traceback" not in out.stderr
    out = run("train", "--suite", "dmc-cartpole", "learn.lrr=3")
    assert out.returncode == 2 and "learn.lrr" in out.stderr and "Traceback" not in out.stderr


def test_resume_with_other_settings_is_refused(tmp_path):
    out = run("train", "--resume", str(tmp_path), "learn.lr=1")
    assert out.returncode == 2 and "--resume" in out.stderr and "Traceback" not in out.stderr


def test_eval_of_a_missing_checkpoint_fails_cleanly(tmp_path):
    out = run("eval", str(tmp_path / "nothing.pt"))
    assert out.returncode == 2 and "Traceback" not in out.stderr


def test_humanoidbench_suite_without_the_package_is_one_clear_line():
    if importlib.util.find_spec("humanoid_bench") is not None:
        pytest.skip("humanoid_bench is installed here")
    for command in ("tasks", "train"):
        out = run(command, "--suite", "hb-medium")
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert "humanoid_bench" in out.stderr and "docs/humanoidbench.md" in out.stderr


@pytest.mark.parametrize("override, message", [
    ("env.copies_per_task=0", "env.copies_per_task must be an integer >= 1, got 0"),
    ("search.simulations=-1", "search.simulations must be an integer >= 1, got -1"),
    ("learn.lr=-1", "learn.lr must be positive"),
    ("discount=1.5", "discount must lie in (0, 1], got 1.5"),
    ("train.env_steps_per_task=-5", "train.env_steps_per_task must be an integer >= 1, got -5"),
    ("device=cuda:99", "device 'cuda:99'"),
    ("learn.batch_size=3", "learn.batch_size must be >= the number of tasks (4 in 'dmc-cartpole')"),
])
def test_unusable_settings_are_one_line_before_any_run_directory(tmp_path, override, message):
    out = run("train", "--suite", "dmc-cartpole", f"train.run_dir={tmp_path}", override)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ezm: error: ") and message in lines[0]
    assert not any(tmp_path.iterdir())  # refused before a run directory or environment was made


def test_ezm_debug_shows_the_traceback_too():
    for extra_env, args in (({"EZM_DEBUG": "1"}, ()), ({}, ("--debug",))):
        out = subprocess.run([sys.executable, "-m", "ezm.cli", *args, "train", "--suite", "dmc-cartpole",
                              "learn.lr=-1"], capture_output=True, text=True, timeout=300,
                             env={**os.environ, **extra_env})
        assert out.returncode == 2
        assert "Traceback" in out.stderr and "ConfigError" in out.stderr
        assert out.stderr.strip().splitlines()[-1].startswith("ezm: error: learn.lr must be positive")


def test_help_answers_without_importing_torch():
    for args in (["--help"], ["train", "--help"], ["eval", "--help"]):
        code = ("import sys\nfrom ezm import cli\ntry:\n    cli.main(%r)\nexcept SystemExit:\n    pass\n"
                "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'dm_control', 'mujoco')))")
        out = subprocess.run([sys.executable, "-c", code % args], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().splitlines()[-1] == "[]", f"{args} imported {out.stdout.splitlines()[-1]}"


@pytest.mark.parametrize("episodes", ["0", "-2", "many"])
def test_eval_refuses_episodes_below_one(tmp_path, episodes):
    out = run("eval", str(tmp_path), "--episodes", episodes)
    assert out.returncode == 2 and "--episodes" in out.stderr and "Traceback" not in out.stderr
    assert "must be >= 1" in out.stderr or "whole number" in out.stderr


def test_eval_refuses_a_checkpoint_of_another_config_than_its_directory(tmp_path):
    from ezm import config as C
    from ezm.workers.trainer import Trainer

    cfg = C.build("quickstart", overrides=["env.suite=cartpole-balance", "env.copies_per_task=1",
                                           "train.progress=false", f"train.run_dir={tmp_path}"])
    trainer = Trainer(cfg, tmp_path)
    trainer.save()
    trainer.env.close()
    C.save(C.merge(cfg, {"model": {"hidden": 32}}), tmp_path / "config.yaml")
    out = run("eval", str(tmp_path), "--episodes", "1")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert "config differs" in out.stderr and "model.hidden: checkpoint 64, run 32" in out.stderr


NAN_TRAIN = '''
import sys
import gymnasium
import numpy as np
from ezm import cli

class NaNAtFive(gymnasium.Env):
    """Observation [t, t]; NaN only at simulator step 5 (inside the second 4-step repeat)."""
    action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)
    observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.full(2, np.nan if self.t == 5 else self.t, np.float32)
        return obs, 0.0, False, False, {}

gymnasium.register(id="ezmtest/NaNAtFive-v0", entry_point=NaNAtFive, max_episode_steps=40)
sys.exit(cli.main(sys.argv[1:]))
'''


def test_a_nan_inside_an_action_repeat_stops_training_with_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-c", NAN_TRAIN, "train", "--tasks", "ezmtest/NaNAtFive-v0",
                          "env.copies_per_task=1", "env.action_repeat=4", "train.progress=false",
                          f"train.run_dir={tmp_path}"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        "ezm: error: task 'ezmtest/NaNAtFive-v0' copy 0 returned NaN or inf at episode step 5"]


CUSTOM_ENV = '''
import gymnasium
import numpy as np


class Drift(gymnasium.Env):
    """A point on a line pushed by its 2-D action; reward -|position|."""
    action_space = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)
    observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (3,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = float(self.np_random.uniform(-1, 1))
        return np.array([self.x, 0.0, 1.0], np.float32), {}

    def step(self, action):
        self.x += 0.1 * float(action[0] - action[1])
        return np.array([self.x, float(action[0]), 1.0], np.float32), -abs(self.x), False, False, {}


gymnasium.register(id="Drift-v0", entry_point=Drift, max_episode_steps=20, reward_threshold=0.0)
'''


def _with_custom_env(tmp_path) -> dict:
    (tmp_path / "ezm_custom_env.py").write_text(CUSTOM_ENV)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}


def test_a_custom_gymnasium_env_is_named_module_colon_id(tmp_path):
    env = _with_custom_env(tmp_path)
    out = subprocess.run([sys.executable, "-m", "ezm.cli", "tasks", "--tasks",
                          "ezm_custom_env:Drift-v0,walker-walk"], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if "ezm_custom_env:Drift-v0" in line).split()
    assert row[2:9] == ["gym", "3", "->", "24", "2", "->", "6"] and row[9] == "110000" and row[10] == "20"

    runs = tmp_path / "runs"
    out = subprocess.run([sys.executable, "-m", "ezm.cli", "train", "env.suite=ezm_custom_env:Drift-v0",
                          "env.copies_per_task=1", "train.env_steps_per_task=40", "learn.warmup_steps=20",
                          "train.eval_episodes=1", "train.progress=false", f"train.run_dir={runs}"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    (run_dir,) = runs.iterdir()
    assert (run_dir / "eval.csv").read_text().splitlines()[-1].startswith("40,ezm_custom_env:Drift-v0,")


@pytest.mark.parametrize("name, message", [
    ("ezm_no_such_module:Drift-v0", "cannot import module 'ezm_no_such_module'"),
    ("ezm_custom_env:Drfit-v0", "module 'ezm_custom_env' registers no Gymnasium id 'Drfit-v0'"),
])
def test_an_unknown_custom_module_or_id_is_one_line(tmp_path, name, message):
    out = subprocess.run([sys.executable, "-m", "ezm.cli", "tasks", "--tasks", name],
                         capture_output=True, text=True, timeout=300, env=_with_custom_env(tmp_path))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ezm: error: ") and message in lines[0]
