"""The single-process training loop: collect, reanalyze, learn, at a fixed replay ratio.

`train(cfg)` starts a run directory; `resume(run_dir)` continues one from its checkpoint
(model, optimiser, target model, replay, generators, counters, the log, evaluation and
checkpoint schedule and the training clock), so a killed run goes on as if it had not
stopped, except that episodes open at the kill start again; its logs drop the rows written
after the checkpoint. A finished run is not resumed (`RunFinished`). SIGINT and
SIGTERM stop a run after its current step with a checkpoint to resume from (see `stop`).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from ezm import config as config_lib
from ezm.learning import grad_similarity
from ezm.learning.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from ezm.learning.learner import Learner
from ezm.replay.buffer import Batch, Replay
from ezm.tasks.multitask_env import action_masks
from ezm.tasks.parallel_env import make_env
from ezm.tasks.registry import resolve
from ezm.tasks.task import Task
from ezm.workers.evaluate import EvalResult, Evaluator
from ezm.workers.logger import RunLogger
from ezm.workers.rollout import Rollout
from ezm.workers.run import CHECKPOINT_FILE, added_since, build_model, new_run_dir, read_config
from ezm.workers.stop import Interrupted, StopRequests

PRIORITY_QUANTILES = (0.01, 0.5, 0.99)  # of the stored priorities of every task, in the logs


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path  # where config, logs and checkpoint were written
    final_eval: EvalResult  # the evaluation at the end of training
    wall_clock_s: float  # seconds spent in this process
    updates: int  # optimiser steps in total

    def report(self) -> str:
        return (f"{self.final_eval.table()}\n\nenv steps per task: {self.final_eval.env_steps}, "
                f"updates: {self.updates}, wall clock: {self.wall_clock_s:.0f} s\n"
                f"run written to {self.run_dir}")


class RunFinished(Exception):
    """`resume` of a run that already reached its budget: there is nothing to do."""

    def __init__(self, run_dir: Path, env_steps: int):
        self.run_dir, self.env_steps = run_dir, env_steps
        super().__init__(f"run {run_dir} is finished ({env_steps} env steps per task, its budget); "
                         f"nothing to resume (evaluate it with: ezm eval {run_dir})")


class Trainer:
    def __init__(self, cfg: config_lib.Config, run_dir: Path):
        self.cfg, self.run_dir = cfg, run_dir
        torch.manual_seed(cfg.seed)
        self.tasks = checked_tasks(cfg)
        self.grad_pairs = grad_similarity.check_pairs(cfg.learn.grad_similarity_pairs,
                                                      [t.name for t in self.tasks])  # task-id pairs of Fig. 3
        mask = action_masks(self.tasks)  # [T, A]
        self.obs_size, self.action_size = max(t.obs_size for t in self.tasks), mask.shape[1]  # O, A padded
        model = build_model(cfg, self.tasks, self.obs_size, self.action_size, mask)
        self.learner = Learner(model, cfg, len(self.tasks))
        self.replay = Replay(cfg.replay, len(self.tasks), cfg.env.copies_per_task, self.obs_size,
                             self.action_size, cfg.search.root_actions)
        self._start_collection()
        self.evaluator = Evaluator(self.tasks, cfg, cfg.train.eval_episodes, seed=cfg.seed + 10_000)
        device = torch.device(cfg.device)
        self.act_generator = torch.Generator(device=device).manual_seed(cfg.seed)
        self.learn_generator = torch.Generator(device=device).manual_seed(cfg.seed + 1)
        self.sample_generator = torch.Generator().manual_seed(cfg.seed + 2)
        self.env_steps = 0  # environment (simulator) steps collected per task
        self.owed_updates = 0.0  # updates earned by collection and not yet taken
        train = cfg.train  # the env steps at which the next log line, evaluation and checkpoint are due
        self.next_log, self.next_eval = train.log_interval, train.eval_interval
        self.next_checkpoint = train.checkpoint_interval
        self.elapsed_s = 0.0  # seconds of training in this run, over every process that resumed it
        self.logger: RunLogger | None = None  # opened by `run`

    # --- collection: the environments and the acting in them ---------------------------
    def _start_collection(self) -> None:
        """Every row of every task in one batch, stepped and searched in this process."""
        self.env = make_env(self.tasks, self.cfg.env, seed=self.cfg.seed)
        self.rollout = Rollout(self.env, self.cfg)

    def collect(self) -> int:
        """One decision in every row, stored in replay; returns the env steps per task it added."""
        self.rollout.step(self.learner.model, self.replay, self.act_generator, self.env_steps)
        return self._collected(self.cfg.env.copies_per_task, self.rollout.drain_finished())

    def _collected(self, copies: int, finished: list[tuple[int, float]]) -> int:
        """Count one decision of `copies` copies of every task: its env steps, the updates it
        earns (owed from warm-up on) and its finished episodes (task id, return); returns the
        env steps per task it added."""
        steps = self.cfg.env.action_repeat * copies
        self.env_steps += steps
        if self.env_steps >= self.cfg.learn.warmup_steps:
            self.owed_updates += self.cfg.learn.replay_ratio * (copies * len(self.tasks))
        if finished:
            self.logger.log_episodes(self.env_steps, [(self.tasks[t].name, r) for t, r in finished])
        return steps

    def _collection_seeds(self) -> list[dict]:
        """The reset-seed stream of every env row (for checkpoints)."""
        return self.env.seed_state()

    def _restart_collection(self, env_seeds: list[dict]) -> None:
        """Continue every row's reset seeds from a checkpoint in fresh episodes (open episodes
        cannot be restored), which replay opens anew too."""
        self.env.set_seed_state(env_seeds)
        self.rollout.restart()
        self.replay.open_new_episodes(torch.arange(self.env.num_envs))

    def _stop_collection(self) -> None:
        self.env.close()

    # --- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "learner": self.learner.state_dict(),
            "replay": self.replay.state_dict(),
            "counters": {"env_steps": self.env_steps, "owed_updates": self.owed_updates,
                         "next_log": self.next_log, "next_eval": self.next_eval,
                         "next_checkpoint": self.next_checkpoint, "elapsed_s": self.elapsed_s},
            "rng": rng_state(torch_generators=self._generators()),
            "env_seeds": self._collection_seeds(),
        }

    def _generators(self) -> dict[str, torch.Generator]:
        return {"act": self.act_generator, "learn": self.learn_generator, "sample": self.sample_generator}

    def save(self) -> None:
        save_checkpoint(self.run_dir / CHECKPOINT_FILE, self.state_dict(), config_lib.to_dict(self.cfg))

    def load(self) -> None:
        self.load_state_dict(read_checkpoint(self.run_dir, self.cfg))

    def load_state_dict(self, state: dict) -> None:
        self.learner.load_state_dict(state["learner"])
        self.replay.load_state_dict(state["replay"])
        counters, train = state["counters"], self.cfg.train
        self.env_steps = int(counters["env_steps"])
        self.owed_updates = float(counters["owed_updates"])
        # checkpoints written before these counters: the schedule of a run that never stopped
        self.next_log = int(counters.get("next_log", next_multiple(self.env_steps, train.log_interval)))
        self.next_eval = int(counters.get("next_eval", next_multiple(self.env_steps, train.eval_interval)))
        self.next_checkpoint = int(counters.get("next_checkpoint",
                                                next_multiple(self.env_steps, train.checkpoint_interval)))
        self.elapsed_s = float(counters.get("elapsed_s", 0.0))
        set_rng_state(state["rng"], torch_generators=self._generators())
        self._restart_collection(state["env_seeds"])

    # --- the loop ------------------------------------------------------------------------
    def _learn(self) -> dict[str, torch.Tensor]:
        learn = self.cfg.learn
        metrics: dict[str, torch.Tensor] = {}
        while self.owed_updates >= 1.0:
            batch = self.sample_batch()
            if self.grad_pairs and self.learner.updates % learn.grad_similarity_interval == 0:
                self._log_grad_similarity(batch)
            metrics, priority = self._update(batch)
            self.replay.update_priorities(batch.index.cpu(), priority.cpu())
            self.owed_updates -= 1.0
        return metrics

    def sample_batch(self) -> Batch:
        """A batch from replay, on the learner's device."""
        learn = self.cfg.learn
        batch = self.replay.sample(learn.batch_size, learn.unroll, learn.td_steps, self.sample_generator)
        return Batch(*(t.to(self.cfg.device) for t in batch))

    def _update(self, batch: Batch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One update of the learner on `batch`: its metrics and the batch's new priorities [B]."""
        return self.learner.update(batch, self.learn_generator, self.env_steps)

    def _log_grad_similarity(self, batch) -> None:
        """Fig. 3's cosines on the batch about to be learned from, as a metrics row of their own
        (the measurement leaves training as it would be without it)."""
        values = grad_similarity.measure(self.learner, batch, self.learn_generator, self.env_steps,
                                         self.grad_pairs, list(self.cfg.learn.grad_similarity_pairs))
        self.logger.log_metrics(self.env_steps, {**values, "updates": self.learner.updates, "time": self.elapsed_s})

    def _readable(self, metrics: dict[str, torch.Tensor]) -> dict[str, float]:
        """Plain numbers for the logs: per-task tensors [T] (keys ending in `/task`) become one
        entry per task name, and the replay's priority quantiles per task are added."""
        names = [t.name for t in self.tasks]
        values: dict[str, float] = {}
        for key, value in metrics.items():
            if key.endswith("/task"):
                values.update({f"{key[:-5]}/{name}": float(v) for name, v in zip(names, value.tolist())})
            else:
                values[key] = float(value)
        if len(self.replay):
            quantiles = self.replay.priority_quantiles(PRIORITY_QUANTILES).tolist()  # [T, Q]
            for name, row in zip(names, quantiles):
                values.update({f"priority/q{int(q * 100):02d}/{name}": v for q, v in zip(PRIORITY_QUANTILES, row)})
        return values

    def _evaluate(self) -> EvalResult:
        result = self.evaluator.run(self.learner.model, self.learn_generator, self.env_steps)
        self.logger.log_eval(result)
        return result

    def banner(self, origin: str) -> str:
        """What the run is, printed before its progress bar: where it writes, its tasks with
        their sizes, where its config came from, the device and torch's thread count."""
        lines = [f"ezm train: run directory {self.run_dir.resolve()}",
                 f"  {len(self.tasks)} task(s), observations padded to {self.obs_size}, "
                 f"actions to {self.action_size}:"]
        lines += [f"    {t.name}: obs {t.obs_size}, action {t.action_size}" for t in self.tasks]
        lines += [f"  config: {origin}",
                  f"  from {self.env_steps} to {self.cfg.train.env_steps_per_task} env steps per task, "
                  f"device {self.cfg.device}, {torch.get_num_threads()} torch thread(s)"]
        return "\n".join(lines)

    def run(self, origin: str | None = None) -> TrainResult:
        """Train to the budget, printing the banner first when `origin` (where the config came
        from) is given. A SIGINT or SIGTERM stops it after the current step with a checkpoint
        (raising Interrupted); a second one stops it at once."""
        with StopRequests() as stop:
            if origin is not None:
                print(self.banner(origin), flush=True)
            self.logger = RunLogger(self.run_dir, since=self.env_steps)
            return self._loop(stop)

    def _loop(self, stop: StopRequests) -> TrainResult:
        train = self.cfg.train
        start = time.time()
        clock = last_time = start
        last_updates = self.learner.updates
        latest_score = float("nan")
        bar = tqdm(total=train.env_steps_per_task, initial=self.env_steps, unit="step",
                   disable=not train.progress, dynamic_ncols=True)
        while self.env_steps < train.env_steps_per_task:
            bar.update(self.collect())
            metrics = self._learn()
            now = time.time()
            self.elapsed_s, clock = self.elapsed_s + now - clock, now
            if self.env_steps >= self.next_log:
                rate = (self.learner.updates - last_updates) / max(now - last_time, 1e-9)
                values = self._readable(metrics)  # the latest update's, read once per log line
                self.logger.log_metrics(self.env_steps, {**values, "updates": self.learner.updates,
                                                         "updates_per_s": rate, "time": self.elapsed_s})
                bar.set_postfix(updates=self.learner.updates, upd_s=f"{rate:.1f}", score=f"{latest_score:.3f}")
                last_time, last_updates = now, self.learner.updates
                self.next_log += train.log_interval
            if self.next_eval <= self.env_steps < train.env_steps_per_task:  # the last one comes after the loop
                latest_score = self._evaluate().mean_normalized_score()
                self.next_eval += train.eval_interval
            if self.next_checkpoint <= self.env_steps < train.env_steps_per_task:
                self.next_checkpoint += train.checkpoint_interval
                self.save()
            if stop.signum is not None and self.env_steps < train.env_steps_per_task:
                bar.close()
                self.save()
                self.close()
                raise Interrupted(stop.signum, self.run_dir.resolve(), self.env_steps)
        bar.close()
        final = self._evaluate()
        self.save()
        self.close()
        return TrainResult(self.run_dir, final, time.time() - start, self.learner.updates)

    def close(self) -> None:
        """Close the logger, the evaluator and the environments (a run's end, or a caller's)."""
        self.logger.close()
        self.evaluator.close()
        self._stop_collection()


def next_multiple(env_steps: int, interval: int) -> int:
    """The first multiple of `interval` after `env_steps`: when a run that never stopped is next due."""
    return (env_steps // interval + 1) * interval


def checked_tasks(cfg: config_lib.Config) -> list[Task]:
    """The tasks of cfg.env.suite, after the checks that need their number (before any env is built)."""
    tasks = resolve(cfg.env.suite)
    config_lib.validate_tasks(cfg, len(tasks))
    grad_similarity.check_pairs(cfg.learn.grad_similarity_pairs, [t.name for t in tasks])
    return tasks


def train(cfg: config_lib.Config, origin: str | None = None) -> TrainResult:
    """Train a new run; returns its final evaluation and where it was written. With `origin`
    (where the config came from, e.g. the preset and overrides) a start banner is printed."""
    checked_tasks(cfg)  # unusable tasks or settings fail before the run directory is made
    arrangement = trainer_class(cfg)  # so does a Ray cluster that cannot start
    return arrangement(cfg, new_run_dir(cfg)).run(origin)


def trainer_class(cfg: config_lib.Config) -> type[Trainer]:
    """The arrangement of cfg.system.backend: this process, or the Ray pipeline (connected)."""
    if cfg.system.backend == "ray":
        from ezm.distributed import ray_trainer

        return ray_trainer(cfg)
    return Trainer


def read_checkpoint(run_dir: Path, cfg: config_lib.Config) -> dict:
    """The state in the checkpoint of `run_dir`, which must have been written with `cfg`."""
    return load_checkpoint(run_dir / CHECKPOINT_FILE, config_lib.to_dict(cfg),
                           defaults=config_lib.to_dict(config_lib.Config()),
                           retired=config_lib.RETIRED)


def resume(run_dir: str | Path, origin: str | None = None) -> TrainResult:
    """Continue a run from its checkpoint, as if it had not stopped (`origin` as in `train`).
    A run that already reached its budget is left as it is (raising RunFinished)."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    state = read_checkpoint(run_dir, cfg)
    env_steps = int(state["counters"]["env_steps"])
    if env_steps >= cfg.train.env_steps_per_task:
        raise RunFinished(run_dir.resolve(), env_steps)
    added = added_since(run_dir)
    if added:  # the run goes on with settings it did not start with: say which
        print("ezm: fields added to ezm since this run started take their defaults from here on: "
              + ", ".join(f"{name}={value}" for name, value in added.items()), file=sys.stderr, flush=True)
    trainer = trainer_class(cfg)(cfg, run_dir)
    trainer.load_state_dict(state)
    return trainer.run(origin)
