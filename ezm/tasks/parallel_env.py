"""The rows of a MultiTaskEnv split over worker processes and stepped concurrently.

Worker w holds the contiguous rows [bounds[w], bounds[w + 1]) in a RowEnvs of its own, built
in the worker with the reset-seed streams the in-process MultiTaskEnv gives those rows, so a
seed gives the same observations, rewards and episode ends as MultiTaskEnv, bit for bit. The
batch's arrays (actions, observations, rewards, episode-end flags and episode steps) live in
memory shared with the workers (multiprocessing RawArrays): the parent clips and rescales the
actions into it as MultiTaskEnv does and tells every worker over its pipe to step; each worker
writes its rows' results straight into the same padded arrays. Pipes carry only commands, row
indices, seed states and errors.

Workers start with 'spawn' (safe beside torch's threads) and ignore SIGINT and SIGTERM, which
a terminal or a batch system sends to the whole process group: the parent finishes its step
and decides when they stop. They stop on `close()`, when the env is garbage-collected, or at
interpreter exit; a worker whose parent died sees its pipe close and exits. An exception in a
worker reaches the parent as the same type and message, its cause holding the worker's
traceback; a worker that dies is reported as a SimulationWorkerError naming it.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.util
import pickle
import signal
import traceback
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import numpy as np

from ezm.config import EnvConfig
from ezm.tasks.multitask_env import MultiTaskEnv
from ezm.tasks.row_envs import RowEnvs, RowState
from ezm.tasks.task import Task

STOP_TIMEOUT_S = 5.0  # how long close() waits for a worker to exit before killing it


class SimulationWorkerError(RuntimeError):
    """A simulation worker died, or the parent lost track of its replies."""


class WorkerTraceback(Exception):
    """The traceback of an exception raised in a simulation worker (the cause of its re-raise)."""


def make_env(tasks: list[Task], env: EnvConfig, seed: int) -> MultiTaskEnv:
    """The batch `env` asks for: stepped in this process (sim_workers=0) or by sim_workers processes."""
    if env.sim_workers == 0:
        return MultiTaskEnv(tasks, env.copies_per_task, seed, env.action_repeat)
    return ParallelMultiTaskEnv(tasks, env.copies_per_task, seed, env.action_repeat, workers=env.sim_workers)


def _portable(err: BaseException) -> tuple[BaseException, str]:
    """(err, or a RuntimeError with its type and message where err cannot be pickled; its traceback)."""
    text = traceback.format_exc()
    try:
        pickle.loads(pickle.dumps(err))
    except Exception:  # an exception whose class cannot cross the pipe
        return RuntimeError(f"{type(err).__name__}: {err}"), text
    return err, text


SharedBuffers = dict[str, Any]  # field of RowState, or "actions" -> its multiprocessing RawArray


def _shared_buffers(context: Any, num_envs: int, obs_size: int, action_size: int) -> SharedBuffers:
    """Shared memory for the batch's RowState and actions, sized as `_views` reads it."""
    sizes = {name: int(np.prod(shape)) * np.dtype(dtype).itemsize
             for name, (shape, dtype) in _layout(num_envs, obs_size, action_size).items()}
    return {name: context.RawArray("b", max(size, 1)) for name, size in sizes.items()}


def _layout(num_envs: int, obs_size: int, action_size: int) -> dict[str, tuple[tuple[int, ...], type]]:
    """Shape and dtype of every shared array."""
    return {"obs": ((num_envs, obs_size), np.float32), "reward": ((num_envs,), np.float32),
            "terminated": ((num_envs,), np.bool_), "truncated": ((num_envs,), np.bool_),
            "episode_steps": ((num_envs,), np.int64), "actions": ((num_envs, action_size), np.float64)}


def _views(buffers: SharedBuffers, num_envs: int, obs_size: int, action_size: int) -> tuple[RowState, np.ndarray]:
    """(RowState of all E rows, actions [E, A] in task bounds), as numpy views of `buffers`."""
    arrays = {name: np.frombuffer(buffers[name], dtype, int(np.prod(shape))).reshape(shape)
              for name, (shape, dtype) in _layout(num_envs, obs_size, action_size).items()}
    actions = arrays.pop("actions")
    return RowState(**arrays), actions


