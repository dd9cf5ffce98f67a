"""`ezm experiment run | report`: a tiny grid end to end, a killed experiment resumed, bad files refused."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from ezm import cli
from ezm import config as C
from ezm.experiments import spec
from ezm.experiments.runner import run_all
from ezm.experiments.report import write_report
from ezm.experiments.results import t_interval
from ezm.learning.checkpoint import load_checkpoint
from ezm.tasks.task import Task
from ezm.workers.evaluate import EvalResult
from ezm.workers.logger import RunLogger

BUDGET = 600  # env steps per task
TINY = {
    "preset": "quickstart",
    "suite": "cartpole-balance,cartpole-swingup",
    "budget": BUDGET,
    "overrides": ["env.copies_per_task=1", "env.action_repeat=8", "train.eval_interval=100000",
                  "train.eval_episodes=1", "train.checkpoint_interval=200", "train.log_interval=200",
                  "train.progress=false", "learn.warmup_steps=200", "learn.batch_size=16", "search.simulations=2",
                  "search.root_actions=2", "search.root_policy_samples=1", "learn.reanalyze_simulations=2"],
}


def _file(tmp_path: Path, name: str, **fields) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**TINY, **fields}))
    return path


def _ezm(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "ezm.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _sigterm_when(proc: subprocess.Popen, condition) -> None:
    """Send SIGTERM to `proc` as soon as `condition()` holds (while it runs)."""
    deadline = time.time() + 300  # only bounds a failure
    while time.time() < deadline and proc.poll() is None:
        if condition():
            proc.send_signal(signal.SIGTERM)
            return
        time.sleep(0.1)


def _env_steps(run_dir: Path) -> int:
    return int(load_checkpoint(run_dir / "checkpoint.pt")["counters"]["env_steps"])


def test_a_tiny_grid_runs_end_to_end_and_writes_its_report(tmp_path):
    pair = "learn.grad_similarity_pairs=cartpole-balance~cartpole-swingup"
    path = _file(tmp_path, "grid", seeds=[0], variants={
        "full": ["learn.grad_similarity_interval=4", pair],
        "no-pathcons": ["learn.path_consistency=false"]})
    proc = _ezm("experiment", "run", str(path))
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    runs = tmp_path / "grid" / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["full-s0", "no-pathcons-s0"]
    assert all(_env_steps(d) >= BUDGET for d in runs.iterdir())
    report = tmp_path / "grid" / "report"
    names = {"grid-scores.csv", "grid-scores.md", "grid-curves.png", "grid-ablation.png", "grid-grad_similarity.png"}
    assert {p.name for p in report.iterdir()} == names
    for name in names:
        assert f"report: {report / name}" in out
    for png in report.glob("*.png"):
        assert min(Image.open(png).size) > 200
    with (report / "grid-scores.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["variant"], r["task"]) for r in rows] == [
        (v, t) for v in ("full", "no-pathcons") for t in ("cartpole-balance", "cartpole-swingup", "mean")]
    final = {r["task"]: r for r in rows if r["variant"] == "full"}
    with (runs / "full-s0" / "eval.csv").open() as f:
        logged = [r for r in csv.DictReader(f) if int(r["env_steps"]) >= BUDGET]
    assert [float(final[r["task"]]["return"]) for r in logged] == [float(r["return"]) for r in logged]
    assert final["mean"]["normalized_score_ci95"] == ""  # one seed: no interval
    markdown = (report / "grid-scores.md").read_text()
    assert "## no-pathcons" in markdown and "| cartpole-swingup | 1 |" in markdown

    again = _ezm("experiment", "run", str(path))
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert out.count("finished already") == 2 and "ezm train: run directory" not in out


def test_a_killed_experiment_resumes_its_unfinished_run_and_skips_the_finished_one(tmp_path):
    path = _file(tmp_path, "killed", seeds=[0, 1], variants={"full": []})
    first, second = tmp_path / "killed" / "runs" / "full-s0", tmp_path / "killed" / "runs" / "full-s1"
    proc = _ezm("experiment", "run", str(path))
    _sigterm_when(proc, lambda: (second / "checkpoint.pt").exists())  # the second run is past its first checkpoint
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    last = err.strip().splitlines()[-1]
    assert "stopped by SIGTERM" in last and "in run full-s1" in last
    assert last.endswith(f"continue the experiment with: ezm experiment run {path}")
    stopped_at = _env_steps(second)
    assert _env_steps(first) >= BUDGET and stopped_at < BUDGET
    finished_checkpoint = (first / "checkpoint.pt").stat().st_mtime_ns

    again = _ezm("experiment", "run", str(path))
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert "run full-s0 finished already" in out and "run full-s1 resumed" in out
    assert f"from {stopped_at} to {BUDGET} env steps per task" in out
    assert (first / "checkpoint.pt").stat().st_mtime_ns == finished_checkpoint
    assert _env_steps(second) >= BUDGET
    with (tmp_path / "killed" / "report" / "killed-scores.csv").open() as f:
        mean = next(r for r in csv.DictReader(f) if r["task"] == "mean")
    assert mean["seeds"] == "2" and float(mean["normalized_score_ci95"]) > 0.0


def test_an_edited_experiment_file_does_not_reuse_runs_written_with_another_config(tmp_path):
    run_dir = tmp_path / "edited" / "runs" / "full-s0"
    run_dir.mkdir(parents=True)
    experiment = spec.load(_file(tmp_path, "edited", seeds=[0], variants={"full": []}))
    C.save(C.replace(experiment.runs[0].cfg, seed=5), run_dir / "config.yaml")
    with pytest.raises(spec.ExperimentError, match=r"\(differs in seed\); restore the file or remove that run directory"):
        run_all(experiment, say=lambda line: None)


@pytest.mark.parametrize("text, message", [
    ("suite: [unclosed", "not valid YAML"),
    ("- a list", "expected a mapping"),
    ("suite: dmc-cartpole\nbudget: 100\nseeds: [0]\nvariants: {a: []}\nsteps: 3", "unknown key(s) 'steps'"),
    ("suite: dmc-cartpole\nbudget: 100\nseeds: [0]", "variants: expected a mapping"),
    ("suite: dmc-cartpole\nbudget: 0\nseeds: [0]\nvariants: {a: []}", "budget: expected env steps per task"),
    ("suite: dmc-cartpole\nbudget: 100\nseeds: [0, 0]\nvariants: {a: []}", "seeds: expected a list of distinct"),
    ("suite: dmc-cartpole\nbudget: 100\nseeds: [0]\nvariants: {a: [learn.lrr=1]}", "variant 'a': unknown config key 'learn.lrr'"),
    ("suite: dmc-cartpole\nbudget: 100\nseeds: [0]\nvariants: {a: learn.lr=1}", "variants.a: expected a list"),
    ("suite: dmc-cartpole\nbudget: 100\nseeds: [0]\nvariants: {a/b: []}", "'a/b' is not a usable name"),
    ("kind: sweep\nsuite: dmc-cartpole\nbudget: 100\nseeds: [0]", "kind must be one of grid, scaling"),
])
def test_a_malformed_experiment_file_is_one_line_and_exit_code_2(tmp_path, capsys, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert cli.main(["experiment", "run", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"ezm: error: experiment file '{path}': ") and message in err
    assert not (tmp_path / "bad").exists()


def test_a_missing_experiment_file_is_refused(tmp_path, capsys):
    assert cli.main(["experiment", "report", str(tmp_path / "none.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_scaling_experiment_runs_every_task_alone_and_all_together(tmp_path):
    experiment = spec.load(_file(tmp_path, "scaling", kind="scaling", seeds=[0, 1]))
    assert experiment.variants == ("all", "alone-cartpole-balance", "alone-cartpole-swingup")
    suites = {r.name: (r.cfg.env.suite, r.cfg.train.env_steps_per_task) for r in experiment.runs}
    assert suites["all-s1"] == ("cartpole-balance,cartpole-swingup", BUDGET)
    assert suites["alone-cartpole-swingup-s0"] == ("cartpole-swingup", BUDGET)
    assert experiment.runs[0].run_dir == tmp_path / "scaling" / "runs" / "all-s0"


def test_t_interval_is_the_student_t_95_percent_interval():
    mean, width = t_interval(np.array([1.0, 2.0, 3.0]))
    assert mean == 2.0 and width == pytest.approx(4.302653 / np.sqrt(3), rel=1e-6)
    assert np.isnan(t_interval(np.array([4.0]))[1])


def test_a_humanoidbench_report_puts_the_papers_table_beside_ours(tmp_path):
    path = tmp_path / "hb.yaml"
    path.write_text(yaml.safe_dump({"preset": "paper", "suite": "h1-walk,h1-crawl", "budget": 1000, "seeds": [0, 1],
                                    "overrides": ["device=cuda"], "variants": {"ez-m": []}}))
    experiment = spec.load(path)  # reporting needs no GPU, nor HumanoidBench
    for run, walk in zip(experiment.runs, (500.0, 520.0)):
        tasks = tuple(Task(name, "humanoidbench", 51, 19, (-1.0,) * 19, (1.0,) * 19, 1000, low, high)
                      for name, low, high in (("h1-walk", 2.377, 700.0), ("h1-crawl", 272.658, 700.0)))
        run.run_dir.mkdir(parents=True)
        logger = RunLogger(run.run_dir)
        logger.log_eval(EvalResult(tasks, ((walk,), (600.0,)), 1000))
        logger.close()
    write_report(experiment)
    with (experiment.report_dir / "hb-scores.csv").open() as f:
        rows = {r["task"]: r for r in csv.DictReader(f)}
    assert float(rows["h1-walk"]["return"]) == 510.0
    assert float(rows["h1-walk"]["paper_EZ-M"]) == 802.969 and float(rows["h1-crawl"]["paper_TD-MPC2"]) == 963.36
    assert float(rows["h1-walk"]["paper_EZ-M_normalized"]) == pytest.approx((802.969 - 2.377) / (700 - 2.377))
    markdown = (experiment.report_dir / "hb-scores.md").read_text()
    assert "arXiv 2603.01452" in markdown and "| h1-walk | 2 | 510.0 | 127.1 | 0.728 |" in markdown


def test_a_scaling_report_compares_each_task_alone_with_all_together(tmp_path):
    experiment = spec.load(_file(tmp_path, "scaling", kind="scaling", seeds=[0, 1]))
    task = {name: Task(name, "dmc", 5, 1, (-1.0,), (1.0,), 1000, 0.0, 1000.0)
            for name in ("cartpole-balance", "cartpole-swingup")}
    scores = {"all": {"cartpole-balance": (900.0, 700.0), "cartpole-swingup": (300.0, 500.0)},  # seed 0, seed 1
              "alone-cartpole-balance": {"cartpole-balance": (800.0, 600.0)},
              "alone-cartpole-swingup": {"cartpole-swingup": (100.0, 300.0)}}
    for run in experiment.runs:
        run.run_dir.mkdir(parents=True)
        names = list(scores[run.variant])
        logger = RunLogger(run.run_dir)
        logger.log_eval(EvalResult(tuple(task[n] for n in names),
                                   tuple((scores[run.variant][n][run.seed],) for n in names), BUDGET))
        logger.close()
    written = write_report(experiment)
    assert experiment.report_dir / "scaling-scaling.png" in written
    with (experiment.report_dir / "scaling-scaling.csv").open() as f:
        table = {(int(r["tasks_together"]), r["task"]): float(r["normalized_score"]) for r in csv.DictReader(f)}
    assert table == pytest.approx({(1, "cartpole-balance"): 0.7, (1, "cartpole-swingup"): 0.2, (1, "mean"): 0.45,
                                   (2, "cartpole-balance"): 0.8, (2, "cartpole-swingup"): 0.4, (2, "mean"): 0.6})


def _losses(run_dir: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["env_steps"], r["loss/total"]) for r in rows if "loss/total" in r]


def test_a_grid_runs_side_by_side_as_ray_tasks_with_the_sequential_runs_results(tmp_path):
    pytest.importorskip("ray")
    path = _file(tmp_path, "side", seeds=[0, 1], variants={"full": []})
    proc = _ezm("experiment", "run", str(path), "--parallel", "2")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    runs = tmp_path / "side" / "runs"
    assert "run full-s0 started" in out and "run full-s1 started" in out
    for run_dir in runs.iterdir():
        assert _env_steps(run_dir) >= BUDGET
        assert "ezm train: run directory" in (run_dir / "console.log").read_text()
    # side by side: each run began before the other wrote its final checkpoint
    s0, s1 = runs / "full-s0", runs / "full-s1"
    assert (s0 / "config.yaml").stat().st_mtime < (s1 / "checkpoint.pt").stat().st_mtime
    assert (s1 / "config.yaml").stat().st_mtime < (s0 / "checkpoint.pt").stat().st_mtime
    assert (tmp_path / "side" / "report" / "side-scores.csv").exists()
    # the same run as the sequential runner makes (one torch thread in both)
    (tmp_path / "alone").mkdir()
    alone = _file(tmp_path / "alone", "side", seeds=[1], variants={"full": []})
    sequential = _ezm("experiment", "run", str(alone))
    _, err = sequential.communicate(timeout=600)
    assert sequential.returncode == 0, err
    assert _losses(tmp_path / "alone" / "side" / "runs" / "full-s1") == _losses(s1)


def test_a_stopped_parallel_experiment_keeps_every_runs_checkpoint_and_resumes(tmp_path):
    pytest.importorskip("ray")
    path = _file(tmp_path, "stop", seeds=[0, 1], variants={"full": []}, budget=3 * BUDGET)
    runs = [tmp_path / "stop" / "runs" / f"full-s{seed}" for seed in (0, 1)]
    proc = _ezm("experiment", "run", str(path), "--parallel", "2")
    _sigterm_when(proc, lambda: all((run / "checkpoint.pt").exists() for run in runs))  # both past their first checkpoint
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    last = err.strip().splitlines()[-1]
    assert "stopped by SIGTERM" in last
    assert last.endswith(f"continue the experiment with: ezm experiment run {path} --parallel 2")
    stopped_at = [_env_steps(run) for run in runs]
    for seed, steps in enumerate(stopped_at):
        assert f"run full-s{seed} stopped at {steps} env steps per task, its checkpoint written" in out
    assert all(0 < steps < 3 * BUDGET for steps in stopped_at)

    again = _ezm("experiment", "run", str(path), "--parallel", "2")
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert "run full-s0 resumed" in out and "run full-s1 resumed" in out
    assert all(_env_steps(run) >= 3 * BUDGET for run in runs)
    for run, steps in zip(runs, stopped_at):
        assert f"from {steps} to {3 * BUDGET} env steps per task" in (run / "console.log").read_text()


def test_parallel_runs_refuse_the_ray_pipeline_and_stray_flags(tmp_path, capsys):
    pytest.importorskip("ray")
    from ezm.distributed.experiments import run_parallel

    experiment = spec.load(_file(tmp_path, "pipe", seeds=[0], variants={"ray": ["system.backend=ray"], "one": []}))
    with pytest.raises(spec.ExperimentError, match=r"run\(s\) ray-s0 use system.backend=ray.*without --parallel"):
        run_parallel(experiment, parallel=2, say=lambda line: None)
    assert not (tmp_path / "pipe" / "runs").exists()
    assert cli.main(["experiment", "run", str(tmp_path / "pipe.yaml"), "--threads", "2"]) == 2
    assert "--threads and --address go with --parallel N" in capsys.readouterr().err
