"""Joining or starting the Ray cluster of a run, with one clear error where there is none.

`system.address`: "local" starts a cluster inside this process (it ends with the process),
"auto" joins the one `ray start --head` made on this machine, HOST:PORT joins that one. A
process already connected (a test, a notebook, a benchmark running several arrangements)
keeps its cluster. Actors the cluster has no room for are refused too (Ray would wait).
"""
from __future__ import annotations

import logging
import socket

import ray

from ezm.config import ConfigError, SystemConfig

REACH_TIMEOUT_S = 5.0  # how long a HOST:PORT may take to accept a connection


class ClusterError(ConfigError):
    """The Ray cluster of system.address cannot be reached or started."""


def connect(system: SystemConfig) -> None:
    if ray.is_initialized():
        return
    address = system.address
    if address not in ("local", "auto"):
        _check_reachable(address)
    try:
        ray.init(address=None if address == "local" else address, include_dashboard=False,
                 logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = ("start one with `ray start --head`, or use system.address=local" if address == "auto"
                else "see docs/scale-out.md")
        raise ClusterError(f"system.address={address}: cannot start or join a Ray cluster ({reason}); {hint}") from None


def _check_reachable(address: str) -> None:
    """Refuse at once a HOST:PORT where nothing listens (Ray itself retries for minutes)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"system.address must be local, auto or HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=REACH_TIMEOUT_S).close()
    except OSError as err:
        raise ClusterError(f"system.address={address}: no Ray cluster answers there ({err.strerror or err}); "
                           f"start one with `ray start --head` on that machine, or use system.address=local") from None


def check_resources(system: SystemConfig) -> None:
    """Refuse actors the cluster cannot place (Ray would wait for them for ever)."""
    actors = system.rollout_workers + system.reanalyze_workers
    have = ray.cluster_resources()
    for name, share in (("CPU", system.worker_cpus), ("GPU", system.worker_gpus)):
        if actors * share > have.get(name, 0.0):
            field = f"system.worker_{name.lower()}s"
            raise ClusterError(
                f"{actors} actors x {field}={share:g} need {actors * share:g} {name}s, the Ray cluster has "
                f"{have.get(name, 0.0):g}: lower {field} or the number of workers")
