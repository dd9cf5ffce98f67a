"""The `ezm` command: task tables, one-line errors without tracebacks."""
import importlib.util
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
