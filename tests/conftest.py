"""Test session set-up: headless MuJoCo rendering (no display on CI machines)."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")
