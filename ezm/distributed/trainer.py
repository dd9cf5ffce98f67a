"""The Ray pipeline: rollout and reanalyze actors around the learner and replay of this process.

`RayTrainer` is the single process's `Trainer` (its loop, logs, evaluations, checkpoints and
resume) with two pieces moved into actors: the acting and stepping of the environments
(`RolloutWorker`, env.copies_per_task / rollout_workers copies of every task each) and the
reanalyze of sampled batches (`ReanalyzeWorker`). Replay, sampling and the optimiser step
stay here. Weights go through the object store once per broadcast (`weights.Broadcast`).

Lockstep (`system.lockstep`): the pieces run one at a time in the single process's order,
with its generators (their states travel with every call and come back), so a seed gives the
single process's replay, losses and weights, bit for bit.

Asynchronous (the default): every rollout worker has one step in flight and the reanalyze
workers up to `queue_size` sampled batches each; the learner takes an update whenever the
targets of one arrive. The replay ratio is kept by throttling: updates are owed as in the
single process (replay_ratio per decision from warm-up on) and taken only when owed, and a
rollout worker gets its next step only while the owed updates stay within one round of
decisions of every worker. The queue holds sampling back when full, so no batch is dropped.
Acting weights are broadcast every `broadcast_interval` updates and the target's at every copy;
the logs give their staleness in updates: `staleness/acting` (learner updates since the weights
a step acted with were put) and `staleness/reanalyze` (updates since a batch's targets were
asked for with the then-current target), mean and max since the previous log line, and
`pipeline/learner_idle`, the share of the time the learner waited for targets or steps (near 0:
the learner is the bottleneck; near 1: add reanalyze or rollout workers).
When every reanalyze queue is full, updates are still owed and no result is ready, the learner
does not wait: it reanalyzes a batch itself with its own target model and the single process's
`update` (staleness 0), so on few cores the learner's share of the reanalyze work balances
itself; `pipeline/learner_reanalyze` is the share of the updates since the previous log line
whose targets the learner computed (near 1: the reanalyze workers are too few or too slow).

Faults: an actor that dies is restarted by Ray (up to system.max_restarts times); a rollout
worker's open episodes are lost (replay opens new ones in its rows) and a reanalyze worker's
batches in flight are sampled again. A dead learner resumes from its checkpoint as today.
"""
from __future__ import annotations

import sys
import time
from collections import deque
from pathlib import Path
from typing import NamedTuple

import numpy as np
import ray
import torch

from ezm import config as config_lib
from ezm.distributed.reanalyze_worker import ReanalyzeWorker
from ezm.distributed.rollout_worker import RolloutWorker, StepOut
from ezm.distributed.weights import Broadcast
from ezm.distributed.wire import from_wire, to_wire
from ezm.learning.targets import Targets
from ezm.replay.buffer import Batch
from ezm.tasks.row_envs import reset_streams
from ezm.workers.trainer import Trainer

ACTOR_FAULTS = (ray.exceptions.RayActorError,)  # an actor died (and is being restarted) or was unreachable


class Job(NamedTuple):
    """A batch out for reanalyze."""
    ref: ray.ObjectRef  # of (targets, variance range, None)
    worker: int  # the reanalyze worker computing it
    batch: Batch  # on the learner's device
    asked_at: int  # learner updates when it was sent


def worker_seed(*words: int) -> int:
    """A generator seed for one actor, from the run's seed and the actor's role and index."""
    return int(np.random.SeedSequence(list(words)).generate_state(1)[0])