def _serve(conn: Connection, buffers: SharedBuffers, tasks: list[Task], copies: int, seed: int,
           action_repeat: int, start: int, stop: int) -> None:
    """A worker's loop: build rows [start, stop) writing into the shared buffers, then answer
    (command, argument) messages; results travel through the buffers, the replies only say done."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    obs_size = max(t.obs_size for t in tasks)
    action_size = max(t.action_size for t in tasks)
    state, actions = _views(buffers, len(tasks) * copies, obs_size, action_size)
    try:
        rows = RowEnvs(tasks, copies, seed, action_repeat, start, stop, state.rows(start, stop))
    except Exception as err:
        conn.send(("error", _portable(err)))
        return
    own_actions = actions[start:stop]  # [n, A] the parent writes them before every "step"
    commands = {
        "reset": rows.reset,
        "step": lambda _: rows.step(own_actions),
        "seed_state": lambda _: rows.seed_state(),
        "set_seed_state": rows.set_seed_state,
    }
    try:
        conn.send(("ok", None))
        while True:
            command, argument = conn.recv()
            if command == "close":
                break
            try:
                reply = ("ok", commands[command](argument))
            except Exception as err:
                reply = ("error", _portable(err))
            conn.send(reply)
    except (EOFError, OSError):  # the parent is gone
        pass
    finally:
        rows.close()


def _stop_workers(conns: list[Connection], processes: list[BaseProcess]) -> None:
    """Ask every worker to exit, kill those that do not within STOP_TIMEOUT_S, release the pipes."""
    for conn, process in zip(conns, processes):
        if process.is_alive():
            try:
                conn.send(("close", None))
            except OSError:  # its pipe is already broken
                pass
    for conn, process in zip(conns, processes):
        process.join(STOP_TIMEOUT_S)
        if process.exitcode is None:
            process.kill()
            process.join()
        conn.close()


class ParallelMultiTaskEnv(MultiTaskEnv):
    """MultiTaskEnv's interface and results, with its rows stepped by `workers` processes."""

    def __init__(self, tasks: list[Task], copies: int, seed: int, action_repeat: int = 1, workers: int = 2):
        self._set_layout(tasks, copies, action_repeat)
        if not 1 <= workers <= self.num_envs:
            raise ValueError(f"workers must lie in [1, {self.num_envs}] (one row at least each), got {workers}")
        context = multiprocessing.get_context("spawn")
        buffers = _shared_buffers(context, self.num_envs, self.obs_size, self.action_size)
        state, self._scaled = _views(buffers, self.num_envs, self.obs_size, self.action_size)  # workers read _scaled
        self._use_state(state)  # the workers write every row's results here
        edges = np.arange(workers + 1) * self.num_envs // workers  # [W + 1] near-equal contiguous slices
        self._bounds = list(zip(edges[:-1].tolist(), edges[1:].tolist()))  # [W] (start, stop) of every worker
        self._broken: str | None = None  # why the workers' replies can no longer be matched to calls
        self._conns: list[Connection] = []  # [W] the parent's end of every worker's pipe
        self._processes: list[BaseProcess] = []  # [W]
        # runs on close(), when the env is collected, or at exit before multiprocessing joins its children
        # (which would wait forever on workers that ignore SIGTERM and were never told to stop)
        self._stop = multiprocessing.util.Finalize(self, _stop_workers, args=(self._conns, self._processes),
                                                   exitpriority=10)
        try:
            for start, stop in self._bounds:
                parent_end, child_end = context.Pipe()
                process = context.Process(target=_serve, args=(child_end, buffers, self.tasks, copies, seed,
                                                               action_repeat, start, stop),
                                          name=f"ezm-sim-{start}-{stop - 1}", daemon=True)
                process.start()
                child_end.close()  # the worker holds it now; the parent's recv sees EOF when the worker dies
                self._conns.append(parent_end)
                self._processes.append(process)
            self._call({w: None for w in range(workers)})  # every worker built its rows
        except BaseException:
            self.close()
            raise

    @property
    def worker_pids(self) -> list[int]:
        """[W] the process id of every simulation worker."""
        return [process.pid for process in self._processes]

    def _call(self, messages: dict[int, tuple[str, Any] | None]) -> dict[int, Any]:
        """Send worker w its (command, argument) for every w in `messages` (None: only await a
        reply), then gather every reply; the first failure in row order is raised once all answered."""
        if self._broken is not None:
            raise SimulationWorkerError(self._broken)
        self._broken = ("a call to the simulation workers was interrupted, so their replies are out of step; "
                        "close this env")
        failures: dict[int, BaseException] = {}  # worker -> what it raised or why it is gone
        for w, message in messages.items():
            if message is not None:
                try:
                    self._conns[w].send(message)
                except OSError:
                    failures[w] = self._dead(w)
        replies = {}
        for w in [w for w in messages if w not in failures]:
            try:
                status, value = self._conns[w].recv()
            except (EOFError, OSError):
                failures[w] = self._dead(w)
                continue
            if status == "ok":
                replies[w] = value
            else:
                err, text = value
                err.__cause__ = WorkerTraceback(f"in simulation worker {w} (rows {self._rows_text(w)}):\n{text}")
                failures[w] = err
        self._broken = next((f"simulation worker {w} is gone" for w, err in failures.items()
                             if isinstance(err, SimulationWorkerError)), None)
        if failures:
            raise failures[min(failures)]
        return replies

    def _rows_text(self, w: int) -> str:
        start, stop = self._bounds[w]
        return f"{start}-{stop - 1}"

    def _dead(self, w: int) -> SimulationWorkerError:
        process = self._processes[w]
        process.join(STOP_TIMEOUT_S)
        code = process.exitcode
        how = (f"was killed by signal {-code}" if code is not None and code < 0
               else f"exited with code {code}" if code is not None else "stopped answering")
        return SimulationWorkerError(f"simulation worker {w} (rows {self._rows_text(w)}, pid {process.pid}) {how}")

    def _reset(self, rows: np.ndarray) -> None:
        messages = {}
        for w, (start, stop) in enumerate(self._bounds):
            local = rows[(rows >= start) & (rows < stop)] - start  # [k_w] the worker's rows, numbered locally
            if local.size:
                messages[w] = ("reset", local)
        self._call(messages)

    def _step(self, scaled: np.ndarray) -> None:
        self._call({w: ("step", None) for w in range(len(self._bounds))})  # scaled is the shared _scaled

    def _seeds(self) -> list[dict]:
        replies = self._call({w: ("seed_state", None) for w in range(len(self._bounds))})
        return [state for w in range(len(self._bounds)) for state in replies[w]]

    def _set_seeds(self, states: list[dict]) -> None:
        self._call({w: ("set_seed_state", states[start:stop]) for w, (start, stop) in enumerate(self._bounds)})

    def close(self) -> None:
        """Stop the workers (they close their environments); safe to call more than once."""
        self._stop()
