"""The Ray arrangement of the rollout, reanalyze and learner pieces (docs/scale-out.md).

The only package that imports Ray, and only when a run asks for it (`system.backend=ray`):
the rest of ezm runs without Ray installed.
"""
from __future__ import annotations

from ezm.config import Config, ConfigError


def ray_trainer(cfg: Config) -> type:
    """The Trainer of the Ray pipeline, once Ray is importable and the cluster of
    `system.address` answers (so that a missing Ray or cluster fails before a run directory
    exists, with one line)."""
    try:
        import ray  # noqa: F401  (only to tell the user what to install)
    except ImportError:
        raise ConfigError("system.backend=ray needs Ray, which is not installed: pip install -e '.[ray]'") from None
    from ezm.distributed.cluster import check_resources, connect
    from ezm.distributed.trainer import RayTrainer

    connect(cfg.system)
    check_resources(cfg.system)
    return RayTrainer