class RayTrainer(Trainer):
    def __init__(self, cfg: config_lib.Config, run_dir: Path):
        self.jobs: deque[Job] = deque()  # batches out for reanalyze, oldest first
        self.steps_out: dict[ray.ObjectRef, int] = {}  # rollout step in flight -> its worker
        self.acting, self.target = Broadcast(), Broadcast()
        self.staleness = {"acting": [], "reanalyze": []}  # since the last log line, in updates
        self.faults = {"rollout": 0, "reanalyze": 0}  # actors that died during this process
        self.waited_s, self.since = 0.0, time.time()  # seconds the learner waited for results, since
        self.reanalyzed_here, self.updated = 0, 0  # updates since the last log line: with targets computed here, all
        self._metrics: dict[str, torch.Tensor] = {}  # of the latest update
        super().__init__(cfg, run_dir)

    # --- the actors -----------------------------------------------------------------------
    def _start_collection(self) -> None:
        cfg, system = self.cfg, self.cfg.system
        tasks, n = len(self.tasks), cfg.env.copies_per_task
        self.copies = n // system.rollout_workers  # C copies of every task a rollout worker
        options = dict(num_cpus=system.worker_cpus, num_gpus=system.worker_gpus,
                       max_restarts=system.max_restarts, max_task_retries=0)
        task_start = torch.arange(tasks)[:, None] * n  # [T, 1] replay row of every task's first copy
        self.rows = [(task_start + w * self.copies + torch.arange(self.copies)).flatten()  # [T*C] each
                     for w in range(system.rollout_workers)]
        seeds = [g.bit_generator.state for g in reset_streams(cfg.seed, tasks * n)]  # [E] as the single process's rows
        rollout = ray.remote(RolloutWorker).options(**options)
        self.rollout_workers = [rollout.remote(cfg, self.copies, [seeds[r] for r in rows.tolist()],
                                               worker_seed(cfg.seed, 1, w))
                                for w, rows in enumerate(self.rows)]
        reanalyze = ray.remote(ReanalyzeWorker).options(**options)
        self.reanalyze_workers = [reanalyze.remote(cfg, worker_seed(cfg.seed, 2, w))
                                  for w in range(system.reanalyze_workers)]

    def _stop_collection(self) -> None:
        """End the actors (and with them the steps and batches in flight)."""
        for worker in [*self.rollout_workers, *self.reanalyze_workers]:
            ray.kill(worker, no_restart=True)
        self.steps_out.clear()
        self.jobs.clear()

    def _collection_seeds(self) -> list[dict]:
        """The reset-seed streams of every row, in the single process's row order."""
        seeds: list[dict] = [{}] * (len(self.tasks) * self.cfg.env.copies_per_task)
        for rows, states in zip(self.rows, ray.get([w.seed_state.remote() for w in self.rollout_workers])):
            for row, state in zip(rows.tolist(), states):
                seeds[row] = state
        return seeds

    def _restart_collection(self, env_seeds: list[dict]) -> None:
        ray.get([w.restart.remote([env_seeds[r] for r in rows.tolist()], worker_seed(self.cfg.seed, 1, i, self.env_steps))
                 for i, (w, rows) in enumerate(zip(self.rollout_workers, self.rows))])
        self.replay.open_new_episodes(torch.arange(len(self.tasks) * self.cfg.env.copies_per_task))

    def banner(self, origin: str) -> str:
        system = self.cfg.system
        mode = "lockstep" if system.lockstep else "asynchronous"
        return (f"{super().banner(origin)}\n  Ray ({mode}, cluster {system.address}): {system.rollout_workers} "
                f"rollout worker(s) of {self.copies} copies of every task, {system.reanalyze_workers} reanalyze worker(s)")

    # --- results and faults ---------------------------------------------------------------
    def _arrived(self, worker: int, out: StepOut) -> int:
        """Write a rollout step to replay and count it; returns its env steps per task."""
        out.transitions.write(self.replay, self.rows[worker])
        self.staleness["acting"].append(self.learner.updates - out.version)
        return self._collected(self.copies, out.finished)

    def _rollout_died(self, worker: int, err: Exception) -> None:
        self.faults["rollout"] += 1
        self.replay.open_new_episodes(self.rows[worker])  # its restarted envs begin new episodes
        print(f"ezm: rollout worker {worker} died ({type(err).__name__}); Ray restarts it, its open "
              f"episodes are lost", file=sys.stderr, flush=True)

    def _reanalyze_died(self, worker: int, err: Exception) -> None:
        self.faults["reanalyze"] += 1
        print(f"ezm: reanalyze worker {worker} died ({type(err).__name__}); Ray restarts it, its "
              f"batch is sampled again", file=sys.stderr, flush=True)

    def _readable(self, metrics: dict[str, torch.Tensor]) -> dict[str, float]:
        values = super()._readable(metrics)
        for name, ages in self.staleness.items():
            if ages:
                values.update({f"staleness/{name}": float(np.mean(ages)), f"staleness/{name}_max": float(max(ages))})
            ages.clear()
        values.update({f"faults/{name}": float(count) for name, count in self.faults.items()})
        now = time.time()
        values["pipeline/learner_idle"] = self.waited_s / max(now - self.since, 1e-9)
        values["pipeline/learner_reanalyze"] = self.reanalyzed_here / self.updated if self.updated else 0.0
        self.waited_s, self.since = 0.0, now
        self.reanalyzed_here, self.updated = 0, 0
        return values

    # --- weights ----------------------------------------------------------------------------
    def _broadcast(self) -> None:
        """Put the acting weights when `broadcast_interval` updates old (every update in
        lockstep) and the target's when the learner copied its target since the last put."""
        updates, learn = self.learner.updates, self.cfg.learn
        interval = 1 if self.cfg.system.lockstep else self.cfg.system.broadcast_interval
        if self.acting.version < 0 or updates - self.acting.version >= interval:
            self.acting.put(self.learner.model, updates)
        copied_at = updates - updates % learn.target_update_interval  # the update of the target's last copy
        if self.target.version != copied_at:
            self.target.put(self.learner.target_model, copied_at)

    # --- the loop's pieces: lockstep, in the single process's order, or asynchronous ----------
    def collect(self) -> int:
        if not self.cfg.system.lockstep:
            return self._collect_async()
        while True:
            self._broadcast()
            ref = self.rollout_workers[0].step.remote(self.acting.box, self.acting.version, self.env_steps,
                                                      self.act_generator.get_state())
            try:
                out = self._get(ref)
            except ACTOR_FAULTS as err:
                self._rollout_died(0, err)
                continue
            self.act_generator.set_state(out.generator_state)
            return self._arrived(0, out)

    def _update(self, batch: Batch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The single process's update with reanalyze in the worker, which continues the learn generator."""
        self.learner.observe(batch)
        while True:
            self._broadcast()
            ref = self.reanalyze_workers[0].targets.remote(
                self.target.box, self.target.version, to_wire(batch),
                self.learner.variance_range.state_dict(), self.learner.updates, self.env_steps,
                self.learn_generator.get_state())
            try:
                targets, variance, generator_state = self._get(ref)
                break
            except ACTOR_FAULTS as err:
                self._reanalyze_died(0, err)
        self.learn_generator.set_state(generator_state)
        self.staleness["reanalyze"].append(0)  # the target it searched with is the learner's
        return self._step(batch, targets, variance)

    def _get(self, ref: ray.ObjectRef):
        """The result of `ref`, counting the wait as the learner's idle time."""
        began = time.time()
        try:
            return ray.get(ref)
        finally:
            self.waited_s += time.time() - began

    def _step(self, batch: Batch, targets: tuple, variance: dict) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The optimiser step on `batch` with its targets (`to_wire` arrays) and the variance range after them."""
        self.learner.variance_range.load_state_dict(variance)
        return self.learner.step(batch, from_wire(Targets, targets, self.cfg.device), self.env_steps)

    def _learn(self) -> dict[str, torch.Tensor]:
        if self.cfg.system.lockstep:
            return super()._learn()
        if self.env_steps >= self.cfg.train.env_steps_per_task:  # the budget is collected: take what is owed
            while self.owed_updates >= 1.0:
                self._fill()
                self._wait()
        return self._metrics

    # --- asynchronous ---------------------------------------------------------------------------
    def _collect_async(self) -> int:
        """Keep the workers busy within the throttle and the queue, and take updates as their
        targets arrive, until a rollout step arrives; returns its env steps per task."""
        while True:
            self._fill()
            steps = self._wait()
            if steps:
                return steps

    def _fill(self) -> None:
        """Send batches out for reanalyze while updates are owed and the queue has room, and a
        step to every idle rollout worker while collection is not ahead of the updates."""
        cfg, system = self.cfg, self.cfg.system
        self._broadcast()
        busy = [job.worker for job in self.jobs]
        while self.owed_updates - len(self.jobs) >= 1.0 and len(self.jobs) < system.queue_size * system.reanalyze_workers:
            worker = min(range(system.reanalyze_workers), key=busy.count)
            batch = self.sample_batch()
            ref = self.reanalyze_workers[worker].targets.remote(
                self.target.box, self.target.version, to_wire(batch),
                self.learner.variance_range.state_dict(), self.learner.updates, self.env_steps)
            self.jobs.append(Job(ref, worker, batch, self.learner.updates))
            busy.append(worker)
        round_updates = cfg.learn.replay_ratio * len(self.tasks) * cfg.env.copies_per_task  # earned by a step of every worker
        idle = set(range(system.rollout_workers)) - set(self.steps_out.values())
        step_size = cfg.env.action_repeat * self.copies  # env steps per task of one worker's step
        for worker in sorted(idle):
            collected = self.env_steps + step_size * len(self.steps_out)  # with the steps in flight
            if collected >= cfg.train.env_steps_per_task or self.owed_updates >= max(round_updates, 1.0):
                break
            ref = self.rollout_workers[worker].step.remote(self.acting.box, self.acting.version, self.env_steps)
            self.steps_out[ref] = worker

    def _wait(self) -> int:
        """Handle one result: an update from arrived targets (returns 0) or a rollout step
        written to replay (returns its env steps per task)."""
        refs = [job.ref for job in self.jobs] + list(self.steps_out)
        if self.owed_updates - len(self.jobs) >= 1.0 and not ray.wait(refs, num_returns=1, timeout=0)[0]:
            self._update_here()  # every queue is full (`_fill` ran): reanalyze here rather than wait
            return 0
        began = time.time()
        (ready,), _ = ray.wait(refs, num_returns=1)
        self.waited_s += time.time() - began
        if ready in self.steps_out:
            worker = self.steps_out.pop(ready)
            try:
                return self._arrived(worker, ray.get(ready))
            except ACTOR_FAULTS as err:
                self._rollout_died(worker, err)
                return 0
        job = next(job for job in self.jobs if job.ref == ready)
        self.jobs.remove(job)
        try:
            targets, variance, _ = ray.get(ready)
        except ACTOR_FAULTS as err:
            self._reanalyze_died(job.worker, err)
            return 0
        self.staleness["reanalyze"].append(self.learner.updates - job.asked_at)
        self.learner.observe(job.batch)
        self._metrics, priority = self._step(job.batch, targets, variance)
        self.replay.update_priorities(job.batch.index.cpu(), priority.cpu())
        self.owed_updates -= 1.0
        self.updated += 1
        return 0

    def _update_here(self) -> None:
        """An owed update whose targets the learner computes itself, as the single process does."""
        batch = self.sample_batch()
        self._metrics, priority = self.learner.update(batch, self.learn_generator, self.env_steps)
        self.replay.update_priorities(batch.index.cpu(), priority.cpu())
        self.owed_updates -= 1.0
        self.staleness["reanalyze"].append(0)
        self.reanalyzed_here += 1
        self.updated += 1
