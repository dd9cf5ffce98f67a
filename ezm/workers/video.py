"""Evaluation videos: the first evaluation episode of every task, rendered offscreen, as a GIF.

A `VideoRecorder` watches an evaluation (`Evaluator.run(observe=...)`) and renders copy 0 of
every task after each counted step; rendering reads the simulator and changes nothing, so
the evaluation's returns are those of an evaluation without video. dm_control tasks render
with `physics.render` (MUJOCO_GL=egl works without a display); Gymnasium tasks, HumanoidBench
included, with their own `render()` in rgb_array mode. GIFs are written with Pillow
(matplotlib's dependency), at the task's real-time frame rate where it is known.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from ezm.tasks.multitask_env import MultiTaskEnv, StepResult
from ezm.tasks.task import TaskError

MAX_FRAMES = 400  # longer episodes keep every k-th frame (played k times as long)
DEFAULT_FPS = 30.0  # where a task's control rate is unknown


def render(raw_env, height: int, width: int) -> np.ndarray:
    """The current frame [height, width, 3] uint8 of one task environment."""
    physics = getattr(getattr(raw_env, "env", None), "physics", None)
    if physics is not None:  # dm_control
        return physics.render(height=height, width=width, camera_id=0)
    unwrapped = raw_env.env.unwrapped  # Gymnasium (and HumanoidBench): built with render_mode=None
    unwrapped.render_mode = "rgb_array"
    try:
        frame = unwrapped.render()
    except Exception as err:  # the source's own error (a missing pygame, an OpenGL context)
        raise TaskError(f"cannot render {type(unwrapped).__name__} offscreen: {err}") from None
    if frame is None:
        raise TaskError(f"{type(unwrapped).__name__} renders no rgb_array frames")
    return np.asarray(frame)


def frame_rate(raw_env, action_repeat: int) -> float:
    """Frames per second of a decision-per-frame video that plays in real time."""
    env = getattr(raw_env, "env", None)
    if hasattr(env, "control_timestep"):  # dm_control
        return 1.0 / (env.control_timestep() * action_repeat)
    fps = getattr(getattr(env, "unwrapped", None), "metadata", {}).get("render_fps")
    return float(fps) / action_repeat if fps else DEFAULT_FPS


def write_gif(frames: list[np.ndarray], path: Path, fps: float) -> Path:
    """frames [n] of [H, W, 3] uint8 as a looping GIF."""
    stride = math.ceil(len(frames) / MAX_FRAMES)
    images = [Image.fromarray(f) for f in frames[::stride]]
    images[0].save(path, save_all=True, append_images=images[1:], loop=0,
                   duration=max(int(round(1000.0 * stride / fps)), 20))
    return path


class VideoRecorder:
    """Frames of copy 0 of every task of an evaluation environment, while its episode counts."""

    def __init__(self, env: MultiTaskEnv, height: int = 240, width: int = 320):
        self.env, self.height, self.width = env, height, width
        self.rows = np.arange(len(env.tasks)) * env.copies  # [T] the row of copy 0 of every task
        self.frames: list[list[np.ndarray]] = [[] for _ in env.tasks]  # [T] frames so far

    def observe(self, result: StepResult, counted: np.ndarray) -> None:
        """An `Observe` for Evaluator.run: a frame of every task whose first episode runs on."""
        for task_id, row in enumerate(self.rows):
            if counted[row]:
                self.frames[task_id].append(render(self.env.raw_envs[row], self.height, self.width))

    def write(self, folder: Path, env_steps: int) -> list[Path]:
        """One `<task>-<env_steps>.gif` per task in `folder`; returns their paths."""
        folder.mkdir(parents=True, exist_ok=True)
        return [write_gif(frames, folder / f"{task.name.replace(':', '_')}-{env_steps}.gif",
                          frame_rate(self.env.raw_envs[row], self.env.action_repeat))
                for task, row, frames in zip(self.env.tasks, self.rows, self.frames)]
